package raftmembership_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// HandleChangeRequests, the original entry point, applies changes with the
// default configuration and returns once its channel is closed, after
// answering what it already took.
func TestHandleChangeRequestsReturnsWhenChannelClosed(t *testing.T) {
	t.Parallel()
	a, b := startLeaderAndJoiner(t, nodeOptions{handle: raftmembership.HandleChangeRequests})

	require.NoError(t, a.submit(t, raftmembership.NewJoinRequest(b.id, b.addr)))
	a.requireServers(t, voter(a), voter(b))

	a.closeRequests()
	receive(t, a.handled, "HandleChangeRequests to return after its channel was closed")
}

// HandleChangeRequestsWithConfig answers what it took, here on a node that
// has never been part of a cluster, and returns once its channel is closed.
func TestHandleChangeRequestsWithConfigReturnsWhenChannelClosed(t *testing.T) {
	t.Parallel()
	node := startNode(t, "a", nodeOptions{})
	var unknown *raftmembership.ErrUnknownLeader
	require.ErrorAs(t, node.submit(t, raftmembership.NewLeaveRequest("b")), &unknown)
	node.closeRequests()
	receive(t, node.handled, "HandleChangeRequestsWithConfig to return after its channel was closed")
}

// joinStep is one request in TestJoin, sent to the leader.
type joinStep struct {
	request func(a, b *testNode) *raftmembership.ChangeRequest
	// unchanged means the request must succeed without appending a
	// configuration entry.
	unchanged bool
	// inUseBy, if set, means the request must fail with ErrAddressInUse
	// naming this member, and change nothing.
	inUseBy raft.ServerID
}

func TestJoin(t *testing.T) {
	t.Parallel()
	join := func(_, b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinRequest(b.id, b.addr)
	}
	joinNonvoter := func(_, b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest(b.id, b.addr)
	}
	// The old entries are non-voters at an address nothing answers:
	// raft (v1.7.3 and v1.8.0) has a data race when the address of a
	// peer it is successfully replicating to changes
	// (hashicorp/raft#681), which -race would report here.
	atOldAddress := func(_, b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest(b.id, b.addr+"-gone")
	}
	ghostAtAddress := func(_, b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinRequest("ghost", b.addr)
	}
	ghostNonvoterAtAddress := func(_, b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest("ghost", b.addr)
	}
	ghostLeaves := func(_, _ *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewLeaveRequest("ghost")
	}
	evilAtLeader := func(a, _ *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinRequest("evil", a.addr)
	}
	ghost := func(b *testNode, suffrage raft.ServerSuffrage) raft.Server {
		return raft.Server{ID: "ghost", Address: b.addr, Suffrage: suffrage}
	}
	tests := []struct {
		name  string
		steps []joinStep
		// want is the leader's configuration after the last step; nil
		// means a voter and b, a non-voter if nonvoter, or else a voter.
		want     func(a, b *testNode) []raft.Server
		nonvoter bool
	}{
		{name: "voter", steps: []joinStep{{request: join}}},
		{name: "non-voter", steps: []joinStep{{request: joinNonvoter}}, nonvoter: true},
		{name: "voter joins twice", steps: []joinStep{{request: join}, {request: join, unchanged: true}}},
		{name: "non-voter joins twice", steps: []joinStep{{request: joinNonvoter}, {request: joinNonvoter, unchanged: true}}, nonvoter: true},
		{name: "non-voter joining as voter is promoted", steps: []joinStep{{request: joinNonvoter}, {request: join}}},
		// Demotion is an operator's decision, not a retried join's.
		{name: "voter joining as non-voter stays a voter", steps: []joinStep{{request: join}, {request: joinNonvoter, unchanged: true}}},
		{name: "known ID with a new address replaces the old entry", steps: []joinStep{{request: atOldAddress}, {request: joinNonvoter}}, nonvoter: true},
		{name: "known non-voter ID joining as a voter at a new address", steps: []joinStep{{request: atOldAddress}, {request: join}}},
		// A join never removes a member: whoever can send one could
		// otherwise evict any member, the leader included.
		{
			name:  "different ID at a voter's address is refused",
			steps: []joinStep{{request: ghostAtAddress}, {request: join, inUseBy: "ghost"}},
			want:  func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), ghost(b, raft.Voter)} },
		},
		{
			name:  "non-voter with a different ID at a non-voter's address is refused",
			steps: []joinStep{{request: ghostNonvoterAtAddress}, {request: joinNonvoter, inUseBy: "ghost"}},
			want:  func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), ghost(b, raft.Nonvoter)} },
		},
		{
			name:  "voter with a different ID at a non-voter's address is refused",
			steps: []joinStep{{request: ghostNonvoterAtAddress}, {request: join, inUseBy: "ghost"}},
			want:  func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), ghost(b, raft.Nonvoter)} },
		},
		{
			name:  "different ID at the leader's address is refused",
			steps: []joinStep{{request: evilAtLeader, inUseBy: "a"}},
			want:  func(a, _ *testNode) []raft.Server { return []raft.Server{voter(a)} },
		},
		// The way to give an address to a server with a new ID.
		{name: "the address is free once its member has left", steps: []joinStep{{request: ghostAtAddress}, {request: ghostLeaves}, {request: join}}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			a, b := startLeaderAndJoiner(t, nodeOptions{})

			for i, step := range test.steps {
				request := step.request(a, b)
				before := a.raft.LastIndex()
				beforeServers := a.servers(t)
				err := a.submit(t, request)
				if step.inUseBy != "" {
					var inUse *raftmembership.ErrAddressInUse
					require.ErrorAs(t, err, &inUse, "step %d: %s %s at %s", i, request.Kind(), request.ID(), request.Address())
					assert.Equal(t, step.inUseBy, inUse.Member)
					assert.Equal(t, request.Address(), inUse.Address)
					assert.Contains(t, err.Error(), string(step.inUseBy), "the error names the member")
				} else {
					require.NoError(t, err, "step %d: %s %s at %s", i, request.Kind(), request.ID(), request.Address())
				}
				if step.unchanged || step.inUseBy != "" {
					assert.Equal(t, before, a.raft.LastIndex(), "step %d appended to the log", i)
					assert.Equal(t, beforeServers, a.servers(t), "step %d changed the configuration", i)
				} else {
					assert.Greater(t, a.raft.LastIndex(), before, "step %d appended nothing", i)
				}
			}
			switch {
			case test.want != nil:
				a.requireServers(t, test.want(a, b)...)
			case test.nonvoter:
				a.requireServers(t, voter(a), nonvoter(b))
			default:
				a.requireServers(t, voter(a), voter(b))
			}
			assert.Equal(t, raft.Leader, a.raft.State(), "a is still the leader")
		})
	}
}

// A joined voter takes part in the cluster: the configuration reaches it.
func TestJoinReachesTheJoiningNode(t *testing.T) {
	t.Parallel()
	a, b := startLeaderAndJoiner(t, nodeOptions{})
	require.NoError(t, a.submit(t, raftmembership.NewJoinRequest(b.id, b.addr)))
	require.Eventually(t, func() bool {
		server, ok := b.server(t, b.id)
		return ok && server.Suffrage == raft.Voter
	}, testWait, pollInterval, "b never saw itself as a voter")
	waitLeader(t, a, b)
}

func TestLeave(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// leaving picks the server to remove from the followers.
		leaving   func(followers []*testNode) raft.ServerID
		unchanged bool
		want      func(leader *testNode, followers []*testNode) []raft.Server
	}{
		{
			name:    "follower",
			leaving: func(followers []*testNode) raft.ServerID { return followers[0].id },
			want: func(leader *testNode, followers []*testNode) []raft.Server {
				return []raft.Server{voter(leader), voter(followers[1])}
			},
		},
		{
			name:      "unknown ID",
			leaving:   func([]*testNode) raft.ServerID { return "stranger" },
			unchanged: true,
			want: func(leader *testNode, followers []*testNode) []raft.Server {
				return []raft.Server{voter(leader), voter(followers[0]), voter(followers[1])}
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			leader, followers := startCluster(t)

			before := leader.raft.LastIndex()
			require.NoError(t, leader.submit(t, raftmembership.NewLeaveRequest(test.leaving(followers))))
			if test.unchanged {
				assert.Equal(t, before, leader.raft.LastIndex(), "leave appended to the log")
			}
			leader.requireServers(t, test.want(leader, followers)...)
			assert.Equal(t, raft.Leader, leader.raft.State())
		})
	}
}

// A non-voter leaves like any other server.
func TestLeaveNonvoter(t *testing.T) {
	t.Parallel()
	a, b := startLeaderAndJoiner(t, nodeOptions{})
	require.NoError(t, a.submit(t, raftmembership.NewJoinNonvoterRequest(b.id, b.addr)))
	a.requireServers(t, voter(a), nonvoter(b))
	require.NoError(t, a.submit(t, raftmembership.NewLeaveRequest(b.id)))
	a.requireServers(t, voter(a))
}

// The leader asked to remove itself hands leadership over and redirects the
// caller to its successor, which then removes it.
func TestLeaveLeaderTransfersLeadership(t *testing.T) {
	t.Parallel()
	old, others := startCluster(t)

	err := old.submit(t, raftmembership.NewLeaveRequest(old.id))
	var different *raftmembership.ErrDifferentLeader
	require.ErrorAs(t, err, &different)
	assert.NotEqual(t, string(old.addr), different.Leader(), "the old leader named itself")

	successor := waitLeader(t, others...)
	assert.Equal(t, string(successor.addr), different.Leader(), "the redirect does not name the new leader")
	assert.NotEqual(t, raft.Leader, old.raft.State())
	// Handing over is not leaving: the old leader is still a member until
	// the new leader removes it.
	_, ok := successor.server(t, old.id)
	assert.True(t, ok, "the old leader was removed before the caller asked the new one")

	require.NoError(t, successor.submit(t, raftmembership.NewLeaveRequest(old.id)))
	successor.requireServers(t, voter(others[0]), voter(others[1]))
	assert.Equal(t, raft.Leader, successor.raft.State())
}

// A follower does not apply changes; it names the leader so the caller can
// go there.
func TestRequestOnFollowerNamesLeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		request *raftmembership.ChangeRequest
	}{
		{name: "join", request: raftmembership.NewJoinRequest("x", "x-addr")},
		{name: "join non-voter", request: raftmembership.NewJoinNonvoterRequest("x", "x-addr")},
		{name: "leave", request: raftmembership.NewLeaveRequest("a")},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "a", nodeOptions{})
			b := startNode(t, "b", nodeOptions{})
			connect(a, b)
			leader := bootstrap(t, a, b)
			follower := a
			if leader == a {
				follower = b
			}
			before := leader.servers(t)

			err := follower.submit(t, test.request)
			var different *raftmembership.ErrDifferentLeader
			require.ErrorAs(t, err, &different)
			assert.Equal(t, string(leader.addr), different.Leader())
			assert.Equal(t, before, leader.servers(t), "a follower changed the configuration")
		})
	}
}

func TestRequestWithoutLeaderIsUnknownLeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		request *raftmembership.ChangeRequest
	}{
		{name: "join", request: raftmembership.NewJoinRequest("x", "x-addr")},
		{name: "join non-voter", request: raftmembership.NewJoinNonvoterRequest("x", "x-addr")},
		{name: "leave", request: raftmembership.NewLeaveRequest("x")},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			// Never bootstrapped: no configuration, no leader.
			node := startNode(t, "a", nodeOptions{})
			err := node.submit(t, test.request)
			var unknown *raftmembership.ErrUnknownLeader
			require.ErrorAs(t, err, &unknown)
			var different *raftmembership.ErrDifferentLeader
			assert.False(t, errors.As(err, &different), "got a redirect to %v", different)
		})
	}
}

// Requests missing what they need fail on the leader without a change.
func TestInvalidRequestOnLeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		request *raftmembership.ChangeRequest
	}{
		{name: "join without ID", request: raftmembership.NewJoinRequest("", "x-addr")},
		{name: "join without address", request: raftmembership.NewJoinRequest("x", "")},
		{name: "non-voter join without ID", request: raftmembership.NewJoinNonvoterRequest("", "x-addr")},
		{name: "leave without ID", request: raftmembership.NewLeaveRequest("")},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "a", nodeOptions{})
			bootstrap(t, a)
			before := a.raft.LastIndex()
			require.Error(t, a.submit(t, test.request))
			assert.Equal(t, before, a.raft.LastIndex())
			a.requireServers(t, voter(a))
		})
	}
}

func TestDefaultTimeout(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 10*time.Second, raftmembership.DefaultTimeout)
}

// Config.Timeout bounds the raft operations made for one request; zero
// means DefaultTimeout. The leader's log store is blocked so its main loop
// cannot take the configuration change, which then fails when raft's
// enqueue timeout, the configured one, passes.
func TestHandleChangeRequestsWithConfigTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{name: "configured", timeout: 200 * time.Millisecond, want: 200 * time.Millisecond},
		{name: "zero means default", timeout: 0, want: raftmembership.DefaultTimeout},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			logs := newGatedLogStore()
			a := startNode(t, "a", nodeOptions{logs: logs, membership: &raftmembership.Config{Timeout: test.timeout}})
			// Registered after startNode, so it runs before the node's
			// shutdown, which would otherwise wait on the blocked write.
			t.Cleanup(logs.release)
			bootstrap(t, a)
			// Let the leader finish writing what it writes on election, so
			// the only write blocked is the entry applied below.
			require.NoError(t, a.raft.Barrier(testWait).Error())

			logs.armed.Store(true)
			a.raft.Apply([]byte("blocks the leader loop"), testWait)
			receive(t, logs.blocked, "the leader to write the entry")

			start := time.Now()
			err := a.submit(t, raftmembership.NewJoinRequest("x", "x-addr"))
			elapsed := time.Since(start)
			require.ErrorIs(t, err, raft.ErrEnqueueTimeout)
			assert.GreaterOrEqual(t, elapsed, test.want, "gave up before the timeout")
			assert.Less(t, elapsed, test.want+5*time.Second, "did not give up at the timeout")
		})
	}
}
