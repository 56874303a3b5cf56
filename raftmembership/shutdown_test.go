package raftmembership_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// TestLeaveLeaderEndsOnShutdown shuts down a leader that was asked to
// leave, has handed leadership over, and waits to hear of its successor,
// which cannot reach it: the request must end with raft's shutdown rather
// than wait out the timeout, so that HandleChangeRequests can return and
// the node stop.
func TestLeaveLeaderEndsOnShutdown(t *testing.T) {
	t.Parallel()
	options := nodeOptions{membership: &raftmembership.Config{Timeout: time.Minute}}
	nodes := []*testNode{startNode(t, "a", options), startNode(t, "b", options), startNode(t, "c", options)}
	connect(nodes...)
	old := bootstrap(t, nodes...)
	// The others can answer the old leader, but not call it: it learns
	// that it lost the leadership, from their answers, and never who has
	// it.
	for _, node := range nodes {
		if node != old {
			node.transport.Disconnect(old.addr)
		}
	}

	request := raftmembership.NewLeaveRequest(old.id)
	select {
	case old.requests <- request:
	case <-time.After(testWait):
		t.Fatalf("%s: HandleChangeRequests did not take the request", old.id)
	}
	require.Eventually(t, func() bool { return old.raft.State() != raft.Leader }, testWait, pollInterval,
		"%s still leads", old.id)
	require.NoError(t, old.raft.Shutdown().Error())
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	require.ErrorIs(t, request.Wait(ctx), raft.ErrRaftShutdown)
}
