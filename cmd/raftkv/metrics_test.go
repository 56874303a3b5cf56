package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsEndpoint: GET /metrics shows raft's metrics and rafthttp's
// together, in Prometheus' text format.
func TestMetricsEndpoint(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	leader := waitLeader(t, nodes)
	client := newAPIClient(t, true)
	got := do(t, client, http.MethodPut, leader.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)

	got = do(t, client, http.MethodGet, nodes[1].url("/metrics"), nil)
	require.Equal(t, http.StatusOK, got.status, got.body)
	assert.Contains(t, got.header.Get("Content-Type"), "text/plain")
	for _, want := range []string{
		`rafthttp_upgrade{status="101"}`,
		`rafthttp_dial{mode="eager",outcome="ok"}`,
		`rafthttp_membership{kind="join",status="200"}`,
		"rafthttp_conns_open ",
		"raft_apply",
		"go_goroutines",
	} {
		assert.True(t, strings.Contains(got.body, want), "GET /metrics lacks %s", want)
	}
}
