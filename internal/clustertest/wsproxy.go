package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	// wsProxyDialTimeout bounds connecting to the backend. It is loopback,
	// so the bound is only for a machine loaded by the race detector.
	wsProxyDialTimeout = 5 * time.Second
	// wsProxyHandshakeTimeout bounds the wait for the backend's answer to a
	// relayed upgrade request, and the proxy's reading of a request head.
	wsProxyHandshakeTimeout = 10 * time.Second
	// wsProxyRefusalBodyMax bounds how much of the body of a backend's
	// refusal (an answer other than 101) is relayed to the client: enough
	// for any error message rafthttp sends, and a backend gone wrong cannot
	// make the proxy hold megabytes.
	wsProxyRefusalBodyMax = 64 << 10
	// wsProxyChunk is how much of a frame's payload is read and written at
	// a time: a raft snapshot travels in frames of megabytes, which the
	// proxy streams rather than holds.
	wsProxyChunk = 32 << 10
	// websocketAcceptGUID is the fixed string a server appends to the
	// client's key to prove it understood the handshake (RFC 6455 section
	// 1.3).
	websocketAcceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// WebSocket opcodes (RFC 6455 section 5.2), which are also the keys of
// WebSocketProxyStats.ClientFrames and ServerFrames.
const (
	opContinuation = 0
	opText         = 1
	opBinary       = 2
	opClose        = 8
	opPing         = 9
	opPong         = 10
)

// WebSocketProxy is a strict WebSocket-only HTTP proxy for tests, started
// by StartWebSocketProxy. It forwards plain requests, refuses upgrades to
// anything but WebSocket, and checks every WebSocket handshake and every
// frame it relays against RFC 6455, recording what breaks the rules. Its
// methods are safe for concurrent use.
type WebSocketProxy struct {
	t        testing.TB
	backend  string
	listener net.Listener
	server   *http.Server
	forward  *httputil.ReverseProxy
	// transport carries forwarded plain requests; its idle connections to
	// the backend are closed at cleanup.
	transport *http.Transport
	// served is closed when server.Serve has returned.
	served chan struct{}
	// stopping is canceled when cleanup begins, to end forwarded requests
	// and dials still waiting on the backend.
	stopping       context.Context
	cancelStopping context.CancelFunc
	logs           *log.Logger
	// running counts the server's connection goroutines (from StateNew to
	// StateClosed or StateHijacked) and the upgrade handlers, which go on
	// relaying after the hijack. Cleanup waits for it.
	running sync.WaitGroup

	mu         sync.Mutex
	stats      WebSocketProxyStats
	violations []string
	expected   bool
	// relayed holds the connections of upgrades in progress, both the
	// client's and the backend's, for cleanup to close.
	relayed   map[net.Conn]struct{}
	closed    bool
	lastConnN int
}

// WebSocketProxyStats counts what a WebSocketProxy has relayed. It is a
// snapshot: the proxy's later traffic does not change it.
type WebSocketProxyStats struct {
	// Upgrades counts WebSocket upgrades relayed with a 101.
	Upgrades int
	// Refused counts upgrade requests the proxy refused itself with a 400:
	// an upgrade to something other than WebSocket, or a WebSocket
	// handshake that broke the rules. A backend's refusal is not counted.
	Refused int
	// Requests counts plain (non-upgrade) requests forwarded.
	Requests int
	// ClientFrames and ServerFrames count the frames relayed from client
	// to server and from server to client, keyed by opcode (RFC 6455
	// section 5.2: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10
	// pong). A frame is counted once it has been relayed whole; a frame
	// that broke a rule is not relayed, nor counted.
	ClientFrames, ServerFrames map[int]int
	// ClientBytes and ServerBytes count the payload bytes (not the frame
	// headers) of the frames counted in ClientFrames and ServerFrames.
	ClientBytes, ServerBytes int64
}

// UpstreamConnectTime is the header the proxies of this package set on
// their answers: nginx started by StartNginx on every answer, how long
// connecting to the backend took, and both it and StartWebSocketProxy "-"
// on a 502 when they could not connect, in which case the request never
// reached the backend.
const UpstreamConnectTime = "Upstream-Connect-Time"

// StartWebSocketProxy starts a WebSocketProxy on a free loopback port in
// front of the HTTP server at backend (host:port). A request without an
// Upgrade header is forwarded as it is, redirects included; an upgrade to
// anything but WebSocket is refused with a 400 that names what was asked
// for, which is what a rafthttp node dialing in raw mode gets; a WebSocket
// upgrade is checked, relayed, and its frames checked and relayed both
// ways.
//
// The proxy is stopped, its connections closed and its goroutines waited
// for, when the test ends. The test then fails listing every protocol
// violation the proxy saw, unless it called ExpectViolations.
func StartWebSocketProxy(t testing.TB, backend string) *WebSocketProxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("wsproxy: listen: %v", err)
	}
	logs := log.New(LogWriter(t), "wsproxy: ", 0)
	p := &WebSocketProxy{
		t:        t,
		backend:  backend,
		listener: listener,
		served:   make(chan struct{}),
		logs:     logs,
		relayed:  make(map[net.Conn]struct{}),
		stats: WebSocketProxyStats{
			ClientFrames: make(map[int]int),
			ServerFrames: make(map[int]int),
		},
	}
	p.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: wsProxyDialTimeout}).DialContext,
		MaxIdleConnsPerHost: 16,
	}
	target := &url.URL{Scheme: "http", Host: backend}
	p.forward = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The backend sees the Host the client asked for, as behind the
			// nginx of StartNginx.
			r.Out.Host = r.In.Host
		},
		Transport: p.transport,
		ErrorLog:  logs,
		// As StartNginx's nginx does, the 502 says when the request
		// never reached the backend (see UpstreamConnectTime).
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				w.Header().Set(UpstreamConnectTime, "-")
			}
			logs.Printf("wsproxy: %s %s: %v", r.Method, r.URL.Path, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.server = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: wsProxyHandshakeTimeout,
		ErrorLog:          logs,
		ConnState:         p.trackConn,
	}
	p.stopping, p.cancelStopping = context.WithCancel(context.Background())
	go func() {
		defer close(p.served)
		p.server.Serve(listener)
	}()
	t.Cleanup(p.shutdown)
	return p
}

// Addr returns the host:port the proxy listens on.
func (p *WebSocketProxy) Addr() string { return p.listener.Addr().String() }

// Stats returns a snapshot of the proxy's counters.
func (p *WebSocketProxy) Stats() WebSocketProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	stats := p.stats
	stats.ClientFrames = maps.Clone(p.stats.ClientFrames)
	stats.ServerFrames = maps.Clone(p.stats.ServerFrames)
	return stats
}

// Violations returns the protocol violations seen so far, in order, each a
// sentence naming the connection, the direction or step, and the rule.
func (p *WebSocketProxy) Violations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.violations)
}

// ExpectViolations tells the proxy that the test breaks the protocol on
// purpose: the violations are then logged at cleanup instead of failing
// the test.
func (p *WebSocketProxy) ExpectViolations() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected = true
}

// shutdown closes the listener and every connection, waits for every
// goroutine, and reports the violations.
func (p *WebSocketProxy) shutdown() {
	p.cancelStopping()
	// Close closes the listener and the connections the server still
	// tracks; the hijacked ones are the proxy's to close.
	p.server.Close()
	p.mu.Lock()
	p.closed = true
	for conn := range p.relayed {
		conn.Close()
	}
	p.mu.Unlock()
	// Serve adds to running (at StateNew) until it returns, so running is
	// waited for only after.
	<-p.served
	p.running.Wait()
	p.transport.CloseIdleConnections()

	p.mu.Lock()
	violations, expected := p.violations, p.expected
	p.mu.Unlock()
	if len(violations) == 0 {
		return
	}
	report := "wsproxy in front of " + p.backend + " saw " + plural(len(violations), "protocol violation") +
		":\n\t" + strings.Join(violations, "\n\t")
	if expected {
		p.t.Log(report)
	} else {
		p.t.Errorf("%s", report)
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// trackConn counts the server's connection goroutines in running. The
// StateNew hook runs in Serve's goroutine before the connection's goroutine
// starts, so cleanup, which waits for Serve first, cannot miss one.
func (p *WebSocketProxy) trackConn(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		p.running.Add(1)
	case http.StateHijacked, http.StateClosed:
		p.running.Done()
	}
}

func (p *WebSocketProxy) violation(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.violations = append(p.violations, fmt.Sprintf(format, args...))
}

// track registers a relayed connection for cleanup to close. It reports
// false, having closed conn, once cleanup has begun.
func (p *WebSocketProxy) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		conn.Close()
		return false
	}
	p.relayed[conn] = struct{}{}
	return true
}

func (p *WebSocketProxy) untrack(conn net.Conn) {
	conn.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.relayed, conn)
}

func (p *WebSocketProxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if _, upgrade := r.Header["Upgrade"]; !upgrade {
		p.mu.Lock()
		p.stats.Requests++
		p.mu.Unlock()
		p.forward.ServeHTTP(w, r.WithContext(p.untilShutdown(r.Context())))
		return
	}
	asked := strings.Join(r.Header.Values("Upgrade"), ", ")
	if !slices.ContainsFunc(headerTokens(r.Header, "Upgrade"), isWebSocketToken) {
		// Not a violation: a node dialing in raw mode asks for "raft",
		// and the test wants it to fail with a message that says why.
		p.refuse(w, fmt.Sprintf("wsproxy: this proxy passes only WebSocket upgrades, not %q", asked))
		return
	}
	p.mu.Lock()
	p.lastConnN++
	name := fmt.Sprintf("connection %d (%s %s from %s)", p.lastConnN, r.Method, r.RequestURI, r.RemoteAddr)
	p.mu.Unlock()
	offered, err := checkUpgradeRequest(r)
	if err != nil {
		p.violation("%s, upgrade request: %v", name, err)
		p.refuse(w, "wsproxy: "+err.Error())
		return
	}
	// The handler goes on after the hijack, when the server no longer
	// counts the connection's goroutine; running is above zero here, as
	// it counts this connection.
	p.running.Add(1)
	defer p.running.Done()
	p.relayUpgrade(w, r, name, offered)
}

// untilShutdown returns ctx, canceled too when cleanup begins. A request
// still waiting on the backend then ends instead of holding cleanup up.
func (p *WebSocketProxy) untilShutdown(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.stopping, cancel)
	context.AfterFunc(ctx, func() { stop() })
	return ctx
}

func (p *WebSocketProxy) refuse(w http.ResponseWriter, message string) {
	p.mu.Lock()
	p.stats.Refused++
	p.mu.Unlock()
	w.Header().Set("Connection", "close")
	http.Error(w, message, http.StatusBadRequest)
}

// checkUpgradeRequest checks a WebSocket opening handshake as a server must
// (RFC 6455 section 4.2.1), with the proxy's own requirements on top: a
// subprotocol offered, since rafthttp always offers "raft", and no
// extension, since rafthttp negotiates none and the proxy could not check
// frames an extension changes. It returns the subprotocols offered.
func checkUpgradeRequest(r *http.Request) ([]string, error) {
	if r.Method != http.MethodGet {
		return nil, fmt.Errorf("method %s, not GET", r.Method)
	}
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return nil, fmt.Errorf("protocol %s, not HTTP/1.1", r.Proto)
	}
	if !slices.ContainsFunc(headerTokens(r.Header, "Connection"), isUpgradeToken) {
		return nil, fmt.Errorf("the Connection header %q has no upgrade token", strings.Join(r.Header.Values("Connection"), ", "))
	}
	if upgrade := headerTokens(r.Header, "Upgrade"); len(upgrade) != 1 {
		return nil, fmt.Errorf("the Upgrade header %q asks for more than websocket", strings.Join(upgrade, ", "))
	}
	if version := r.Header.Values("Sec-WebSocket-Version"); len(version) != 1 || version[0] != "13" {
		return nil, fmt.Errorf("Sec-WebSocket-Version %q, not 13", strings.Join(version, ", "))
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return nil, fmt.Errorf("%d Sec-WebSocket-Key headers, not 1", len(keys))
	}
	if nonce, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(nonce) != 16 {
		return nil, fmt.Errorf("Sec-WebSocket-Key %q is not the base64 of 16 bytes", keys[0])
	}
	// A body would be read by the backend as the first frames.
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		return nil, errors.New("the request has a body")
	}
	offered := headerTokens(r.Header, "Sec-WebSocket-Protocol")
	if len(offered) == 0 {
		return nil, errors.New("no Sec-WebSocket-Protocol offered")
	}
	if slices.Contains(offered, "") {
		return nil, fmt.Errorf("Sec-WebSocket-Protocol %q has an empty entry",
			strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), ", "))
	}
	if extensions := r.Header.Values("Sec-WebSocket-Extensions"); len(extensions) > 0 {
		return nil, fmt.Errorf("Sec-WebSocket-Extensions %q offered", strings.Join(extensions, ", "))
	}
	return offered, nil
}

// checkUpgradeResponse checks a backend's 101 as a client must (RFC 6455
// section 4.1, the client's checks of the server's handshake), against the
// key and subprotocols of the request it answers.
func checkUpgradeResponse(resp *http.Response, key string, offered []string) error {
	if upgrade := headerTokens(resp.Header, "Upgrade"); len(upgrade) != 1 || !isWebSocketToken(upgrade[0]) {
		return fmt.Errorf("the Upgrade header %q is not websocket", strings.Join(resp.Header.Values("Upgrade"), ", "))
	}
	if !slices.ContainsFunc(headerTokens(resp.Header, "Connection"), isUpgradeToken) {
		return fmt.Errorf("the Connection header %q has no upgrade token", strings.Join(resp.Header.Values("Connection"), ", "))
	}
	if accept, want := resp.Header.Values("Sec-WebSocket-Accept"), acceptKey(key); len(accept) != 1 || accept[0] != want {
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q for key %q", strings.Join(accept, ", "), want, key)
	}
	// Subprotocol names are compared exactly: RFC 6455 section 4.1 leaves
	// no room for case folding.
	selected := resp.Header.Values("Sec-WebSocket-Protocol")
	if len(selected) != 1 || !slices.Contains(offered, selected[0]) {
		return fmt.Errorf("Sec-WebSocket-Protocol %q selected, not one of those offered (%s)",
			strings.Join(selected, ", "), strings.Join(offered, ", "))
	}
	if extensions := resp.Header.Values("Sec-WebSocket-Extensions"); len(extensions) > 0 {
		return fmt.Errorf("Sec-WebSocket-Extensions %q selected, none offered", strings.Join(extensions, ", "))
	}
	return nil
}

func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + websocketAcceptGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// headerTokens returns the comma-separated entries of every value of the
// header named, trimmed of spaces.
func headerTokens(header http.Header, name string) []string {
	var tokens []string
	for _, value := range header.Values(name) {
		for token := range strings.SplitSeq(value, ",") {
			tokens = append(tokens, strings.TrimSpace(token))
		}
	}
	return tokens
}

// Both tokens are case-insensitive (RFC 6455 section 4.2.1, items 3 and 4).
func isWebSocketToken(token string) bool { return strings.EqualFold(token, "websocket") }
func isUpgradeToken(token string) bool   { return strings.EqualFold(token, "upgrade") }

// relayUpgrade relays a checked WebSocket upgrade request to the backend
// and its answer back, then, on a 101 that passes the checks, the frames
// both ways until either side ends.
func (p *WebSocketProxy) relayUpgrade(w http.ResponseWriter, r *http.Request, name string, offered []string) {
	// Dialed before the hijack, so that a backend that is down is told to
	// the client as an ordinary 502.
	dialer := net.Dialer{Timeout: wsProxyDialTimeout}
	backendConn, err := dialer.DialContext(p.untilShutdown(r.Context()), "tcp", p.backend)
	if err != nil {
		w.Header().Set(UpstreamConnectTime, "-")
		http.Error(w, fmt.Sprintf("wsproxy: dial backend %s: %v", p.backend, err), http.StatusBadGateway)
		return
	}
	if !p.track(backendConn) {
		http.Error(w, "wsproxy: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer p.untrack(backendConn)
	// ResponseController rather than a type assertion to http.Hijacker,
	// so that a wrapped ResponseWriter still hijacks.
	clientConn, clientBuffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, fmt.Sprintf("wsproxy: hijack: %v", err), http.StatusInternalServerError)
		return
	}
	if !p.track(clientConn) {
		return
	}
	defer p.untrack(clientConn)
	// The server's read deadline (ReadHeaderTimeout) would otherwise cut
	// an idle WebSocket connection.
	clientConn.SetDeadline(time.Time{})

	backendConn.SetDeadline(time.Now().Add(wsProxyHandshakeTimeout))
	if err := writeRequestHead(backendConn, r); err != nil {
		p.logs.Printf("%s: write the upgrade request to the backend: %v", name, err)
		return
	}
	// The reader is kept for the frames: whatever the backend sent right
	// behind its 101 is in its buffer already.
	backendReader := bufio.NewReader(backendConn)
	resp, err := http.ReadResponse(backendReader, r)
	if err != nil {
		p.logs.Printf("%s: read the backend's answer to the upgrade: %v", name, err)
		io.WriteString(clientConn, "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		relayRefusal(clientConn, resp)
		return
	}
	if err := checkUpgradeResponse(resp, r.Header.Get("Sec-WebSocket-Key"), offered); err != nil {
		p.violation("%s, backend's 101: %v", name, err)
		return
	}
	backendConn.SetDeadline(time.Time{})
	if err := writeResponseHead(clientConn, resp); err != nil {
		return
	}
	p.mu.Lock()
	p.stats.Upgrades++
	p.mu.Unlock()

	// Each direction closes both connections when it ends, which ends the
	// other: a WebSocket connection is over once either side is gone.
	closeBoth := func() {
		clientConn.Close()
		backendConn.Close()
	}
	toServer := &frameRelay{proxy: p, name: name, direction: "client->server", fromClient: true,
		src: clientBuffered.Reader, dst: backendConn}
	toClient := &frameRelay{proxy: p, name: name, direction: "server->client",
		src: backendReader, dst: clientConn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer closeBoth()
		toServer.run()
	}()
	func() {
		defer closeBoth()
		toClient.run()
	}()
	<-done
}

// writeRequestHead writes the request line and header of r as received,
// with Host, which net/http keeps apart from the other headers.
func writeRequestHead(w io.Writer, r *http.Request) error {
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s %s\r\nHost: %s\r\n", r.Method, r.RequestURI, r.Proto, r.Host)
	r.Header.Write(&head)
	head.WriteString("\r\n")
	_, err := w.Write(head.Bytes())
	return err
}

// writeResponseHead writes a 101's status line and header as received.
// Response.Write is not used: it writes a header or two of its own.
func writeResponseHead(w io.Writer, resp *http.Response) error {
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s\r\n", resp.Proto, resp.Status)
	resp.Header.Write(&head)
	head.WriteString("\r\n")
	_, err := w.Write(head.Bytes())
	return err
}

// relayRefusal relays a backend's answer other than 101 with at most
// wsProxyRefusalBodyMax of its body. The connection is closed after it, so
// the answer says so.
func relayRefusal(w io.Writer, resp *http.Response) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, wsProxyRefusalBodyMax))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Close = true
	resp.Write(w)
}

// frameRelay relays the frames of one direction of a WebSocket connection,
// checking each against RFC 6455 section 5 before relaying it.
type frameRelay struct {
	proxy      *WebSocketProxy
	name       string
	direction  string
	fromClient bool
	src        *bufio.Reader
	dst        io.Writer

	// frames counts the frames read, to name the one that broke a rule.
	frames int
	// message is the opcode of the fragmented message open, or
	// opContinuation when none is.
	message int
	// text checks the UTF-8 of a text message across its frames.
	text utf8Checker
	// closed is set once this side has sent its close frame.
	closed bool
}

// frameViolation is a frame that breaks a rule of RFC 6455.
type frameViolation struct{ rule string }

func (v *frameViolation) Error() string { return v.rule }

func violated(format string, args ...any) error {
	return &frameViolation{rule: fmt.Sprintf(format, args...)}
}

// frameHeader is a frame's header, parsed, and its bytes as received.
type frameHeader struct {
	fin     bool
	rsv     byte
	opcode  int
	masked  bool
	mask    [4]byte
	length  uint64
	raw     [14]byte
	rawSize int
}

// run relays frames until the source ends or a frame breaks a rule, which
// it records. An error reading or writing is how a connection ends here,
// and is not reported.
func (f *frameRelay) run() {
	out := bufio.NewWriterSize(f.dst, wsProxyChunk)
	payload := make([]byte, wsProxyChunk)
	unmasked := make([]byte, wsProxyChunk)
	for {
		err := f.relayFrame(out, payload, unmasked)
		var v *frameViolation
		if errors.As(err, &v) {
			f.proxy.violation("%s, %s, frame %d: %s", f.name, f.direction, f.frames, v.rule)
			return
		}
		if err != nil {
			return
		}
	}
}

func (f *frameRelay) relayFrame(out *bufio.Writer, payload, unmasked []byte) error {
	f.frames++
	header, err := readFrameHeader(f.src)
	if err != nil {
		return err
	}
	if err := f.checkHeader(header); err != nil {
		return err
	}
	if _, err := out.Write(header.raw[:header.rawSize]); err != nil {
		return err
	}
	control := header.opcode >= opClose
	if header.opcode == opText {
		f.text.reset()
	}
	var offset uint64
	for offset < header.length {
		n := int(min(header.length-offset, uint64(len(payload))))
		if _, err := io.ReadFull(f.src, payload[:n]); err != nil {
			return err
		}
		if control || f.message == opText || header.opcode == opText {
			copy(unmasked, payload[:n])
			if header.masked {
				for i := range n {
					unmasked[i] ^= header.mask[(offset+uint64(i))%4]
				}
			}
			// A control payload is at most 125 bytes, so it is whole in
			// one chunk.
			if control {
				if err := f.checkControl(header.opcode, unmasked[:n]); err != nil {
					return err
				}
			} else if !f.text.write(unmasked[:n]) {
				return violated("text payload is not UTF-8 (RFC 6455 section 5.6)")
			}
		}
		// Checked before it is relayed, so a bad payload never reaches
		// the other side.
		if _, err := out.Write(payload[:n]); err != nil {
			return err
		}
		offset += uint64(n)
	}
	if !control {
		if header.opcode != opContinuation {
			f.message = header.opcode
		}
		if header.fin {
			if f.message == opText && !f.text.complete() {
				return violated("text message ends inside a UTF-8 sequence (RFC 6455 section 5.6)")
			}
			f.message = opContinuation
		}
	}
	if header.opcode == opClose {
		f.closed = true
	}
	if err := out.Flush(); err != nil {
		return err
	}
	f.proxy.count(f.fromClient, header.opcode, header.length)
	return nil
}

func (p *WebSocketProxy) count(fromClient bool, opcode int, length uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fromClient {
		p.stats.ClientFrames[opcode]++
		p.stats.ClientBytes += int64(length)
	} else {
		p.stats.ServerFrames[opcode]++
		p.stats.ServerBytes += int64(length)
	}
}

// readFrameHeader reads one frame header (RFC 6455 section 5.2), keeping
// its bytes to relay them as they were. Only the length's encoding is
// checked here, as only here is it seen.
func readFrameHeader(r io.Reader) (frameHeader, error) {
	var h frameHeader
	if _, err := io.ReadFull(r, h.raw[:2]); err != nil {
		return h, err
	}
	h.rawSize = 2
	h.fin = h.raw[0]&0x80 != 0
	h.rsv = h.raw[0] & 0x70
	h.opcode = int(h.raw[0] & 0x0f)
	h.masked = h.raw[1]&0x80 != 0
	h.length = uint64(h.raw[1] & 0x7f)
	switch h.length {
	case 126:
		if _, err := io.ReadFull(r, h.raw[2:4]); err != nil {
			return h, err
		}
		h.rawSize = 4
		h.length = uint64(binary.BigEndian.Uint16(h.raw[2:4]))
		if h.length < 126 {
			return h, violated("%d-byte payload length in the 16-bit form, not the 7-bit one (RFC 6455 section 5.2: the minimal number of bytes must be used)", h.length)
		}
	case 127:
		if _, err := io.ReadFull(r, h.raw[2:10]); err != nil {
			return h, err
		}
		h.rawSize = 10
		h.length = binary.BigEndian.Uint64(h.raw[2:10])
		if h.length>>63 != 0 {
			return h, violated("64-bit payload length with its most significant bit set (RFC 6455 section 5.2)")
		}
		if h.length <= 0xffff {
			return h, violated("%d-byte payload length in the 64-bit form, not a shorter one (RFC 6455 section 5.2: the minimal number of bytes must be used)", h.length)
		}
	}
	if h.masked {
		if _, err := io.ReadFull(r, h.raw[h.rawSize:h.rawSize+4]); err != nil {
			return h, err
		}
		copy(h.mask[:], h.raw[h.rawSize:h.rawSize+4])
		h.rawSize += 4
	}
	return h, nil
}

// checkHeader checks a frame's header against the rules and against the
// frames before it in this direction.
func (f *frameRelay) checkHeader(h frameHeader) error {
	if f.closed {
		return violated("a frame (opcode %d) after this side's close frame (RFC 6455 section 5.5.1)", h.opcode)
	}
	if h.rsv != 0 {
		return violated("reserved bits RSV1-3 %03b set with no extension negotiated (RFC 6455 section 5.2)", h.rsv>>4)
	}
	switch h.opcode {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return violated("reserved opcode %d (RFC 6455 section 5.2)", h.opcode)
	}
	if f.fromClient && !h.masked {
		return violated("unmasked frame from the client (RFC 6455 section 5.1: a client masks every frame)")
	}
	if !f.fromClient && h.masked {
		return violated("masked frame from the server (RFC 6455 section 5.1: a server masks no frame)")
	}
	if h.opcode >= opClose {
		if !h.fin {
			return violated("control frame (opcode %d) with FIN clear (RFC 6455 section 5.5: control frames cannot be fragmented)", h.opcode)
		}
		if h.length > 125 {
			return violated("control frame (opcode %d) with a %d-byte payload (RFC 6455 section 5.5: at most 125)", h.opcode, h.length)
		}
		return nil
	}
	if h.opcode == opContinuation && f.message == opContinuation {
		return violated("continuation frame with no fragmented message open (RFC 6455 section 5.4)")
	}
	if h.opcode != opContinuation && f.message != opContinuation {
		return violated("data frame (opcode %d) inside a fragmented message still open (RFC 6455 section 5.4)", h.opcode)
	}
	return nil
}

// checkControl checks a control frame's unmasked payload.
func (f *frameRelay) checkControl(opcode int, payload []byte) error {
	if opcode != opClose || len(payload) == 0 {
		return nil
	}
	if len(payload) == 1 {
		return violated("close frame with a 1-byte payload (RFC 6455 section 5.5.1: a payload starts with a 2-byte code)")
	}
	code := int(binary.BigEndian.Uint16(payload))
	if !validCloseCode(code) {
		return violated("close frame with code %d, which is reserved or undefined (RFC 6455 section 7.4)", code)
	}
	if !utf8.Valid(payload[2:]) {
		return violated("close frame with a reason that is not UTF-8 (RFC 6455 section 5.5.1)")
	}
	return nil
}

// validCloseCode reports whether code may be sent in a close frame: the
// codes RFC 6455 section 7.4.1 defines and IANA has registered since, less
// those reserved for reporting (1004, 1005, 1006, 1015), and the ranges
// left to libraries and applications (section 7.4.2).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// utf8Checker checks that the payload of a text message, which arrives in
// pieces split anywhere, is UTF-8 as a whole.
type utf8Checker struct {
	// pending holds the start of a character whose remaining bytes are in
	// the next piece.
	pending []byte
}

func (c *utf8Checker) reset() { c.pending = c.pending[:0] }

// write checks the next piece, reporting false at the first byte that
// cannot be UTF-8 whatever follows.
func (c *utf8Checker) write(piece []byte) bool {
	for len(piece) > 0 {
		if len(c.pending) > 0 {
			// Complete the pending character a byte at a time: it is at
			// most 4 bytes long.
			c.pending = append(c.pending, piece[0])
			piece = piece[1:]
			if !utf8.FullRune(c.pending) {
				continue
			}
			if r, size := utf8.DecodeRune(c.pending); r == utf8.RuneError && size == 1 {
				return false
			}
			c.pending = c.pending[:0]
			continue
		}
		if !utf8.FullRune(piece) {
			c.pending = append(c.pending, piece...)
			return true
		}
		r, size := utf8.DecodeRune(piece)
		if r == utf8.RuneError && size == 1 {
			return false
		}
		piece = piece[size:]
	}
	return true
}

// complete reports whether the pieces so far end on a character boundary.
func (c *utf8Checker) complete() bool { return len(c.pending) == 0 }
