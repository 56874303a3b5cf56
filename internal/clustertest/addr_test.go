package clustertest_test

import (
	"errors"
	"net"
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
