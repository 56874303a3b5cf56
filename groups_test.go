package rafthttp_test

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// The README's "Several raft groups on one server": one Handler per group,
// each at its own path of the same ServeMux, each with its own Layer.
// clustertest gives every node a server of its own, so this test builds
// its nodes itself.

// groupConns records, for one raft group, the local address of every
// connection its Layers dialed and the remote address of every
// connection its Layers accepted: an accepted connection's remote address
// is the local address of the dial that made it, so each can be traced to
// the group that dialed it.
type groupConns struct {
	mu       sync.Mutex
	dialed   map[string]bool
	accepted []string
}

func newGroupConns() *groupConns { return &groupConns{dialed: map[string]bool{}} }

// dial is the group's Dial: TCP, recording each connection.
func (g *groupConns) dial(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.dialed[conn.LocalAddr().String()] = true
	g.mu.Unlock()
	return conn, nil
}

func (g *groupConns) accept(conn net.Conn) {
	g.mu.Lock()
	g.accepted = append(g.accepted, conn.RemoteAddr().String())
	g.mu.Unlock()
}

func (g *groupConns) snapshot() (dialed map[string]bool, accepted []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	dialed = make(map[string]bool, len(g.dialed))
	for addr := range g.dialed {
		dialed[addr] = true
	}
	return dialed, slices.Clone(g.accepted)
}

// acceptRecorder is a Layer whose Accept records what it returns.
type acceptRecorder struct {
	*rafthttp.Layer
	conns *groupConns
}

func (a *acceptRecorder) Accept() (net.Conn, error) {
	conn, err := a.Layer.Accept()
	if err == nil {
		a.conns.accept(conn)
	}
	return conn, err
}

// sharedServer is one HTTP server on which several groups mount their
// Handlers.
type sharedServer struct {
	addr   net.Addr
	mux    *http.ServeMux
	server *http.Server
	done   chan struct{}
}

func startSharedServer(t *testing.T) *sharedServer {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &sharedServer{addr: listener.Addr(), mux: http.NewServeMux(), done: make(chan struct{})}
	s.server = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(s.done)
		s.server.Serve(listener)
	}()
	// Registered first, so it runs after the members' shutdown.
	t.Cleanup(func() {
		s.server.Close()
		<-s.done
	})
	return s
}

// groupMember is one group's node on a shared server.
type groupMember struct {
	id    raft.ServerID
	addr  string
	layer *rafthttp.Layer
	raft  *raft.Raft
	fsm   *clustertest.FSM
}

// startGroupMember mounts group's Handler at /raft/<group> on server and
// starts a raft node of that group behind it.
func startGroupMember(t *testing.T, server *sharedServer, group string, id raft.ServerID, conns *groupConns) *groupMember {
	t.Helper()
	logger := clustertest.Logger(t, string(id))
	path := "/raft/" + group
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: logger.Named("rafthttp")})
	server.mux.Handle(path, handler)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: path, Addr: server.addr, Handler: handler, Dial: conns.dial,
	})
	require.NoError(t, err)
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &acceptRecorder{Layer: layer, conns: conns}, MaxPool: 3, Timeout: 5 * time.Second,
		Logger: logger.Named("transport"),
	})
	fsm := &clustertest.FSM{}
	r, err := raft.NewRaft(clustertest.Config(id, logger.Named("raft")), fsm, raft.NewInmemStore(), raft.NewInmemStore(),
		raft.NewInmemSnapshotStore(), transport)
	require.NoError(t, err)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		raftmembership.HandleChangeRequestsWithConfig(r, handler.Requests(),
			raftmembership.Config{Logger: logger.Named("membership"), Timeout: 5 * time.Second})
	}()
	t.Cleanup(func() {
		assert.NoError(t, r.Shutdown().Error())
		transport.Close()
		<-handled
	})
	return &groupMember{id: id, addr: server.addr.String(), layer: layer, raft: r, fsm: fsm}
}

// groupLeader waits until one member leads and returns it.
func groupLeader(t *testing.T, members []*groupMember) *groupMember {
	t.Helper()
	var leader *groupMember
	clustertest.Eventually(t, func() error {
		leader = nil
		for _, member := range members {
			if member.raft.State() == raft.Leader {
				leader = member
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader among %d members", len(members))
		}
		return nil
	})
	return leader
}

// requireGroupServers waits until the group's leader has exactly the
// servers with ids, at their addresses, as voters.
func requireGroupServers(t *testing.T, members []*groupMember, ids ...raft.ServerID) {
	t.Helper()
	var want []raft.Server
	for _, member := range members {
		if slices.Contains(ids, member.id) {
			want = append(want, raft.Server{ID: member.id, Address: raft.ServerAddress(member.addr), Suffrage: raft.Voter})
		}
	}
	byID := func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) }
	slices.SortFunc(want, byID)
	clustertest.Eventually(t, func() error {
		future := groupLeader(t, members).raft.GetConfiguration()
		if err := future.Error(); err != nil {
			return err
		}
		got := slices.SortedFunc(slices.Values(future.Configuration().Servers), byID)
		if !slices.Equal(got, want) {
			return fmt.Errorf("servers %v, want %v", got, want)
		}
		return nil
	})
}

// applyToGroup applies command on the group's leader and waits until
// every member has applied it.
func applyToGroup(t *testing.T, members []*groupMember, command string) {
	t.Helper()
	require.NoError(t, groupLeader(t, members).raft.Apply([]byte(command), clustertest.WaitTimeout).Error())
	clustertest.Eventually(t, func() error {
		for _, member := range members {
			if !slices.Contains(member.fsm.Commands(), command) {
				return fmt.Errorf("%s has not applied %q: %v", member.id, command, member.fsm.Commands())
			}
		}
		return nil
	})
}

// TestSeveralGroupsOnOneServer runs two three-node raft groups, a and b,
// on the same three HTTP servers, each group's Handlers at its own path
// of the same ServeMux. Both replicate; a group's commands, joins and
// leaves never reach the other; and each group's Accept returns only
// connections that group's own Layers dialed.
func TestSeveralGroupsOnOneServer(t *testing.T) {
	servers := []*sharedServer{startSharedServer(t), startSharedServer(t), startSharedServer(t)}
	conns := map[string]*groupConns{"a": newGroupConns(), "b": newGroupConns()}
	members := map[string][]*groupMember{}
	for _, group := range []string{"a", "b"} {
		for i, server := range servers {
			members[group] = append(members[group], startGroupMember(t, server, group, raft.ServerID(fmt.Sprintf("%s%d", group, i)), conns[group]))
		}
	}
	// Each group starts on another server and joins through it.
	for g, group := range []string{"a", "b"} {
		first := members[group][g]
		require.NoError(t, first.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{ID: first.id, Address: raft.ServerAddress(first.addr), Suffrage: raft.Voter},
		}}).Error())
		groupLeader(t, members[group])
		for _, member := range members[group] {
			if member != first {
				require.NoError(t, member.layer.Join(member.id, raft.ServerAddress(first.addr), clustertest.WaitTimeout))
			}
		}
	}
	requireGroupServers(t, members["a"], "a0", "a1", "a2")
	requireGroupServers(t, members["b"], "b0", "b1", "b2")

	// Both replicate, each its own commands.
	applyToGroup(t, members["a"], "for a")
	applyToGroup(t, members["b"], "for b")
	for _, group := range []string{"a", "b"} {
		for _, member := range members[group] {
			assert.Equal(t, []string{"for " + group}, member.fsm.Commands(), "FSM of %s", member.id)
		}
	}

	// A fourth server hosts only group a, whose join goes to /raft/a of a
	// server that also hosts b: it joins a, and b never hears of it.
	a3 := startGroupMember(t, startSharedServer(t), "a", "a3", conns["a"])
	members["a"] = append(members["a"], a3)
	require.NoError(t, a3.layer.Join(a3.id, raft.ServerAddress(members["b"][1].addr), clustertest.WaitTimeout))
	requireGroupServers(t, members["a"], "a0", "a1", "a2", "a3")
	// A leave of a1 sent to /raft/b is group b's: b has no a1, so nothing
	// changes anywhere.
	require.NoError(t, members["b"][0].layer.Leave("a1", raft.ServerAddress(members["a"][1].addr), clustertest.WaitTimeout))
	requireGroupServers(t, members["a"], "a0", "a1", "a2", "a3")
	requireGroupServers(t, members["b"], "b0", "b1", "b2")
	applyToGroup(t, members["a"], "for a, with a3")
	applyToGroup(t, members["b"], "for b, again")
	for _, member := range members["b"] {
		assert.Equal(t, []string{"for b", "for b, again"}, member.fsm.Commands(), "FSM of %s", member.id)
	}

	// Every connection a group accepted was dialed by that group.
	for group, other := range map[string]string{"a": "b", "b": "a"} {
		dialed, accepted := conns[group].snapshot()
		otherDialed, _ := conns[other].snapshot()
		require.NotEmpty(t, accepted, "group %s accepted nothing", group)
		for _, remote := range accepted {
			assert.True(t, dialed[remote], "group %s accepted a connection from %s, which it did not dial", group, remote)
			assert.False(t, otherDialed[remote], "group %s accepted a connection group %s dialed", group, other)
		}
		t.Logf("group %s: %d connections dialed (raft, joins, leaves and checks), %d accepted, all its own", group, len(dialed), len(accepted))
	}
}
