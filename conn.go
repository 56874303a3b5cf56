package rafthttp

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// prefixConn yields bytes that were read from the connection during the
// handshake before reading from the connection itself. Only connections that
// arrive with such bytes are wrapped; they are copied out of the handshake's
// buffer so that buffer is not kept alive for the life of the connection.
type prefixConn struct {
	net.Conn
	drained atomic.Bool // fast path once the prefix is gone
	mu      sync.Mutex
	prefix  []byte
}

func newPrefixConn(conn net.Conn, buffered []byte) *prefixConn {
	return &prefixConn{Conn: conn, prefix: append([]byte(nil), buffered...)}
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.drained.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if len(c.prefix) == 0 {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	n := copy(p, c.prefix)
	c.prefix = c.prefix[n:]
	if len(c.prefix) == 0 {
		c.prefix = nil
		c.drained.Store(true)
	}
	c.mu.Unlock()
	return n, nil
}

// connSet holds the upgraded connections a Layer has handed to raft and not
// yet seen closed, so that Layer.Close can close them. raft's
// NetworkTransport.Close does not close the connections it accepted, and the
// goroutines reading them would otherwise stay blocked forever.
type connSet struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newConnSet() *connSet {
	return &connSet{conns: make(map[*trackedConn]struct{})}
}

// add starts tracking conn and returns the connection to hand out. If the set
// is already closed, conn is closed and ErrClosed returned.
func (s *connSet) add(conn net.Conn) (net.Conn, error) {
	tracked := &trackedConn{Conn: conn, set: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return nil, ErrClosed
	}
	s.conns[tracked] = struct{}{}
	s.mu.Unlock()
	return tracked, nil
}

func (s *connSet) remove(conn *trackedConn) {
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// closeAll closes every tracked connection and makes later adds fail.
func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.closed = true
	s.mu.Unlock()
	for conn := range conns {
		conn.closedBySet.Store(true)
		conn.Conn.Close()
	}
}

// trackedConn removes itself from its set when closed.
type trackedConn struct {
	net.Conn
	set         *connSet
	closedBySet atomic.Bool
}

// Read reports io.EOF, rather than "use of closed network connection", to a
// reader whose connection was closed by Layer.Close: for raft that is an
// orderly end of the stream, not an error worth logging at shutdown.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.closedBySet.Load() {
		err = io.EOF
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.set.remove(c)
	return c.Conn.Close()
}
