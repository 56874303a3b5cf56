package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/rafthttptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appliedHeader returns a reply's Raftkv-Applied-Index, failing the test if
// it is not a number.
func appliedHeader(t *testing.T, got reply) uint64 {
	t.Helper()
	applied, err := strconv.ParseUint(got.header.Get(appliedIndexHeader), 10, 64)
	require.NoError(t, err, "%s: %q", appliedIndexHeader, got.header.Get(appliedIndexHeader))
	return applied
}

// lastContactHeaderMs returns a reply's Raftkv-Last-Contact in
// milliseconds, failing the test if it is not a number.
func lastContactHeaderMs(t *testing.T, got reply) int64 {
	t.Helper()
	ms, err := strconv.ParseInt(got.header.Get(lastContactHeader), 10, 64)
	require.NoError(t, err, "%s: %q", lastContactHeader, got.header.Get(lastContactHeader))
	return ms
}

// TestLocalReadStaleness: every local read says how stale it may be, on
// the leader and on a follower, for a value and for a missing key;
// max_stale answers within its bound, and 503 from a follower cut off
// from the leader for longer; consistent reads carry no such headers.
func TestLocalReadStaleness(t *testing.T) {
	network := rafthttptest.NewNetwork(1)
	t.Cleanup(func() { network.Close() })
	nodes := startCluster(t, 3, func(config *nodeConfig) {
		config.Listen = clustertest.ReservedAddr(t)
		faults := network.Node(config.ID, config.Listen)
		config.hooks.dial, config.hooks.handler = faults.DialContext, faults.Handler
	})
	leader := waitLeader(t, nodes)
	follower := nodeFollowers(nodes, leader)[0]
	client := newAPIClient(t, false)

	got := do(t, client, http.MethodPut, leader.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	written := leader.raft.LastIndex()

	// The leader: fresh by definition, whatever max_stale says.
	for _, query := range []string{"", "?max_stale=1ns", "?consistent=false&max_stale=1ms"} {
		got = do(t, client, http.MethodGet, leader.url("/kv/k"+query), nil)
		require.Equal(t, http.StatusOK, got.status, "leader %s: %s", query, got.body)
		assert.Equal(t, "v", got.body)
		assert.Equal(t, "true", got.header.Get(knownLeaderHeader), query)
		assert.Equal(t, "0", got.header.Get(lastContactHeader), query)
		assert.GreaterOrEqual(t, appliedHeader(t, got), written, query)
	}
	got = do(t, client, http.MethodGet, leader.url("/kv/missing"), nil)
	assert.Equal(t, http.StatusNotFound, got.status, got.body)
	assert.Equal(t, "0", got.header.Get(lastContactHeader), "a 404 says how stale it is")

	// A consistent read is never stale, and says nothing about staleness.
	got = do(t, client, http.MethodGet, leader.url("/kv/k?consistent=true"), nil)
	require.Equal(t, http.StatusOK, got.status, got.body)
	for _, header := range []string{appliedIndexHeader, knownLeaderHeader, lastContactHeader} {
		assert.Empty(t, got.header.Get(header), "consistent read: %s", header)
	}

	// A follower, once it has the write: it knows the leader, heard from
	// it within a few heartbeats, and is within a generous bound.
	require.Eventually(t, func() bool {
		return sendGet(client, follower.url("/kv/k"), http.StatusOK, "v")
	}, waitTimeout, pollEvery, "the follower never served the write")
	got = do(t, client, http.MethodGet, follower.url("/kv/k?max_stale=10s"), nil)
	require.Equal(t, http.StatusOK, got.status, got.body)
	assert.Equal(t, "v", got.body)
	assert.Equal(t, "true", got.header.Get(knownLeaderHeader))
	assert.Less(t, lastContactHeaderMs(t, got), int64(10_000))
	assert.GreaterOrEqual(t, appliedHeader(t, got), written)
	got = do(t, client, http.MethodGet, follower.url("/kv/missing"), nil)
	assert.Equal(t, http.StatusNotFound, got.status, got.body)
	assert.Equal(t, "true", got.header.Get(knownLeaderHeader), "a 404 says how stale it is")

	// Cut off from the others, the follower still answers plain local
	// reads, with the time since it last heard from a leader, and
	// refuses those whose bound that time exceeds.
	network.Isolate(follower.config.ID)
	const bound = 300 * time.Millisecond
	boundedURL := follower.url("/kv/k?max_stale=" + bound.String())
	require.Eventually(t, func() bool {
		return sendGet(client, boundedURL, http.StatusServiceUnavailable, "")
	}, waitTimeout, pollEvery, "the isolated follower never refused max_stale=%s", bound)
	got = do(t, client, http.MethodGet, boundedURL, nil)
	assert.Equal(t, http.StatusServiceUnavailable, got.status, got.body)
	assert.Equal(t, "1", got.header.Get("Retry-After"))
	assert.Contains(t, got.body, "last contact with a leader")
	assert.Contains(t, got.body, "more than max_stale "+bound.String())
	assert.GreaterOrEqual(t, lastContactHeaderMs(t, got), bound.Milliseconds())
	assert.NotEmpty(t, got.header.Get(appliedIndexHeader))

	got = do(t, client, http.MethodGet, follower.url("/kv/k"), nil)
	assert.Equal(t, http.StatusOK, got.status, "a read without max_stale is served, stale or not: %s", got.body)
	assert.Equal(t, "v", got.body)
	assert.GreaterOrEqual(t, lastContactHeaderMs(t, got), bound.Milliseconds())

	// Healed, it hears from a leader again and serves the bound again.
	network.Heal()
	require.Eventually(t, func() bool {
		return sendGet(client, boundedURL, http.StatusOK, "v")
	}, waitTimeout, pollEvery, "the healed follower never served max_stale=%s", bound)
}

// TestLocalReadAfterRestartAlone is the case: a node restarted
// with its peers down has never heard from a leader, and may serve data
// that is stale without bound. Its local reads say so, and max_stale
// refuses them, however generous.
func TestLocalReadAfterRestartAlone(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	client := newAPIClient(t, false)
	got := do(t, client, http.MethodPut, leader.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	for _, n := range nodes {
		n.stopNow()
	}

	// node1 bootstrapped the cluster: restarted, it neither bootstraps
	// nor joins, and without its peers it never hears from a leader.
	config := nodes[0].config
	config.Logger = newTestLogger(clustertest.LogWriter(t), config.ID)
	alone := startTestNode(t, nil, config)
	for _, query := range []string{"", "?max_stale=1h"} {
		got = do(t, client, http.MethodGet, alone.url("/kv/k"+query), nil)
		assert.Equal(t, "false", got.header.Get(knownLeaderHeader), query)
		assert.Equal(t, neverContacted, got.header.Get(lastContactHeader), query)
		assert.NotEmpty(t, got.header.Get(appliedIndexHeader), query)
		if query != "" {
			assert.Equal(t, http.StatusServiceUnavailable, got.status, got.body)
			assert.Equal(t, "1", got.header.Get("Retry-After"))
			assert.Contains(t, got.body, "no contact with a leader since this node started")
		}
	}
}

// TestReadModeQuery: bad max_stale values, and max_stale with
// consistent=true, are refused with 400 before anything is read, on the
// leader as on a follower (which would otherwise redirect).
func TestReadModeQuery(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	client := newAPIClient(t, false)
	tests := []struct {
		name, query, reason string
	}{
		{"not a duration", "max_stale=soon", "max_stale must be a positive duration"},
		{"no unit", "max_stale=5", "max_stale must be a positive duration"},
		{"empty", "max_stale=", "max_stale must be a positive duration"},
		{"zero", "max_stale=0s", "max_stale must be a positive duration"},
		{"negative", "max_stale=-1s", "max_stale must be a positive duration"},
		{"with consistent", "consistent=true&max_stale=5s", "exclude each other"},
		{"with consistent, bad", "max_stale=soon&consistent=1", "exclude each other"},
		{"bad consistent", "consistent=maybe&max_stale=5s", "consistent must be true or false"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := do(t, client, http.MethodGet, nodes[0].url("/kv/k?"+test.query), nil)
			assert.Equal(t, http.StatusBadRequest, got.status, got.body)
			assert.Contains(t, got.body, test.reason)
		})
	}
	for _, query := range []string{"max_stale=5s", "max_stale=1m30s", "consistent=false&max_stale=250ms"} {
		got := do(t, client, http.MethodGet, nodes[0].url("/kv/k?"+query), nil)
		assert.Equal(t, http.StatusNotFound, got.status, "%s: %s", query, got.body)
	}
}
