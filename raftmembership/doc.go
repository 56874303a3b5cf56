// Package raftmembership turns join and leave requests into changes of a
// hashicorp/raft cluster's configuration.
//
// A transport (such as rafthttp's Handler) receives requests from nodes that
// want to join or leave, wraps each in a [ChangeRequest] and sends it on a
// channel. [HandleChangeRequests] runs on every node and consumes that
// channel: on the leader it applies the change; on any other node it answers
// with [ErrDifferentLeader] (so the transport can redirect the caller) or
// [ErrUnknownLeader] (so the caller retries later). A [MembersRequest]
// ([NewMembersRequest]) changes nothing: every node, leader or not, answers
// it with its [Membership], the view [ReadMembership] also gives.
//
// # Semantics
//
//   - Joining is idempotent: a server already in the configuration with the
//     same ID, address and suffrage is left alone. A known ID with a new
//     address replaces the old entry. A join never removes a member: one
//     whose address belongs to a member with another ID fails with
//     [ErrAddressInUse], and the operator removes the old ID first.
//   - The transport checks IDs and addresses from the network before it
//     makes a request of them: rafthttp's Handler refuses with 400 what
//     [CheckID] or [CheckAddress] refuses. HandleChangeRequests takes any
//     non-empty ones, since other transports have addresses of their own
//     forms.
//   - A join carrying a reachability check
//     ([ChangeRequest.WithReachabilityCheck]) runs it on the leader before
//     changing the configuration, and fails with [ErrUnreachable] if the
//     leader cannot reach the joiner, so that a wrong advertised address is
//     caught at join time and dead addresses never become voters.
//   - Leaving is idempotent: removing an ID that is not in the configuration
//     succeeds without a change. When the leader is asked to remove itself it
//     first hands leadership to another voter and answers with
//     [ErrDifferentLeader], so the caller retries against the new leader and
//     the cluster never loses its leader to a leave request.
package raftmembership
