package rafthttp_test

import (
	"testing"

	"github.com/rafthttp/rafthttp/internal/clustertest"
)

func TestClusterSmoke(t *testing.T) {
	cluster := clustertest.Start(t, 3, clustertest.Options{})
	cluster.Apply("hello")
	for _, node := range cluster.Nodes {
		if got := node.FSM.Commands(); len(got) != 1 || got[0] != "hello" {
			t.Errorf("%s applied %v", node.ID, got)
		}
	}
}
