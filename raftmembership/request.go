package raftmembership

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ChangeRequestKind says what a [ChangeRequest] asks for.
type ChangeRequestKind int

const (
	// JoinRequest asks for a server to be added as a voter.
	JoinRequest ChangeRequestKind = iota
	// LeaveRequest asks for a server to be removed.
	LeaveRequest
	// JoinNonvoterRequest asks for a server to be added as a non-voter: it
	// receives the log but does not vote or count towards quorum.
	JoinNonvoterRequest
	// MembersRequest asks for the node's view of the membership (see
	// [NewMembersRequest]); it changes nothing.
	MembersRequest
)

// String returns "join", "leave", "join-nonvoter" or "members".
func (k ChangeRequestKind) String() string {
	switch k {
	case JoinRequest:
		return "join"
	case LeaveRequest:
		return "leave"
	case JoinNonvoterRequest:
		return "join-nonvoter"
	case MembersRequest:
		return "members"
	default:
		return fmt.Sprintf("ChangeRequestKind(%d)", int(k))
	}
}

// ErrTimeout is returned by [ChangeRequest.Error] when no outcome arrived
// within the timeout.
var ErrTimeout = errors.New("raftmembership: timed out waiting for the change to be handled")

// ChangeRequest is one request to change the cluster's membership, or,
// of kind [MembersRequest], to read it. The side
// that receives it from the network creates it, sends it to the goroutine
// running [HandleChangeRequests], and waits for the outcome with
// [ChangeRequest.Error] or [ChangeRequest.Wait].
type ChangeRequest struct {
	id      raft.ServerID
	address raft.ServerAddress
	kind    ChangeRequestKind
	// done has room for one outcome so that the handling side never blocks,
	// even when the waiting side has already given up.
	done chan error
	// reachable, if set, checks the joiner's address before a join.
	reachable ReachabilityCheck
	// membership is a MembersRequest's answer (see DoneMembers).
	membership atomic.Pointer[Membership]
}

// ReachabilityCheck reports whether the leader can open a raft connection
// to a server at address, within ctx. rafthttp's Handler sets one on every
// join it receives: an upgrade dial through the cluster's own Layer, with
// its Dial, path, headers and cluster ID.
type ReachabilityCheck func(ctx context.Context, address raft.ServerAddress) error

// WithReachabilityCheck sets the check that [HandleChangeRequests] runs on
// the leader before a join changes the configuration, and returns r. A
// join whose check fails changes nothing and ends with [*ErrUnreachable]:
// an address the cluster cannot reach would become a member that never
// answers, and enough such voters break quorum. It is for the side that
// creates the request, before sending it.
func (r *ChangeRequest) WithReachabilityCheck(check ReachabilityCheck) *ChangeRequest {
	r.reachable = check
	return r
}

// NewJoinRequest returns a request to add the server with the given ID and
// address as a voter.
func NewJoinRequest(id raft.ServerID, address raft.ServerAddress) *ChangeRequest {
	return newChangeRequest(JoinRequest, id, address)
}

// NewJoinNonvoterRequest returns a request to add the server with the given ID
// and address as a non-voter.
func NewJoinNonvoterRequest(id raft.ServerID, address raft.ServerAddress) *ChangeRequest {
	return newChangeRequest(JoinNonvoterRequest, id, address)
}

// NewLeaveRequest returns a request to remove the server with the given ID.
func NewLeaveRequest(id raft.ServerID) *ChangeRequest {
	return newChangeRequest(LeaveRequest, id, "")
}

func newChangeRequest(kind ChangeRequestKind, id raft.ServerID, address raft.ServerAddress) *ChangeRequest {
	return &ChangeRequest{id: id, address: address, kind: kind, done: make(chan error, 1)}
}

// ID returns the ID of the server to add or remove.
func (r *ChangeRequest) ID() raft.ServerID { return r.id }

// Address returns the raft address of the server to add; it is empty for a
// leave request.
func (r *ChangeRequest) Address() raft.ServerAddress { return r.address }

// Kind returns what the request asks for.
func (r *ChangeRequest) Kind() ChangeRequestKind { return r.kind }

// Done records the outcome of the request: nil for success. Only the first
// call counts; later calls are ignored. Done never blocks.
func (r *ChangeRequest) Done(err error) {
	select {
	case r.done <- err:
	default:
	}
}

// Error waits up to timeout for the outcome recorded by [ChangeRequest.Done]
// and returns it, or [ErrTimeout] if none arrived in time.
func (r *ChangeRequest) Error(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-r.done:
		return err
	case <-timer.C:
		return ErrTimeout
	}
}

// Wait waits for the outcome recorded by [ChangeRequest.Done] and returns it,
// or returns the context's error if the context ends first.
func (r *ChangeRequest) Wait(ctx context.Context) error {
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Changer asks a cluster to change its membership on behalf of the local
// node. *rafthttp.Layer implements it.
type Changer interface {
	// Join asks the node at address to add the local node, as id, to the
	// cluster within timeout.
	Join(id raft.ServerID, address raft.ServerAddress, timeout time.Duration) error
	// Leave asks the node at address to remove id from the cluster within
	// timeout.
	Leave(id raft.ServerID, address raft.ServerAddress, timeout time.Duration) error
}
