package clustertest

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// RefusingAddr returns a loopback address that refuses every connection
// for the rest of the test: a TCP socket is bound to it but never listens,
// so a connect gets a reset, and the port stays taken until the test's
// cleanup closes the socket. A port that was merely free a moment ago (a
// listener opened and closed) can be taken by a test running in parallel,
// which would then answer where a refusal was expected.
//
// The socket is made without SO_REUSEADDR, which Go's listeners set: with
// it, Linux would let a second socket bind the same port while neither
// listens.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	port := bound.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
