package raftmembership_test

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// TestMembersRequest: HandleChangeRequests answers a membership request on
// the leader and on a follower alike, with raft's configuration, suffrage
// included, and the leader both know.
func TestMembersRequest(t *testing.T) {
	t.Parallel()
	leader, others := startCluster(t)
	joiner := startNode(t, "d", nodeOptions{})
	connect(leader, others[0], others[1], joiner)
	require.NoError(t, leader.submit(t, raftmembership.NewJoinNonvoterRequest(joiner.id, joiner.addr)))
	want := &raftmembership.Membership{Leader: &raftmembership.Leader{ID: leader.id, Address: leader.addr}}
	for _, server := range leader.servers(t) {
		want.Servers = append(want.Servers, raftmembership.Server{ID: server.ID, Address: server.Address, Suffrage: server.Suffrage.String()})
	}
	require.Len(t, want.Servers, 4)
	assert.Equal(t, "Nonvoter", want.Servers[3].Suffrage)

	for _, node := range []*testNode{leader, others[0]} {
		request := raftmembership.NewMembersRequest()
		assert.Equal(t, raftmembership.MembersRequest, request.Kind())
		assert.Empty(t, request.ID())
		require.Eventually(t, func() bool {
			request = raftmembership.NewMembersRequest()
			if err := node.submit(t, request); err != nil {
				return false
			}
			return len(request.Members().Servers) == 4 // a follower may lag
		}, testWait, pollInterval)
		assert.Equal(t, want, request.Members(), "%s's view", node.id)
		assert.Equal(t, want, readMembership(t, node.raft))
	}
}

func readMembership(t *testing.T, r *raft.Raft) *raftmembership.Membership {
	t.Helper()
	membership, err := raftmembership.ReadMembership(r)
	require.NoError(t, err)
	return membership
}

// TestMembersRequestWithoutLeader: a node that knows no leader answers
// with a nil Leader and an empty, non-nil list, which is JSON's null and [].
func TestMembersRequestWithoutLeader(t *testing.T) {
	t.Parallel()
	node := startNode(t, "a", nodeOptions{})
	request := raftmembership.NewMembersRequest()
	require.NoError(t, node.submit(t, request))
	body, err := json.Marshal(request.Members())
	require.NoError(t, err)
	assert.JSONEq(t, `{"leader": null, "servers": []}`, string(body))
}

// TestDoneMembersFirstCounts: as with Done, only the first answer counts.
func TestDoneMembersFirstCounts(t *testing.T) {
	t.Parallel()
	first := &raftmembership.Membership{Servers: []raftmembership.Server{}}
	request := raftmembership.NewMembersRequest()
	assert.Nil(t, request.Members())
	request.DoneMembers(first)
	request.DoneMembers(&raftmembership.Membership{})
	request.Done(nil)
	require.NoError(t, request.Error(testWait))
	assert.Same(t, first, request.Members())
}

// TestMembershipJSON: the documented format, exactly.
func TestMembershipJSON(t *testing.T) {
	t.Parallel()
	body, err := json.Marshal(raftmembership.Membership{
		Leader:  &raftmembership.Leader{ID: "a", Address: "10.0.0.1:8080"},
		Servers: []raftmembership.Server{{ID: "a", Address: "10.0.0.1:8080", Suffrage: "Voter"}, {ID: "b", Address: "10.0.0.2:8080", Suffrage: "Staging"}},
	})
	require.NoError(t, err)
	assert.Equal(t, `{"leader":{"id":"a","address":"10.0.0.1:8080"},"servers":[{"id":"a","address":"10.0.0.1:8080","suffrage":"Voter"},{"id":"b","address":"10.0.0.2:8080","suffrage":"Staging"}]}`, string(body))
}
