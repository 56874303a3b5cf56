package rafthttp

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket mode (LayerConfig.WebSocket): the same raft stream, carried in
// RFC 6455 binary messages after a WebSocket handshake, for the proxies
// that forward WebSocket upgrades and no other (Envoy, and meshes built on
// it, CDNs, managed load balancers). gorilla/websocket does the framing and
// both halves of the handshake; this file runs them over the Layer's own
// connections and the Handler's own hijack, so that Dial, Authorize, the
// cluster ID, the bounds and the metrics are those of a raw upgrade.
// websocket_conn.go turns the messages back into a byte stream for raft.

const (
	// webSocketProtocol is the subprotocol a WebSocket upgrade must offer
	// and the Handler selects: it says the messages carry raft's stream,
	// so that a WebSocket endpoint of something else refuses the dial
	// rather than taking raft's bytes for its own.
	webSocketProtocol = "raft"

	// webSocketUpgrade is the Upgrade token of the WebSocket form.
	webSocketUpgrade = "websocket"

	// clientWriteBuffer is the most of one Write that a dialing end sends
	// in one frame. A client masks what it sends, so gorilla copies each
	// message into a buffer to mask it there, and writes it a buffer at a
	// time. raft's writes run to 256 KiB (its bufio.Writer's size), and a
	// buffer as large sends each in one frame: one system call to write
	// it and one frame header for the reader to parse. With 64 KiB, four
	// of each, replication of 16 KiB entries ran 12-17 % below TCP; with
	// 256 KiB, within noise of it (BENCHMARKS.md).
	clientWriteBuffer = 256 << 10

	// serverWriteBuffer is the most an accepting end copies of each
	// Write: a server does not mask, and gorilla sends what does not fit
	// the buffer straight from the caller's slice, in the same system
	// call (writev). raft's servers write small answers; a larger one up
	// to 64 KiB goes out in one plain write, which measured faster than
	// a 4 KiB copy and a writev of the rest (BenchmarkStream).
	serverWriteBuffer = 64 << 10
)

// The write buffers of every WebSocket connection, by side. gorilla takes
// one from its pool for each message and puts it back once the message is
// written, so an idle connection holds none.
var (
	clientWriteBuffers = &sync.Pool{}
	serverWriteBuffers = &sync.Pool{}
)

// upgradeWebSocket performs a WebSocket handshake on conn, under the
// deadline and ctx as upgrade does, and returns the connection to give
// raft, or the failed step and its error. On failure conn may be closed
// already (gorilla closes it on most errors); the caller closes it again.
func (u *upgrader) upgradeWebSocket(ctx context.Context, conn net.Conn, addr string, deadline time.Time) (_ net.Conn, step UpgradeStep, err error) {
	// A zero deadline clears any the Dial may have left.
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, StepDial, err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
		defer func() {
			if !stop() && err == nil {
				step, err = StepReadResponse, ctx.Err()
			}
		}()
	}
	socket := newWebSocketSocket(conn)
	dialer := websocket.Dialer{
		// The connection is already made, by the Layer's Dial: gorilla
		// only runs its handshake over it. gorilla sets no deadline of its
		// own when given a context without one; the deadline above holds.
		NetDialContext:  func(context.Context, string, string) (net.Conn, error) { return socket, nil },
		Subprotocols:    []string{webSocketProtocol},
		WriteBufferSize: clientWriteBuffer,
		WriteBufferPool: clientWriteBuffers,
	}
	// url.URL escapes what a URL cannot hold as it is, such as the % of
	// an IPv6 zone ("[fe80::1%eth0]:8080"), which gorilla unescapes.
	target := (&url.URL{Scheme: "ws", Host: addr}).String() + u.path
	ws, response, err := dialer.DialContext(context.Background(), target, u.header)
	if err != nil {
		step, err := socket.handshakeFailure(response, err, u.clusterID)
		if step != StepStatus {
			err = contextCause(ctx, deadline, err)
		}
		return nil, step, err
	}
	if got := ws.Subprotocol(); got != webSocketProtocol {
		ws.Close()
		return nil, StepUpgradeHeader, fmt.Errorf("the 101 selects subprotocol %q, not %q: the WebSocket endpoint at this path does not serve raft", got, webSocketProtocol)
	}
	if got := response.Header.Values("Sec-Websocket-Extensions"); len(got) > 0 {
		// gorilla accepts a compression extension it did not offer;
		// raft's stream travels without any.
		ws.Close()
		return nil, StepUpgradeHeader, fmt.Errorf("the 101 enables extensions that were not offered: %q", strings.Join(got, ", "))
	}
	return newWebSocketConn(ws, socket), "", nil
}

// handshakeFailure names the step of a failed client handshake and its
// cause: gorilla returns the answer with ErrBadHandshake when it is not a
// good 101, and bare I/O errors otherwise.
func (s *webSocketSocket) handshakeFailure(response *http.Response, err error, clusterID string) (UpgradeStep, error) {
	if errors.Is(err, websocket.ErrBadHandshake) && response != nil {
		if response.StatusCode != http.StatusSwitchingProtocols {
			return StepStatus, refusal(response, clusterID)
		}
		return StepUpgradeHeader, fmt.Errorf("a 101 that does not complete the WebSocket handshake (Upgrade %q, Connection %q, Sec-WebSocket-Accept %q)",
			response.Header.Get("Upgrade"), response.Header.Get("Connection"), response.Header.Get("Sec-Websocket-Accept"))
	}
	if response != nil {
		// A 101 gorilla refused after reading it: an extension it
		// could not take.
		return StepUpgradeHeader, err
	}
	if !s.wrote.Load() {
		return StepWriteRequest, err
	}
	// net/http reports a header line cut short by a deadline or a reset
	// as a malformed one; the socket kept what really happened.
	if cause := s.readErr(); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%v)", cause, err)
	}
	return StepReadResponse, err
}

// checkWebSocketUpgrade validates what is the Handler's to check of a
// WebSocket upgrade before gorilla checks the handshake itself, and
// returns the status and reason to refuse it with, or 0.
func checkWebSocketUpgrade(r *http.Request) (int, string) {
	// The handshake itself, which gorilla checks again, is checked here
	// first so that a malformed one is refused at once, before it takes
	// a place among the pending upgrades or waits for the backlog.
	switch {
	case !websocket.IsWebSocketUpgrade(r):
		return http.StatusBadRequest, "rafthttp: a WebSocket upgrade needs Connection: Upgrade"
	case !headerHasToken(r.Header.Values("Sec-Websocket-Version"), "13"):
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: unsupported WebSocket version %q: only 13 is served (Sec-WebSocket-Version)",
			strings.Join(r.Header.Values("Sec-Websocket-Version"), ", "))
	case !validWebSocketKey(r.Header.Get("Sec-Websocket-Key")):
		return http.StatusBadRequest, "rafthttp: a WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64"
	}
	// Read as gorilla reads it to select the subprotocol for the 101, so
	// that a request let through here gets "raft" selected: the first
	// header line's list, names compared exactly.
	if !slices.Contains(websocket.Subprotocols(r), webSocketProtocol) {
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: a WebSocket upgrade must offer the %q subprotocol (Sec-WebSocket-Protocol: %s); offered: %q",
			webSocketProtocol, webSocketProtocol, strings.Join(r.Header.Values("Sec-Websocket-Protocol"), ", "))
	}
	if r.ContentLength != 0 {
		// RFC 6455 leaves no room for a body before the 101, and
		// gorilla refuses a peer that sends bytes before it: early data
		// is the raw form's alone.
		return http.StatusBadRequest, "rafthttp: a WebSocket upgrade request carries no body"
	}
	return 0, ""
}

// validWebSocketKey reports whether key is a Sec-WebSocket-Key: the
// base64 of 16 bytes.
func validWebSocketKey(key string) bool {
	decoded, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(decoded) == 16
}

// serveWebSocket serves a WebSocket upgrade: the same checks, bounds and
// queue as a raw upgrade, with gorilla writing the 101 on the connection
// the Handler hijacks.
func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	// Every refusal names the version served, as RFC 6455 section 4.4
	// asks of one that refuses another version; the 101 is written after
	// the hijack and does not carry it.
	w.Header().Set("Sec-Websocket-Version", "13")
	if status, reason := checkWebSocketUpgrade(r); status != 0 {
		h.refuse(w, r, status, reason)
		return
	}
	if status, reason := h.admitUpgrade(); status != 0 {
		h.refuse(w, r, status, reason)
		return
	}
	delivered := false
	defer func() { h.finishUpgrade(delivered) }()
	if !h.takeSlot(w, r) {
		return
	}
	hijacker := &webSocketHijacker{ResponseWriter: w, handler: h, request: r}
	upgrader := websocket.Upgrader{
		// Bounds the write of the 101, as for a raw upgrade.
		HandshakeTimeout: h.currentTimeout(),
		Subprotocols:     []string{webSocketProtocol},
		WriteBufferSize:  serverWriteBuffer,
		WriteBufferPool:  serverWriteBuffers,
		// Refusals before the hijack (a malformed handshake, a foreign
		// Origin) are answered, logged and counted as the Handler's own.
		// Origin is left to gorilla's check: raft peers send none, and a
		// browser's must name this host, so a page elsewhere cannot open
		// raft connections with the user's credentials.
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			if !hijacker.hijacked {
				h.refuse(w, r, status, "rafthttp: "+reason.Error())
			}
		},
	}
	ws, err := upgrader.Upgrade(hijacker, r, nil)
	if err != nil {
		h.releaseSlot()
		if hijacker.socket != nil {
			// The 101 could not be written: gorilla closed the
			// connection.
			h.logger.Warn("WebSocket upgrade failed after hijacking", "remote-address", r.RemoteAddr, "path", r.URL.Path, "error", err)
		}
		return
	}
	countAnswer(r, http.StatusSwitchingProtocols)
	delivered = h.deliver(newWebSocketConn(ws, hijacker.socket), r)
}

// webSocketHijacker hands gorilla the connection the Handler hijacks, in
// the socket wrapper that keeps raft's write deadlines (see
// webSocketSocket). It finds Hijack as the Handler does for a raw
// upgrade, through middleware that implements Unwrap, which gorilla's own
// type assertion would miss.
//
// A client that sent bytes behind its request, before the 101, breaks RFC
// 6455, and gorilla would drop the connection without a word; it gets a
// 400 saying why instead.
type webSocketHijacker struct {
	http.ResponseWriter
	handler *Handler
	request *http.Request
	// hijacked: the connection is taken, and no answer can go through the
	// ResponseWriter any more; socket is set if it went to gorilla.
	hijacked bool
	socket   *webSocketSocket
}

// errDataBeforeHandshake fails a hijack whose client did not wait for the
// 101; the client has had its 400.
var errDataBeforeHandshake = errors.New("the client sent data before the 101")

func (h *webSocketHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			err = errors.New("cannot take over this connection: the ResponseWriter does not support hijacking (HTTP/2, or a middleware that hides http.Hijacker without an Unwrap method)")
		}
		return nil, nil, err
	}
	h.hijacked = true
	if rw.Reader.Buffered() > 0 {
		h.handler.refuseHijacked(conn, h.request, http.StatusBadRequest,
			"rafthttp: bytes arrived behind a WebSocket upgrade request: a WebSocket client sends nothing before the 101")
		return nil, nil, errDataBeforeHandshake
	}
	h.socket = newWebSocketSocket(conn)
	return h.socket, rw, nil
}

func (h *webSocketHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
