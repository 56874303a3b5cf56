package rafthttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Early data: the first raft bytes of a connection sent as the body of its
// upgrade request, so that raft's first request needs no round trip of its
// own. The body is plain HTTP, which proxies forward (unlike bytes sent
// behind a request head before the 101, which some drop), and the peer
// reads all of it before it answers, so a 101 that confirms it proves it
// arrived.
//
// Request and body together fit one TCP segment on any path that carries
// IPv6's minimum MTU (every IPv6 path, and IPv4 ones but for rare links
// below 1280 bytes), so that a server that ignores the body reads it whole
// with the head and drops it with its buffer when it hijacks the
// connection: an original node that took the address of a rafthttp one
// does not hand part of it to its raft.
//
// The headers that carry it are part of the protocol (protocol.go).
const (
	// maxEarlyData is the largest body a Handler takes. It bounds what an
	// upgrade makes the Handler hold before its 101; a Layer sends less
	// (maxEarlyRequest).
	maxEarlyData = 4096

	// maxEarlyRequest bounds a request with early data, head and body, as
	// sent on the wire (with TLS, the record; see tlsRecordOverhead): the
	// TCP payload of one segment at IPv6's minimum MTU of 1280 bytes, less
	// the IPv6 and TCP headers and TCP options. Heartbeats,
	// votes and small appends fit; a longer first write sends what fits
	// and the rest after the 101.
	maxEarlyRequest = 1200

	// earlyDataPause is how long a Layer dials a peer without early data
	// after a dial with it failed in a way early data may explain.
	earlyDataPause = 5 * time.Minute
)

// checkEarlyData validates the early data an upgrade request announces and
// carries as its body (see bodyHeader). A body is raft's first bytes, so
// it must be announced, whole, and no larger than the Handler reads before
// it answers; a body that does not match its announcement was changed on
// the way, and the raft data in it cannot be trusted.
func checkEarlyData(r *http.Request) (int, string) {
	announced, ok := r.Header[bodyHeader]
	if !ok {
		if r.ContentLength != 0 {
			return http.StatusBadRequest, "rafthttp: an upgrade request's body must be announced in " + bodyHeader
		}
		return 0, ""
	}
	length, valid := 0, len(announced) == 1
	if valid {
		length, valid = parseBodyMax(announced[0])
	}
	switch {
	case !valid:
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: invalid %s %q: want one byte count", bodyHeader, strings.Join(announced, ", "))
	case r.ContentLength < 0:
		return http.StatusLengthRequired, "rafthttp: an upgrade request's body needs a Content-Length"
	case int64(length) != r.ContentLength:
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: the upgrade request announced %d bytes of raft data but its body holds %d: something between the nodes changed it", length, r.ContentLength)
	case length > maxEarlyData:
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("rafthttp: %d bytes of raft data in an upgrade request: at most %d are taken", length, maxEarlyData)
	}
	return 0, ""
}

// readEarlyData reads the n bytes of an upgrade request's body, the first
// bytes of raft data, from the hijacked connection's reader, within the
// Handler's timeout; Close ends the wait at once. The body is read before
// the 101 so that the 101 can confirm it. On success it leaves no read
// deadline on the connection (net/http's hijack cleared its own).
func (h *Handler) readEarlyData(conn net.Conn, reader *bufio.Reader, n int64) ([]byte, error) {
	body := make([]byte, n)
	if int64(reader.Buffered()) >= n {
		// Usually the whole body came with the head: no wait, no timer.
		_, err := io.ReadFull(reader, body)
		return body, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(h.currentTimeout())); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(h.ctx, func() { conn.SetReadDeadline(aLongTimeAgo) })
	_, err := io.ReadFull(reader, body)
	stop()
	if err != nil {
		return nil, err
	}
	return body, conn.SetReadDeadline(time.Time{})
}

// tlsRecordOverhead is what TLS adds to the record that carries an upgrade
// request with early data, so that the request still fits one segment
// (maxEarlyRequest) once encrypted; 0 when conn is not TLS. crypto/tls
// sends a write this small as one record.
func tlsRecordOverhead(conn net.Conn) int {
	tlsConn, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return 0
	}
	if tlsConn.ConnectionState().Version >= tls.VersionTLS13 {
		// 5-byte header, 1-byte inner content type, 16-byte AEAD tag.
		return 22
	}
	// TLS 1.2 at worst: 5-byte header, 16-byte CBC IV, 32-byte HMAC-SHA256
	// and up to 16 bytes of padding. AES-GCM needs 29.
	return 69
}

// lazyConn is an upgrade dial to a peer known to take early data, returned
// as soon as it is connected. Its first Write sends the upgrade request
// with as many of the bytes written as fit (see sendRequest) as the
// request's body. The answer is read by the first Read, or by a Write with
// more to send, since bytes behind the body must wait for it.
//
// Each call waits for the answer under its own deadline: a Read under the
// read deadline, a Write under the write deadline; until the caller sets
// one, the dial's deadline bounds both. One caller parses the answer, and
// a deadline that ends its wait fails the upgrade, since half an answer
// cannot be parsed later; another caller whose deadline passes while it
// waits gets a timeout error of its own. A failed upgrade is never
// returned as data: that call returns the *UpgradeError an eager dial
// would have, so does every later Read and Write, and the connection is
// closed.
type lazyConn struct {
	net.Conn
	upgrader *upgrader
	addr     string
	bodyMax  int // the most early data the peer takes
	room     int // the most bytes the request may take on the wire, head and body

	// outcome is set once the answer is in, and ready is closed then.
	outcome atomic.Pointer[upgradeOutcome]
	ready   chan struct{}
	// writable: the upgrade is done and no Write is split around the 101,
	// so Writes may go straight through.
	writable atomic.Bool
	closed   atomic.Bool // Close was called: failures are not the peer's

	writeMu sync.Mutex // held by a Write that waits for the 101

	mu              sync.Mutex
	requested       bool         // the request is written
	body            int          // with this many bytes of early data
	reading         answerWaiter // who parses the answer, once someone does
	dialDeadline    time.Time
	readDeadline    callerDeadline
	writeDeadline   callerDeadline
	deadlineChanged chan struct{} // closed when a deadline changes, if anyone waits
}

// upgradeOutcome is how a lazy upgrade ended: the connection raft reads
// from (the connection itself, or a prefixConn replaying bytes read behind
// the 101), or why it failed.
type upgradeOutcome struct {
	conn net.Conn
	err  error
}

// answerWaiter says which call parses a lazy upgrade's answer.
type answerWaiter int

const (
	noWaiter answerWaiter = iota
	readWaiter
	writeWaiter
)

// callerDeadline is a deadline the caller set, if it set one.
type callerDeadline struct {
	at  time.Time
	set bool
}

func newLazyConn(conn net.Conn, upgrader *upgrader, addr string, bodyMax int, deadline time.Time) *lazyConn {
	return &lazyConn{
		Conn:         conn,
		upgrader:     upgrader,
		addr:         addr,
		bodyMax:      bodyMax,
		room:         maxEarlyRequest - tlsRecordOverhead(conn),
		ready:        make(chan struct{}),
		dialDeadline: deadline,
	}
}

func (c *lazyConn) Read(p []byte) (int, error) {
	outcome := c.outcome.Load()
	if outcome == nil {
		var err error
		if outcome, err = c.await(readWaiter); err != nil {
			return 0, err
		}
	}
	if outcome.err != nil {
		return 0, outcome.err
	}
	return outcome.conn.Read(p)
}

func (c *lazyConn) Write(p []byte) (int, error) {
	if c.writable.Load() {
		return c.Conn.Write(p)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if outcome := c.outcome.Load(); outcome != nil {
		if outcome.err != nil {
			return 0, outcome.err
		}
		c.writable.Store(true)
		return c.Conn.Write(p)
	}
	written, err := c.sendRequest(p)
	if err != nil || written == len(p) {
		return written, err
	}
	// Bytes behind the body wait for the answer: a proxy may not forward
	// them before it, and a refusal must not be followed by raft data.
	outcome, err := c.await(writeWaiter)
	if err == nil {
		err = outcome.err
	}
	if err != nil {
		return written, err
	}
	n, err := c.Conn.Write(p[written:])
	// Only now, with this Write whole on the wire, may others go straight
	// through.
	c.writable.Store(true)
	return written + n, err
}

// sendRequest writes the upgrade request, unless it is written already,
// with as much of data as its body as the peer takes and c.room allows,
// and returns how much that is.
func (c *lazyConn) sendRequest(data []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requested {
		return 0, nil
	}
	c.requested = true
	n := min(len(data), c.bodyMax)
	u := c.upgrader
	head := appendUpgradeRequest(make([]byte, 0, 256+len(u.extra)+n), u.path, c.addr, u.extra, n)
	if over := len(head) + n - c.room; over > 0 {
		n = max(n-over, 0)
		head = appendUpgradeRequest(head[:0], u.path, c.addr, u.extra, n)
	}
	c.body = n
	if _, err := c.Conn.Write(append(head, data[:n]...)); err != nil {
		return 0, c.fail(StepWriteRequest, err).err
	}
	return n, nil
}

// await returns the upgrade's outcome, sending the request first if no
// Write has. The first caller parses the answer, under the deadline of its
// direction; later ones wait for it under theirs, and get a timeout error
// if it passes first.
func (c *lazyConn) await(waiter answerWaiter) (*upgradeOutcome, error) {
	if _, err := c.sendRequest(nil); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if outcome := c.outcome.Load(); outcome != nil {
		c.mu.Unlock()
		return outcome, nil
	}
	if c.reading != noWaiter {
		c.mu.Unlock()
		return c.waitAnswer(waiter)
	}
	c.reading = waiter
	if waiter == writeWaiter {
		// The answer is read, but on behalf of a Write.
		c.Conn.SetReadDeadline(c.deadline(writeWaiter))
	}
	c.mu.Unlock()
	return c.readAnswer(), nil
}

// readAnswer parses the answer to the request and settles the outcome.
func (c *lazyConn) readAnswer() *upgradeOutcome {
	reader, source := newAnswerReader(c.Conn)
	bodyMax, step, err := readUpgradeResponse(reader, source, c.upgrader.clusterID)
	if err == nil && c.body > 0 && bodyMax == 0 {
		// Nothing says the peer read the body: an original node, or a
		// proxy that dropped it. raft's first bytes may be gone.
		step, err = StepUpgradeHeader, fmt.Errorf("101 without %s: the peer did not confirm the %d bytes of raft data sent as the request's body", bodyMaxHeader, c.body)
	}
	if err != nil {
		return c.fail(step, err)
	}
	c.upgrader.peers.learned(c.addr, bodyMax)
	c.mu.Lock()
	defer c.mu.Unlock()
	// The dial's deadline ends with the handshake; the caller's stay.
	c.Conn.SetReadDeadline(c.readDeadline.at)
	c.Conn.SetWriteDeadline(c.writeDeadline.at)
	return c.settle(&upgradeOutcome{conn: bufferedConn(c.Conn, reader)})
}

// waitAnswer waits for another call to settle the outcome, under the
// deadline of waiter's direction as it is now or as it changes.
func (c *lazyConn) waitAnswer(waiter answerWaiter) (*upgradeOutcome, error) {
	for {
		c.mu.Lock()
		deadline := c.deadline(waiter)
		if c.deadlineChanged == nil {
			c.deadlineChanged = make(chan struct{})
		}
		changed := c.deadlineChanged
		c.mu.Unlock()
		var expired <-chan time.Time
		var timer *time.Timer
		if !deadline.IsZero() {
			timer = time.NewTimer(time.Until(deadline))
			expired = timer.C
		}
		select {
		case <-c.ready:
		case <-changed:
		case <-expired:
		}
		if timer != nil {
			timer.Stop()
		}
		if outcome := c.outcome.Load(); outcome != nil {
			return outcome, nil
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			op := "read"
			if waiter == writeWaiter {
				op = "write"
			}
			return nil, &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
		}
	}
}

// deadline is the one that bounds a wait for the answer on behalf of
// waiter's direction. c.mu is held.
func (c *lazyConn) deadline(waiter answerWaiter) time.Time {
	d := c.readDeadline
	if waiter == writeWaiter {
		d = c.writeDeadline
	}
	if d.set {
		return d.at
	}
	return c.dialDeadline
}

// fail settles the outcome as an *UpgradeError for step, closes the
// connection and tells the peer table, unless the failure is the caller's
// own Close. A deadline that ends the wait is reported as an eager dial's
// is, whichever deadline it was.
func (c *lazyConn) fail(step UpgradeStep, err error) *upgradeOutcome {
	closed := c.closed.Load()
	switch {
	case closed:
		err = net.ErrClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	upgradeErr := &UpgradeError{Addr: c.addr, Step: step, Err: err}
	c.Conn.Close()
	if !closed {
		c.upgrader.peers.failed(c.addr, upgradeErr)
	}
	return c.settle(&upgradeOutcome{err: upgradeErr})
}

// settle records the outcome, unless one is recorded already, and wakes
// every call waiting for it. It returns the outcome in force.
func (c *lazyConn) settle(outcome *upgradeOutcome) *upgradeOutcome {
	if !c.outcome.CompareAndSwap(nil, outcome) {
		return c.outcome.Load()
	}
	close(c.ready)
	return outcome
}

func (c *lazyConn) SetDeadline(t time.Time) error {
	return c.setDeadline(t, true, true)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(t, true, false)
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(t, false, true)
}

// setDeadline sets a deadline of the caller's. Before the upgrade is done
// it is also noted, so that the end of the handshake keeps it, and it
// bounds the calls waiting for the answer in its direction.
func (c *lazyConn) setDeadline(t time.Time, read, write bool) error {
	if c.outcome.Load() == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	if c.outcome.Load() != nil {
		switch {
		case read && write:
			return c.Conn.SetDeadline(t)
		case read:
			return c.Conn.SetReadDeadline(t)
		default:
			return c.Conn.SetWriteDeadline(t)
		}
	}
	if c.deadlineChanged != nil {
		close(c.deadlineChanged)
		c.deadlineChanged = nil
	}
	var err error
	if write {
		c.writeDeadline = callerDeadline{at: t, set: true}
		err = c.Conn.SetWriteDeadline(t)
		if c.reading == writeWaiter {
			// A Write is parsing the answer: this deadline is its wait's.
			err = errors.Join(err, c.Conn.SetReadDeadline(t))
		}
	}
	if read {
		c.readDeadline = callerDeadline{at: t, set: true}
		if c.reading != writeWaiter {
			err = errors.Join(err, c.Conn.SetReadDeadline(t))
		}
	}
	return err
}

func (c *lazyConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}
