package raftmembership

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// ErrDifferentLeader is the outcome of a request sent to a node that is not
// the leader while another node is. The caller should send the request again
// to [ErrDifferentLeader.Leader]. Match it with errors.As:
//
//	var redirect *raftmembership.ErrDifferentLeader
//	if errors.As(err, &redirect) { retryAt(redirect.Leader()) }
type ErrDifferentLeader struct {
	leader string
}

// NewErrDifferentLeader returns an [ErrDifferentLeader] naming the leader's
// raft address.
func NewErrDifferentLeader(leader string) *ErrDifferentLeader {
	return &ErrDifferentLeader{leader: leader}
}

// Leader returns the raft address of the current leader.
func (e *ErrDifferentLeader) Leader() string { return e.leader }

func (e *ErrDifferentLeader) Error() string {
	return fmt.Sprintf("raftmembership: this node is not the leader; the leader is %s", e.leader)
}

// ErrUnknownLeader is the outcome of a request sent to a node that is not the
// leader and does not know which node is, typically during an election. The
// caller should retry later. Match it with errors.As.
type ErrUnknownLeader struct{}

func (e *ErrUnknownLeader) Error() string {
	return "raftmembership: this node is not the leader and no leader is known"
}

// ErrAddressInUse is the outcome of a join whose address belongs to a
// member with another ID. Nothing changes: a join never removes a member.
// To replace a node that was rebuilt with a new ID, remove the old ID
// first. Match it with errors.As.
type ErrAddressInUse struct {
	// Address is the address asked for.
	Address raft.ServerAddress
	// Member is the ID of the member that has it.
	Member raft.ServerID
}

func (e *ErrAddressInUse) Error() string {
	return fmt.Sprintf("raftmembership: address %s belongs to member %s: remove %s first to give its address to another server",
		e.Address, e.Member, e.Member)
}

// ErrUnreachable is the outcome of a join whose reachability check (see
// [ChangeRequest.WithReachabilityCheck]) failed: the leader could not open
// a raft connection to the joiner at the address it gave. Nothing changes.
// It may be retried: the joiner may not be serving yet. Match it with
// errors.As.
type ErrUnreachable struct {
	// Address is the address the joiner gave.
	Address raft.ServerAddress
	// Err is what the check returned.
	Err error
}

func (e *ErrUnreachable) Error() string {
	return fmt.Sprintf("raftmembership: the leader cannot reach the joining server at %s (is that the address it advertises, and is it serving?): %v", e.Address, e.Err)
}

func (e *ErrUnreachable) Unwrap() error { return e.Err }
