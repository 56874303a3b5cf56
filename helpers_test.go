package rafthttp_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// The helpers of every test in this package: servers, peers and layers to
// test against, reads and writes bounded by testWait, and the recorders
// that let a test check what happened instead of waiting to see whether
// something does. The real-cluster tests (integration_test.go) build on
// internal/clustertest instead.

// testWait bounds every wait in this package's tests for something that
// should happen promptly; it only decides how long a failing test takes.
// It is half of the Handler's DefaultTimeout, so that a Handler that waits
// out its default instead of a configured bound fails the test instead of
// answering within it.
const testWait = rafthttp.DefaultTimeout / 2

const (
	// raftPath is where the tests mount the Handler, and where the Layers
	// and membership clients they build send their requests.
	raftPath = "/raft"

	// shortTimeout is a Handler timeout short enough for a test to wait
	// out.
	shortTimeout = 200 * time.Millisecond

	// longTimeout is a Handler timeout no test waits out: an answer that
	// arrives within testWait was caused by something else.
	longTimeout = time.Minute
)

// The 101s on the wire, byte for byte.
const (
	switchingHead = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\n"

	// original101 is the answer of a node running the original package:
	// no Connection header.
	original101 = switchingHead + "\r\n"

	// handler101 is a Handler's answer to a request that says nothing of
	// early data, such as an original node's.
	handler101 = switchingHead + "Connection: Upgrade\r\n\r\n"

	// handlerEarly101 is a Handler's answer to a request with
	// Rafthttp-Body, even announcing no body: it confirms the body and
	// states the largest the Handler takes, maxEarlyData.
	handlerEarly101 = switchingHead + "Connection: Upgrade\r\nRafthttp-Body-Max: 4096\r\n\r\n"

	// peerEarly101 is a scripted peer's answer that takes early data of up
	// to 100 bytes: less than a Handler's limit, so that tests see the
	// Layer keep to the peer's.
	peerEarly101 = switchingHead + "Connection: Upgrade\r\nRafthttp-Body-Max: 100\r\n\r\n"
)

// maxEarlyData is the largest body a Handler takes (Rafthttp-Body-Max).
const maxEarlyData = 4096

// advertised is the address the tests' Layers advertise unless told
// otherwise; nothing listens there.
var advertised = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 8080}

// errInjected is the failure the tests' wrappers inject.
var errInjected = errors.New("injected failure")

// receive waits, bounded by testWait, for a value on ch, failing the test
// with what it was waiting for.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(testWait)
	defer timer.Stop()
	select {
	case value := <-ch:
		return value
	case <-timer.C:
		t.Fatalf("waited %v for %s", testWait, what)
		panic("unreachable")
	}
}

// within calls f and requires it to return within timeout. If it does
// not, the test fails with the stack of every goroutine: a call that
// hangs, such as a shutdown step, is a deadlock, and the stacks show
// where it waits. It returns how long f took. f runs in its own
// goroutine, so it must not call t.FailNow.
func within(t *testing.T, what string, timeout time.Duration, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return time.Since(start)
	case <-timer.C:
		var stacks strings.Builder
		pprof.Lookup("goroutine").WriteTo(&stacks, 2)
		t.Fatalf("%s did not return within %v; every goroutine:\n%s", what, timeout, stacks.String())
		panic("unreachable")
	}
}

// waitPast returns once the clock has passed deadline. It is for tests
// whose subject is a deadline or a timeout, which only the clock can pass;
// a wait for another goroutine is a receive, never this.
func waitPast(deadline time.Time) {
	if wait := time.Until(deadline); wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		<-timer.C
	}
}

// Logs.

// logBuffer keeps what is logged to it, for a test to search, and copies
// it to t.Log through clustertest's writer, which goes quiet once the test
// has ended: a goroutine that outlives the test may still log.
type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	copyTo io.Writer
}

func newLogBuffer(t testing.TB) *logBuffer {
	return &logBuffer{copyTo: clustertest.LogWriter(t)}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	return l.copyTo.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// jsonLines parses the logs of a logger created with JSON output.
func (l *logBuffer) jsonLines() []map[string]any {
	var lines []map[string]any
	for line := range strings.SplitSeq(l.String(), "\n") {
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) == nil {
			lines = append(lines, fields)
		}
	}
	return lines
}

// newTestLogger returns a debug logger named rafthttp that writes to the
// returned buffer, as JSON lines if jsonFormat.
func newTestLogger(t testing.TB, jsonFormat bool) (hclog.Logger, *logBuffer) {
	logs := newLogBuffer(t)
	logger := hclog.New(&hclog.LoggerOptions{
		Name: "rafthttp", Output: logs, Level: hclog.Debug, JSONFormat: jsonFormat,
	})
	return logger, logs
}

// Servers with a Handler.

type serverOptions struct {
	// config configures the Handler; a nil Logger logs to the test.
	config rafthttp.HandlerConfig
	// handler, if set, is used instead of one built from config.
	handler *rafthttp.Handler
	// path is where the Layer sends its upgrades; empty means raftPath.
	path string
	// pattern mounts the Handler on the ServeMux; empty means path.
	pattern string
	// tls serves TLS instead of plain HTTP.
	tls bool
	// tlsConfig, if set, is the TLS server's config (Certificates empty
	// means httptest's own), for client certificates.
	tlsConfig *tls.Config
	// http2 offers HTTP/2 over TLS, first, as http.Server.ServeTLS does.
	http2 bool
	// wrap, if set, wraps the server's root handler (middleware).
	wrap func(http.Handler) http.Handler
	// configure, if set, adjusts the http.Server before it starts.
	configure func(*http.Server)
	// jsonLogs makes the default logger write JSON lines.
	jsonLogs bool
	// recordWire records the server's connections in testServer.wire.
	recordWire bool
	// clientHeaders are header lines ("Name: value") that the test's own
	// requests to the server carry (upgradeHead, tryDo): the credentials
	// or cluster ID its Handler asks for.
	clientHeaders []string
}

// testServer is a loopback HTTP server with a Handler mounted on a
// ServeMux and the Layer that accepts its upgraded connections.
type testServer struct {
	*httptest.Server
	path    string
	handler *rafthttp.Handler
	layer   *rafthttp.Layer
	logs    *logBuffer
	// wire is nil unless serverOptions.recordWire.
	wire *wireLog
	// clientHeaders is serverOptions.clientHeaders.
	clientHeaders []string
}

// startServer starts a testServer that is shut down when the test ends:
// Layer (and with it the Handler) first, so that no request is left
// waiting, then the HTTP server.
func startServer(t *testing.T, options serverOptions) *testServer {
	t.Helper()
	logger, logs := newTestLogger(t, options.jsonLogs)
	handler := options.handler
	if handler == nil {
		config := options.config
		if config.Logger == nil {
			config.Logger = logger
		}
		handler = rafthttp.NewHandlerWithConfig(config)
	}
	path := cmp.Or(options.path, raftPath)
	mux := http.NewServeMux()
	mux.Handle(cmp.Or(options.pattern, path), handler)
	var root http.Handler = mux
	if options.wrap != nil {
		root = options.wrap(root)
	}
	server := httptest.NewUnstartedServer(root)
	server.Config.ErrorLog = logger.StandardLogger(&hclog.StandardLoggerOptions{})
	if options.configure != nil {
		options.configure(server.Config)
	}
	var wire *wireLog
	if options.recordWire {
		wire = &wireLog{}
		server.Listener = wire.wrap(server.Listener)
	}
	switch {
	case options.http2:
		server.EnableHTTP2 = true
		server.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
		server.StartTLS()
		require.Contains(t, server.TLS.NextProtos, "h2", "the server offers HTTP/2")
	case options.tls:
		server.TLS = options.tlsConfig
		server.StartTLS()
	default:
		server.Start()
	}
	t.Cleanup(server.Close)
	t.Cleanup(handler.Close)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: path, Addr: server.Listener.Addr(), Handler: handler, Logger: logger,
	})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, layer.Close()) })
	return &testServer{Server: server, path: path, handler: handler, layer: layer, logs: logs, wire: wire,
		clientHeaders: options.clientHeaders}
}

func (s *testServer) addr() string { return s.Listener.Addr().String() }

func (s *testServer) raftAddr() raft.ServerAddress { return raft.ServerAddress(s.addr()) }

// dialRaw opens a TCP (or, for a TLS server, TLS) connection to the server,
// closed when the test ends. Its deadline bounds every read of the test.
func (s *testServer) dialRaw(t *testing.T) net.Conn {
	t.Helper()
	dialer := &net.Dialer{Timeout: testWait}
	var conn net.Conn
	var err error
	if s.TLS != nil {
		config := trust(s.Server)
		config.NextProtos = []string{"http/1.1"}
		conn, err = tls.DialWithDialer(dialer, "tcp", s.addr(), config)
	} else {
		conn, err = dialer.Dial("tcp", s.addr())
	}
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(testWait)))
	return conn
}

// upgradeHead is the head of an upgrade request as this package's Dial
// sends it, with the server's clientHeaders and the extra header lines.
func (s *testServer) upgradeHead(headers ...string) string {
	lines := append([]string{"Upgrade: raft", "Connection: Upgrade"}, s.clientHeaders...)
	return requestHead(http.MethodGet, s.path, s.addr(), append(lines, headers...)...)
}

// upgrade opens a raw connection, asks for an upgrade without early data,
// and requires the exact 101.
func (s *testServer) upgrade(t *testing.T) net.Conn {
	t.Helper()
	conn := s.dialRaw(t)
	write(t, conn, s.upgradeHead())
	require101(t, conn)
	return conn
}

// upgradeWithBody opens a raw connection, asks for an upgrade with body as
// early data, and requires the 101 that confirms it.
func (s *testServer) upgradeWithBody(t *testing.T, body string) net.Conn {
	t.Helper()
	conn := s.dialRaw(t)
	write(t, conn, s.upgradeHead(announceBody(len(body))...)+body)
	require.Equal(t, handlerEarly101, readFull(t, conn, len(handlerEarly101)))
	return conn
}

// accept returns the next connection the Layer accepts, within testWait,
// and closes it when the test ends. It leaves the connection's deadlines
// alone: some tests check that the Handler cleared those the HTTP server
// set.
func (s *testServer) accept(t *testing.T) net.Conn {
	t.Helper()
	r := receive(t, acceptAsync(s.layer.Accept), "Layer.Accept to return a connection")
	require.NoError(t, r.err)
	t.Cleanup(func() { r.conn.Close() })
	return r.conn
}

// connect dials the server from client and returns both ends of the
// upgraded connection.
func (s *testServer) connect(t *testing.T, client *rafthttp.Layer) (dialed, accepted net.Conn) {
	t.Helper()
	dialed = dialConn(t, client, s.addr(), testWait)
	return dialed, s.accept(t)
}

// connectWriting is connect for a client that may send early data, whose
// dial sends its request only with the first Write: it writes raft's
// first bytes on the dialed end and requires them on the accepted one.
func (s *testServer) connectWriting(t *testing.T, client *rafthttp.Layer) (dialed, accepted net.Conn) {
	t.Helper()
	const first = "raft's first bytes"
	dialed = dialConn(t, client, s.addr(), testWait)
	write(t, dialed, first)
	accepted = s.accept(t)
	require.Equal(t, first, readFull(t, accepted, len(first)))
	return dialed, accepted
}

// requireNextAccepted upgrades a new connection and requires that it is
// the next one Accept returns: a refused request that had reached the
// backlog would come out first, and a backlog slot it kept would leave a
// Handler with Backlog 1 no room (503). Accept returns connections in the
// order they were queued, so this is a bounded check with no waiting out.
func (s *testServer) requireNextAccepted(t *testing.T) {
	t.Helper()
	const marker = "first bytes of the upgrade after the refusal"
	client := s.upgradeWithBody(t, marker)
	accepted := s.accept(t)
	require.Equal(t, marker, readFull(t, accepted, len(marker)), "Accept returned some other connection first")
	exchange(t, client, accepted)
}

// httpClient returns a client for the server that reports redirects
// instead of following them.
func (s *testServer) httpClient() *http.Client {
	client := *s.Client()
	client.Timeout = testWait
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client
}

type httpResponse struct {
	status int
	header http.Header
	body   string
	// close: the answer ends its connection (Connection: close, which
	// net/http takes out of header).
	close bool
}

// tryDo sends a membership request with the given raw query. It is safe to
// call from any goroutine.
func (s *testServer) tryDo(ctx context.Context, method, query string) (httpResponse, error) {
	target := s.URL + s.path
	if query != "" {
		target += "?" + query
	}
	request, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return httpResponse{}, err
	}
	for _, line := range s.clientHeaders {
		name, value, _ := strings.Cut(line, ":")
		request.Header.Add(name, strings.TrimSpace(value))
	}
	response, err := s.httpClient().Do(request)
	if err != nil {
		return httpResponse{}, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return httpResponse{status: response.StatusCode, header: response.Header, body: string(body)}, err
}

func (s *testServer) do(t *testing.T, method, query string) httpResponse {
	t.Helper()
	response, err := s.tryDo(t.Context(), method, query)
	require.NoError(t, err)
	return response
}

// trust returns a TLS client config that trusts the servers' certificates.
func trust(servers ...*httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	for _, server := range servers {
		pool.AddCert(server.Certificate())
	}
	return &tls.Config{RootCAs: pool}
}

func transportName(useTLS bool) string {
	if useTLS {
		return "tls"
	}
	return "tcp"
}

// requestTracker signals when requests enter and leave the handler it
// wraps, so a test knows a request is being served without sleeping.
type requestTracker struct {
	entered chan struct{}
	left    chan struct{}
}

func newRequestTracker() *requestTracker {
	return &requestTracker{entered: make(chan struct{}, 64), left: make(chan struct{}, 64)}
}

func (tr *requestTracker) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.entered <- struct{}{}
		defer func() { tr.left <- struct{}{} }()
		next.ServeHTTP(w, r)
	})
}

// requestRecorder is middleware that records every request that reaches
// the server, as the Handler behind it will see it: a test counts the
// requests a client made, or checks the headers each carried.
type requestRecorder struct {
	mu       sync.Mutex
	requests []seenRequest
}

func (rec *requestRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.requests = append(rec.requests, newSeenRequest(r))
		rec.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// seen returns the requests recorded so far.
func (rec *requestRecorder) seen() []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.requests)
}

// fullBacklog is a Handler with Backlog 1, which an upgrade nobody
// accepts fills, and a second upgrade that waits in the Handler for room.
type fullBacklog struct {
	server  *testServer
	tracker *requestTracker
	// first fills the backlog; waiting asked for its upgrade at sent.
	first, waiting net.Conn
	sent           time.Time
}

// startFullBacklog starts a fullBacklog whose Handler has timeout, and
// whose server records its connections in server.wire.
func startFullBacklog(t *testing.T, timeout time.Duration) *fullBacklog {
	t.Helper()
	b := &fullBacklog{tracker: newRequestTracker()}
	b.server = startServer(t, serverOptions{
		config:     rafthttp.HandlerConfig{Backlog: 1, Timeout: timeout},
		wrap:       b.tracker.wrap,
		recordWire: true,
	})
	b.first = b.server.upgrade(t)
	receive(t, b.tracker.entered, "the first upgrade to reach the handler")
	receive(t, b.tracker.left, "the first upgrade to leave the handler")
	b.waiting = b.server.dialRaw(t)
	b.sent = time.Now()
	write(t, b.waiting, requestHead(http.MethodGet, raftPath, b.server.addr(), "Upgrade: raft"))
	receive(t, b.tracker.entered, "the second upgrade to reach the handler")
	return b
}

// wireLog records the reads and writes of a test server's connections,
// in order with the marks a test sets, so that the test can check when
// the server answered: only after a step of the test's own, or only once
// it had read the whole request. Waiting out a silence instead would pass
// for an answer sent a moment too late to be seen.
type wireLog struct {
	mu     sync.Mutex
	marks  int
	read   map[string]int64 // bytes read from each client, by its address
	writes map[string][]wireWrite
}

// wireWrite is one Write of the server to a client.
type wireWrite struct {
	read  int64 // bytes the server had read from that client by then
	marks int   // marks the test had set by then
}

func (l *wireLog) wrap(listener net.Listener) net.Listener {
	return &wireListener{Listener: listener, log: l}
}

// mark records a step of the test and returns how many it has marked.
func (l *wireLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks++
	return l.marks
}

// readFrom is how many bytes the server has read from client.
func (l *wireLog) readFrom(client net.Conn) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read[client.LocalAddr().String()]
}

// writesTo lists the server's writes to client.
func (l *wireLog) writesTo(client net.Conn) []wireWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.writes[client.LocalAddr().String()])
}

// awaitRead waits until the server has read more than n bytes from client.
func (l *wireLog) awaitRead(t *testing.T, client net.Conn, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return l.readFrom(client) > n }, testWait, time.Millisecond,
		"the server read nothing past byte %d from the client", n)
}

// requireWritesAfter requires that the server wrote to client, and only
// after the test's mark numbered mark.
func (l *wireLog) requireWritesAfter(t *testing.T, client net.Conn, mark int, what string) {
	t.Helper()
	writes := l.writesTo(client)
	require.NotEmpty(t, writes, "the server wrote nothing to the client")
	for _, w := range writes {
		require.GreaterOrEqual(t, w.marks, mark, "%s: the server wrote to the client before it", what)
	}
}

type wireListener struct {
	net.Listener
	log *wireLog
}

func (w *wireListener) Accept() (net.Conn, error) {
	conn, err := w.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: conn, log: w.log, client: conn.RemoteAddr().String()}, nil
}

type wireConn struct {
	net.Conn
	log    *wireLog
	client string
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.log.mu.Lock()
	if c.log.read == nil {
		c.log.read = make(map[string]int64)
	}
	c.log.read[c.client] += int64(n)
	c.log.mu.Unlock()
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	c.log.mu.Lock()
	if c.log.writes == nil {
		c.log.writes = make(map[string][]wireWrite)
	}
	c.log.writes[c.client] = append(c.log.writes[c.client], wireWrite{read: c.log.read[c.client], marks: c.log.marks})
	c.log.mu.Unlock()
	return c.Conn.Write(p)
}

// answerRequests consumes the Handler's Requests until Close closes it. It
// passes each request to the test on the returned channel, then answers it
// with outcome's result; a nil outcome takes requests but never answers.
func answerRequests(t *testing.T, handler *rafthttp.Handler, outcome func(*raftmembership.ChangeRequest) error) <-chan *raftmembership.ChangeRequest {
	taken := make(chan *raftmembership.ChangeRequest, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for request := range handler.Requests() {
			select {
			case taken <- request:
			default:
			}
			if outcome != nil {
				request.Done(outcome(request))
			}
		}
	}()
	t.Cleanup(func() {
		handler.Close()
		// Not receive: a Fatal in a cleanup would skip the others.
		select {
		case <-done:
		case <-time.After(testWait):
			t.Error("a range over Requests did not end after Handler.Close")
		}
	})
	return taken
}

func answerWith(err error) func(*raftmembership.ChangeRequest) error {
	return func(*raftmembership.ChangeRequest) error { return err }
}

// closeWithin closes the Handler and requires Close to return promptly.
func closeWithin(t *testing.T, handler *rafthttp.Handler) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		handler.Close()
	}()
	receive(t, closed, "Handler.Close to return")
}

// Stand-ins for the ResponseWriters of other servers and middleware.

// unwrappingWriter is the ResponseWriter of a typical middleware: it hides
// http.Hijacker but exposes the writer it wraps, as net/http asks of
// wrappers.
type unwrappingWriter struct{ http.ResponseWriter }

func (w unwrappingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// opaqueWriter hides http.Hijacker and offers no way to the writer it wraps.
type opaqueWriter struct{ http.ResponseWriter }

// fakeHijacker is a ResponseWriter that hands over a connection the test
// chose, standing in for servers that behave differently from net/http's.
type fakeHijacker struct {
	*httptest.ResponseRecorder
	conn     *recordingConn
	hijacked bool
}

func newFakeHijacker(conn net.Conn) *fakeHijacker {
	return &fakeHijacker{ResponseRecorder: httptest.NewRecorder(), conn: newRecordingConn(conn)}
}

func (w *fakeHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// newFailingHijacker returns a hijacker whose connection cannot be
// written to, as when the peer vanished before the 101.
func newFailingHijacker(t *testing.T) *fakeHijacker {
	local, remote := net.Pipe()
	require.NoError(t, remote.Close()) // every write to local now fails
	t.Cleanup(func() { local.Close() })
	return newFakeHijacker(local)
}

// upgradeRequest is an upgrade request to serve with a fakeHijacker.
func upgradeRequest() *http.Request {
	request := httptest.NewRequest(http.MethodGet, raftPath, nil)
	request.Header.Set("Upgrade", "raft")
	return request
}

// Raw peers.

// rawPeer starts a TCP server whose every connection is handled by serve,
// byte by byte: a stand-in for a peer that misbehaves or runs the original
// package. Each connection is closed when serve returns and has a
// deadline, so a serve that waits for a client that never comes still
// ends. It returns the server's address.
func rawPeer(t testing.TB, serve func(conn net.Conn)) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		listener.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			conn.SetDeadline(time.Now().Add(2 * testWait))
			wg.Go(func() {
				defer conn.Close()
				serve(conn)
			})
		}
	})
	return listener.Addr().String()
}

// peerRequest is an upgrade request as a raw peer read it.
type peerRequest struct {
	line   string
	header textproto.MIMEHeader
	// announced is the Rafthttp-Body header ("" without one), length the
	// Content-Length header.
	announced, length string
	body              string
}

// eager reports whether the request came from a dial that waits for the
// 101: one that announced no early data.
func (r peerRequest) eager() bool { return r.length == "" }

// withoutHeader is the request less its header map, to compare whole.
func (r peerRequest) withoutHeader() peerRequest {
	r.header = nil
	return r
}

// upgradePeer starts a raw peer that reads each connection's upgrade
// request, body included, delivers it on the returned channel, and then
// lets answer (given the connection's number, from 0) write the answer
// and serve.
func upgradePeer(t *testing.T, answer func(i int, conn net.Conn, reader *bufio.Reader)) (string, <-chan peerRequest) {
	t.Helper()
	requests := make(chan peerRequest, 64)
	var count atomic.Int64
	addr := rawPeer(t, func(conn net.Conn) {
		i := int(count.Add(1) - 1)
		reader, line, header, err := readHead(conn)
		if err != nil {
			return
		}
		request := peerRequest{line: line, header: header, announced: header.Get("Rafthttp-Body"), length: header.Get("Content-Length")}
		if n, err := strconv.Atoi(request.length); err == nil {
			body := make([]byte, n)
			if _, err := io.ReadFull(reader, body); err != nil {
				return
			}
			request.body = string(body)
		}
		select {
		case requests <- request:
		default:
			t.Errorf("more than %d upgrade requests left unread", cap(requests))
		}
		answer(i, conn, reader)
	})
	return addr, requests
}

// answerThenEcho returns an upgradePeer answer that writes answer and
// then echoes what the client sends.
func answerThenEcho(answer string) func(int, net.Conn, *bufio.Reader) {
	return func(_ int, conn net.Conn, reader *bufio.Reader) {
		if _, err := io.WriteString(conn, answer); err == nil {
			io.Copy(conn, reader)
		}
	}
}

// echoEarly answers with peerEarly101 and echoes what follows.
var echoEarly = answerThenEcho(peerEarly101)

// answerThenAwaitClose returns an upgradePeer answer that writes answer
// and waits for the client to close.
func answerThenAwaitClose(answer string) func(int, net.Conn, *bufio.Reader) {
	return func(_ int, conn net.Conn, reader *bufio.Reader) {
		if _, err := io.WriteString(conn, answer); err == nil {
			awaitClosed(reader)
		}
	}
}

// readHead reads an HTTP request head: its request line and its headers.
// The reader it returns holds whatever the client sent after the head.
func readHead(conn net.Conn) (*bufio.Reader, string, textproto.MIMEHeader, error) {
	reader := bufio.NewReader(conn)
	text := textproto.NewReader(reader)
	line, err := text.ReadLine()
	if err != nil {
		return reader, "", nil, err
	}
	header, err := text.ReadMIMEHeader()
	return reader, line, header, err
}

// readToClose reads until the client closes its end and returns what it
// read, with a nil error once the client has closed (EOF, or a reset when
// the client closed with our bytes still unread), and the read error, a
// timeout, if it never does.
func readToClose(reader io.Reader) readResult {
	data, err := io.ReadAll(reader)
	if errors.Is(err, syscall.ECONNRESET) {
		err = nil
	}
	return readResult{string(data), err}
}

// awaitClosed reads until the client closes its end, as readToClose.
func awaitClosed(reader io.Reader) error { return readToClose(reader).err }

// Layers and their dials.

// newLayer returns a Layer built from config, closed when the test ends.
// A zero Path is raftPath; a nil Addr, advertised; a nil Handler, one that
// is mounted nowhere, so that the Layer only dials; a nil Logger logs to
// the test. Unless config says EagerHandshake, its dials learn early data.
func newLayer(t *testing.T, config rafthttp.LayerConfig) *rafthttp.Layer {
	t.Helper()
	logger := clustertest.DebugLogger(t, "layer")
	config.Path = cmp.Or(config.Path, raftPath)
	if config.Addr == nil {
		config.Addr = advertised
	}
	if config.Handler == nil {
		config.Handler = rafthttp.NewHandlerWithLogger(logger)
	}
	if config.Logger == nil {
		config.Logger = logger
	}
	layer, err := rafthttp.NewLayerWithConfig(config)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, layer.Close()) })
	return layer
}

// eagerLayer returns a Layer that only dials, with dial (nil: TCP), and
// waits for each 101, so that each Dial that returns has an Accept to pair
// with; the early data tests dial the default way.
func eagerLayer(t *testing.T, dial rafthttp.Dial) *rafthttp.Layer {
	t.Helper()
	return newLayer(t, rafthttp.LayerConfig{Dial: dial, EagerHandshake: true})
}

// learnedLayer returns a Layer built from config that has dialed the
// upgradePeer at addr once, and so learned whether it takes early data.
func learnedLayer(t *testing.T, addr string, requests <-chan peerRequest, config rafthttp.LayerConfig) *rafthttp.Layer {
	t.Helper()
	layer := newLayer(t, config)
	dialConn(t, layer, addr, testWait)
	receive(t, requests, "the request that learns")
	return layer
}

// dialEarly dials the upgradePeer at addr, which takes early data, with a
// Layer that has learned so and whose connections report each Read they
// start on reading. It writes body, which goes out as the body of the
// request, and returns once the peer has read that request.
func dialEarly(t *testing.T, addr string, requests <-chan peerRequest, body string) (layer *rafthttp.Layer, conn net.Conn, reading <-chan struct{}) {
	t.Helper()
	dial, reading := readWatchingDial()
	layer = learnedLayer(t, addr, requests, rafthttp.LayerConfig{Dial: dial})
	drain(reading)
	conn = dialConn(t, layer, addr, testWait)
	write(t, conn, body)
	require.Equal(t, body, receive(t, requests, "the request with early data").body)
	return layer, conn, reading
}

// dialConn dials addr and closes the conn when the test ends.
func dialConn(t *testing.T, layer *rafthttp.Layer, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	conn, err := layer.Dial(raft.ServerAddress(addr), timeout)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// connResult is what a call that returns a connection returned.
type connResult struct {
	conn net.Conn
	err  error
}

// acceptAsync calls accept in a goroutine and delivers its result. The
// goroutine ends at the latest when the Layer or Handler is closed.
func acceptAsync(accept func() (net.Conn, error)) <-chan connResult {
	results := make(chan connResult, 1)
	go func() {
		conn, err := accept()
		results <- connResult{conn, err}
	}()
	return results
}

// closeEachAccepted closes every connection accept returns until it
// reports net.ErrClosed, and then closes the channel it returns.
func closeEachAccepted(accept func() (net.Conn, error)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				conn.Close()
			}
		}
	}()
	return done
}

// blockingDial is a Dial stuck in its connect until release is closed, as a
// dial to an unresponsive host is; the connection it then makes, which is
// never used, is delivered on made.
func blockingDial() (dial rafthttp.Dial, entered, release chan struct{}, made chan *recordingConn) {
	entered = make(chan struct{}, 1)
	release = make(chan struct{})
	made = make(chan *recordingConn, 1)
	dial = func(string, time.Duration) (net.Conn, error) {
		entered <- struct{}{}
		<-release
		conn := newRecordingConn(nil)
		made <- conn
		return conn, nil
	}
	return dial, entered, release, made
}

// requireUpgradeError asserts that err is an *UpgradeError for addr and
// returns it.
func requireUpgradeError(t *testing.T, err error, addr string) *rafthttp.UpgradeError {
	t.Helper()
	require.Error(t, err)
	var upgradeErr *rafthttp.UpgradeError
	require.ErrorAs(t, err, &upgradeErr)
	assert.Equal(t, addr, upgradeErr.Addr)
	assert.Contains(t, err.Error(), addr, "the error names the target")
	return upgradeErr
}

// recordingConn wraps a connection handed to the code under test: it
// records the deadlines set on it and its Close, can be made to fail
// SetDeadline or Write, and reports every Read on reading, if set, as it
// starts: a test learns that the client waits for its peer without
// waiting out a silence. Its Conn may be nil for a connection that is
// never used.
type recordingConn struct {
	net.Conn
	failSetDeadline bool
	failWrite       bool
	reading         chan<- struct{}
	// onClose runs on the first Close.
	onClose func()

	mu        sync.Mutex
	deadlines []time.Time
	writes    []int // the size of each Write
	closeOnce sync.Once
	closed    chan struct{}
}

func newRecordingConn(conn net.Conn) *recordingConn {
	return &recordingConn{Conn: conn, closed: make(chan struct{})}
}

func (c *recordingConn) SetDeadline(deadline time.Time) error {
	c.mu.Lock()
	c.deadlines = append(c.deadlines, deadline)
	c.mu.Unlock()
	if c.failSetDeadline {
		return errInjected
	}
	return c.Conn.SetDeadline(deadline)
}

func (c *recordingConn) Read(p []byte) (int, error) {
	if c.reading != nil {
		select {
		case c.reading <- struct{}{}:
		default:
		}
	}
	return c.Conn.Read(p)
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	if c.failWrite {
		return 0, errInjected
	}
	return c.Conn.Write(p)
}

func (c *recordingConn) Close() error {
	var err error
	if c.Conn != nil {
		err = c.Conn.Close()
	}
	c.closeOnce.Do(func() {
		close(c.closed)
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

func (c *recordingConn) wasClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// takeWrites returns the sizes of the Writes since the last call.
func (c *recordingConn) takeWrites() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	writes := c.writes
	c.writes = nil
	return writes
}

func (c *recordingConn) recorded() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.deadlines)
}

// readWatchingDial returns a TCP Dial whose connections report on the
// returned channel each time a Read on them starts.
func readWatchingDial() (rafthttp.Dial, <-chan struct{}) {
	reading := make(chan struct{}, 64)
	tcp := rafthttp.NewDialTCP()
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := tcp(addr, timeout)
		if err != nil {
			return nil, err
		}
		watched := newRecordingConn(conn)
		watched.reading = reading
		return watched, nil
	}, reading
}

// drain takes what is pending on ch without waiting.
func drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// Reading and writing raw connections.

// requestHead is an HTTP/1.1 request head with the given header lines.
func requestHead(method, target, host string, headers ...string) string {
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, header := range headers {
		head.WriteString(header + "\r\n")
	}
	head.WriteString("\r\n")
	return head.String()
}

// announceBody is what a rafthttp dial sends with a body of n bytes.
func announceBody(n int) []string {
	count := strconv.Itoa(n)
	return []string{"Rafthttp-Body: " + count, "Content-Length: " + count}
}

// randomBytes returns n bytes of binary data, the same for the same seed:
// raft's bytes are not text, and CR LF or NUL in a body must not confuse
// anyone.
func randomBytes(n int, seed byte) string {
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(data)
	return string(data)
}

func write(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	_, err := io.WriteString(conn, s)
	require.NoError(t, err)
}

type readResult struct {
	data string
	err  error
}

// readAsync starts reading exactly n bytes from conn and delivers what it
// read.
func readAsync(conn net.Conn, n int) <-chan readResult {
	read := make(chan readResult, 1)
	go func() {
		data := make([]byte, n)
		n, err := io.ReadFull(conn, data)
		read <- readResult{string(data[:n]), err}
	}()
	return read
}

// readEach reads conn a byte at a time, delivering what each Read returned,
// until one fails.
func readEach(conn net.Conn) <-chan readResult {
	results := make(chan readResult, 16)
	go func() {
		for {
			buf := make([]byte, 1)
			n, err := conn.Read(buf)
			results <- readResult{string(buf[:n]), err}
			if err != nil {
				return
			}
		}
	}()
	return results
}

// readFull reads exactly n bytes within testWait without touching the
// connection's deadlines.
func readFull(t *testing.T, conn net.Conn, n int) string {
	t.Helper()
	r := receive(t, readAsync(conn, n), fmt.Sprintf("%d bytes from %s", n, conn.RemoteAddr()))
	require.NoError(t, r.err)
	return r.data
}

// require101 reads a Handler's 101 to a request without early data.
func require101(t *testing.T, conn net.Conn) {
	t.Helper()
	require.Equal(t, handler101, readFull(t, conn, len(handler101)))
}

// transfer sends msg from one end of a connection to the other.
func transfer(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	write(t, from, msg)
	require.Equal(t, msg, readFull(t, to, len(msg)))
}

// exchange checks that raft bytes flow both ways.
func exchange(t *testing.T, dialed, accepted net.Conn) {
	t.Helper()
	transfer(t, dialed, accepted, "request from the dialing node")
	transfer(t, accepted, dialed, "response from the serving node")
	transfer(t, dialed, accepted, "second request")
}

// roundTrip writes out on conn, to a peer that echoes, and reads back
// len(want) bytes.
func roundTrip(t *testing.T, conn net.Conn, out, want string) {
	t.Helper()
	write(t, conn, out)
	assert.Equal(t, want, readFull(t, conn, len(want)))
}

// readResponse reads one HTTP response from a raw connection.
func readResponse(t *testing.T, reader *bufio.Reader, method string) httpResponse {
	t.Helper()
	response, err := http.ReadResponse(reader, &http.Request{Method: method})
	require.NoError(t, err)
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	require.NoError(t, err)
	return httpResponse{status: response.StatusCode, header: response.Header, body: string(body), close: response.Close}
}

// readUntilClosed reads everything the other end sends until it closes the
// connection, within testWait: whatever it wrote before its answer is in
// there too.
func readUntilClosed(t *testing.T, conn net.Conn) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testWait)))
	data, err := io.ReadAll(conn)
	require.NoError(t, err, "read until the other end closes; got %d bytes so far: %.200q", len(data), data)
	return string(data)
}

// requirePlainText checks that an error answer explains itself.
func requirePlainText(t *testing.T, response httpResponse) {
	t.Helper()
	assert.True(t, strings.HasPrefix(response.header.Get("Content-Type"), "text/plain"),
		"Content-Type %q", response.header.Get("Content-Type"))
	assert.NotEmpty(t, strings.TrimSpace(response.body), "an error answer needs a reason")
}

// requireRetryAfter checks the header that tells a client when to retry.
func requireRetryAfter(t *testing.T, response httpResponse) {
	t.Helper()
	seconds, err := strconv.Atoi(response.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", response.header.Get("Retry-After"))
	require.GreaterOrEqual(t, seconds, 0)
}

// requireSameBytes compares data too long and too binary for a readable
// diff: it says how long each is and where they first differ.
func requireSameBytes(t *testing.T, want, got, what string) {
	t.Helper()
	if want == got {
		return
	}
	at := 0
	for at < min(len(want), len(got)) && want[at] == got[at] {
		at++
	}
	t.Fatalf("%s: got %d bytes, want %d; they differ from byte %d on", what, len(got), len(want), at)
}

// Scripted servers for the membership client.

// seenRequest is what a scripted server, or a requestRecorder, saw of
// one request.
type seenRequest struct {
	Method        string
	Path          string
	RawQuery      string
	Query         url.Values
	Host          string
	TLS           bool
	At            time.Time
	Header        http.Header
	ContentLength int64
	RemoteAddr    string
}

func newSeenRequest(r *http.Request) seenRequest {
	return seenRequest{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query(),
		Host: r.Host, TLS: r.TLS != nil, At: time.Now(),
		Header: r.Header.Clone(), ContentLength: r.ContentLength, RemoteAddr: r.RemoteAddr,
	}
}

// upgrade reports whether the request asked for an upgrade.
func (r seenRequest) upgrade() bool { return r.Header.Get("Upgrade") != "" }

// scriptedServer is a loopback HTTP server whose answers a test scripts.
// It records every request and counts the connections it opened and saw
// closed, so tests can check that the client leaves none behind.
type scriptedServer struct {
	*httptest.Server
	addr string
	// errors holds what net/http logged, such as TLS handshake errors.
	errors *logBuffer

	mu       sync.Mutex
	requests []seenRequest

	opened atomic.Int64
	closed atomic.Int64
}

// respondFunc answers the nth (1-based) request a server receives.
type respondFunc func(w http.ResponseWriter, r *http.Request, n int)

// respondOK answers every request with 200.
func respondOK(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusOK) }

// newScriptedServer starts a plain HTTP server answering with respond.
func newScriptedServer(t *testing.T, respond respondFunc) *scriptedServer {
	return startScriptedServer(t, respond, false, nil)
}

// newScriptedTLSServer starts a TLS server answering with respond.
func newScriptedTLSServer(t *testing.T, respond respondFunc) *scriptedServer {
	return startScriptedServer(t, respond, true, nil)
}

// startScriptedServer starts a server answering with respond, over TLS if
// useTLS, on listener if it is not nil.
func startScriptedServer(t *testing.T, respond respondFunc, useTLS bool, listener net.Listener) *scriptedServer {
	t.Helper()
	s := &scriptedServer{errors: newLogBuffer(t)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, newSeenRequest(r))
		n := len(s.requests)
		s.mu.Unlock()
		respond(w, r, n)
	}))
	s.Config.ErrorLog = log.New(s.errors, "", 0)
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	if listener != nil {
		s.Listener.Close()
		s.Listener = listener
	}
	if useTLS {
		s.StartTLS()
	} else {
		s.Start()
	}
	s.addr = s.Listener.Addr().String()
	t.Cleanup(s.Close)
	return s
}

// seen returns the requests received so far.
func (s *scriptedServer) seen() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// count returns how many requests were received.
func (s *scriptedServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// requireConnsClosed waits until every connection the server accepted has
// been closed: the client drained and closed what it opened, leaving no
// idle connection behind.
func (s *scriptedServer) requireConnsClosed(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return s.closed.Load() == s.opened.Load() },
		testWait, 5*time.Millisecond, "server %s: %d connections opened, %d closed", s.addr, s.opened.Load(), s.closed.Load())
}

// redirectTo answers with a redirect of the given status to the same path
// and query at addr, with scheme; an empty scheme gives the Location a
// Handler sends for a follower, "//addr/path?query".
func redirectTo(scheme, addr string, status int) respondFunc {
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		location := url.URL{Scheme: scheme, Host: addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, location.String(), status)
	}
}

// dialRecorder wraps a Dial: it records every address dialed and every
// error returned, and tracks whether the client closed each connection.
type dialRecorder struct {
	dial rafthttp.Dial

	mu     sync.Mutex
	addrs  []string
	errors []error
	conns  []*recordingConn
	// failed receives one value per failed dial, if not nil.
	failed chan error
}

func recordDial(dial rafthttp.Dial) *dialRecorder {
	return &dialRecorder{dial: dial}
}

func (d *dialRecorder) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := d.dial(addr, timeout)
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	if err != nil {
		d.errors = append(d.errors, err)
	}
	var recorded *recordingConn
	// Checked by err, not conn: a failed Dial may return a non-nil
	// interface holding a nil pointer.
	if err == nil {
		recorded = newRecordingConn(conn)
		d.conns = append(d.conns, recorded)
	}
	d.mu.Unlock()
	if err != nil && d.failed != nil {
		select {
		case d.failed <- err:
		default:
		}
	}
	if err != nil {
		return nil, err
	}
	return recorded, nil
}

func (d *dialRecorder) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.addrs)
}

func (d *dialRecorder) failures() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.errors)
}

// requireClosed waits until the client has closed every connection it
// dialed: none is left idle or half-read.
func (d *dialRecorder) requireClosed(t *testing.T) {
	t.Helper()
	open := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		n := 0
		for _, conn := range d.conns {
			if !conn.wasClosed() {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return open() == 0 }, testWait, 5*time.Millisecond,
		"the client left %d connections open", open())
}

// requireAllClosed waits until the client has closed every connection it
// dialed through dial and the servers have seen every one of theirs
// closed.
func requireAllClosed(t *testing.T, dial *dialRecorder, servers ...*scriptedServer) {
	t.Helper()
	dial.requireClosed(t)
	for _, server := range servers {
		server.requireConnsClosed(t)
	}
}

// closeHookDial wraps dial so that onClose runs when the client first
// closes a connection it dialed: for a membership request, once it has read
// the answer.
func closeHookDial(dial rafthttp.Dial, onClose func()) rafthttp.Dial {
	var once sync.Once
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := dial(addr, timeout)
		if err != nil {
			return nil, err
		}
		hooked := newRecordingConn(conn)
		hooked.onClose = func() { once.Do(onClose) }
		return hooked, nil
	}
}

// endingContext is a context the test ends when it chooses, with the error
// it chooses: with context.DeadlineExceeded, a deadline that passes at an
// exact point of the client's work.
type endingContext struct {
	context.Context
	err  error
	done chan struct{}
	once sync.Once
}

func newEndingContext(err error) *endingContext {
	return &endingContext{Context: context.Background(), err: err, done: make(chan struct{})}
}

func (c *endingContext) Done() <-chan struct{} { return c.done }

func (c *endingContext) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *endingContext) end() { c.once.Do(func() { close(c.done) }) }
