package raftmembership

import "fmt"

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
