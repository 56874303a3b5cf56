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

func TestChangeRequestKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind raftmembership.ChangeRequestKind
		want string
	}{
		{name: "join", kind: raftmembership.JoinRequest, want: "join"},
		{name: "leave", kind: raftmembership.LeaveRequest, want: "leave"},
		{name: "join non-voter", kind: raftmembership.JoinNonvoterRequest, want: "join-nonvoter"},
		{name: "members", kind: raftmembership.MembersRequest, want: "members"},
		{name: "unknown", kind: raftmembership.ChangeRequestKind(42), want: "ChangeRequestKind(42)"},
		{name: "negative", kind: raftmembership.ChangeRequestKind(-1), want: "ChangeRequestKind(-1)"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, test.want, test.kind.String())
		})
	}
}

// The original package's values must not move: JoinRequest and LeaveRequest
// may have been stored or sent as integers.
func TestChangeRequestKindValues(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 0, int(raftmembership.JoinRequest))
	assert.Equal(t, 1, int(raftmembership.LeaveRequest))
}

func TestChangeRequestAccessors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		request     *raftmembership.ChangeRequest
		wantID      raft.ServerID
		wantAddress raft.ServerAddress
		wantKind    raftmembership.ChangeRequestKind
	}{
		{
			name:        "join",
			request:     raftmembership.NewJoinRequest("node1", "10.0.0.1:8080"),
			wantID:      "node1",
			wantAddress: "10.0.0.1:8080",
			wantKind:    raftmembership.JoinRequest,
		},
		{
			name:        "join non-voter",
			request:     raftmembership.NewJoinNonvoterRequest("node2", "10.0.0.2:8080"),
			wantID:      "node2",
			wantAddress: "10.0.0.2:8080",
			wantKind:    raftmembership.JoinNonvoterRequest,
		},
		{
			name:     "leave has no address",
			request:  raftmembership.NewLeaveRequest("node3"),
			wantID:   "node3",
			wantKind: raftmembership.LeaveRequest,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, test.wantID, test.request.ID())
			assert.Equal(t, test.wantAddress, test.request.Address())
			assert.Equal(t, test.wantKind, test.request.Kind())
		})
	}
}

// Done is called by the handling side, which must never be stuck on a
// waiter that gave up; only the first outcome counts.
func TestChangeRequestDoneNeverBlocksAndFirstCounts(t *testing.T) {
	t.Parallel()
	first := errors.New("first")
	request := raftmembership.NewJoinRequest("node1", "10.0.0.1:8080")

	returned := make(chan struct{})
	go func() {
		defer close(returned)
		request.Done(first)
		request.Done(errors.New("second"))
		request.Done(nil)
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() { request.Done(errors.New("concurrent")) })
		}
		wg.Wait()
	}()
	receive(t, returned, "Done to return with nobody waiting")

	require.ErrorIs(t, request.Error(time.Second), first)

	// The outcome has been taken; a late Done still must not block.
	late := make(chan struct{})
	go func() {
		defer close(late)
		request.Done(errors.New("late"))
	}()
	receive(t, late, "a late Done to return after the outcome was taken")
}

func TestChangeRequestDoneNilIsSuccess(t *testing.T) {
	t.Parallel()
	request := raftmembership.NewLeaveRequest("node1")
	request.Done(nil)
	request.Done(errors.New("ignored"))
	assert.NoError(t, request.Error(time.Second))
}

func TestChangeRequestErrorTimeout(t *testing.T) {
	t.Parallel()
	request := raftmembership.NewJoinRequest("node1", "10.0.0.1:8080")
	const timeout = 50 * time.Millisecond
	start := time.Now()
	err := request.Error(timeout)
	elapsed := time.Since(start)
	require.ErrorIs(t, err, raftmembership.ErrTimeout)
	assert.GreaterOrEqual(t, elapsed, timeout, "returned before the timeout")
	assert.Less(t, elapsed, testWait, "ignored the timeout")
}

// Error returns the outcome as soon as it arrives, not at the timeout.
func TestChangeRequestErrorWaitsForDone(t *testing.T) {
	t.Parallel()
	outcome := errors.New("outcome")
	request := raftmembership.NewJoinRequest("node1", "10.0.0.1:8080")
	waiting := make(chan error, 1)
	go func() { waiting <- request.Error(testWait) }()
	request.Done(outcome)
	require.ErrorIs(t, receive(t, waiting, "Error to return the outcome"), outcome)
}

func TestChangeRequestWait(t *testing.T) {
	t.Parallel()
	outcome := errors.New("outcome")
	tests := []struct {
		name    string
		context func() (context.Context, context.CancelFunc)
		done    bool // Done(outcome) is called before Wait
		want    error
	}{
		{
			name: "outcome first",
			context: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), testWait)
			},
			done: true,
			want: outcome,
		},
		{
			name: "canceled",
			context: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			want: context.Canceled,
		},
		{
			name: "deadline",
			context: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			request := raftmembership.NewLeaveRequest("node1")
			if test.done {
				request.Done(outcome)
			}
			ctx, cancel := test.context()
			defer cancel()
			waited := make(chan error, 1)
			go func() { waited <- request.Wait(ctx) }()
			require.ErrorIs(t, receive(t, waited, "Wait to honour its context"), test.want)
		})
	}
}

// A Wait that gave up leaves the outcome for a later waiter: Done does not
// block, and the outcome is not lost.
func TestChangeRequestWaitThenDone(t *testing.T) {
	t.Parallel()
	request := raftmembership.NewJoinRequest("node1", "10.0.0.1:8080")
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- request.Wait(ctx) }()
	cancel()
	require.ErrorIs(t, receive(t, waited, "Wait to return after cancel"), context.Canceled)
	request.Done(nil)
	assert.NoError(t, request.Error(time.Second))
}

func TestErrorTypesWithErrorsAs(t *testing.T) {
	t.Parallel()
	var err error = raftmembership.NewErrDifferentLeader("10.0.0.1:8080")
	wrapped := errors.Join(errors.New("context"), err)
	var different *raftmembership.ErrDifferentLeader
	require.ErrorAs(t, wrapped, &different)
	assert.Equal(t, "10.0.0.1:8080", different.Leader())
	assert.Contains(t, err.Error(), "10.0.0.1:8080")

	err = &raftmembership.ErrUnknownLeader{}
	var unknown *raftmembership.ErrUnknownLeader
	require.ErrorAs(t, errors.Join(errors.New("context"), err), &unknown)
	assert.NotEmpty(t, err.Error())
}
