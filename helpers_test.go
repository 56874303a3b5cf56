package rafthttp_test

import (
	"testing"
	"time"
)

// testWait bounds every wait in this package's tests for something that
// should happen promptly; it only decides how long a failing test takes.
const testWait = 10 * time.Second

// receive waits, bounded by testWait, for a value on ch, failing the test
// with what it was waiting for.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(testWait)
	defer timer.Stop()
	select {
	case value := <-ch:
		return value
	case <-timer.C:
		t.Fatalf("waited %v for %s", testWait, what)
		panic("unreachable")
	}
}
