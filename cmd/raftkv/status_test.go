package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// TestStatusMatchesMembershipView checks that GET /status takes its leader
// and servers from the same data as the Handler's membership view, GET
// /raft, on the leader, a follower and a non-voter.
func TestStatusMatchesMembershipView(t *testing.T) {
	nodes := startCluster(t, 3, func(config *nodeConfig) { config.Nonvoter = config.ID == "node3" })
	leader := waitLeader(t, nodes)
	direct := newAPIClient(t, false)
	for _, n := range nodes {
		// Two requests read two moments: wait for one in which they agree.
		var last string
		agreed := assert.Eventually(t, func() bool {
			view := do(t, direct, http.MethodGet, n.url(raftPath), nil)
			status := do(t, direct, http.MethodGet, n.url("/status"), nil)
			last = fmt.Sprintf("/raft: %d %s\n/status: %d %s", view.status, view.body, status.status, status.body)
			if view.status != http.StatusOK || status.status != http.StatusOK ||
				view.header.Get("Content-Type") != "application/json" {
				return false
			}
			var membership raftmembership.Membership
			var statusView struct {
				Leader  *raftmembership.Leader  `json:"leader"`
				Servers []raftmembership.Server `json:"servers"`
			}
			if json.Unmarshal([]byte(view.body), &membership) != nil || json.Unmarshal([]byte(status.body), &statusView) != nil {
				return false
			}
			if membership.Leader == nil || string(membership.Leader.Address) != leader.addr() || len(membership.Servers) != 3 ||
				membership.Servers[2].Suffrage != "Nonvoter" {
				return false
			}
			want, _ := json.Marshal(membership)
			got, _ := json.Marshal(raftmembership.Membership{Leader: statusView.Leader, Servers: statusView.Servers})
			return string(want) == string(got)
		}, waitTimeout, pollEvery)
		require.True(t, agreed, "%s: /status and /raft disagree; last:\n%s", n.config.ID, last)
	}
}
