package rafthttp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// closeFrameTimeout bounds the write of the close frame that Close sends.
// It goes out at once when the socket's send buffer has room; when it has
// none, the peer is not reading, and waiting longer would only hold up
// Close, which on a raw connection never waits, and Layer.Close, which
// closes its connections one after another. A close frame that does not
// go is no loss: the peer reads the connection's end between messages as
// the end of the stream all the same.
const closeFrameTimeout = 5 * time.Millisecond

// normalClosure is the payload of the close frame Close sends.
var normalClosure = websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")

// errPeerClosed is the cause of a write after the peer closed the
// connection with a close frame, which was answered.
var errPeerClosed = errors.New("the peer closed the WebSocket connection")

// webSocketConn is the connection raft gets in WebSocket mode: a byte
// stream, as on a raw connection. Each Write goes out as one binary
// message; Read yields the payloads of the peer's binary messages back to
// back, so message boundaries carry no meaning, and reads and writes of any
// size work as on TCP.
//
// It behaves as a raw connection would where raft can tell:
//   - a close frame with status 1000 or 1001 or none, or the connection
//     ending between messages (or inside the header of a message's first
//     frame), reads as io.EOF, as a peer's FIN does; a connection cut
//     inside a message reads as io.ErrUnexpectedEOF;
//   - a deadline that passes fails the blocked or next call with an error
//     that is a net.Error whose Timeout is true and that matches
//     os.ErrDeadlineExceeded, and setting one unblocks a call in progress;
//   - after Close, calls fail with an error matching net.ErrClosed;
//   - Read and Write may be called from several goroutines at once.
//
// One difference is WebSocket's: a Read or Write that fails, a deadline's
// included, fails every later one in that direction, because a frame cut
// short cannot be resumed. raft closes a connection after any error, so it
// never sees this.
//
// Pings are answered with pongs by the reader, under the caller's write
// deadline as raft's own writes are (see answerPing), and a close frame
// with a close frame; Close sends one (see closeFrameTimeout).
type webSocketConn struct {
	ws     *websocket.Conn
	socket *webSocketSocket

	readMu  sync.Mutex
	reader  io.Reader // the message being read; nil between messages
	readErr error     // once set, every Read returns it

	writeMu  sync.Mutex
	writeErr error // once set, every Write returns it

	closed atomic.Bool
	// refused is why this end closed the connection on the peer, having
	// read something raft's stream cannot hold; nil if it did not.
	refused atomic.Pointer[error]
}

func newWebSocketConn(ws *websocket.Conn, socket *webSocketSocket) *webSocketConn {
	c := &webSocketConn{ws: ws, socket: socket}
	ws.SetPingHandler(c.answerPing)
	return c
}

// answerPing answers a ping with a pong carrying its payload. gorilla's
// own handler gives the pong a second, taken before it waits for the
// write side: a pong that waits behind a frame of a large raft write and
// then finds the socket full would time out, and a timed-out write fails
// the write side for good, under a raft write that set no deadline. This
// one sets no deadline of its own, so the caller's write deadline bounds
// it, as it bounds raft's writes. A pong that cannot be sent fails
// neither direction by itself: the write side finds out on its own.
func (c *webSocketConn) answerPing(payload string) error {
	c.ws.WriteControl(websocket.PongMessage, []byte(payload), time.Time{})
	return nil
}

func (c *webSocketConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.closed.Load() {
			return 0, c.opError("read", net.ErrClosed)
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.reader == nil {
			kind, reader, err := c.ws.NextReader()
			if err != nil {
				c.readErr = c.readError(err, true)
				continue
			}
			if kind != websocket.BinaryMessage {
				c.readErr = errors.New("rafthttp: the peer sent a WebSocket text message: raft's stream travels in binary messages")
				c.refused.Store(&c.readErr)
				c.ws.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseUnsupportedData, "raft's stream travels in binary messages"),
					time.Now().Add(closeFrameTimeout))
				continue
			}
			c.reader = reader
		}
		n, err := c.reader.Read(p)
		switch {
		case err == io.EOF:
			c.reader = nil
		case err != nil:
			c.readErr = c.readError(err, false)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// readError translates an error of gorilla's read side into the one a raw
// connection would return. atBoundary says the message before was read to
// its end.
func (c *webSocketConn) readError(err error, atBoundary bool) error {
	if c.closed.Load() {
		return c.opError("read", net.ErrClosed)
	}
	var closeErr *websocket.CloseError
	if errors.As(err, &closeErr) {
		switch closeErr.Code {
		// CloseAbnormalClosure: the connection ended without a close
		// frame, which gorilla reports whether or not a message was cut
		// short; atBoundary tells.
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived, websocket.CloseAbnormalClosure:
			if atBoundary {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		return fmt.Errorf("rafthttp: the peer closed the WebSocket connection: %w", err)
	}
	return c.ioError("read", err)
}

// ioError turns gorilla's form of a timeout back into the one a raw
// connection returns: gorilla hides the underlying error behind one of its
// own that keeps only Timeout, which errors.Is(err,
// os.ErrDeadlineExceeded) would not match.
func (c *webSocketConn) ioError(op string, err error) error {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return c.opError(op, os.ErrDeadlineExceeded)
	}
	return err
}

func (c *webSocketConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "websocket", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *webSocketConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		switch {
		case c.closed.Load():
			err = c.opError("write", net.ErrClosed)
		case errors.Is(err, websocket.ErrCloseSent) && c.refused.Load() != nil:
			err = c.opError("write", fmt.Errorf("the connection was closed on the peer: %w", *c.refused.Load()))
		case errors.Is(err, websocket.ErrCloseSent):
			err = c.opError("write", errPeerClosed)
		default:
			err = c.ioError("write", err)
		}
		c.writeErr = err
		return 0, err
	}
	return len(p), nil
}

// Close sends a close frame, if no Write holds the connection and the
// frame can go at once, and closes the connection. A Read or Write in
// progress returns an error matching net.ErrClosed.
func (c *webSocketConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.opError("close", net.ErrClosed)
	}
	if c.writeMu.TryLock() {
		c.ws.WriteControl(websocket.CloseMessage, normalClosure, time.Now().Add(closeFrameTimeout))
		c.writeMu.Unlock()
	}
	return c.ws.Close()
}

func (c *webSocketConn) LocalAddr() net.Addr  { return c.socket.LocalAddr() }
func (c *webSocketConn) RemoteAddr() net.Addr { return c.socket.RemoteAddr() }

func (c *webSocketConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *webSocketConn) SetReadDeadline(t time.Time) error {
	return c.socket.Conn.SetReadDeadline(t)
}

func (c *webSocketConn) SetWriteDeadline(t time.Time) error {
	return c.socket.setCallerWriteDeadline(t)
}

// webSocketSocket is the connection under gorilla. gorilla sets the write
// deadline of the socket before every frame it writes: its own, for a
// control frame, or the one given to its SetWriteDeadline for a message.
// That one is a plain field, which a call from another goroutine would
// race with a Write in progress, and it only takes effect at the next
// frame, so a Write blocked on a peer that does not read could not be
// ended by setting a deadline, as it can on a raw connection. So gorilla
// is never given one: the caller's write deadline is kept here, applied
// to the socket at once, and combined with each deadline gorilla sets, the
// earlier of the two winning.
//
// During a client handshake it also records what net/http's parser would
// hide: whether the request went out, and the first read error.
type webSocketSocket struct {
	net.Conn

	mu             sync.Mutex
	callerDeadline time.Time // the caller's write deadline
	ownDeadline    time.Time // gorilla's, for the frame it writes

	wrote        atomic.Bool // a write went out whole: the handshake's request did
	readMu       sync.Mutex
	firstReadErr error
}

func newWebSocketSocket(conn net.Conn) *webSocketSocket {
	return &webSocketSocket{Conn: conn}
}

// SetWriteDeadline is gorilla's.
func (s *webSocketSocket) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ownDeadline = t
	return s.Conn.SetWriteDeadline(earlier(t, s.callerDeadline))
}

// SetDeadline is gorilla's, around a handshake.
func (s *webSocketSocket) SetDeadline(t time.Time) error {
	if err := s.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

func (s *webSocketSocket) setCallerWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callerDeadline = t
	return s.Conn.SetWriteDeadline(earlier(t, s.ownDeadline))
}

// earlier returns the earlier of two deadlines, zero meaning none.
func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func (s *webSocketSocket) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	if err == nil {
		s.wrote.Store(true)
	}
	return n, err
}

func (s *webSocketSocket) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if err != nil {
		s.readMu.Lock()
		if s.firstReadErr == nil {
			s.firstReadErr = err
		}
		s.readMu.Unlock()
	}
	return n, err
}

func (s *webSocketSocket) readErr() error {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return s.firstReadErr
}
