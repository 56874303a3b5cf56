package raftmembership_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// testWait bounds every wait in these tests for something that should
// happen promptly; it only decides how long a failing test takes. It is
// generous because elections slow down under the race detector with many
// tests in parallel.
const testWait = 15 * time.Second

// pollInterval is how often conditions are polled.
const pollInterval = 5 * time.Millisecond

// receive waits, polling until testWait has passed, for a value on ch,
// failing the test with what it was waiting for.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	var value T
	require.Eventually(t, func() bool {
		select {
		case value = <-ch:
			return true
		default:
			return false
		}
	}, testWait, pollInterval, "waited for %s", what)
	return value
}

// testNode is one raft node on an in-memory transport whose change requests
// are served by HandleChangeRequestsWithConfig.
type testNode struct {
	id        raft.ServerID
	addr      raft.ServerAddress
	raft      *raft.Raft
	transport *raft.InmemTransport
	requests  chan *raftmembership.ChangeRequest
	// handled is closed when the goroutine serving requests returns.
	handled   chan struct{}
	closeOnce sync.Once
}

// nodeOptions tunes startNode. The zero value means in-memory stores and
// a membership handler with a 5 s timeout.
type nodeOptions struct {
	// logs replaces the in-memory log store.
	logs raft.LogStore
	// membership replaces the Config given to HandleChangeRequestsWithConfig;
	// its Logger is set to the test's logger when nil.
	membership *raftmembership.Config
	// handle, if set, serves the requests instead of
	// HandleChangeRequestsWithConfig.
	handle func(*raft.Raft, <-chan *raftmembership.ChangeRequest)
}

// startNode starts a raft node named id that belongs to no cluster yet and
// a goroutine serving its change requests. Both stop when the test ends.
func startNode(t *testing.T, id string, options nodeOptions) *testNode {
	t.Helper()
	// clustertest.Logger writes to t.Log and keeps late raft goroutines from
	// logging after the test.
	logger := clustertest.Logger(t, id)
	addr, transport := raft.NewInmemTransport(raft.ServerAddress(id + "-addr"))
	config := raft.DefaultConfig()
	config.LocalID = raft.ServerID(id)
	config.HeartbeatTimeout = 200 * time.Millisecond
	config.ElectionTimeout = 200 * time.Millisecond
	config.LeaderLeaseTimeout = 100 * time.Millisecond
	config.CommitTimeout = 5 * time.Millisecond
	config.Logger = logger.Named("raft")

	logs := options.logs
	if logs == nil {
		logs = raft.NewInmemStore()
	}
	r, err := raft.NewRaft(config, &raft.MockFSM{}, logs, raft.NewInmemStore(), raft.NewInmemSnapshotStore(), transport)
	require.NoError(t, err)

	membership := raftmembership.Config{Timeout: 5 * time.Second}
	if options.membership != nil {
		membership = *options.membership
	}
	if membership.Logger == nil {
		membership.Logger = logger.Named("membership")
	}
	node := &testNode{
		id:        raft.ServerID(id),
		addr:      addr,
		raft:      r,
		transport: transport,
		requests:  make(chan *raftmembership.ChangeRequest),
		handled:   make(chan struct{}),
	}
	handle := options.handle
	if handle == nil {
		handle = func(r *raft.Raft, requests <-chan *raftmembership.ChangeRequest) {
			raftmembership.HandleChangeRequestsWithConfig(r, requests, membership)
		}
	}
	go func() {
		defer close(node.handled)
		handle(r, node.requests)
	}()
	t.Cleanup(func() {
		node.closeRequests()
		// Not receive: its Fatal would skip the shutdown below.
		select {
		case <-node.handled:
		case <-time.After(testWait):
			t.Errorf("%s: the membership handler did not return after its channel closed", id)
		}
		require.NoError(t, r.Shutdown().Error())
		require.NoError(t, transport.Close())
	})
	return node
}

// closeRequests closes the node's requests channel, once.
func (n *testNode) closeRequests() {
	n.closeOnce.Do(func() { close(n.requests) })
}

// connect lets every node reach every other one.
func connect(nodes ...*testNode) {
	for _, from := range nodes {
		for _, to := range nodes {
			if from != to {
				from.transport.Connect(to.addr, to.transport)
			}
		}
	}
}

// bootstrap makes nodes a cluster of voters and waits for its leader.
func bootstrap(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var configuration raft.Configuration
	for _, node := range nodes {
		configuration.Servers = append(configuration.Servers,
			raft.Server{ID: node.id, Address: node.addr, Suffrage: raft.Voter})
	}
	for _, node := range nodes {
		require.NoError(t, node.raft.BootstrapCluster(configuration).Error())
	}
	return waitLeader(t, nodes...)
}

// startLeaderAndJoiner starts node a, with options, as the leader of a
// cluster of its own, and node b, which a can reach and which belongs to
// no cluster yet.
func startLeaderAndJoiner(t *testing.T, options nodeOptions) (a, b *testNode) {
	t.Helper()
	a = startNode(t, "a", options)
	b = startNode(t, "b", nodeOptions{})
	connect(a, b)
	bootstrap(t, a)
	return a, b
}

// startCluster starts a cluster of three voters and returns its leader and
// the two other nodes.
func startCluster(t *testing.T) (leader *testNode, others []*testNode) {
	t.Helper()
	nodes := []*testNode{startNode(t, "a", nodeOptions{}), startNode(t, "b", nodeOptions{}), startNode(t, "c", nodeOptions{})}
	connect(nodes...)
	leader = bootstrap(t, nodes...)
	for _, node := range nodes {
		if node != leader {
			others = append(others, node)
		}
	}
	return leader, others
}

// waitLeader waits until exactly one of nodes leads and all the others
// know it, and returns it.
func waitLeader(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	require.Eventually(t, func() bool {
		leader = nil
		for _, node := range nodes {
			if node.raft.State() == raft.Leader {
				if leader != nil {
					return false
				}
				leader = node
			}
		}
		if leader == nil {
			return false
		}
		for _, node := range nodes {
			if address, _ := node.raft.LeaderWithID(); address != leader.addr {
				return false
			}
		}
		return true
	}, testWait, pollInterval, "no single leader known to all of %d nodes", len(nodes))
	return leader
}

// submit sends request to node's HandleChangeRequests loop and returns the
// outcome it reported, failing the test if either step takes too long.
func (n *testNode) submit(t *testing.T, request *raftmembership.ChangeRequest) error {
	t.Helper()
	timer := time.NewTimer(testWait)
	defer timer.Stop()
	select {
	case n.requests <- request:
	case <-timer.C:
		t.Fatalf("%s: HandleChangeRequests did not take the request", n.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	err := request.Wait(ctx)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "%s: no outcome for %s %s", n.id, request.Kind(), request.ID())
	return err
}

// servers returns the node's latest configuration.
func (n *testNode) servers(t *testing.T) []raft.Server {
	t.Helper()
	future := n.raft.GetConfiguration()
	require.NoError(t, future.Error())
	return future.Configuration().Servers
}

// server returns the entry for id in the node's latest configuration.
func (n *testNode) server(t *testing.T, id raft.ServerID) (raft.Server, bool) {
	t.Helper()
	for _, server := range n.servers(t) {
		if server.ID == id {
			return server, true
		}
	}
	return raft.Server{}, false
}

// requireServers checks the node's latest configuration, ignoring order.
func (n *testNode) requireServers(t *testing.T, want ...raft.Server) {
	t.Helper()
	require.ElementsMatch(t, want, n.servers(t), "configuration of %s", n.id)
}

func voter(node *testNode) raft.Server {
	return raft.Server{ID: node.id, Address: node.addr, Suffrage: raft.Voter}
}

func nonvoter(node *testNode) raft.Server {
	return raft.Server{ID: node.id, Address: node.addr, Suffrage: raft.Nonvoter}
}

// gatedLogStore is an in-memory log store whose writes block once armed,
// until released. Blocking the leader's writes blocks its main loop, which is
// what makes raft's configuration changes wait for their enqueue timeout.
type gatedLogStore struct {
	*raft.InmemStore
	armed       atomic.Bool
	blockedOnce sync.Once
	blocked     chan struct{} // closed when a write first blocks
	releaseOnce sync.Once
	released    chan struct{}
}

func newGatedLogStore() *gatedLogStore {
	return &gatedLogStore{InmemStore: raft.NewInmemStore(), blocked: make(chan struct{}), released: make(chan struct{})}
}

func (s *gatedLogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

func (s *gatedLogStore) StoreLogs(logs []*raft.Log) error {
	if s.armed.Load() {
		s.blockedOnce.Do(func() { close(s.blocked) })
		<-s.released
	}
	return s.InmemStore.StoreLogs(logs)
}

func (s *gatedLogStore) release() { s.releaseOnce.Do(func() { close(s.released) }) }

// String makes failure messages name the node.
func (n *testNode) String() string { return fmt.Sprintf("%s@%s", n.id, n.addr) }
