package raftmembership_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// reachability is a ReachabilityCheck that records each call and answers
// with err.
type reachability struct {
	err error

	mu    sync.Mutex
	calls []reachabilityCall
}

type reachabilityCall struct {
	address  raft.ServerAddress
	deadline time.Time
	at       time.Time
}

func (r *reachability) check(ctx context.Context, address raft.ServerAddress) error {
	deadline, _ := ctx.Deadline()
	r.mu.Lock()
	r.calls = append(r.calls, reachabilityCall{address: address, deadline: deadline, at: time.Now()})
	r.mu.Unlock()
	return r.err
}

func (r *reachability) called() []reachabilityCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]reachabilityCall(nil), r.calls...)
}

var errNoAnswer = errors.New("connection refused")

// The leader runs a join's check before it changes the configuration: a
// joiner it cannot reach is not added, and the caller learns why.
func TestJoinReachabilityCheck(t *testing.T) {
	t.Parallel()
	type requestFor = func(b *testNode) *raftmembership.ChangeRequest
	join := func(b *testNode) *raftmembership.ChangeRequest { return raftmembership.NewJoinRequest(b.id, b.addr) }
	joinNonvoter := func(b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest(b.id, b.addr)
	}
	moved := func(b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest(b.id, b.addr+"-moved")
	}
	// At an address nothing answers (see TestJoin).
	gone := func(b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest(b.id, b.addr+"-gone")
	}
	ghost := func(b *testNode) *raftmembership.ChangeRequest {
		return raftmembership.NewJoinNonvoterRequest("ghost", b.addr)
	}
	leave := func(b *testNode) *raftmembership.ChangeRequest { return raftmembership.NewLeaveRequest(b.id) }
	checked := func(b *testNode) raft.ServerAddress { return b.addr }
	tests := []struct {
		name string
		// before is a request applied, without a check, before the one
		// under test, the request, to which the check is added.
		before, request requestFor
		unreachable     bool
		// wantChecked is the address the check must be run for; nil
		// means it must not run.
		wantChecked func(b *testNode) raft.ServerAddress
		wantErr     func(t *testing.T, err error, b *testNode)
		want        func(a, b *testNode) []raft.Server
	}{
		{
			name: "reachable voter joins", request: join, wantChecked: checked,
			want: func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), voter(b)} },
		},
		{
			name: "unreachable voter is not added", request: join, unreachable: true,
			wantChecked: checked, wantErr: requireUnreachable,
			want: func(a, _ *testNode) []raft.Server { return []raft.Server{voter(a)} },
		},
		{
			name: "unreachable non-voter is not added", request: joinNonvoter, unreachable: true,
			wantChecked: checked, wantErr: requireUnreachable,
			want: func(a, _ *testNode) []raft.Server { return []raft.Server{voter(a)} },
		},
		{
			name: "known ID at an unreachable new address keeps its old one", before: joinNonvoter, request: moved, unreachable: true,
			wantChecked: func(b *testNode) raft.ServerAddress { return b.addr + "-moved" },
			wantErr: func(t *testing.T, err error, b *testNode) {
				var unreachable *raftmembership.ErrUnreachable
				require.ErrorAs(t, err, &unreachable)
				assert.Equal(t, b.addr+"-moved", unreachable.Address)
			},
			want: func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), nonvoter(b)} },
		},
		{
			name: "known ID at a reachable new address moves", before: gone, request: joinNonvoter, wantChecked: checked,
			want: func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), nonvoter(b)} },
		},
		{
			// Nothing changes, so there is nothing to check: the check
			// would fail if it ran.
			name: "member joining again is not checked", before: join, request: join, unreachable: true,
			want: func(a, b *testNode) []raft.Server { return []raft.Server{voter(a), voter(b)} },
		},
		{
			// A refused join makes the leader dial nobody.
			name: "address in use is refused before any check", before: ghost, request: join, unreachable: true,
			wantErr: func(t *testing.T, err error, _ *testNode) {
				var inUse *raftmembership.ErrAddressInUse
				require.ErrorAs(t, err, &inUse)
				assert.Equal(t, raft.ServerID("ghost"), inUse.Member)
			},
			want: func(a, b *testNode) []raft.Server {
				return []raft.Server{voter(a), {ID: "ghost", Address: b.addr, Suffrage: raft.Nonvoter}}
			},
		},
		{
			name: "leave is not checked", before: joinNonvoter, request: leave, unreachable: true,
			want: func(a, _ *testNode) []raft.Server { return []raft.Server{voter(a)} },
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			const timeout = 5 * time.Second
			a, b := startLeaderAndJoiner(t, nodeOptions{membership: &raftmembership.Config{Timeout: timeout}})
			if test.before != nil {
				require.NoError(t, a.submit(t, test.before(b)))
			}
			check := &reachability{}
			if test.unreachable {
				check.err = errNoAnswer
			}
			request := test.request(b)
			assert.Same(t, request, request.WithReachabilityCheck(check.check), "WithReachabilityCheck returns its request")
			before := a.raft.LastIndex()

			err := a.submit(t, request)
			if test.wantErr != nil {
				test.wantErr(t, err, b)
				assert.Equal(t, before, a.raft.LastIndex(), "a refused join appended to the log")
			} else {
				require.NoError(t, err)
			}
			calls := check.called()
			if test.wantChecked == nil {
				assert.Empty(t, calls, "the check ran")
			} else if assert.Len(t, calls, 1, "the check runs once") {
				assert.Equal(t, test.wantChecked(b), calls[0].address)
				// Bounded by the Config's timeout.
				assert.False(t, calls[0].deadline.IsZero(), "the check's context has no deadline")
				assert.WithinDuration(t, calls[0].at.Add(timeout), calls[0].deadline, time.Second)
			}
			a.requireServers(t, test.want(a, b)...)
			assert.Equal(t, raft.Leader, a.raft.State())
		})
	}
}

// requireUnreachable checks the outcome of a join whose check failed.
func requireUnreachable(t *testing.T, err error, b *testNode) {
	t.Helper()
	var unreachable *raftmembership.ErrUnreachable
	require.ErrorAs(t, err, &unreachable)
	assert.Equal(t, b.addr, unreachable.Address)
	assert.ErrorIs(t, err, errNoAnswer, "the check's error is kept")
	assert.Contains(t, err.Error(), string(b.addr), "the reason names the address")
	assert.Contains(t, err.Error(), errNoAnswer.Error())
}

// A check that never answers ends with its context, at the Config's
// timeout, and the join fails without a change.
func TestJoinReachabilityCheckBoundedByTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	a, b := startLeaderAndJoiner(t, nodeOptions{membership: &raftmembership.Config{Timeout: timeout}})
	// A new leader appends an entry of its own term; the barrier waits
	// until it has, so that the index below moves only for the join.
	require.NoError(t, a.raft.Barrier(testWait).Error())
	before := a.raft.LastIndex()
	ended := make(chan error, 1)
	request := raftmembership.NewJoinRequest(b.id, b.addr).WithReachabilityCheck(
		func(ctx context.Context, _ raft.ServerAddress) error {
			<-ctx.Done()
			ended <- ctx.Err()
			// Not ctx.Err() itself, which submit takes for its own
			// timeout.
			return errNoAnswer
		})
	start := time.Now()
	err := a.submit(t, request)
	elapsed := time.Since(start)
	var unreachable *raftmembership.ErrUnreachable
	require.ErrorAs(t, err, &unreachable)
	assert.ErrorIs(t, receive(t, ended, "the check's context to end"), context.DeadlineExceeded)
	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, testWait)
	assert.Equal(t, before, a.raft.LastIndex())
	a.requireServers(t, voter(a))
}

// A follower redirects a join without running its check: only the leader
// decides, and it checks again.
func TestJoinReachabilityCheckNotRunOnFollower(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a", nodeOptions{})
	b := startNode(t, "b", nodeOptions{})
	connect(a, b)
	leader := bootstrap(t, a, b)
	follower := a
	if leader == a {
		follower = b
	}
	check := &reachability{}
	err := follower.submit(t, raftmembership.NewJoinRequest("x", "x-addr").WithReachabilityCheck(check.check))
	var different *raftmembership.ErrDifferentLeader
	require.ErrorAs(t, err, &different)
	assert.Empty(t, check.called())
}

func TestReachabilityErrorTypes(t *testing.T) {
	t.Parallel()
	var err error = &raftmembership.ErrAddressInUse{Address: "10.0.0.2:8080", Member: "node2"}
	var inUse *raftmembership.ErrAddressInUse
	require.ErrorAs(t, errors.Join(errors.New("context"), err), &inUse)
	assert.Contains(t, err.Error(), "10.0.0.2:8080")
	assert.Contains(t, err.Error(), "node2")

	err = &raftmembership.ErrUnreachable{Address: "10.0.0.3:8080", Err: errNoAnswer}
	var unreachable *raftmembership.ErrUnreachable
	require.ErrorAs(t, errors.Join(errors.New("context"), err), &unreachable)
	assert.ErrorIs(t, err, errNoAnswer)
	assert.Contains(t, err.Error(), "10.0.0.3:8080")
	assert.Contains(t, err.Error(), errNoAnswer.Error())
}
