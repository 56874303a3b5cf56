package rafthttp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// These tests stop a node of a loaded cluster in each order a user may
// choose for the calls that stop it (issue 10, item 4): raft first or
// transport first, with and without CloseStreams, the HTTP server closed
// or shut down early, the Handler or Layer closed while raft runs. The
// node is restarted from its data directory on its address and must
// rejoin. goleak checks each order on its own, and TestMain the package.

// stepTimeout bounds each call that stops a node. None should take more
// than moments: raft.Shutdown waits for a snapshot being written, and
// http.Server.Shutdown for the requests being served, for shutdownGrace.
const stepTimeout = 10 * time.Second

// shutdownGrace is how long serverShutdown lets requests finish.
const shutdownGrace = 500 * time.Millisecond

// stopping is a node being stopped, with what its steps share.
type stopping struct {
	node *clustertest.Node
	// shutdown is raft's shutdown future, for steps that start raft's
	// shutdown and wait for it apart.
	shutdown raft.Future
}

// shutdownStep is one call a user makes to stop a node.
type shutdownStep struct {
	name string
	run  func(s *stopping) error
}

var (
	raftShutdown = shutdownStep{"raft.Shutdown", func(s *stopping) error {
		return s.node.Raft.Shutdown().Error()
	}}
	// raftShutdownStart and raftShutdownWait split raft.Shutdown: a user
	// who does not wait for its future before closing the rest, as
	// raft's own shutdown closes the transport at the same time.
	raftShutdownStart = shutdownStep{"raft.Shutdown without waiting", func(s *stopping) error {
		s.shutdown = s.node.Raft.Shutdown()
		return nil
	}}
	raftShutdownWait = shutdownStep{"raft.Shutdown's future", func(s *stopping) error {
		return s.shutdown.Error()
	}}
	transportClose = shutdownStep{"NetworkTransport.Close", func(s *stopping) error {
		return s.node.Transport.Close()
	}}
	closeStreams = shutdownStep{"NetworkTransport.CloseStreams", func(s *stopping) error {
		s.node.Transport.CloseStreams()
		return nil
	}}
	layerClose = shutdownStep{"Layer.Close", func(s *stopping) error {
		return s.node.Layer.Close()
	}}
	handlerClose = shutdownStep{"Handler.Close", func(s *stopping) error {
		s.node.Handler.Close()
		return nil
	}}
	serverClose = shutdownStep{"http.Server.Close", func(s *stopping) error {
		return s.node.Server.Close()
	}}
	// serverShutdown is a graceful shutdown as applications write it: the
	// requests being served get a grace period, and then Close ends them.
	// A join in flight is one of them, and outlasts the grace period when
	// this node is the leader: its check of the joiner is held. Hijacked
	// connections are not the server's to wait for.
	serverShutdown = shutdownStep{"http.Server.Shutdown, then Close after a grace period", func(s *stopping) error {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := s.node.Server.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = s.node.Server.Close()
		}
		return err
	}}
)

// shutdownOrders are the orders tested. Whatever the order, the node ends
// stopped once every step ran: raft.Shutdown closes the transport, which
// closes the Layer, which closes the Handler.
var shutdownOrders = []struct {
	name  string
	steps []shutdownStep
}{
	// The documented order, clustertest's Node.Stop.
	{"raft-transport-server", []shutdownStep{raftShutdown, transportClose, serverClose}},
	{"raft-closestreams-transport-server", []shutdownStep{raftShutdown, closeStreams, transportClose, serverClose}},
	{"closestreams-raft-transport-server", []shutdownStep{closeStreams, raftShutdown, transportClose, serverClose}},
	{"raftnowait-transport-server-raftwait", []shutdownStep{raftShutdownStart, transportClose, serverClose, raftShutdownWait}},
	// Transport first: the Layer closes under a running raft.
	{"transport-raft-server", []shutdownStep{transportClose, raftShutdown, serverClose}},
	{"transport-server-raft", []shutdownStep{transportClose, serverClose, raftShutdown}},
	{"layer-raft-server", []shutdownStep{layerClose, raftShutdown, serverClose}},
	// The HTTP server first: upgraded connections outlive it.
	{"server-raft-transport", []shutdownStep{serverClose, raftShutdown, transportClose}},
	{"servershutdown-raft-transport", []shutdownStep{serverShutdown, raftShutdown, transportClose}},
	{"handler-server-raft-transport", []shutdownStep{handlerClose, serverClose, raftShutdown, transportClose}},
}

// TestShutdownUnderLoad stops the leader, or a follower, of a three-node
// cluster with raft-boltdb stores, in each of shutdownOrders, while the
// cluster is busy with everything a node can have in flight:
//
//   - four writers applying commands on the leader, large enough that the
//     FSM takes a moment to snapshot;
//   - snapshots: raft's own (a small threshold and a short log), and
//     raft.Snapshot on the node being stopped, one of them taken by raft
//     just before the first step;
//   - a fourth node joining through the node being stopped, its join
//     held in flight by holding the leader's check that it can be
//     reached until the node is stopped (a leader being stopped must end
//     that check itself); the leader then sends it a snapshot;
//   - a peer outside the cluster sending the node raft RPCs through its
//     own Layer and transport, and another upgrading connections to it
//     in a loop;
//   - an upgrade waiting in the node's Handler for its early data, and an
//     upgraded connection that raft accepted and that carries nothing.
//
// Every step must return within stepTimeout (a hang fails the test with
// every goroutine's stack), the connections left open must end with a
// refusal or EOF and never a 101, and the others must keep committing.
// Then the node restarts from its data directory on its address: the
// join finishes, every node has the four voters in its configuration and
// every command, each write the writers saw acknowledged among them, and
// no goroutine of the order is left.
func TestShutdownUnderLoad(t *testing.T) {
	for _, order := range shutdownOrders {
		t.Run(order.name, func(t *testing.T) {
			// The two cases of an order run side by side, and nothing else
			// meanwhile: once both are done, no goroutine either started
			// may be left. Cleanup runs once the parallel subtests have.
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, ignore, abandonedApplies) })
			for _, role := range []string{"leader", "follower"} {
				t.Run(role, func(t *testing.T) {
					t.Parallel()
					testShutdownUnderLoad(t, order.steps, role)
				})
			}
		})
	}
}

// testShutdownUnderLoad stops the node of the given role, "leader" or
// "follower", with steps.
func testShutdownUnderLoad(t *testing.T, steps []shutdownStep, role string) {
	// No membership timeout ends the held check early: only shutting the
	// leader down may.
	options := clustertest.Options{Bolt: true, MembershipTimeout: time.Minute, Raft: func(config *raft.Config) {
		// A snapshot every few dozen entries, and a log too short for a
		// node that was down a moment, or new, to catch up from.
		config.SnapshotThreshold = 64
		config.SnapshotInterval = 50 * time.Millisecond
		config.TrailingLogs = 32
	}}
	cluster := clustertest.Start(t, 3, options)
	target := cluster.Leader()
	if role == "follower" {
		target = cluster.Followers()[0]
	}
	check := &heldCheck{held: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(check.end)
	joinerOptions := options
	joinerOptions.Wrap = check.wrap
	joiner := clustertest.StartNode(t, "node3", joinerOptions)
	cluster.Nodes = append(cluster.Nodes, joiner)

	load := startShutdownLoad(t, slices.Clone(cluster.Nodes), target)
	waiting := stallUpgrade(t, target.Addr)
	idle := idleUpgrade(t, target.Addr)
	clustertest.Eventually(t, load.warmedUp)
	// The join goes through the node being stopped; the leader's check
	// that the joiner can be reached is held until that node is stopped,
	// so that the join is in flight meanwhile: at the node, if it is the
	// leader, or at the leader it redirected the join to.
	joined := make(chan error, 1)
	go func() {
		joined <- joiner.Layer.Join(joiner.ID, raft.ServerAddress(target.Addr), clustertest.WaitTimeout)
	}()
	receive(t, check.held, "the leader's check that the joiner can be reached")
	// And a snapshot of the node's: raft has taken the request once
	// Snapshot returns, and writes it while the steps run.
	snapshotting := target.Raft.Snapshot()
	snapshot := make(chan error, 1)
	go func() { snapshot <- snapshotting.Error() }()

	state := &stopping{node: target}
	var took []string
	for _, step := range steps {
		var err error
		elapsed := within(t, step.name, stepTimeout, func() { err = step.run(state) })
		require.NoError(t, err, step.name)
		took = append(took, fmt.Sprintf("%s %v", step.name, elapsed.Round(time.Millisecond)))
	}
	// What no step above did: wait for the HTTP server's and the
	// membership handler's goroutines, and close the stores.
	elapsed := within(t, "the node's goroutines to end", stepTimeout, target.Stop)
	took = append(took, fmt.Sprintf("then its goroutines ended and stores closed in %v", elapsed.Round(time.Millisecond)))
	load.stoppedTarget()
	check.end()
	snapshotErr := receive(t, snapshot, "the snapshot taken during the shutdown to end")
	t.Logf("stopped %s, the %s, under load: %s; the snapshot taken meanwhile: %v",
		target.ID, role, strings.Join(took, ", "), snapshotErr)
	stoppedAt := target.Raft.LastIndex()

	// Nothing the node held is left open, and nothing got a 101 it could
	// not use.
	requireEnded(t, waiting, true)
	requireEnded(t, idle, false)

	// The others keep committing.
	committed := load.writes.Load()
	clustertest.Eventually(t, func() error {
		if n := load.writes.Load(); n < committed+10 {
			return fmt.Errorf("%d writes acknowledged since %s stopped, want 10", n-committed, target.ID)
		}
		return nil
	})

	restarted := cluster.Restart(target)
	require.Equal(t, target.Addr, restarted.Addr)
	select {
	case err := <-joined:
		require.NoError(t, err, "%s's join through %s", joiner.ID, target.ID)
	case <-time.After(clustertest.WaitTimeout):
		t.Fatalf("%s's join did not return within %v", joiner.ID, clustertest.WaitTimeout)
	}
	within(t, "the load to stop", stepTimeout, func() { <-load.stop() })

	cluster.WaitMembers(4)
	requireVoters(t, cluster.Nodes...)
	// Every node applies the last command, restarted among them: it
	// caught up with the cluster.
	cluster.Apply("after restart")
	want := restarted.FSM.Commands()
	for _, node := range cluster.Nodes {
		require.Equal(t, want, node.FSM.Commands(), "commands of %s and %s differ", node.ID, restarted.ID)
	}
	applied := make(map[string]bool, len(want))
	for _, command := range want {
		applied[command] = true
	}
	acked := load.acknowledged()
	var lost []string
	for _, command := range acked {
		if !applied[command] {
			lost = append(lost, command[:strings.IndexByte(command, ' ')])
		}
	}
	require.Empty(t, lost, "acknowledged writes lost (of %d acknowledged)", len(acked))
	caughtUp := "from the log"
	if index, _ := strconv.ParseUint(restarted.Raft.Stats()["last_snapshot_index"], 10, 64); index > stoppedAt {
		caughtUp = "from a snapshot the leader sent"
	}
	t.Logf("%d writes acknowledged (%d on the stopped node given up unanswered), %d commands applied, %d snapshots of %s, %d RPCs and %d upgrades from outside; %s caught up %s",
		len(acked), load.abandoned.Load(), len(want), load.snapshots.Load(), target.ID, load.rpcs.Load(), load.dials.Load(), restarted.ID, caughtUp)

	for _, node := range cluster.Nodes {
		within(t, "stopping "+string(node.ID), stepTimeout, node.Stop)
	}
}

// heldCheck is middleware for a joiner's Handler that holds every upgrade
// request until end, or until its client gives up and closes the
// connection. Before the joiner is a member, the only upgrades it gets are
// the leader's checks that it can be reached, which the join waits for.
type heldCheck struct {
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (c *heldCheck) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			select {
			case c.held <- struct{}{}:
			default:
			}
			select {
			case <-c.release:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// end lets every request through from now on.
func (c *heldCheck) end() { c.once.Do(func() { close(c.release) }) }

// shutdownLoad keeps a cluster busy around one node, the target: writes
// on whichever node leads, snapshots on the target, and raft RPCs and
// upgrades to it from a peer outside the cluster.
type shutdownLoad struct {
	target *clustertest.Node
	// done ends the load; targetDown tells it the target has stopped.
	done, targetDown chan struct{}
	stopOnce         sync.Once
	downOnce         sync.Once
	// stopped is closed once the load has ended.
	stopped chan struct{}
	wg      sync.WaitGroup
	peer    *raft.NetworkTransport
	// eager dials with EagerHandshake, so that each Dial is a whole
	// upgrade.
	eager *rafthttp.Layer

	writes, abandoned, snapshots, rpcs, dials atomic.Int64
	mu                                        sync.Mutex
	acked                                     []string
}

const (
	// shutdownWriters write at most once per writePace each.
	shutdownWriters = 4
	writePace       = 10 * time.Millisecond
	// loadPace paces the other loops.
	loadPace = 10 * time.Millisecond
	// loadRounds bounds every loop, with the pace well beyond the test.
	loadRounds = 3000
)

// commandPadding makes each command large enough for the FSM's snapshots,
// and the snapshots sent to a new or restarted node, to take a moment.
var commandPadding = strings.Repeat("x", 256)

// abandonedApplies lets goleak pass the goroutines that wait for the
// outcome of a write on the target that hashicorp/raft never gives (see
// shutdownLoad.apply), here and in TestMain.
var abandonedApplies = goleak.IgnoreAnyFunction("github.com/rafthttp/rafthttp_test.(*shutdownLoad).apply.func1")

// startShutdownLoad starts the load on nodes, which hold the target; it
// runs until stop, or the end of the test.
func startShutdownLoad(t *testing.T, nodes []*clustertest.Node, target *clustertest.Node) *shutdownLoad {
	t.Helper()
	peerLayer := rafthttp.NewLayerWithLogger(clustertest.Path, advertised, rafthttp.NewHandler(), nil, clustertest.Logger(t, "peer"))
	eager, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: clustertest.Path, Addr: advertised, Handler: rafthttp.NewHandler(), EagerHandshake: true,
		Logger: clustertest.Logger(t, "eager-peer"),
	})
	require.NoError(t, err)
	l := &shutdownLoad{
		target:     target,
		done:       make(chan struct{}),
		targetDown: make(chan struct{}),
		stopped:    make(chan struct{}),
		peer: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: peerLayer, MaxPool: 2, Timeout: 2 * time.Second, Logger: clustertest.Logger(t, "peer-transport"),
		}),
		eager: eager,
	}
	for writer := range shutdownWriters {
		l.wg.Go(func() { l.write(nodes, writer) })
	}
	l.wg.Go(func() { l.snapshot(target) })
	l.wg.Go(func() { l.sendRPCs(target) })
	l.wg.Go(func() { l.dial(target) })
	t.Cleanup(func() {
		// Bounded, unlike the test's own wait, which shows where a
		// load that does not stop is stuck: after a failure the test
		// must end rather than hang.
		select {
		case <-l.stop():
		case <-time.After(stepTimeout):
			t.Errorf("the load did not stop within %v", stepTimeout)
		}
	})
	return l
}

// stop ends the load and returns a channel closed once it has ended. It
// may be called more than once.
func (l *shutdownLoad) stop() <-chan struct{} {
	l.stopOnce.Do(func() {
		close(l.done)
		go func() {
			defer close(l.stopped)
			l.wg.Wait()
			l.peer.Close()
			l.eager.Close()
		}()
	})
	return l.stopped
}

// stoppedTarget tells the load that the target's raft has stopped, and so
// will answer no write it has not answered yet.
func (l *shutdownLoad) stoppedTarget() { l.downOnce.Do(func() { close(l.targetDown) }) }

// warmedUp reports, as an error, what the load has not done yet.
func (l *shutdownLoad) warmedUp() error {
	switch {
	case l.writes.Load() < 20:
		return fmt.Errorf("%d writes acknowledged", l.writes.Load())
	case l.snapshots.Load() < 1:
		return errors.New("no snapshot taken on the target")
	case l.rpcs.Load() < 5:
		return fmt.Errorf("%d RPCs answered", l.rpcs.Load())
	case l.dials.Load() < 5:
		return fmt.Errorf("%d upgrades dialed", l.dials.Load())
	}
	return nil
}

// paced waits for the next round of a loop, and reports false once the
// load is stopping.
func (l *shutdownLoad) paced(ticker *time.Ticker) bool {
	select {
	case <-l.done:
		return false
	case <-ticker.C:
		return true
	}
}

// write applies commands on whichever of nodes is leader, keeping those
// acknowledged. A command that fails may still have been applied.
func (l *shutdownLoad) write(nodes []*clustertest.Node, writer int) {
	ticker := time.NewTicker(writePace)
	defer ticker.Stop()
	for i := 0; i < loadRounds && l.paced(ticker); i++ {
		index := slices.IndexFunc(nodes, func(node *clustertest.Node) bool { return node.Raft.State() == raft.Leader })
		if index < 0 {
			continue
		}
		command := fmt.Sprintf("w%d-%d %s", writer, i, commandPadding)
		if l.apply(nodes[index], command) {
			l.mu.Lock()
			l.acked = append(l.acked, command)
			l.mu.Unlock()
			l.writes.Add(1)
		}
	}
}

// apply applies command on node and reports whether raft acknowledged it.
//
// It waits for the outcome in a goroutine of its own, because hashicorp/raft
// (v1.7.3) may never give it for a write on a leader that shuts down:
// the leader hands a committed batch to its FSM goroutine through a
// buffered channel, and the FSM goroutine, told to shut down, may return
// without taking it, leaving its futures unanswered forever (raft issue
// 498). Once the target has stopped, a write on it still unanswered is
// given up as indeterminate, and its goroutine left behind.
func (l *shutdownLoad) apply(node *clustertest.Node, command string) bool {
	future := node.Raft.Apply([]byte(command), time.Second)
	outcome := make(chan error, 1)
	go func() { outcome <- future.Error() }()
	var down <-chan struct{}
	if node == l.target {
		down = l.targetDown
	}
	select {
	case err := <-outcome:
		return err == nil
	case <-down:
	}
	select {
	case err := <-outcome:
		return err == nil
	default:
		l.abandoned.Add(1)
		return false
	}
}

func (l *shutdownLoad) acknowledged() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked)
}

// snapshot has the target take snapshots while it runs.
func (l *shutdownLoad) snapshot(target *clustertest.Node) {
	ticker := time.NewTicker(5 * loadPace)
	defer ticker.Stop()
	for i := 0; i < loadRounds && l.paced(ticker); i++ {
		if target.Raft.Snapshot().Error() == nil {
			l.snapshots.Add(1)
		}
	}
}

// sendRPCs sends the target raft heartbeats of a stale term, which it
// answers and ignores, over connections the peer's Layer dials with early
// data and raft's pool keeps.
func (l *shutdownLoad) sendRPCs(target *clustertest.Node) {
	ticker := time.NewTicker(loadPace)
	defer ticker.Stop()
	request := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("peer"), Addr: []byte(advertised.String()),
	}}
	for i := 0; i < loadRounds && l.paced(ticker); i++ {
		var response raft.AppendEntriesResponse
		if l.peer.AppendEntries(target.ID, raft.ServerAddress(target.Addr), request, &response) == nil {
			l.rpcs.Add(1)
		}
	}
}

// dial upgrades connections to the target and closes them at once: raft
// accepts each and sees it end.
func (l *shutdownLoad) dial(target *clustertest.Node) {
	ticker := time.NewTicker(loadPace)
	defer ticker.Stop()
	for i := 0; i < loadRounds && l.paced(ticker); i++ {
		conn, err := l.eager.Dial(raft.ServerAddress(target.Addr), 2*time.Second)
		if err == nil {
			conn.Close()
			l.dials.Add(1)
		}
	}
}

// stallUpgrade sends addr an upgrade request that announces early data and
// sends only part of it, so that the Handler waits for the rest, and
// returns the connection. It is closed when the test ends.
func stallUpgrade(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn := dialRawTCP(t, addr)
	head := requestHead(http.MethodGet, clustertest.Path, addr, append([]string{"Upgrade: raft", "Connection: Upgrade"}, announceBody(16)...)...)
	write(t, conn, head+"part")
	return conn
}

// idleUpgrade upgrades a connection to addr, which raft accepts, and
// returns it after the 101 without sending anything. It is closed when
// the test ends.
func idleUpgrade(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn := dialRawTCP(t, addr)
	write(t, conn, requestHead(http.MethodGet, clustertest.Path, addr, "Upgrade: raft", "Connection: Upgrade"))
	require101(t, conn)
	return conn
}

func dialRawTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testWait)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// requireEnded requires that the stopped node ended conn within testWait:
// with an HTTP refusal, if refusal (an upgrade it had not answered), or
// else by closing it. A refusal may also come as the connection closing,
// if the HTTP server closed it before the Handler took it over; what it
// must never be is a 101, or silence.
func requireEnded(t *testing.T, conn net.Conn, refusal bool) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testWait)))
	reader := bufio.NewReader(conn)
	if refusal {
		response, err := http.ReadResponse(reader, &http.Request{Method: http.MethodGet})
		if err == nil {
			response.Body.Close()
			require.Equal(t, http.StatusServiceUnavailable, response.StatusCode, "the waiting upgrade's answer")
			return
		}
		require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the waiting upgrade got no answer from the stopped node: %v", err)
		t.Logf("the waiting upgrade's connection was closed without an answer: %v", err)
		return
	}
	n, err := reader.Read(make([]byte, 1))
	require.Zero(t, n, "the idle connection got data")
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the stopped node left the idle connection open")
	assert.Error(t, err)
}

// TestShutdownEndsJoinCheck closes the Layer of a leader that is checking
// that a joiner can be reached, against a joiner whose address takes the
// connection and never answers: Close must end the check at once, as it
// ends the Layer's other dials, so that raftmembership.HandleChangeRequests
// returns and the node stops, rather than both waiting out the membership
// timeout.
func TestShutdownEndsJoinCheck(t *testing.T) {
	cluster := clustertest.Start(t, 1, clustertest.Options{MembershipTimeout: time.Minute})
	leader := cluster.Nodes[0]
	probed := make(chan struct{}, 1)
	ended := make(chan readResult, 1)
	joiner := rawPeer(t, func(conn net.Conn) {
		// The check's upgrade request: never answered.
		select {
		case probed <- struct{}{}:
		default:
		}
		result := readToClose(conn)
		select {
		case ended <- result:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	joined := make(chan error, 1)
	go func() {
		joined <- rafthttp.ChangeMembershipContext(ctx, raftmembership.JoinRequest, clustertest.Path, nil,
			"joiner", joiner, leader.Addr)
	}()
	receive(t, probed, "the leader's check to reach the joiner")

	require.NoError(t, leader.Layer.Close())
	require.NoError(t, receive(t, ended, "the leader to close the connection of its check").err)
	within(t, "the leader to stop", testWait, leader.Stop)
	cancel()
	assert.Error(t, receive(t, joined, "the join to return"), "the join cannot have succeeded")
}
