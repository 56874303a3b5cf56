package rafthttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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

// lazyConn is an upgrade dial to a peer known to take early data, returned
// as soon as it is connected. Its first Write sends the upgrade request with
// as many of the bytes written as fit (see request) as the request's body.
// The answer is read by the first Read, or by a Write with more to send,
// since bytes behind the body must wait for it; such a Write waits under
// the read deadline. A failed upgrade is never returned as
// data: that call returns the *UpgradeError an eager dial would have, so
// does every later Read and Write, and the connection is closed.
//
// Until the caller sets its own, the dial's deadline stays on the
// connection, bounding the request and the answer.
type lazyConn struct {
	net.Conn
	path, addr string
	bodyMax    int
	peers      *peerTable

	upgraded atomic.Bool // the 101 is in: writes go straight through
	drained  atomic.Bool // and no byte read behind it is left: reads too
	closed   atomic.Bool // Close was called: failures are not the peer's

	mu        sync.Mutex // serializes the handshake
	requested bool       // the request is written
	body      int        // with this many bytes of early data
	answered  bool       // the 101 is read (upgraded follows, see Write)
	rest      []byte     // bytes read behind the 101 no Read has taken
	err       error      // why the upgrade failed, for every later call

	deadlineMu       sync.Mutex
	readDeadlineSet  bool // the caller set its own: keep it
	writeDeadlineSet bool
}

func (c *lazyConn) Read(p []byte) (int, error) {
	if c.drained.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if !c.upgraded.Load() {
		n, err := c.finish(p)
		if err == nil {
			c.upgraded.Store(true)
		}
		c.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
		return c.Read(p)
	}
	if len(c.rest) == 0 {
		c.drained.Store(true)
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	n := c.takeRest(p)
	c.mu.Unlock()
	return n, nil
}

// takeRest copies into p the bytes read behind the 101.
func (c *lazyConn) takeRest(p []byte) int {
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	if len(c.rest) == 0 {
		c.rest = nil
		c.drained.Store(true)
	}
	return n
}

func (c *lazyConn) Write(p []byte) (int, error) {
	if c.upgraded.Load() {
		return c.Conn.Write(p)
	}
	// Held to the end, so that a Write split around the 101 goes out
	// whole before any other.
	c.mu.Lock()
	defer c.mu.Unlock()
	written := 0
	if !c.requested && c.err == nil {
		n, err := c.request(p)
		if err != nil || n == len(p) {
			return n, err
		}
		written = n
	}
	// Bytes behind the body wait for the answer: a proxy may not forward
	// them before it, and a refusal must not be followed by raft data.
	if _, err := c.finish(nil); err != nil {
		return written, err
	}
	n, err := c.Conn.Write(p[written:])
	// Only now may other Writes take the fast path.
	c.upgraded.Store(true)
	return written + n, err
}

// request writes the upgrade request with as much of data as early data as
// the peer takes and maxEarlyRequest allows, and returns how much that is.
func (c *lazyConn) request(data []byte) (int, error) {
	hs := getHandshake(nil)
	defer putHandshake(hs)
	n := min(len(data), c.bodyMax)
	hs.head = appendUpgradeRequest(hs.head[:0], c.path, c.addr, n)
	if over := len(hs.head) + n - maxEarlyRequest; over > 0 {
		n = max(n-over, 0)
		hs.head = appendUpgradeRequest(hs.head[:0], c.path, c.addr, n)
	}
	c.requested, c.body = true, n
	hs.head = append(hs.head, data[:n]...)
	if _, err := c.Conn.Write(hs.head); err != nil {
		return 0, c.fail("write request", err)
	}
	return n, nil
}

// finish completes the upgrade, if it is not complete: it writes the
// request without a body if no Write has, and reads and checks the answer.
// Bytes read behind the 101 fill p, and what p has no room for is kept for
// later Reads. It returns how many bytes went to p.
func (c *lazyConn) finish(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.answered {
		return 0, nil
	}
	if !c.requested {
		if _, err := c.request(nil); err != nil {
			return 0, err
		}
	}
	hs := getHandshake(c.Conn)
	defer putHandshake(hs)
	// No deadline for readHead to name: the one that ends the wait may be
	// the dial's or the caller's (see fail).
	bodyMax, step, err := readHead(context.Background(), hs.reader, time.Time{})
	if err == nil && c.body > 0 && bodyMax == 0 {
		// Nothing says the peer read the body: an original node, or a
		// proxy that dropped it. raft's first bytes may be gone.
		step, err = "upgrade header", fmt.Errorf("101 without %s: the peer did not confirm the %d bytes of raft data sent as the request's body", bodyMaxHeader, c.body)
	}
	if err != nil {
		return 0, c.fail(step, err)
	}
	c.peers.learned(c.addr, bodyMax)
	c.clearDeadlines()
	n := 0
	if buffered := hs.reader.Buffered(); buffered > 0 {
		behind, _ := hs.reader.Peek(buffered)
		n = copy(p, behind)
		if n < buffered {
			// Copied out: the reader goes back to the pool.
			c.rest = append([]byte(nil), behind[n:]...)
		}
	}
	if len(c.rest) == 0 {
		c.drained.Store(true)
	}
	c.answered = true
	return n, nil
}

// fail records why the upgrade failed, closes the connection and tells the
// peer table, unless the failure is the caller's own Close. A deadline
// that ends the wait is reported as an eager dial's is, whichever deadline
// it was.
func (c *lazyConn) fail(step string, err error) error {
	if c.closed.Load() {
		c.err = &UpgradeError{Addr: c.addr, Step: step, Err: net.ErrClosed}
		return c.err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	c.err = &UpgradeError{Addr: c.addr, Step: step, Err: err}
	c.Conn.Close()
	c.peers.failed(c.addr, c.err)
	return c.err
}

// clearDeadlines lifts the dial's deadline once the connection is upgraded,
// in each direction the caller has not set one of its own.
func (c *lazyConn) clearDeadlines() {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if !c.readDeadlineSet {
		c.Conn.SetReadDeadline(time.Time{})
	}
	if !c.writeDeadlineSet {
		c.Conn.SetWriteDeadline(time.Time{})
	}
}

func (c *lazyConn) SetDeadline(t time.Time) error {
	return c.setDeadline(t, true, true, c.Conn.SetDeadline)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(t, true, false, c.Conn.SetReadDeadline)
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(t, false, true, c.Conn.SetWriteDeadline)
}

// setDeadline sets a deadline of the caller's with set, noting the
// directions it covers so that the end of the handshake leaves them be.
func (c *lazyConn) setDeadline(t time.Time, read, write bool, set func(time.Time) error) error {
	if c.upgraded.Load() {
		return set(t)
	}
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.readDeadlineSet = c.readDeadlineSet || read
	c.writeDeadlineSet = c.writeDeadlineSet || write
	return set(t)
}

func (c *lazyConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}
