package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/rafthttptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteLostWithLeadership sends a write to a leader that has just been
// isolated: raft takes the entry, cannot commit it, and the leader steps
// down. The answer must be a 503 saying the outcome is unknown, and never
// a redirect: a client following it would send the write again to the
// new leader, which could then apply it after writes that came later.
func TestWriteLostWithLeadership(t *testing.T) {
	network := rafthttptest.NewNetwork(1)
	t.Cleanup(func() { network.Close() })
	nodes := startCluster(t, 3, func(config *nodeConfig) {
		config.Listen = clustertest.ReservedAddr(t)
		faults := network.Node(config.ID, config.Listen)
		config.hooks.dial, config.hooks.handler = faults.DialContext, faults.Handler
	})
	leader := waitLeader(t, nodes)
	network.Isolate(leader.config.ID)

	got := do(t, newAPIClient(t, true), http.MethodPut, leader.url("/kv/k"), strings.NewReader("v"))
	require.NotEqual(t, raft.Leader, leader.raft.State(), "the isolated leader stepped down")
	assert.Equal(t, http.StatusServiceUnavailable, got.status, got.body)
	assert.Equal(t, "unknown", got.header.Get(outcomeHeader))
	assert.Empty(t, got.header.Get("Location"))
	assert.Contains(t, got.body, "may or may not have been applied")

	// Healed, the cluster has one leader again, and a write that raft
	// refuses before taking it is redirected as before.
	network.Heal()
	leader = waitLeader(t, nodes)
	follower := nodeFollowers(nodes, leader)[0]
	got = do(t, newAPIClient(t, false), http.MethodPut, follower.url("/kv/k"), strings.NewReader("v"))
	assert.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
	assert.Empty(t, got.header.Get(outcomeHeader))
}

// unanswered is a raft future that never answers, as raft may leave an
// Apply in flight when it shuts down.
type unanswered struct{ release chan struct{} }

func (f unanswered) Error() error {
	<-f.release
	return nil
}

// TestAwaitEndsWithRaft: a write raft never answers ends, as an unknown
// outcome, once raft has shut down; one raft answers returns its error.
func TestAwaitEndsWithRaft(t *testing.T) {
	n := &node{raftDown: make(chan struct{})}
	future := unanswered{release: make(chan struct{})}
	defer close(future.release)
	done := make(chan error, 1)
	go func() { done <- n.await(future) }()
	select {
	case err := <-done:
		t.Fatalf("await returned %v while raft runs", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(n.raftDown)
	select {
	case err := <-done:
		assert.ErrorIs(t, err, raft.ErrRaftShutdown)
	case <-time.After(10 * time.Second):
		t.Fatal("await did not end when raft shut down")
	}

	running := &node{raftDown: make(chan struct{})}
	answered := unanswered{release: make(chan struct{})}
	close(answered.release)
	assert.NoError(t, running.await(answered))
}
