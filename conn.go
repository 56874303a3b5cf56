package rafthttp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// prefixConn yields bytes that were read from the connection during the
// handshake before reading from the connection itself: the peer's first
// raft bytes, which arrived with the request or the 101. Only connections
// that arrive with such bytes are wrapped.
type prefixConn struct {
	net.Conn
	mu     sync.Mutex
	prefix []byte // what is left to replay; nil once it is all read
}

// bufferedConn returns conn, or conn behind a prefixConn if reader holds
// bytes read from conn that are not yet consumed. They are copied, so the
// reader and its buffer are not kept alive for the life of the connection.
func bufferedConn(conn net.Conn, reader *bufio.Reader) net.Conn {
	n := reader.Buffered()
	if n == 0 {
		return conn
	}
	buffered, _ := reader.Peek(n)
	return &prefixConn{Conn: conn, prefix: bytes.Clone(buffered)}
}

func (c *prefixConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.prefix) == 0 {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	n := copy(p, c.prefix)
	c.prefix = c.prefix[n:]
	if len(c.prefix) == 0 {
		c.prefix = nil // let the buffer go
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
