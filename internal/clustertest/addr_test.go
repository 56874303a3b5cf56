package clustertest_test

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestRefusingAddr checks that the address refuses connections and that no
// listener can take its port while the test runs.
func TestRefusingAddr(t *testing.T) {
	addr := clustertest.RefusingAddr(t)
	for range 3 {
		_, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: got %v, want connection refused", addr, err)
		}
	}
	listener, err := net.Listen("tcp", addr)
	if err == nil {
		listener.Close()
		t.Fatalf("listen on %s succeeded: the port is not reserved", addr)
	}
}

// TestReservedAddr checks that the address refuses connections until a
// listener binds it, that only one listener at a time can, and that it
// can be bound again after that listener closes, as a restart does.
func TestReservedAddr(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ReservedAddr reserves the port only on Linux")
	}
	addr := clustertest.ReservedAddr(t)
	requireRefused := func(when string) {
		t.Helper()
		_, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s %s: got %v, want connection refused", addr, when, err)
		}
	}
	requireRefused("before any listener")
	for run := range 2 {
		listener, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s, run %d: %v", addr, run, err)
		}
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			listener.Close()
			t.Fatalf("dial %s while listening: %v", addr, err)
		}
		conn.Close()
		second, err := net.Listen("tcp", addr)
		if err == nil {
			second.Close()
			listener.Close()
			t.Fatalf("a second listener bound %s while the first listened", addr)
		}
		listener.Close()
		requireRefused("after the listener closed")
	}
}
