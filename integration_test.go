package rafthttp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// These tests run real three-node raft clusters whose nodes talk only
// through rafthttp, over loopback HTTP servers. Every wait is bounded by
// clustertest.WaitTimeout; goleak (main_test.go) checks that stopped nodes
// leave no goroutine behind.

// TestClusterPlainHTTP forms a cluster over plain HTTP, every node joining
// through Layer.Join, with in-memory and with raft-boltdb stores, and checks
// that a command applied on the leader reaches every FSM.
func TestClusterPlainHTTP(t *testing.T) {
	for _, test := range []struct {
		name string
		bolt bool
	}{
		{name: "memory"},
		{name: "bolt", bolt: true},
	} {
		t.Run(test.name, func(t *testing.T) {
			cluster := clustertest.Start(t, 3, clustertest.Options{Bolt: test.bolt})
			requireVoters(t, cluster.Nodes...)
			cluster.Apply("hello")
			for _, node := range cluster.Nodes {
				assert.Equal(t, []string{"hello"}, node.FSM.Commands(), "FSM of %s", node.ID)
				if test.bolt {
					assert.FileExists(t, filepath.Join(node.DataDir, "raft.db"))
				}
			}
		})
	}
}

// TestClusterTLS forms a cluster whose servers serve TLS with HTTP/2
// enabled, dialing with NewDialTLS and a config that offers h2 first: the
// upgrades work only because the Dial forces ALPN http/1.1. It runs with
// server authentication only and with client certificates too.
func TestClusterTLS(t *testing.T) {
	for _, test := range []struct {
		name        string
		clientCerts bool
	}{
		{name: "server-auth"},
		{name: "mutual", clientCerts: true},
	} {
		t.Run(test.name, func(t *testing.T) {
			ca := clustertest.NewCA(t)
			options := ca.Options(test.clientCerts)
			cluster := clustertest.Start(t, 3, options)
			requireVoters(t, cluster.Nodes...)
			cluster.Apply("over tls")
			for _, node := range cluster.Nodes {
				assert.Equal(t, []string{"over tls"}, node.FSM.Commands(), "FSM of %s", node.ID)
			}

			node := cluster.Nodes[0]
			// The server would pick h2 for a client that offers it...
			conn, err := tls.Dial("tcp", node.Addr, ca.ClientConfig(test.clientCerts))
			require.NoError(t, err)
			assert.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol, "HTTP/2 should be enabled on the server")
			conn.Close()
			// ...and the config the cluster dials with offers it...
			assert.Equal(t, []string{"h2", "http/1.1"}, options.ClientTLS.NextProtos, "NewDialTLS must not change the caller's config")
			// ...but NewDialTLS offers http/1.1 only.
			raw, err := rafthttp.NewDialTLS(options.ClientTLS)(node.Addr, clustertest.WaitTimeout)
			require.NoError(t, err)
			defer raw.Close()
			tlsConn, ok := raw.(*tls.Conn)
			require.True(t, ok, "NewDialTLS returned a %T", raw)
			assert.Equal(t, "http/1.1", tlsConn.ConnectionState().NegotiatedProtocol)
		})
	}
}

// TestClusterJoinThroughFollowerTLS joins the third node of a mutual-TLS
// cluster through a follower: the follower redirects to the leader with a
// Location that has no scheme, the client resolves it against its own
// http:// URL and follows it through its TLS Dial, and the node becomes a
// voter.
func TestClusterJoinThroughFollowerTLS(t *testing.T) {
	recorder := &clustertest.Recorder{}
	options := clustertest.NewCA(t).Options(true)
	options.Wrap = recorder.Wrap
	cluster := clustertest.StartNodes(t, 3, options)
	node0, node1, node2 := cluster.Nodes[0], cluster.Nodes[1], cluster.Nodes[2]
	node0.Bootstrap()
	cluster.Leader()
	require.NoError(t, node1.Layer.Join(node1.ID, raft.ServerAddress(node0.Addr), clustertest.WaitTimeout))
	cluster.WaitMembers(2)

	leader := cluster.WaitLeaderKnown(node0, node1)
	follower := node0
	if leader == node0 {
		follower = node1
	}
	require.NoError(t, node2.Layer.Join(node2.ID, raft.ServerAddress(follower.Addr), clustertest.WaitTimeout))
	cluster.WaitMembers(3)
	requireVoters(t, cluster.Nodes...)
	cluster.Apply("joined through a follower")
	assert.Equal(t, []string{"joined through a follower"}, node2.FSM.Commands())

	joins := recorder.Find(func(e clustertest.Exchange) bool {
		return e.Method == http.MethodPost && strings.Contains(e.Query, "id="+string(node2.ID))
	})
	require.NotEmpty(t, joins)
	assert.Equal(t, follower.Addr, joins[0].Host, "the first attempt goes to the follower")
	assert.Equal(t, http.StatusTemporaryRedirect, joins[0].Status)
	assert.True(t, strings.HasPrefix(joins[0].Location, "//"+leader.Addr+clustertest.Path+"?"),
		"redirect to %q, want the leader without a scheme", joins[0].Location)
	last := joins[len(joins)-1]
	assert.Equal(t, http.StatusOK, last.Status)
	assert.Equal(t, leader.Addr, last.Host)
	for _, join := range joins {
		assert.True(t, join.TLS, "join request to %s arrived without TLS", join.Host)
	}
}

// TestClusterLeaveFollower removes a follower with Layer.Leave sent to each
// kind of node: the leader, the other follower (which redirects) and the
// leaving follower itself (which redirects too).
func TestClusterLeaveFollower(t *testing.T) {
	for _, test := range []struct {
		name   string
		target func(leader, leaving, other *clustertest.Node) *clustertest.Node
	}{
		{name: "via-leader", target: func(leader, _, _ *clustertest.Node) *clustertest.Node { return leader }},
		{name: "via-other-follower", target: func(_, _, other *clustertest.Node) *clustertest.Node { return other }},
		{name: "via-itself", target: func(_, leaving, _ *clustertest.Node) *clustertest.Node { return leaving }},
	} {
		t.Run(test.name, func(t *testing.T) {
			cluster := clustertest.Start(t, 3, clustertest.Options{})
			leader := cluster.Leader()
			followers := cluster.Followers()
			leaving, other := followers[0], followers[1]
			target := test.target(leader, leaving, other)

			require.NoError(t, leaving.Layer.Leave(leaving.ID, raft.ServerAddress(target.Addr), clustertest.WaitTimeout))
			cluster.WaitMembers(2)
			waitConfiguration(t, []*clustertest.Node{leader, other}, func(servers []raft.Server) error {
				if slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == leaving.ID }) {
					return fmt.Errorf("%s still in %v", leaving.ID, servers)
				}
				return nil
			})

			leaving.Stop()
			cluster.Apply("after leave")
			assert.Equal(t, []string{"after leave"}, leader.FSM.Commands())
			assert.Equal(t, []string{"after leave"}, other.FSM.Commands())
		})
	}
}

// TestClusterLeaveLeader sends the leader's Leave to the leader itself: it
// hands leadership over, redirects the caller to the new leader, which
// removes it, and the two nodes left keep a leader and accept writes.
func TestClusterLeaveLeader(t *testing.T) {
	recorder := &clustertest.Recorder{}
	cluster := clustertest.Start(t, 3, clustertest.Options{Wrap: recorder.Wrap})
	cluster.Apply("before leave")
	old := cluster.Leader()

	require.NoError(t, old.Layer.Leave(old.ID, raft.ServerAddress(old.Addr), clustertest.WaitTimeout))

	leaves := recorder.Find(func(e clustertest.Exchange) bool { return e.Method == http.MethodDelete })
	require.NotEmpty(t, leaves)
	first, last := leaves[0], leaves[len(leaves)-1]
	assert.Equal(t, old.Addr, first.Host, "the leave goes to the old leader first")
	assert.Equal(t, http.StatusTemporaryRedirect, first.Status, "the old leader should redirect after handing over")
	assert.Equal(t, http.StatusOK, last.Status)
	assert.NotEqual(t, old.Addr, last.Host, "the leave should be applied by the new leader")
	assert.True(t, strings.HasPrefix(first.Location, "//"+last.Host+clustertest.Path+"?"),
		"redirected to %q, want the new leader %s", first.Location, last.Host)

	old.Stop()
	cluster.WaitMembers(2)
	rest := cluster.Running()
	require.Len(t, rest, 2)
	waitConfiguration(t, rest, func(servers []raft.Server) error {
		if len(servers) != 2 || slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == old.ID }) {
			return fmt.Errorf("want the two remaining nodes, got %v", servers)
		}
		return nil
	})
	leader := cluster.Leader()
	assert.NotEqual(t, old.ID, leader.ID)
	assert.Equal(t, last.Host, leader.Addr)
	cluster.Apply("after leave")
	for _, node := range rest {
		assert.Equal(t, []string{"before leave", "after leave"}, node.FSM.Commands(), "FSM of %s", node.ID)
	}
}

// TestClusterJoinRetriesWhileLeaderUnknown starts a Join against a node that
// is not bootstrapped yet: it answers 503 (no leader known) and the client
// keeps retrying until the node is bootstrapped and the join succeeds.
func TestClusterJoinRetriesWhileLeaderUnknown(t *testing.T) {
	recorder := &clustertest.Recorder{}
	cluster := clustertest.StartNodes(t, 3, clustertest.Options{Wrap: recorder.Wrap})
	node0, node1, node2 := cluster.Nodes[0], cluster.Nodes[1], cluster.Nodes[2]

	joined := make(chan error, 1)
	go func() {
		joined <- node1.Layer.Join(node1.ID, raft.ServerAddress(node0.Addr), clustertest.WaitTimeout)
	}()
	// Two refusals show the client retried before the cluster existed.
	clustertest.Eventually(t, func() error {
		refused := recorder.Find(func(e clustertest.Exchange) bool {
			return e.Method == http.MethodPost && e.Status == http.StatusServiceUnavailable
		})
		if len(refused) < 2 {
			return fmt.Errorf("%d joins refused with 503, want 2", len(refused))
		}
		return nil
	})
	node0.Bootstrap()
	select {
	case err := <-joined:
		require.NoError(t, err)
	case <-time.After(clustertest.WaitTimeout):
		t.Fatal("join did not return")
	}
	joins := recorder.Find(func(e clustertest.Exchange) bool { return e.Method == http.MethodPost })
	assert.Equal(t, http.StatusOK, joins[len(joins)-1].Status)

	require.NoError(t, node2.Layer.Join(node2.ID, raft.ServerAddress(node0.Addr), clustertest.WaitTimeout))
	cluster.WaitMembers(3)
	requireVoters(t, cluster.Nodes...)
	cluster.Apply("after retry")
	for _, node := range cluster.Nodes {
		assert.Equal(t, []string{"after retry"}, node.FSM.Commands(), "FSM of %s", node.ID)
	}
}

// TestClusterJoinNonvoter adds the third node with JoinNonvoterContext, sent
// to a follower: it is a non-voter in the configuration and still receives
// every command.
func TestClusterJoinNonvoter(t *testing.T) {
	cluster := clustertest.StartNodes(t, 3, clustertest.Options{})
	node0, node1, node2 := cluster.Nodes[0], cluster.Nodes[1], cluster.Nodes[2]
	node0.Bootstrap()
	cluster.Leader()
	require.NoError(t, node1.Layer.Join(node1.ID, raft.ServerAddress(node0.Addr), clustertest.WaitTimeout))
	cluster.WaitMembers(2)

	ctx, cancel := context.WithTimeout(context.Background(), clustertest.WaitTimeout)
	defer cancel()
	require.NoError(t, node2.Layer.JoinNonvoterContext(ctx, node2.ID, raft.ServerAddress(node1.Addr)))
	cluster.WaitMembers(3)
	waitConfiguration(t, cluster.Nodes, func(servers []raft.Server) error {
		want := map[raft.ServerID]raft.ServerSuffrage{node0.ID: raft.Voter, node1.ID: raft.Voter, node2.ID: raft.Nonvoter}
		if len(servers) != len(want) {
			return fmt.Errorf("configuration %v", servers)
		}
		for _, server := range servers {
			if suffrage, ok := want[server.ID]; !ok || server.Suffrage != suffrage {
				return fmt.Errorf("configuration %v, want %v", servers, want)
			}
		}
		return nil
	})

	cluster.Apply("to the non-voter")
	assert.Equal(t, []string{"to the non-voter"}, node2.FSM.Commands())
	assert.NotEqual(t, raft.Leader, node2.Raft.State())
}

// TestClusterShutdownLeavesNoGoroutines stops every node of a cluster in the
// documented order (raft.Shutdown, transport Close, HTTP server Close),
// without Transport.CloseStreams, and checks that no goroutine the cluster
// started is left. The leader stops first: raft leaves the heartbeat
// connections in its pool open, and the followers' transports would stay
// blocked reading them if the Layers did not close every connection they
// dialed or accepted.
func TestClusterShutdownLeavesNoGoroutines(t *testing.T) {
	// Not parallel: the goroutines of other tests would be counted.
	ignore := goleak.IgnoreCurrent()
	recorder := &clustertest.Recorder{}
	cluster := clustertest.Start(t, 3, clustertest.Options{Bolt: true, Wrap: recorder.Wrap})
	cluster.Apply("before shutdown")
	leader := cluster.Leader()
	followers := cluster.Followers()
	// Wait for the leader to have dialed each follower twice: once for the
	// replication pipeline, which raft closes on shutdown, and once for the
	// heartbeats, whose pooled connection it leaves open.
	clustertest.Eventually(t, func() error {
		for _, follower := range followers {
			upgrades := recorder.Find(func(e clustertest.Exchange) bool {
				return e.Host == follower.Addr && e.Status == http.StatusSwitchingProtocols
			})
			if len(upgrades) < 2 {
				return fmt.Errorf("%s accepted %d connections, want 2", follower.ID, len(upgrades))
			}
		}
		return nil
	})
	leader.Stop()
	for _, follower := range followers {
		follower.Stop()
	}
	goleak.VerifyNone(t, ignore)
}

// TestClusterLayerCloseClosesAcceptedConns checks that a node's Layer.Close
// closes every connection its peers upgraded to it, with its raft still
// running and its HTTP server still serving (a server never closes hijacked
// connections). A test peer outside the cluster opens two: one carries a
// raft RPC, so raft certainly accepted it, the other is dialed eagerly (an
// early data dial would not reach the target before its first write) and
// left idle.
func TestClusterLayerCloseClosesAcceptedConns(t *testing.T) {
	cluster := clustertest.Start(t, 3, clustertest.Options{})
	cluster.Apply("before close")
	target := cluster.Followers()[0]

	peerAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	peerLayer := rafthttp.NewLayerWithLogger(clustertest.Path, peerAddr, rafthttp.NewHandler(), nil,
		clustertest.Logger(t, "peer"))
	peer := &recordingStream{Layer: peerLayer}
	peerTransport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: peer, MaxPool: 2, Timeout: 5 * time.Second, Logger: clustertest.Logger(t, "peer-transport"),
	})
	t.Cleanup(func() { peerTransport.Close() })

	// A stale heartbeat (term 0): the target answers it and changes nothing.
	var response raft.AppendEntriesResponse
	err := peerTransport.AppendEntries(target.ID, raft.ServerAddress(target.Addr), &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("peer"), Addr: []byte(peerAddr.String())},
	}, &response)
	require.NoError(t, err)
	require.False(t, response.Success)
	eager, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: clustertest.Path, Addr: peerAddr, Handler: rafthttp.NewHandler(), EagerHandshake: true,
		Logger: clustertest.Logger(t, "eager-peer"),
	})
	require.NoError(t, err)
	t.Cleanup(func() { eager.Close() })
	idle, err := eager.Dial(raft.ServerAddress(target.Addr), clustertest.WaitTimeout)
	require.NoError(t, err)
	conns := append(peer.Conns(), idle)
	require.Len(t, conns, 2)

	// Not Raft.Shutdown: that closes the transport, and with it the Layer.
	require.NoError(t, target.Layer.Close())
	deadline := time.Now().Add(clustertest.WaitTimeout)
	for i, conn := range conns {
		require.NoError(t, conn.SetReadDeadline(deadline))
		n, err := conn.Read(make([]byte, 1))
		assert.Zero(t, n)
		assert.ErrorIs(t, err, io.EOF, "conn %d should be closed by the target", i)
	}
	assert.False(t, target.Stopped(), "the node should still be running")
}

// recordingStream is a StreamLayer that keeps the connections it dials.
type recordingStream struct {
	*rafthttp.Layer
	mu    sync.Mutex
	conns []net.Conn
}

func (s *recordingStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := s.Layer.Dial(addr, timeout)
	if err == nil {
		s.mu.Lock()
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
	}
	return conn, err
}

func (s *recordingStream) Conns() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns)
}

// TestClusterBehindUnwrappingMiddleware mounts every Handler behind
// middleware whose ResponseWriter hides http.Hijacker but has an Unwrap
// method: the upgrades still work, through http.NewResponseController.
func TestClusterBehindUnwrappingMiddleware(t *testing.T) {
	recorder := &clustertest.Recorder{}
	// The middleware's writer really does hide Hijack.
	var hijackable bool
	recorder.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, hijackable = w.(http.Hijacker)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	require.False(t, hijackable)

	cluster := clustertest.Start(t, 3, clustertest.Options{Wrap: recorder.Wrap})
	requireVoters(t, cluster.Nodes...)
	cluster.Apply("through middleware")
	for _, node := range cluster.Nodes {
		assert.Equal(t, []string{"through middleware"}, node.FSM.Commands(), "FSM of %s", node.ID)
	}
	// The leader dials every follower to replicate to it.
	for _, node := range cluster.Followers() {
		upgrades := recorder.Find(func(e clustertest.Exchange) bool {
			return e.Host == node.Addr && e.Method == http.MethodGet && e.Status == http.StatusSwitchingProtocols
		})
		assert.NotEmpty(t, upgrades, "no upgrade to %s went through the middleware", node.ID)
	}
	for _, exchange := range recorder.Exchanges() {
		assert.NotEqual(t, http.StatusInternalServerError, exchange.Status, "%+v", exchange)
	}
}

// TestClusterRestart restarts nodes with raft-boltdb stores on the same
// address and data directory: they come back with their log and
// configuration and catch up without calling Join.
func TestClusterRestart(t *testing.T) {
	t.Run("follower", func(t *testing.T) {
		cluster := clustertest.Start(t, 3, clustertest.Options{Bolt: true})
		cluster.Apply("before restart")
		follower := cluster.Followers()[0]
		lastIndex := follower.Raft.LastIndex()
		follower.Stop()
		cluster.Apply("while down")

		restarted := cluster.Restart(follower)
		require.Equal(t, follower.Addr, restarted.Addr)
		assert.GreaterOrEqual(t, restarted.Raft.LastIndex(), lastIndex, "the log should come back from disk")
		servers, err := restarted.Servers()
		require.NoError(t, err)
		assert.Len(t, servers, 3, "the configuration should come back from disk")

		cluster.Apply("after restart")
		assert.Equal(t, []string{"before restart", "while down", "after restart"}, restarted.FSM.Commands())
	})
	t.Run("all", func(t *testing.T) {
		cluster := clustertest.Start(t, 3, clustertest.Options{Bolt: true})
		cluster.Apply("before restart")
		for _, node := range cluster.Nodes {
			node.Stop()
		}
		for _, node := range slices.Clone(cluster.Nodes) {
			cluster.Restart(node)
		}
		cluster.Apply("after restart")
		for _, node := range cluster.Nodes {
			assert.Equal(t, []string{"before restart", "after restart"}, node.FSM.Commands(), "FSM of %s", node.ID)
		}
	})
}

// TestClusterInstallSnapshot brings a follower back after the leader has
// compacted away the entries it missed, so that the leader sends it a
// snapshot: raft streams it over a new connection, which, to a peer it has
// dialed before, is a dial with early data whose first write (the request
// header) goes in the upgrade request and whose snapshot bytes follow the
// 101. The follower ends with every command.
func TestClusterInstallSnapshot(t *testing.T) {
	cluster := clustertest.Start(t, 3, clustertest.Options{Raft: func(config *raft.Config) {
		config.TrailingLogs = 1
	}})
	cluster.Apply("before")
	follower := cluster.Followers()[0]
	follower.Stop()
	var want []string
	for i := range 40 {
		// Together larger than a request with early data, many times over.
		command := fmt.Sprintf("%02d %s", i, strings.Repeat("x", 1000))
		cluster.Apply(command)
		want = append(want, command)
	}
	require.NoError(t, cluster.Leader().Raft.Snapshot().Error())

	restarted := cluster.Restart(follower)
	requireCaughtUpFromSnapshot(t, restarted, append([]string{"before"}, want...))
}

// requireCaughtUpFromSnapshot waits until node's FSM holds the commands
// in want, and node has a snapshot: it caught up from one the leader sent.
func requireCaughtUpFromSnapshot(t *testing.T, node *clustertest.Node, want []string) {
	t.Helper()
	clustertest.Eventually(t, func() error {
		if got := len(node.FSM.Commands()); got != len(want) {
			return fmt.Errorf("%s has %d commands, want %d", node.ID, got, len(want))
		}
		// raft records the snapshot a moment after the FSM restored it.
		if index := node.Raft.Stats()["last_snapshot_index"]; index == "0" {
			return fmt.Errorf("%s has all the commands but no snapshot: it did not catch up from one", node.ID)
		}
		return nil
	})
	assert.Equal(t, want, node.FSM.Commands())
}

// TestClusterJoinRetriesWhileTargetRestarts sends a join to a node that is
// down: the connection is refused, and the client keeps retrying until the
// node is back on its address and the cluster, which lost its quorum with
// it, has a leader again.
func TestClusterJoinRetriesWhileTargetRestarts(t *testing.T) {
	cluster := clustertest.StartNodes(t, 3, clustertest.Options{Bolt: true})
	node0, node1, node2 := cluster.Nodes[0], cluster.Nodes[1], cluster.Nodes[2]
	node0.Bootstrap()
	cluster.Leader()
	require.NoError(t, node1.Layer.Join(node1.ID, raft.ServerAddress(node0.Addr), clustertest.WaitTimeout))
	cluster.WaitMembers(2)
	node0.Stop()

	// The join goes through ChangeMembership so that its dials can be
	// counted; it asks for node2 exactly as node2's Layer.Join would.
	var mu sync.Mutex
	var refused int
	dial := func(addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := rafthttp.NewDialTCP()(addr, timeout)
		if err != nil {
			mu.Lock()
			refused++
			mu.Unlock()
		}
		return conn, err
	}
	joined := make(chan error, 1)
	go func() {
		joined <- rafthttp.ChangeMembership(raftmembership.JoinRequest, clustertest.Path, dial,
			node2.ID, node2.Addr, node0.Addr, clustertest.WaitTimeout)
	}()
	clustertest.Eventually(t, func() error {
		mu.Lock()
		defer mu.Unlock()
		if refused < 2 {
			return fmt.Errorf("%d dials failed, want 2", refused)
		}
		return nil
	})

	cluster.Restart(node0)
	select {
	case err := <-joined:
		require.NoError(t, err)
	case <-time.After(clustertest.WaitTimeout):
		t.Fatal("join did not return")
	}
	cluster.WaitMembers(3)
	requireVoters(t, cluster.Nodes...)
	cluster.Apply("after restart")
	assert.Equal(t, []string{"after restart"}, node2.FSM.Commands())
}

// requireVoters waits until every node's configuration holds exactly the
// given nodes, all as voters with the addresses they serve on.
func requireVoters(t *testing.T, nodes ...*clustertest.Node) {
	t.Helper()
	waitConfiguration(t, nodes, func(servers []raft.Server) error {
		if len(servers) != len(nodes) {
			return fmt.Errorf("configuration %v, want %d voters", servers, len(nodes))
		}
		for _, node := range nodes {
			want := raft.Server{Suffrage: raft.Voter, ID: node.ID, Address: raft.ServerAddress(node.Addr)}
			if !slices.Contains(servers, want) {
				return fmt.Errorf("configuration %v lacks %v", servers, want)
			}
		}
		return nil
	})
}

// waitConfiguration waits until check accepts the latest configuration of
// every node in nodes.
func waitConfiguration(t *testing.T, nodes []*clustertest.Node, check func([]raft.Server) error) {
	t.Helper()
	clustertest.Eventually(t, func() error {
		for _, node := range nodes {
			servers, err := node.Servers()
			if err != nil {
				return fmt.Errorf("%s: %w", node.ID, err)
			}
			if err := check(servers); err != nil {
				return fmt.Errorf("%s: %w", node.ID, err)
			}
		}
		return nil
	})
}
