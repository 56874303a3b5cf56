package clustertest

import (
	"net"
	"runtime"
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
	return holdPort(t, false)
}

// ReservedAddr returns a loopback address whose port stays reserved for
// the rest of the test, for a server that the test starts, stops and
// starts again at the same address, in this process or in a child it
// runs: a restarted raft node must come back where its peers know it.
// Whenever no server listens on it, the address refuses connections, as
// RefusingAddr's does.
//
// The port is held, as RefusingAddr's, by a socket bound but never
// listening, this one with SO_REUSEADDR. On Linux that lets any listener
// with SO_REUSEADDR set, as every Go listener is, bind the same address
// while the holder does not listen, and it still keeps the port from
// anyone who asks for any free port: a listener binding port 0, or a
// connection picking its local port. Only one listener at a time can
// bind it. Other systems refuse the second bind; there ReservedAddr
// returns a port that is merely free when it returns, and a restart
// races for it with other tests.
func ReservedAddr(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer listener.Close()
		return listener.Addr().String()
	}
	return holdPort(t, true)
}

// holdPort binds a TCP socket that never listens to a free loopback port,
// closes it at the test's end, and returns its address.
func holdPort(t testing.TB, reuseAddr bool) string {
	t.Helper()
	// Close-on-exec, or a child process the test starts would inherit the
	// socket and hold the port past the test. Set under ForkLock, as the
	// net package does where socket(2) takes no SOCK_CLOEXEC (macOS).
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if reuseAddr {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			t.Fatalf("set SO_REUSEADDR: %v", err)
		}
	}
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
