package raftmembership_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind, such as
// a HandleChangeRequests loop or a raft node that was not shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
