package rafthttp

import (
	"net"
	"time"
)

// Hooks into the package's internals for its external tests (package
// rafthttp_test), as the standard library's export_test.go files do: the
// tests keep one harness, in helpers_test.go, and still check what only
// the package can see.

// HandlerTimeout is the timeout the Handler applies now: the configured
// one, or DefaultTimeout.
func HandlerTimeout(h *Handler) time.Duration { return h.currentTimeout() }

// HandlerAccept returns the next connection the Handler queued, as the
// Handler hands it to its Layer, before the Layer wraps it.
func HandlerAccept(h *Handler) (net.Conn, error) { return h.accept() }

// PrefixConn is the wrapper that replays a peer's early bytes.
type PrefixConn = prefixConn

// TrackedConns is how many upgraded connections the Layer handed out and
// has not seen closed.
func TrackedConns(l *Layer) int {
	l.conns.mu.Lock()
	defer l.conns.mu.Unlock()
	return len(l.conns.conns)
}

// HandlerMaxConns is the Handler's bound on open upgraded connections.
func HandlerMaxConns(h *Handler) int { return int(h.maxConns) }

// LearnEarlyData records that the peer at addr takes up to bodyMax bytes of
// early data, as a 101 from it saying so would, so that the Layer's next
// dial to addr is an early-data one without a dial to learn it first.
func LearnEarlyData(l *Layer, addr string, bodyMax int) { l.upgrader.peers.learned(addr, bodyMax) }

// OpenConns is the count behind the rafthttp.conns.open gauge.
func OpenConns() int64 { return openConns.Load() }
