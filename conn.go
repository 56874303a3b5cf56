package rafthttp

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
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

// lazyConn is an upgrade dial returned as soon as its request head is
// written, so that raft's first request goes out without waiting a round
// trip for the 101. Its first Read reads and checks the answer, under the
// dial's deadline: a refusal is never returned as data, but as the same
// *UpgradeError an eager dial returns, from that Read and every later one,
// and the connection is closed. Writes go straight through: the Handler
// keeps bytes that arrive behind the request head.
type lazyConn struct {
	net.Conn
	addr     string
	deadline time.Time // the dial's, still set as the read deadline

	ready atomic.Bool // the 101 is checked and its buffer released
	mu    sync.Mutex  // serializes Reads until ready
	hs    *handshake  // nil once the answer is read
	rest  []byte      // bytes behind the 101 a first Read had no room for
	err   error       // the refusal, returned by every Read

	deadlineMu  sync.Mutex
	deadlineSet bool // the caller set a read deadline: keep it
}

func (c *lazyConn) Read(p []byte) (int, error) {
	if c.ready.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.hs != nil {
		return c.finishUpgrade(p)
	}
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		if len(c.rest) == 0 {
			c.rest = nil
			c.ready.Store(true)
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// finishUpgrade reads the answer to the request. On a 101 it fills p with
// any bytes read behind it; on anything else it closes the connection.
func (c *lazyConn) finishUpgrade(p []byte) (int, error) {
	hs := c.hs
	c.hs = nil
	defer putHandshake(hs)
	if step, err := readHead(context.Background(), hs.reader, c.deadline); err != nil {
		c.err = &UpgradeError{Addr: c.addr, Step: step, Err: err}
		c.Conn.Close()
		return 0, c.err
	}
	c.deadlineMu.Lock()
	if !c.deadlineSet {
		c.Conn.SetReadDeadline(time.Time{})
	}
	c.deadlineMu.Unlock()
	n := hs.reader.Buffered()
	if n == 0 {
		c.ready.Store(true)
		return c.Conn.Read(p)
	}
	early, _ := hs.reader.Peek(n)
	copied := copy(p, early)
	if copied < n {
		// Copied out: the reader goes back to the pool.
		c.rest = append([]byte(nil), early[copied:]...)
	} else {
		c.ready.Store(true)
	}
	return copied, nil
}

func (c *lazyConn) SetDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.deadlineSet = true
	return c.Conn.SetDeadline(t)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.deadlineSet = true
	return c.Conn.SetReadDeadline(t)
}

// Close closes the connection and, unless a Read is using it, returns the
// handshake's buffer to the pool.
func (c *lazyConn) Close() error {
	err := c.Conn.Close()
	if c.mu.TryLock() {
		if c.hs != nil {
			putHandshake(c.hs)
			c.hs = nil
			c.err = net.ErrClosed
		}
		c.mu.Unlock()
	}
	return err
}
