package raftmembership

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// Membership is one node's view of the cluster: the leader it knows of and
// the servers of its latest configuration. It is what rafthttp's Handler
// answers to a GET without an Upgrade header, as JSON:
//
//	{"leader": {"id": "node1", "address": "10.0.0.1:8080"},
//	 "servers": [{"id": "node1", "address": "10.0.0.1:8080", "suffrage": "Voter"}]}
//
// A node that knows of no leader answers "leader": null.
type Membership struct {
	// Leader is the leader this node knows of, nil if none.
	Leader *Leader `json:"leader"`
	// Servers are the servers of the latest configuration this node has,
	// committed or not, in raft's order. Never nil once read: a node with
	// no configuration yet has an empty list.
	Servers []Server `json:"servers"`
}

// Leader names the leader in a [Membership].
type Leader struct {
	// ID is the leader's raft server ID.
	ID raft.ServerID `json:"id"`
	// Address is the leader's raft address.
	Address raft.ServerAddress `json:"address"`
}

// Server is one server of a [Membership].
type Server struct {
	// ID is the server's raft server ID.
	ID raft.ServerID `json:"id"`
	// Address is the server's raft address.
	Address raft.ServerAddress `json:"address"`
	// Suffrage is raft's name for whether the server votes: "Voter",
	// "Nonvoter" or "Staging" (raft.ServerSuffrage's String).
	Suffrage string `json:"suffrage"`
}

// ReadMembership returns r's view of the cluster: raft's latest
// configuration and the leader it knows of. It works on every node, leader
// or not, and even after Shutdown, when raft still has the configuration
// it last knew. It fails only when raft cannot read its configuration.
func ReadMembership(r *raft.Raft) (*Membership, error) {
	future := r.GetConfiguration()
	if err := future.Error(); err != nil {
		return nil, fmt.Errorf("raftmembership: read configuration: %w", err)
	}
	membership := &Membership{Servers: []Server{}}
	if address, id := r.LeaderWithID(); address != "" {
		membership.Leader = &Leader{ID: id, Address: address}
	}
	for _, server := range future.Configuration().Servers {
		membership.Servers = append(membership.Servers, Server{
			ID: server.ID, Address: server.Address, Suffrage: server.Suffrage.String(),
		})
	}
	return membership, nil
}

// NewMembersRequest returns a request for the node's [Membership]. It
// changes nothing: [HandleChangeRequests] answers it on every node, leader
// or not, with [ChangeRequest.DoneMembers]; the side that sent it reads the
// answer with [ChangeRequest.Members] once [ChangeRequest.Wait] or
// [ChangeRequest.Error] returns nil. Its ID and Address are empty.
func NewMembersRequest() *ChangeRequest {
	return newChangeRequest(MembersRequest, "", "")
}

// DoneMembers answers a [MembersRequest] with membership, which must not be
// nil, and records success as Done(nil) does. Only the first answer
// counts; DoneMembers never blocks.
func (r *ChangeRequest) DoneMembers(membership *Membership) {
	r.membership.CompareAndSwap(nil, membership)
	r.Done(nil)
}

// Members returns the answer [ChangeRequest.DoneMembers] recorded, or nil
// if there is none: the request is of another kind, is not answered yet,
// or its consumer called Done without one.
func (r *ChangeRequest) Members() *Membership {
	return r.membership.Load()
}
