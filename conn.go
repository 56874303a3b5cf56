package rafthttp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
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
	logger hclog.Logger
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newConnSet(logger hclog.Logger) *connSet {
	return &connSet{logger: logger, conns: make(map[*trackedConn]struct{})}
}

// add starts tracking conn and returns the connection to hand out. If the
// set is already closed, conn is closed and ErrClosed returned.
//
// For a connection the Handler upgraded, onClose tells the Handler when it
// is closed, and firstByte bounds the wait for the peer's first byte: a
// raft node sends its first request at once, and a connection that sends
// nothing only holds one of the Handler's MaxConns. A dialed connection
// has neither (nil, 0).
func (s *connSet) add(conn net.Conn, onClose func(), firstByte time.Duration) (net.Conn, error) {
	tracked := &trackedConn{Conn: conn, set: s, onClose: onClose}
	if firstByte > 0 {
		if err := conn.SetReadDeadline(time.Now().Add(firstByte)); err != nil {
			tracked.closeConn()
			return nil, err
		}
		tracked.awaitingFirstByte.Store(true)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		tracked.closeConn()
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
		conn.closeConn()
	}
}

// trackedConn removes itself from its set when closed.
type trackedConn struct {
	net.Conn
	set *connSet
	// onClose, for an accepted connection, tells the Handler, once.
	onClose func()
	closed  atomic.Bool
	// closedBySet: Layer.Close closed it.
	closedBySet atomic.Bool
	// awaitingFirstByte: an accepted connection whose peer has sent
	// nothing yet, under the deadline for its first byte (see add).
	awaitingFirstByte atomic.Bool
}

// Read reports io.EOF, rather than "use of closed network connection", to a
// reader whose connection was closed by Layer.Close: for raft that is an
// orderly end of the stream, not an error worth logging at shutdown.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.awaitingFirstByte.Load() {
		n, err = c.firstRead(n, err)
	}
	if err != nil && c.closedBySet.Load() {
		err = io.EOF
	}
	return n, err
}

// firstRead ends the wait for an accepted connection's first byte: once it
// is in, the deadline goes, as raft's connections must live without one;
// if the deadline passed first, the peer is not a raft node at work, and
// raft is told the stream ended, which it takes quietly.
func (c *trackedConn) firstRead(n int, err error) (int, error) {
	if n > 0 {
		c.awaitingFirstByte.Store(false)
		if clearErr := c.Conn.SetReadDeadline(time.Time{}); err == nil {
			err = clearErr
		}
		return n, err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.awaitingFirstByte.Store(false)
		c.set.logger.Debug("closing an upgraded connection whose peer sent nothing in time", "remote-address", c.RemoteAddr())
		return 0, io.EOF
	}
	return n, err
}

// SetDeadline and SetReadDeadline replace the first byte's deadline: the
// caller has taken the read deadline over.
func (c *trackedConn) SetDeadline(t time.Time) error {
	c.awaitingFirstByte.Store(false)
	return c.Conn.SetDeadline(t)
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.awaitingFirstByte.Store(false)
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) Close() error {
	c.set.remove(c)
	return c.closeConn()
}

// closeConn closes the connection and, the first time, tells the Handler.
func (c *trackedConn) closeConn() error {
	err := c.Conn.Close()
	if c.onClose != nil && c.closed.CompareAndSwap(false, true) {
		c.onClose()
	}
	return err
}
