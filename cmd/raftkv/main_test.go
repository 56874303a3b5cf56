package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// node a test starts must be stopped, every HTTP client's connections closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
