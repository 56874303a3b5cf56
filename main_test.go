package rafthttp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind, but
// for those waiting on writes hashicorp/raft never answers
// (abandonedApplies).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, abandonedApplies)
}
