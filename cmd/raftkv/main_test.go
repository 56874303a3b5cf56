package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// node a test starts must be stopped, every HTTP client's connections closed.
// The one exception waits on a write hashicorp/raft never answered (see
// node.await).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/rafthttp/rafthttp/cmd/raftkv.(*node).await.func1"))
}
