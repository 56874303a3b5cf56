package rafthttptest

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// window bounds the bytes one direction of a connection holds in flight:
// past it, the writer waits, as a full TCP window would make it.
const window = 1 << 20

// readSize is how much the receiving side takes from the socket at a time.
const readSize = 32 << 10

// faultConn is a connection a node dialed, with the Network's faults
// applied to both of its directions: out, what the node writes, and in,
// what it reads.
//
// Each direction is a queue of chunks, each due at the time its link's
// delay allows. The out queue is drained into the socket by one goroutine;
// the in queue is filled from the socket by another and drained by Read.
// While the out queue is empty and its link has no fault, Write goes
// straight to the socket, so a fault-free connection behaves as the plain
// one does, Close after Write included.
type faultConn struct {
	net.Conn
	network *Network
	out, in *stream

	mu            sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time
	closed        bool
	// reset says the Network closed the connection, not its user: what
	// the user does with it next fails as on a reset socket.
	wasReset bool
	// userClosed says the user has called Close.
	userClosed bool
	// wake is closed and replaced when a deadline changes, the
	// connection closes, or a queue changes.
	wake chan struct{}

	closeOnce sync.Once
	pumps     sync.WaitGroup
}

// stream is one direction of a faultConn.
type stream struct {
	link   link
	chunks []chunk
	size   int
	// err ends the stream once the queue is drained: the socket's error.
	err error
	// sending says a write to the socket is in progress, by the pump or
	// by Write directly; only one runs at a time.
	sending bool
	// direct says the write in progress is Write's own, under the user's
	// deadline, which SetWriteDeadline must then move on the socket too.
	direct bool
	// dropped says bytes were lost to a cut: the stream has a hole, and
	// carries nothing more, so that no reader sees bytes from past it in
	// the moment between Mend restoring the link and resetting the
	// connection.
	dropped atomic.Bool
}

type chunk struct {
	data []byte
	// sent is when the chunk was written; due, when its delay, drawn
	// then, lets it arrive.
	sent, due time.Time
}

// dueAt returns when the chunk may arrive under the link's delay now: a
// delay shortened or removed since it was written (by Delay or Heal)
// shortens its wait too, so healing a slow link does not leave bytes an
// hour away.
func (k chunk) dueAt(d delay) time.Time {
	if latest := k.sent.Add(d.latency + d.jitter); latest.Before(k.due) {
		return latest
	}
	return k.due
}

func newFaultConn(network *Network, conn net.Conn, out, in link) *faultConn {
	return &faultConn{
		Conn: conn, network: network,
		out: &stream{link: out}, in: &stream{link: in},
		wake: make(chan struct{}),
	}
}

func (c *faultConn) start() {
	c.pumps.Add(2)
	go c.pumpOut()
	go c.pumpIn()
}

// broadcast wakes every waiter; c.mu must be held.
func (c *faultConn) broadcast() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// wait blocks until something may have changed: c.wake, the Network's
// faults, or one of the times. c.mu must be held; it is released while
// waiting.
func (c *faultConn) wait(changed <-chan struct{}, times ...time.Time) {
	wake := c.wake
	var soonest time.Time
	for _, t := range times {
		if !t.IsZero() && (soonest.IsZero() || t.Before(soonest)) {
			soonest = t
		}
	}
	c.mu.Unlock()
	defer c.mu.Lock()
	var timeout <-chan time.Time
	if !soonest.IsZero() {
		timer := time.NewTimer(time.Until(soonest))
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-wake:
	case <-changed:
	case <-timeout:
	}
}

// Write queues b for the peer, or writes it at once when nothing is queued
// and the link has no fault. Bytes across a cut link are dropped, and the
// write succeeds, as it would into a socket's buffer.
func (c *faultConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	for {
		if c.closed {
			err := c.closedError("write")
			c.mu.Unlock()
			return 0, err
		}
		if c.out.err != nil {
			err := c.out.err
			c.mu.Unlock()
			return 0, err
		}
		deadline := c.writeDeadline
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			c.mu.Unlock()
			return 0, c.opError("write", os.ErrDeadlineExceeded)
		}
		state := c.network.state(c.out.link)
		switch {
		case state.cut || c.out.dropped.Load():
			c.out.dropped.Store(true)
			c.mu.Unlock()
			return len(b), nil
		case len(c.out.chunks) == 0 && !c.out.sending && !state.held && state.delay == (delay{}):
			c.out.sending, c.out.direct = true, true
			c.Conn.SetWriteDeadline(deadline)
			c.mu.Unlock()
			n, err := c.Conn.Write(b)
			c.mu.Lock()
			c.out.sending, c.out.direct = false, false
			c.broadcast()
			c.mu.Unlock()
			return n, err
		case c.out.size == 0 || c.out.size+len(b) <= window:
			now := time.Now()
			c.out.chunks = append(c.out.chunks, chunk{data: append([]byte(nil), b...), sent: now, due: c.network.due(now, state.delay)})
			c.out.size += len(b)
			c.broadcast()
			c.mu.Unlock()
			return len(b), nil
		}
		c.wait(state.changed, deadline)
	}
}

// pumpOut writes the out queue to the socket as its chunks fall due.
func (c *faultConn) pumpOut() {
	defer c.pumps.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closed {
		if len(c.out.chunks) == 0 || c.out.sending {
			c.wait(nil)
			continue
		}
		state := c.network.state(c.out.link)
		head := c.out.chunks[0]
		switch {
		case state.cut || c.out.dropped.Load():
			c.dropQueued(c.out)
			continue
		case state.held:
			c.wait(state.changed)
			continue
		case time.Now().Before(head.dueAt(state.delay)):
			c.wait(state.changed, head.dueAt(state.delay))
			continue
		}
		c.out.chunks = c.out.chunks[1:]
		c.out.sending = true
		// The user's deadline was for its Write, which has returned.
		c.Conn.SetWriteDeadline(time.Time{})
		c.mu.Unlock()
		_, err := c.Conn.Write(head.data)
		c.mu.Lock()
		c.out.sending = false
		c.out.size -= len(head.data)
		if err != nil && c.out.err == nil {
			c.out.err = err
		}
		c.broadcast()
		if err != nil {
			return
		}
	}
}

// dropQueued empties s's queue into the hole a cut made; c.mu must be held.
func (c *faultConn) dropQueued(s *stream) {
	s.chunks, s.size = nil, 0
	s.dropped.Store(true)
	c.broadcast()
}

// pumpIn fills the in queue from the socket, stopping while the queue is
// full.
func (c *faultConn) pumpIn() {
	defer c.pumps.Done()
	for {
		buf := make([]byte, readSize)
		n, err := c.Conn.Read(buf)
		c.mu.Lock()
		if n > 0 {
			state := c.network.state(c.in.link)
			if state.cut || c.in.dropped.Load() {
				c.in.dropped.Store(true)
			} else {
				now := time.Now()
				c.in.chunks = append(c.in.chunks, chunk{data: buf[:n], sent: now, due: c.network.due(now, state.delay)})
				c.in.size += n
			}
		}
		if err != nil {
			c.in.err = err
		}
		c.broadcast()
		for !c.closed && err == nil && c.in.size >= window {
			c.wait(nil)
		}
		stop := c.closed || err != nil
		c.mu.Unlock()
		if stop {
			return
		}
	}
}

// Read returns the bytes that have arrived and fallen due, waiting for
// them until the read deadline.
func (c *faultConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed {
			return 0, c.closedError("read")
		}
		deadline := c.readDeadline
		expired := !deadline.IsZero() && !time.Now().Before(deadline)
		state := c.network.state(c.in.link)
		if len(c.in.chunks) > 0 {
			head := &c.in.chunks[0]
			switch {
			case state.cut || c.in.dropped.Load():
				c.dropQueued(c.in)
				continue
			case !state.held && !time.Now().Before(head.dueAt(state.delay)):
				n := copy(b, head.data)
				head.data = head.data[n:]
				c.in.size -= n
				if len(head.data) == 0 {
					c.in.chunks = c.in.chunks[1:]
				}
				c.broadcast()
				return n, nil
			}
		} else if c.in.err != nil && !state.cut && !state.held {
			// The peer's FIN or RST crosses the link like its bytes:
			// not while the link is cut or held.
			return 0, c.in.err
		}
		if expired {
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		var due time.Time
		if len(c.in.chunks) > 0 && !state.held {
			due = c.in.chunks[0].dueAt(state.delay)
		}
		c.wait(state.changed, deadline, due)
	}
}

// closedError is what an operation on a closed connection returns; c.mu
// must be held.
func (c *faultConn) closedError(op string) error {
	if c.wasReset && !c.userClosed {
		return c.opError(op, syscall.ECONNRESET)
	}
	return c.opError(op, net.ErrClosed)
}

func (c *faultConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Close closes the connection at once; bytes still queued are discarded.
// After a reset by the Network, the user's first Close returns nil.
func (c *faultConn) Close() error {
	c.mu.Lock()
	first := !c.userClosed
	c.userClosed = true
	reset := c.wasReset
	c.mu.Unlock()
	err := c.close(false)
	if reset && first {
		return nil
	}
	return err
}

func (c *faultConn) reset() { c.close(true) }

func (c *faultConn) close(reset bool) error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.wasReset = reset
		c.broadcast()
		c.mu.Unlock()
		if reset {
			abort(c.Conn)
		}
		err = c.Conn.Close()
		c.pumps.Wait()
		c.network.untrack(c)
	})
	if errors.Is(err, net.ErrClosed) {
		return c.opError("close", net.ErrClosed)
	}
	return err
}

func (c *faultConn) touches(a, b string) bool {
	ends := [2]string{c.out.link.from, c.out.link.to}
	if b == "" {
		return ends[0] == a || ends[1] == a
	}
	return ends == [2]string{a, b} || ends == [2]string{b, a}
}

func (c *faultConn) lost(l link) bool {
	// Under c.mu, which a Write or a pump holds from seeing the cut to
	// recording the loss: one that saw the cut before Mend removed it has
	// recorded it by now, and is reset rather than left dropping forever.
	c.mu.Lock()
	defer c.mu.Unlock()
	return (c.out.link == l && c.out.dropped.Load()) || (c.in.link == l && c.in.dropped.Load())
}

func (c *faultConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDeadline, c.writeDeadline = t, t
	c.moveDirectDeadline(t)
	c.broadcast()
	return nil
}

// moveDirectDeadline moves the deadline of a direct Write in progress;
// c.mu must be held.
func (c *faultConn) moveDirectDeadline(t time.Time) {
	if c.out.direct {
		c.Conn.SetWriteDeadline(t)
	}
}

func (c *faultConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDeadline = t
	c.broadcast()
	return nil
}

func (c *faultConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeDeadline = t
	c.moveDirectDeadline(t)
	c.broadcast()
	return nil
}

// abort closes conn's socket with an RST, reaching under TLS if need be.
// The socket is closed before conn itself: TLS's Close would first send
// a close_notify alert, which the peer reads as an orderly end before it
// sees the RST.
func abort(conn net.Conn) {
	for {
		switch c := conn.(type) {
		case interface{ SetLinger(int) error }:
			c.SetLinger(0)
			conn.Close()
			return
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return
		}
	}
}

// heldConn is a connection a node's Handler took over. It holds its bytes
// while the node is paused; the link faults are applied by the dialing
// end, which knows both nodes.
type heldConn struct {
	net.Conn
	network *Network
	node    string

	mu sync.Mutex
	// pending is what a Read took from the socket while the node was
	// paused and could not hand over before its deadline.
	pending       []byte
	readDeadline  time.Time
	writeDeadline time.Time
	// wasReset and userClosed are faultConn's: after a reset by the
	// Network, the user's first Close returns nil.
	wasReset   bool
	userClosed bool
	closeOnce  sync.Once
}

func (c *heldConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	if len(pending) == 0 {
		n, err := c.Conn.Read(b)
		if n == 0 {
			return n, c.resetError("read", err)
		}
		pending = b[:n]
		if err := c.waitUnpaused("read", &c.readDeadline); err != nil {
			c.mu.Lock()
			c.pending = append([]byte(nil), pending...)
			c.mu.Unlock()
			return 0, err
		}
		return n, nil
	}
	if err := c.waitUnpaused("read", &c.readDeadline); err != nil {
		c.mu.Lock()
		c.pending = pending
		c.mu.Unlock()
		return 0, err
	}
	n := copy(b, pending)
	if n < len(pending) {
		c.mu.Lock()
		c.pending = pending[n:]
		c.mu.Unlock()
	}
	return n, nil
}

func (c *heldConn) Write(b []byte) (int, error) {
	if err := c.waitUnpaused("write", &c.writeDeadline); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(b)
	return n, c.resetError("write", err)
}

// resetError turns the error of an operation on a connection the Network
// reset into the error a reset socket gives, as faultConn does.
func (c *heldConn) resetError(op string, err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	reset := c.wasReset && !c.userClosed
	c.mu.Unlock()
	if reset {
		return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: syscall.ECONNRESET}
	}
	return err
}

// waitUnpaused waits while the node is paused, until the deadline *at
// holds. It polls the deadline each time the faults change and at most
// every few milliseconds, since the deadline can move while it waits.
func (c *heldConn) waitUnpaused(op string, at *time.Time) error {
	for {
		paused, changed := c.network.pausedNode(c.node)
		if !paused {
			return nil
		}
		c.mu.Lock()
		deadline := *at
		c.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
		}
		timer := time.NewTimer(10 * time.Millisecond)
		select {
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (c *heldConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline, c.writeDeadline = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *heldConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *heldConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *heldConn) Close() error {
	c.mu.Lock()
	first := !c.userClosed
	c.userClosed = true
	reset := c.wasReset
	c.mu.Unlock()
	err := c.close()
	if reset && first {
		return nil
	}
	return err
}

func (c *heldConn) close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.network.untrack(c) })
	return err
}

func (c *heldConn) reset() {
	c.mu.Lock()
	c.wasReset = true
	c.mu.Unlock()
	abort(c.Conn)
	c.close()
}

func (c *heldConn) touches(a, b string) bool { return b == "" && c.node == a }

func (c *heldConn) lost(link) bool { return false }
