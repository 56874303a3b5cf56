package rafthttp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// hdSwitchingProtocols is, byte for byte, what a peer must read when its
// upgrade is accepted.
const hdSwitchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nConnection: Upgrade\r\n\r\n"

const (
	// hdPath is where these tests mount the Handler.
	hdPath = "/raft"

	// hdWait bounds every wait that should end. It is generous for
	// a loaded machine under -race, yet half of DefaultTimeout, so a Handler
	// that waits out its default instead of honouring a bound fails.
	hdWait = 5 * time.Second

	// hdShort is a Handler timeout short enough to wait out.
	hdShort = 100 * time.Millisecond

	// hdLong is a Handler timeout no test waits out: an answer
	// that arrives within hdWait was caused by something else.
	hdLong = time.Minute
)

// hdLogs collects a Handler's log output and copies it to t.Log while
// the test runs; output after the test ended, from a connection goroutine
// that outlived it, is kept but not passed to t.Log, which would panic.
type hdLogs struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	buf  bytes.Buffer
}

func (l *hdLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *hdLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// jsonLines parses the logs of a logger created with JSON output.
func (l *hdLogs) jsonLines() []map[string]any {
	var lines []map[string]any
	for line := range strings.SplitSeq(l.String(), "\n") {
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) == nil {
			lines = append(lines, fields)
		}
	}
	return lines
}

func newHDLogger(t testing.TB, jsonFormat bool) (hclog.Logger, *hdLogs) {
	logs := &hdLogs{t: t}
	t.Cleanup(func() {
		logs.mu.Lock()
		logs.done = true
		logs.mu.Unlock()
	})
	logger := hclog.New(&hclog.LoggerOptions{
		Name: "rafthttp", Output: logs, Level: hclog.Debug, JSONFormat: jsonFormat,
	})
	return logger, logs
}

type hdServerOptions struct {
	// config configures the Handler; a nil Logger logs to the test.
	config rafthttp.HandlerConfig
	// handler, if set, is used instead of one built from config.
	handler *rafthttp.Handler
	// path is where the Handler is mounted; empty means hdPath.
	path string
	// tls serves TLS instead of plain HTTP.
	tls bool
	// wrap, if set, wraps the server's root handler (middleware).
	wrap func(http.Handler) http.Handler
	// configure, if set, adjusts the http.Server before it starts.
	configure func(*http.Server)
	// jsonLogs makes the default logger write JSON lines.
	jsonLogs bool
}

// hdServer is a loopback HTTP server with a Handler mounted on a
// ServeMux and the Layer that accepts its upgraded connections.
type hdServer struct {
	*httptest.Server
	path    string
	handler *rafthttp.Handler
	layer   *rafthttp.Layer
	logs    *hdLogs
}

// startHDServer starts a hdServer that is shut down when the test
// ends: Layer (and with it the Handler) first, so that no request is left
// waiting, then the HTTP server.
func startHDServer(t *testing.T, options hdServerOptions) *hdServer {
	t.Helper()
	logger, logs := newHDLogger(t, options.jsonLogs)
	handler := options.handler
	if handler == nil {
		config := options.config
		if config.Logger == nil {
			config.Logger = logger
		}
		handler = rafthttp.NewHandlerWithConfig(config)
	}
	path := options.path
	if path == "" {
		path = hdPath
	}
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	var root http.Handler = mux
	if options.wrap != nil {
		root = options.wrap(root)
	}
	server := httptest.NewUnstartedServer(root)
	if options.configure != nil {
		options.configure(server.Config)
	}
	if options.tls {
		server.StartTLS()
	} else {
		server.Start()
	}
	t.Cleanup(server.Close)
	t.Cleanup(handler.Close)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: path, Addr: server.Listener.Addr(), Handler: handler, Logger: logger,
	})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })
	return &hdServer{Server: server, path: path, handler: handler, layer: layer, logs: logs}
}

func (s *hdServer) addr() string { return s.Listener.Addr().String() }

// dialRaw opens a TCP (or, for a TLS server, TLS) connection to the server,
// closed when the test ends. Its deadline bounds every read of the test.
func (s *hdServer) dialRaw(t *testing.T) net.Conn {
	t.Helper()
	dialer := &net.Dialer{Timeout: hdWait}
	var conn net.Conn
	var err error
	if s.TLS != nil {
		roots := x509.NewCertPool()
		roots.AddCert(s.Certificate())
		conn, err = tls.DialWithDialer(dialer, "tcp", s.addr(), &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
	} else {
		conn, err = dialer.Dial("tcp", s.addr())
	}
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(hdWait)))
	return conn
}

// upgrade opens a raw connection, asks for an upgrade as this package's
// Dial does, and requires the exact 101.
func (s *hdServer) upgrade(t *testing.T) net.Conn {
	t.Helper()
	conn := s.dialRaw(t)
	hdWrite(t, conn, hdRequestHead(http.MethodGet, s.path, s.addr(), "Upgrade: raft", "Connection: Upgrade"))
	hdRequire101(t, conn)
	return conn
}

// accept returns the next connection the Layer accepts, within
// hdWait. It leaves the connection's deadlines alone: some tests
// check that the Handler cleared those the HTTP server set.
func (s *hdServer) accept(t *testing.T) net.Conn {
	t.Helper()
	type result struct {
		conn net.Conn
		err  error
	}
	accepted := make(chan result, 1)
	go func() {
		conn, err := s.layer.Accept()
		accepted <- result{conn, err}
	}()
	r := receive(t, accepted, "Layer.Accept to return a connection")
	require.NoError(t, r.err)
	t.Cleanup(func() { r.conn.Close() })
	return r.conn
}

// httpClient returns a client for the server that reports redirects
// instead of following them.
func (s *hdServer) httpClient() *http.Client {
	client := *s.Client()
	client.Timeout = hdWait
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client
}

type hdResponse struct {
	status int
	header http.Header
	body   string
}

// tryDo sends a membership request with the given raw query. It is safe to
// call from any goroutine.
func (s *hdServer) tryDo(ctx context.Context, method, query string) (hdResponse, error) {
	target := s.URL + s.path
	if query != "" {
		target += "?" + query
	}
	request, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return hdResponse{}, err
	}
	response, err := s.httpClient().Do(request)
	if err != nil {
		return hdResponse{}, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return hdResponse{status: response.StatusCode, header: response.Header, body: string(body)}, err
}

func (s *hdServer) do(t *testing.T, method, query string) hdResponse {
	t.Helper()
	response, err := s.tryDo(t.Context(), method, query)
	require.NoError(t, err)
	return response
}

// hdRequestHead is an HTTP/1.1 request head with the given header lines.
func hdRequestHead(method, target, host string, headers ...string) string {
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, header := range headers {
		head.WriteString(header + "\r\n")
	}
	head.WriteString("\r\n")
	return head.String()
}

func hdWrite(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	_, err := io.WriteString(conn, s)
	require.NoError(t, err)
}

// hdReadFull reads exactly n bytes within hdWait without touching
// the connection's deadlines.
func hdReadFull(t *testing.T, conn net.Conn, n int) string {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	read := make(chan result, 1)
	go func() {
		data := make([]byte, n)
		_, err := io.ReadFull(conn, data)
		read <- result{data, err}
	}()
	r := receive(t, read, fmt.Sprintf("%d bytes from %s", n, conn.RemoteAddr()))
	require.NoError(t, r.err)
	return string(r.data)
}

func hdRequire101(t *testing.T, conn net.Conn) {
	t.Helper()
	require.Equal(t, hdSwitchingProtocols, hdReadFull(t, conn, len(hdSwitchingProtocols)))
}

// hdReadResponse reads one HTTP response from a raw connection.
func hdReadResponse(t *testing.T, reader *bufio.Reader, method string) hdResponse {
	t.Helper()
	response, err := http.ReadResponse(reader, &http.Request{Method: method})
	require.NoError(t, err)
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	require.NoError(t, err)
	return hdResponse{status: response.StatusCode, header: response.Header, body: string(body)}
}

// hdReadUntilClosed reads everything the server sends until it closes the
// connection: whatever it wrote before its answer is in there too.
func hdReadUntilClosed(t *testing.T, conn net.Conn) string {
	t.Helper()
	data, err := io.ReadAll(conn)
	require.NoError(t, err, "read until the server closes; got so far: %q", data)
	return string(data)
}

// hdRequireSilence requires that nothing arrives on a raw client connection
// for a short while: a wait that must time out, not a synchronisation.
func hdRequireSilence(t *testing.T, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	buf := make([]byte, 1)
	n, err := conn.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "got %q", buf[:n])
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(hdWait)))
}

// hdTransfer sends msg from one end of a connection to the other.
func hdTransfer(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	hdWrite(t, from, msg)
	require.Equal(t, msg, hdReadFull(t, to, len(msg)))
}

// hdExchange checks that raft bytes flow both ways.
func hdExchange(t *testing.T, dialed, accepted net.Conn) {
	t.Helper()
	hdTransfer(t, dialed, accepted, "request from the dialing node")
	hdTransfer(t, accepted, dialed, "response from the serving node")
	hdTransfer(t, dialed, accepted, "second request")
}

// hdRequirePlainText checks that an error answer explains itself.
func hdRequirePlainText(t *testing.T, response hdResponse) {
	t.Helper()
	assert.True(t, strings.HasPrefix(response.header.Get("Content-Type"), "text/plain"),
		"Content-Type %q", response.header.Get("Content-Type"))
	assert.NotEmpty(t, strings.TrimSpace(response.body), "an error answer needs a reason")
}

// hdRequireRetryAfter checks the header that tells a client when to retry.
func hdRequireRetryAfter(t *testing.T, response hdResponse) {
	t.Helper()
	seconds, err := strconv.Atoi(response.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", response.header.Get("Retry-After"))
	require.GreaterOrEqual(t, seconds, 0)
}

// hdCloseWithin closes the Handler and requires Close to return promptly.
func hdCloseWithin(t *testing.T, handler *rafthttp.Handler) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		handler.Close()
	}()
	receive(t, closed, "Handler.Close to return")
}

// hdTracker signals when requests enter and leave the handler it
// wraps, so a test knows a request is being served without sleeping.
type hdTracker struct {
	entered chan struct{}
	left    chan struct{}
}

func newHDTracker() *hdTracker {
	return &hdTracker{entered: make(chan struct{}, 64), left: make(chan struct{}, 64)}
}

func (tr *hdTracker) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.entered <- struct{}{}
		defer func() { tr.left <- struct{}{} }()
		next.ServeHTTP(w, r)
	})
}

// hdAnswer consumes the Handler's Requests until Close closes it. It
// passes each request to the test on the returned channel, then answers
// it with outcome's result; a nil outcome takes requests but never answers.
func hdAnswer(t *testing.T, handler *rafthttp.Handler, outcome func(*raftmembership.ChangeRequest) error) <-chan *raftmembership.ChangeRequest {
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
		select {
		case <-done:
		case <-time.After(hdWait):
			t.Error("a range over Requests did not end after Handler.Close")
		}
	})
	return taken
}

func hdAnswerWith(err error) func(*raftmembership.ChangeRequest) error {
	return func(*raftmembership.ChangeRequest) error { return err }
}

func hdTransport(useTLS bool) string {
	if useTLS {
		return "tls"
	}
	return "tcp"
}

func TestHandlerUpgradeAccepted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers []string
	}{
		{name: "token alone without Connection", headers: []string{"Upgrade: raft"}},
		{name: "token with Connection Upgrade", headers: []string{"Upgrade: raft", "Connection: Upgrade"}},
		{name: "upper-case token", headers: []string{"Upgrade: RAFT", "Connection: Upgrade"}},
		{name: "mixed-case token without Connection", headers: []string{"Upgrade: Raft"}},
		{name: "token in a comma list", headers: []string{"Upgrade: foo, RAFT"}},
		{name: "token in a list without spaces", headers: []string{"Upgrade: websocket,raft", "Connection: keep-alive, Upgrade"}},
		{name: "token in a second Upgrade line", headers: []string{"Upgrade: websocket", "Upgrade: raft", "Connection: Upgrade"}},
	}
	for _, tt := range tests {
		for _, useTLS := range []bool{false, true} {
			t.Run(tt.name+"/"+hdTransport(useTLS), func(t *testing.T) {
				t.Parallel()
				server := startHDServer(t, hdServerOptions{tls: useTLS})
				client := server.dialRaw(t)
				hdWrite(t, client, hdRequestHead(http.MethodGet, hdPath, server.addr(), tt.headers...))
				hdRequire101(t, client)
				hdExchange(t, client, server.accept(t))
			})
		}
	}
}

func TestHandlerUpgradeRefusesOtherGETs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers []string
		// wantStatus is the exact status, or 0 for any 4xx.
		wantStatus int
	}{
		{name: "no Upgrade header", wantStatus: http.StatusUpgradeRequired},
		{name: "Connection Upgrade without Upgrade", headers: []string{"Connection: Upgrade"}, wantStatus: http.StatusUpgradeRequired},
		{name: "websocket", headers: []string{"Upgrade: websocket", "Connection: Upgrade"}},
		{name: "raft only as a prefix", headers: []string{"Upgrade: raftx", "Connection: Upgrade"}},
		{name: "raft only as a suffix", headers: []string{"Upgrade: notraft"}},
		{name: "several other tokens", headers: []string{"Upgrade: websocket, h2c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{})
			client := server.dialRaw(t)
			hdWrite(t, client, hdRequestHead(http.MethodGet, hdPath, server.addr(), tt.headers...))
			response := hdReadResponse(t, bufio.NewReader(client), http.MethodGet)
			if tt.wantStatus != 0 {
				require.Equal(t, tt.wantStatus, response.status, "body: %s", response.body)
			} else {
				require.GreaterOrEqual(t, response.status, 400, "body: %s", response.body)
				require.Less(t, response.status, 500, "body: %s", response.body)
			}
			if response.status == http.StatusUpgradeRequired {
				assert.True(t, strings.EqualFold(response.header.Get("Upgrade"), "raft"),
					"a 426 names the protocol to upgrade to; Upgrade: %q", response.header.Get("Upgrade"))
			}
			hdRequirePlainText(t, response)
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodHead, http.MethodOptions, "PROPFIND"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{})
			taken := hdAnswer(t, server.handler, hdAnswerWith(nil))
			response := server.do(t, method, url.Values{"id": {"node2"}, "address": {"127.0.0.1:9002"}}.Encode())
			require.Equal(t, http.StatusMethodNotAllowed, response.status, "body: %s", response.body)
			require.Equal(t, "GET, POST, DELETE", response.header.Get("Allow"))
			if method != http.MethodHead {
				hdRequirePlainText(t, response)
			}
			require.Empty(t, taken, "a refused method reached Requests")
		})
	}
}

// hdUnwrappingWriter is the ResponseWriter of a typical middleware: it hides
// http.Hijacker but exposes the writer it wraps, as net/http asks of
// wrappers.
type hdUnwrappingWriter struct{ http.ResponseWriter }

func (w hdUnwrappingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hdOpaqueWriter hides http.Hijacker and offers no way to the writer it wraps.
type hdOpaqueWriter struct{ http.ResponseWriter }

func TestHandlerUpgradeThroughMiddleware(t *testing.T) {
	t.Parallel()
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(hdUnwrappingWriter{w}, r)
		})
	}
	for _, useTLS := range []bool{false, true} {
		t.Run(hdTransport(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{tls: useTLS, wrap: wrap})
			client := server.upgrade(t)
			hdExchange(t, client, server.accept(t))
		})
	}
}

func TestHandlerUpgradeWithoutHijacker(t *testing.T) {
	t.Parallel()
	// Requests marked with the header go through a writer that cannot
	// hijack; the others reach the Handler directly.
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Opaque-Writer") != "" {
				w = hdOpaqueWriter{w}
			}
			next.ServeHTTP(w, r)
		})
	}
	// One backlog slot: if a failed hijack kept its slot, the next upgrade
	// would be refused with 503 once the short timeout passed.
	server := startHDServer(t, hdServerOptions{
		config: rafthttp.HandlerConfig{Backlog: 1, Timeout: hdShort},
		wrap:   wrap,
	})
	for attempt := range 3 {
		client := server.dialRaw(t)
		hdWrite(t, client, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft", "X-Opaque-Writer: 1"))
		response := hdReadResponse(t, bufio.NewReader(client), http.MethodGet)
		require.Equal(t, http.StatusInternalServerError, response.status, "attempt %d: body: %s", attempt, response.body)
		hdRequirePlainText(t, response)
		require.Contains(t, strings.ToLower(response.body), "hijack", "the reason should say the connection could not be hijacked")
	}
	client := server.upgrade(t)
	hdExchange(t, client, server.accept(t))
}

// hdHijacker is a ResponseWriter that hands over a connection the test
// chose, standing in for servers that behave differently from net/http's.
type hdHijacker struct {
	*httptest.ResponseRecorder
	conn     *hdCloseRecorder
	hijacked bool
}

func newHDHijacker(conn net.Conn) *hdHijacker {
	return &hdHijacker{ResponseRecorder: httptest.NewRecorder(), conn: &hdCloseRecorder{Conn: conn}}
}

func (w *hdHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

type hdCloseRecorder struct {
	net.Conn
	closed atomic.Bool
}

func (c *hdCloseRecorder) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// newHDFailingHijacker returns a hijacker whose connection cannot be
// written to, as when the peer vanished before the 101.
func newHDFailingHijacker(t *testing.T) *hdHijacker {
	local, remote := net.Pipe()
	require.NoError(t, remote.Close()) // every write to local now fails
	t.Cleanup(func() { local.Close() })
	return newHDHijacker(local)
}

func hdUpgradeRequest() *http.Request {
	request := httptest.NewRequest(http.MethodGet, hdPath, nil)
	request.Header.Set("Upgrade", "raft")
	return request
}

func TestHandlerUpgradeHijackFailureClosesConnAndFreesSlot(t *testing.T) {
	t.Parallel()
	logger, _ := newHDLogger(t, false)
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: logger, Backlog: 1, Timeout: hdShort})
	t.Cleanup(handler.Close)
	for attempt := range 3 {
		w := newHDFailingHijacker(t)
		handler.ServeHTTP(w, hdUpgradeRequest())
		require.True(t, w.hijacked, "attempt %d was refused before hijacking: a failed attempt kept its backlog slot (status %d)", attempt, w.Code)
		require.True(t, w.conn.closed.Load(), "attempt %d: the hijacked connection was left open after the 101 could not be written", attempt)
	}
}

// TestHandlerUpgradeClearsDeadlines hands the Handler a hijacked connection
// whose deadlines have expired, as a server's ReadTimeout and WriteTimeout
// leave them when its Hijack does not clear them (net/http's does today).
func TestHandlerUpgradeClearsDeadlines(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { listener.Close() })
	client, err := net.DialTimeout("tcp", listener.Addr().String(), hdWait)
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.SetDeadline(time.Now().Add(hdWait)))
	served, err := listener.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { served.Close() })
	require.NoError(t, served.SetDeadline(time.Now().Add(-time.Second)))

	logger, _ := newHDLogger(t, false)
	handler := rafthttp.NewHandlerWithLogger(logger)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: hdPath, Addr: listener.Addr(), Handler: handler})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })
	server := &hdServer{path: hdPath, handler: handler, layer: layer}

	handler.ServeHTTP(newHDHijacker(served), hdUpgradeRequest())
	hdRequire101(t, client)
	hdExchange(t, client, server.accept(t))
}

func TestHandlerBacklogFullRefusesBefore101(t *testing.T) {
	t.Parallel()
	server := startHDServer(t, hdServerOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: hdShort}})
	first := server.upgrade(t) // fills the backlog: nothing accepts

	// Connection: close makes the server close after its answer, so
	// everything it sends, a 101 included, is read.
	refused := server.dialRaw(t)
	hdWrite(t, refused, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft", "Connection: close"))
	raw := hdReadUntilClosed(t, refused)
	require.True(t, strings.HasPrefix(raw, "HTTP/1.1 503 "), "want a 503 and nothing before it, got %q", raw)
	require.NotContains(t, raw, "101 Switching Protocols")
	response := hdReadResponse(t, bufio.NewReader(strings.NewReader(raw)), http.MethodGet)
	hdRequireRetryAfter(t, response)
	hdRequirePlainText(t, response)

	// The queued connection is intact, and accepting it makes room.
	hdExchange(t, first, server.accept(t))
	third := server.upgrade(t)
	hdExchange(t, third, server.accept(t))
}

func TestHandlerBacklogUpgradeWaitsForRoom(t *testing.T) {
	t.Parallel()
	tracker := newHDTracker()
	server := startHDServer(t, hdServerOptions{
		config: rafthttp.HandlerConfig{Backlog: 1, Timeout: hdLong},
		wrap:   tracker.wrap,
	})
	first := server.upgrade(t)
	receive(t, tracker.entered, "the first upgrade to reach the handler")

	second := server.dialRaw(t)
	hdWrite(t, second, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft"))
	receive(t, tracker.entered, "the second upgrade to reach the handler")
	hdRequireSilence(t, second) // neither 101 nor 503 while the backlog is full

	hdExchange(t, first, server.accept(t))
	hdRequire101(t, second)
	hdExchange(t, second, server.accept(t))
}

func TestHandlerBacklogWaitBoundedByTimeoutMethod(t *testing.T) {
	t.Parallel()
	server := startHDServer(t, hdServerOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: hdLong}})
	server.handler.Timeout(hdShort)
	server.upgrade(t)

	refused := server.dialRaw(t)
	hdWrite(t, refused, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft"))
	response := hdReadResponse(t, bufio.NewReader(refused), http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
	hdRequireRetryAfter(t, response)
}

func TestHandlerBacklogCanceledUpgradeReleasesHandler(t *testing.T) {
	t.Parallel()
	tracker := newHDTracker()
	server := startHDServer(t, hdServerOptions{
		config: rafthttp.HandlerConfig{Backlog: 1, Timeout: hdLong},
		wrap:   tracker.wrap,
	})
	server.upgrade(t)
	receive(t, tracker.entered, "the first upgrade to reach the handler")
	receive(t, tracker.left, "the first upgrade to leave the handler")

	waiting := server.dialRaw(t)
	hdWrite(t, waiting, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft"))
	receive(t, tracker.entered, "the second upgrade to reach the handler")
	require.NoError(t, waiting.Close()) // the peer gives up
	receive(t, tracker.left, "the abandoned upgrade to leave the handler")
}

func TestHandlerUpgradeAfterCloseRefused(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(hdTransport(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{tls: useTLS})
			hdCloseWithin(t, server.handler)

			client := server.dialRaw(t)
			hdWrite(t, client, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft", "Connection: close"))
			raw := hdReadUntilClosed(t, client)
			require.NotContains(t, raw, "101 Switching Protocols")
			response := hdReadResponse(t, bufio.NewReader(strings.NewReader(raw)), http.MethodGet)
			require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
			hdRequireRetryAfter(t, response)
			hdRequirePlainText(t, response)
		})
	}
}

func TestHandlerCloseEndsUpgradeWaitingForRoom(t *testing.T) {
	t.Parallel()
	tracker := newHDTracker()
	server := startHDServer(t, hdServerOptions{
		config: rafthttp.HandlerConfig{Backlog: 1, Timeout: hdLong},
		wrap:   tracker.wrap,
	})
	server.upgrade(t)
	receive(t, tracker.entered, "the first upgrade to reach the handler")

	waiting := server.dialRaw(t)
	hdWrite(t, waiting, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft"))
	receive(t, tracker.entered, "the second upgrade to reach the handler")
	hdRequireSilence(t, waiting)

	hdCloseWithin(t, server.handler)
	response := hdReadResponse(t, bufio.NewReader(waiting), http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
	hdRequireRetryAfter(t, response)
}

func TestHandlerCloseClosesQueuedConnections(t *testing.T) {
	t.Parallel()
	tracker := newHDTracker()
	server := startHDServer(t, hdServerOptions{wrap: tracker.wrap})
	queued := []net.Conn{server.upgrade(t), server.upgrade(t)}
	// ServeHTTP queues the connection before it returns.
	for range queued {
		receive(t, tracker.left, "an upgrade to be queued")
	}
	hdCloseWithin(t, server.handler)
	for i, conn := range queued {
		n, err := conn.Read(make([]byte, 1))
		require.Zero(t, n)
		require.ErrorIs(t, err, io.EOF, "queued connection %d", i)
	}
	_, err := server.layer.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestHandlerEarlyBytes(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(hdTransport(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{tls: useTLS})
			client := server.dialRaw(t)
			const early = "raft bytes sent behind the request head"
			// One write: the server reads the head and these bytes together.
			hdWrite(t, client, hdRequestHead(http.MethodGet, hdPath, server.addr(), "Upgrade: raft")+early)
			hdRequire101(t, client)

			accepted := server.accept(t)
			require.Equal(t, early, hdReadFull(t, accepted, len(early)), "early bytes must come first")
			hdExchange(t, client, accepted)
		})
	}
}

func TestHandlerUpgradedConnOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	const serverTimeout = 100 * time.Millisecond
	for _, useTLS := range []bool{false, true} {
		t.Run(hdTransport(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{
				tls: useTLS,
				configure: func(s *http.Server) {
					s.ReadTimeout = serverTimeout
					s.WriteTimeout = serverTimeout
				},
			})
			client := server.upgrade(t)
			accepted := server.accept(t)

			// Let both server timeouts pass: a read that must time out.
			require.NoError(t, client.SetReadDeadline(time.Now().Add(3*serverTimeout)))
			_, err := client.Read(make([]byte, 1))
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.NoError(t, client.SetReadDeadline(time.Now().Add(hdWait)))

			hdExchange(t, client, accepted)
		})
	}
}

func TestHandlerInteropOriginalClient(t *testing.T) {
	t.Parallel()
	server := startHDServer(t, hdServerOptions{})
	client := server.dialRaw(t)
	// Exactly what a node running the original package sends: the request
	// Go's http.Request.Write produces, with no Connection header.
	hdWrite(t, client, "GET /raft HTTP/1.1\r\nHost: "+server.addr()+"\r\nUser-Agent: Go-http-client/1.1\r\nUpgrade: raft\r\n\r\n")
	raw := hdReadFull(t, client, len(hdSwitchingProtocols))
	require.Equal(t, hdSwitchingProtocols, raw)

	// The original client checks only the status and the Upgrade header.
	response, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, response.StatusCode)
	require.Equal(t, "raft", response.Header.Get("Upgrade"))

	hdExchange(t, client, server.accept(t))
}

func TestHandlerMembershipOutcomes(t *testing.T) {
	t.Parallel()
	join := url.Values{"id": {"node2"}, "address": {"127.0.0.1:9002"}}.Encode()
	leave := url.Values{"id": {"node2"}}.Encode()
	const leader = "10.0.0.9:8080"
	tests := []struct {
		name         string
		path         string
		tls          bool
		method       string
		query        string
		outcome      error
		wantStatus   int
		wantLocation string
		wantBody     string
	}{
		{name: "join done", method: http.MethodPost, query: join, wantStatus: http.StatusOK},
		{name: "leave done", method: http.MethodDelete, query: leave, wantStatus: http.StatusOK},
		{name: "join done over TLS", tls: true, method: http.MethodPost, query: join, wantStatus: http.StatusOK},
		{
			name: "join at a follower", method: http.MethodPost, query: join,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "http://" + leader + "/raft?" + join,
		},
		{
			name: "leave at a follower", method: http.MethodDelete, query: leave,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "http://" + leader + "/raft?" + leave,
		},
		{
			name: "join at a follower over TLS", tls: true, method: http.MethodPost, query: join,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "https://" + leader + "/raft?" + join,
		},
		{
			name: "leave at a follower over TLS", tls: true, method: http.MethodDelete, query: leave,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "https://" + leader + "/raft?" + leave,
		},
		{
			name: "redirect keeps a nested path and the query as sent", path: "/cluster/raft", method: http.MethodPost,
			query:      "address=127.0.0.1%3A9002&id=node2&x=%C3%A9",
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "http://" + leader + "/cluster/raft?address=127.0.0.1%3A9002&id=node2&x=%C3%A9",
		},
		{
			name: "wrapped different leader", method: http.MethodPost, query: join,
			outcome:    fmt.Errorf("membership: %w", raftmembership.NewErrDifferentLeader(leader)),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "http://" + leader + "/raft?" + join,
		},
		{
			name: "join with the leader unknown", method: http.MethodPost, query: join,
			outcome: &raftmembership.ErrUnknownLeader{}, wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "leave with the leader unknown over TLS", tls: true, method: http.MethodDelete, query: leave,
			outcome: &raftmembership.ErrUnknownLeader{}, wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "join failed", method: http.MethodPost, query: join,
			outcome: errors.New("disk on fire"), wantStatus: http.StatusInternalServerError, wantBody: "disk on fire",
		},
		{
			name: "leave failed", method: http.MethodDelete, query: leave,
			outcome: errors.New("quorum would be lost"), wantStatus: http.StatusInternalServerError, wantBody: "quorum would be lost",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{tls: tt.tls, path: tt.path})
			taken := hdAnswer(t, server.handler, hdAnswerWith(tt.outcome))
			response := server.do(t, tt.method, tt.query)
			require.Equal(t, tt.wantStatus, response.status, "body: %s", response.body)

			request := receive(t, taken, "the request on Requests")
			require.Equal(t, raft.ServerID("node2"), request.ID())

			switch tt.wantStatus {
			case http.StatusTemporaryRedirect:
				require.Equal(t, tt.wantLocation, response.header.Get("Location"))
			case http.StatusServiceUnavailable:
				hdRequireRetryAfter(t, response)
				hdRequirePlainText(t, response)
			case http.StatusInternalServerError:
				hdRequirePlainText(t, response)
				require.Contains(t, response.body, tt.wantBody)
			}
		})
	}
}

func TestHandlerMembershipParsesQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		query       string
		wantKind    raftmembership.ChangeRequestKind
		wantID      raft.ServerID
		wantAddress raft.ServerAddress
	}{
		{
			name: "join", method: http.MethodPost, query: "id=node2&address=127.0.0.1:9002",
			wantKind: raftmembership.JoinRequest, wantID: "node2", wantAddress: "127.0.0.1:9002",
		},
		{
			name: "join as a voter", method: http.MethodPost, query: "id=node2&address=127.0.0.1:9002&voter=true",
			wantKind: raftmembership.JoinRequest, wantID: "node2", wantAddress: "127.0.0.1:9002",
		},
		{
			name: "join as a non-voter", method: http.MethodPost, query: "id=node2&address=127.0.0.1:9002&voter=false",
			wantKind: raftmembership.JoinNonvoterRequest, wantID: "node2", wantAddress: "127.0.0.1:9002",
		},
		{
			name: "leave needs only the id", method: http.MethodDelete, query: "id=node2",
			wantKind: raftmembership.LeaveRequest, wantID: "node2",
		},
		{
			name: "plus decodes to a space", method: http.MethodPost, query: "id=node+2&address=127.0.0.1%3A9002",
			wantKind: raftmembership.JoinRequest, wantID: "node 2", wantAddress: "127.0.0.1:9002",
		},
		{
			name: "percent-encoded space", method: http.MethodDelete, query: "id=node%202",
			wantKind: raftmembership.LeaveRequest, wantID: "node 2",
		},
		{
			name: "unicode id", method: http.MethodPost,
			query:    url.Values{"id": {"nœud-三 ✓"}, "address": {"node2.example:9002"}}.Encode(),
			wantKind: raftmembership.JoinRequest, wantID: "nœud-三 ✓", wantAddress: "node2.example:9002",
		},
		{
			name: "unicode id leaving", method: http.MethodDelete, query: "id=%C3%A9t%C3%A9",
			wantKind: raftmembership.LeaveRequest, wantID: "été",
		},
		{
			name: "IPv6 address", method: http.MethodPost, query: "id=node2&address=%5B%3A%3A1%5D%3A9002",
			wantKind: raftmembership.JoinRequest, wantID: "node2", wantAddress: "[::1]:9002",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{})
			taken := hdAnswer(t, server.handler, hdAnswerWith(nil))
			response := server.do(t, tt.method, tt.query)
			require.Equal(t, http.StatusOK, response.status, "body: %s", response.body)
			request := receive(t, taken, "the request on Requests")
			require.Equal(t, tt.wantKind, request.Kind())
			require.Equal(t, tt.wantID, request.ID())
			require.Equal(t, tt.wantAddress, request.Address())
		})
	}
}

func TestHandlerMembershipBadRequests(t *testing.T) {
	t.Parallel()
	const address = "127.0.0.1:9002"
	tests := []struct {
		name   string
		method string
		query  string
	}{
		{name: "join without id", method: http.MethodPost, query: "address=" + address},
		{name: "join with empty id", method: http.MethodPost, query: "id=&address=" + address},
		{name: "join without address", method: http.MethodPost, query: "id=node2"},
		{name: "join with empty address", method: http.MethodPost, query: "id=node2&address="},
		{name: "join with address without port", method: http.MethodPost, query: "id=node2&address=127.0.0.1"},
		{name: "join with address not host:port", method: http.MethodPost, query: "id=node2&address=not+an+address"},
		{name: "join with undecodable id", method: http.MethodPost, query: "id=%zz&address=" + address},
		{name: "join with undecodable address", method: http.MethodPost, query: "id=node2&address=%zz"},
		{name: "join with duplicated id", method: http.MethodPost, query: "id=node2&id=node3&address=" + address},
		{name: "join with duplicated address", method: http.MethodPost, query: "id=node2&address=" + address + "&address=127.0.0.1:9003"},
		{name: "join with voter=maybe", method: http.MethodPost, query: "id=node2&address=" + address + "&voter=maybe"},
		{name: "join with empty voter", method: http.MethodPost, query: "id=node2&address=" + address + "&voter="},
		{name: "join with undecodable voter", method: http.MethodPost, query: "id=node2&address=" + address + "&voter=%zz"},
		{name: "join with duplicated voter", method: http.MethodPost, query: "id=node2&address=" + address + "&voter=false&voter=true"},
		{name: "join with no query", method: http.MethodPost},
		{name: "leave without id", method: http.MethodDelete},
		{name: "leave with empty id", method: http.MethodDelete, query: "id="},
		{name: "leave with undecodable id", method: http.MethodDelete, query: "id=%zz"},
		{name: "leave with duplicated id", method: http.MethodDelete, query: "id=node2&id=node3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{})
			taken := hdAnswer(t, server.handler, hdAnswerWith(nil))
			response := server.do(t, tt.method, tt.query)
			require.Equal(t, http.StatusBadRequest, response.status, "body: %s", response.body)
			hdRequirePlainText(t, response)
			require.Empty(t, taken, "a bad request reached Requests")
		})
	}
}

func TestHandlerMembershipBoundedWaits(t *testing.T) {
	t.Parallel()
	join := url.Values{"id": {"node2"}, "address": {"127.0.0.1:9002"}}.Encode()
	tests := []struct {
		name    string
		method  string
		query   string
		consume bool // take requests without answering
	}{
		{name: "join with nobody consuming", method: http.MethodPost, query: join},
		{name: "leave with nobody consuming", method: http.MethodDelete, query: "id=node2"},
		{name: "join taken and never answered", method: http.MethodPost, query: join, consume: true},
		{name: "leave taken and never answered", method: http.MethodDelete, query: "id=node2", consume: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{config: rafthttp.HandlerConfig{Timeout: hdShort}})
			var taken <-chan *raftmembership.ChangeRequest
			if tt.consume {
				taken = hdAnswer(t, server.handler, nil)
			}
			start := time.Now()
			response := server.do(t, tt.method, tt.query) // the client gives up after hdWait
			require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
			require.GreaterOrEqual(t, time.Since(start), hdShort, "answered before the timeout")
			hdRequireRetryAfter(t, response)
			hdRequirePlainText(t, response)
			if tt.consume {
				receive(t, taken, "the consumer to have taken the request")
			}
		})
	}
}

func TestHandlerMembershipClientGoneReleasesHandler(t *testing.T) {
	t.Parallel()
	for _, consume := range []bool{false, true} {
		t.Run(map[bool]string{false: "nobody consuming", true: "taken and never answered"}[consume], func(t *testing.T) {
			t.Parallel()
			tracker := newHDTracker()
			server := startHDServer(t, hdServerOptions{
				config: rafthttp.HandlerConfig{Timeout: hdLong},
				wrap:   tracker.wrap,
			})
			var taken <-chan *raftmembership.ChangeRequest
			if consume {
				taken = hdAnswer(t, server.handler, nil)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			failed := make(chan error, 1)
			go func() {
				_, err := server.tryDo(ctx, http.MethodPost, "id=node2&address=127.0.0.1:9002")
				failed <- err
			}()
			receive(t, tracker.entered, "the request to reach the handler")
			if consume {
				receive(t, taken, "the consumer to take the request")
			}
			cancel()
			require.ErrorIs(t, receive(t, failed, "the canceled request to return"), context.Canceled)
			receive(t, tracker.left, "the handler to give up on a request whose client went away")
		})
	}
}

func TestHandlerCloseEndsWaitingMembershipRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		method  string
		query   string
		consume bool
	}{
		{name: "join with nobody consuming", method: http.MethodPost, query: "id=node2&address=127.0.0.1:9002"},
		{name: "leave with nobody consuming", method: http.MethodDelete, query: "id=node2"},
		{name: "join taken and never answered", method: http.MethodPost, query: "id=node2&address=127.0.0.1:9002", consume: true},
		{name: "leave taken and never answered", method: http.MethodDelete, query: "id=node2", consume: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tracker := newHDTracker()
			server := startHDServer(t, hdServerOptions{
				config: rafthttp.HandlerConfig{Timeout: hdLong},
				wrap:   tracker.wrap,
			})
			var taken <-chan *raftmembership.ChangeRequest
			if tt.consume {
				taken = hdAnswer(t, server.handler, nil)
			}
			type result struct {
				response hdResponse
				err      error
			}
			answered := make(chan result, 1)
			go func() {
				response, err := server.tryDo(t.Context(), tt.method, tt.query)
				answered <- result{response, err}
			}()
			receive(t, tracker.entered, "the request to reach the handler")
			if tt.consume {
				receive(t, taken, "the consumer to take the request")
			}
			hdCloseWithin(t, server.handler)
			r := receive(t, answered, "an answer after Close")
			require.NoError(t, r.err)
			require.Equal(t, http.StatusServiceUnavailable, r.response.status, "body: %s", r.response.body)
			hdRequireRetryAfter(t, r.response)
		})
	}
}

func TestHandlerMembershipAfterCloseRefused(t *testing.T) {
	t.Parallel()
	server := startHDServer(t, hdServerOptions{})
	hdCloseWithin(t, server.handler)
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		response := server.do(t, method, "id=node2&address=127.0.0.1:9002")
		require.Equal(t, http.StatusServiceUnavailable, response.status, "%s: body: %s", method, response.body)
		hdRequireRetryAfter(t, response)
	}
}

func TestHandlerCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, server *hdServer)
	}{
		{name: "nobody consuming", setup: func(*testing.T, *hdServer) {}},
		{
			name: "consumer ranging over Requests",
			setup: func(t *testing.T, server *hdServer) {
				hdAnswer(t, server.handler, hdAnswerWith(nil))
			},
		},
		{
			name: "upgraded connections queued",
			setup: func(t *testing.T, server *hdServer) {
				server.upgrade(t)
				server.upgrade(t)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startHDServer(t, hdServerOptions{})
			tt.setup(t, server)
			var wg sync.WaitGroup
			closed := make(chan struct{})
			for range 4 {
				wg.Go(server.handler.Close)
			}
			go func() {
				wg.Wait()
				close(closed)
			}()
			receive(t, closed, "concurrent Close calls to return")
			hdCloseWithin(t, server.handler)
			require.NoError(t, server.layer.Close())
			hdCloseWithin(t, server.handler)
		})
	}
}

func TestHandlerCloseClosesRequests(t *testing.T) {
	t.Parallel()
	logger, _ := newHDLogger(t, false)
	handler := rafthttp.NewHandlerWithLogger(logger)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for request := range handler.Requests() {
			request.Done(nil)
		}
	}()
	hdCloseWithin(t, handler)
	receive(t, ended, "a range over Requests to end after Close")
	_, open := <-handler.Requests()
	require.False(t, open)
}

func TestHandlerTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler func(hclog.Logger) *rafthttp.Handler
		// wantShort: requests end with 503 after hdShort;
		// otherwise the default applies and they are still waiting after
		// three times that.
		wantShort bool
	}{
		{
			name: "HandlerConfig.Timeout bounds the wait", wantShort: true,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				return rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: hdShort})
			},
		},
		{
			name: "Timeout shortens the default", wantShort: true,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithLogger(l)
				h.Timeout(hdShort)
				return h
			},
		},
		{
			name: "Timeout replaces a configured timeout", wantShort: true,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: hdLong})
				h.Timeout(hdShort)
				return h
			},
		},
		{
			name: "NewHandler uses the default",
			handler: func(hclog.Logger) *rafthttp.Handler {
				return rafthttp.NewHandler()
			},
		},
		{
			name: "zero HandlerConfig.Timeout means the default",
			handler: func(l hclog.Logger) *rafthttp.Handler {
				return rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l})
			},
		},
		{
			name: "Timeout(0) restores the default",
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: hdShort})
				h.Timeout(0)
				return h
			},
		},
		{
			name: "negative Timeout restores the default",
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: hdShort})
				h.Timeout(-time.Second)
				return h
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, _ := newHDLogger(t, false)
			server := startHDServer(t, hdServerOptions{handler: tt.handler(logger)})
			// Nobody consumes Requests: only the timeout ends the wait.
			query := "id=node2&address=127.0.0.1:9002"
			if tt.wantShort {
				start := time.Now()
				response := server.do(t, http.MethodPost, query)
				require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
				require.GreaterOrEqual(t, time.Since(start), hdShort)
				return
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*hdShort)
			defer cancel()
			response, err := server.tryDo(ctx, http.MethodPost, query)
			require.ErrorIs(t, err, context.DeadlineExceeded, "answered %d %q before the default timeout", response.status, response.body)
		})
	}
}

// TestHandlerLogsRequests checks the logging rule: every request's
// outcome is logged with key/value pairs naming the remote address and the
// request path, so an operator can tell which peer got which answer.
func TestHandlerLogsRequests(t *testing.T) {
	t.Parallel()
	server := startHDServer(t, hdServerOptions{jsonLogs: true})
	hdAnswer(t, server.handler, func(request *raftmembership.ChangeRequest) error {
		switch request.ID() {
		case "redirected":
			return raftmembership.NewErrDifferentLeader("10.0.0.9:8080")
		case "unknown":
			return &raftmembership.ErrUnknownLeader{}
		case "failed":
			return errors.New("disk on fire")
		}
		return nil
	})
	const address = "address=127.0.0.1:9002"
	tests := []struct {
		name       string
		method     string
		target     string
		headers    []string
		wantStatus int
	}{
		{name: "method not allowed", method: http.MethodPut, target: "/raft", wantStatus: http.StatusMethodNotAllowed},
		{name: "upgrade missing", method: http.MethodGet, target: "/raft", wantStatus: http.StatusUpgradeRequired},
		{name: "upgrade", method: http.MethodGet, target: "/raft", headers: []string{"Upgrade: raft"}, wantStatus: http.StatusSwitchingProtocols},
		{name: "join done", method: http.MethodPost, target: "/raft?id=done&" + address, wantStatus: http.StatusOK},
		{name: "leave done", method: http.MethodDelete, target: "/raft?id=done", wantStatus: http.StatusOK},
		{name: "join redirected", method: http.MethodPost, target: "/raft?id=redirected&" + address, wantStatus: http.StatusTemporaryRedirect},
		{name: "join with the leader unknown", method: http.MethodPost, target: "/raft?id=unknown&" + address, wantStatus: http.StatusServiceUnavailable},
		{name: "join failed", method: http.MethodPost, target: "/raft?id=failed&" + address, wantStatus: http.StatusInternalServerError},
		{name: "bad join", method: http.MethodPost, target: "/raft?id=&" + address, wantStatus: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := server.dialRaw(t)
			headers := tt.headers
			if tt.method != http.MethodGet {
				headers = append(headers, "Content-Length: 0")
			}
			hdWrite(t, conn, hdRequestHead(tt.method, tt.target, server.addr(), headers...))
			response := hdReadResponse(t, bufio.NewReader(conn), tt.method)
			require.Equal(t, tt.wantStatus, response.status, "body: %s", response.body)
			if tt.wantStatus == http.StatusSwitchingProtocols {
				server.accept(t)
			}
			remote := conn.LocalAddr().String()
			assert.Eventually(t, func() bool {
				for _, line := range server.logs.jsonLines() {
					if line["remote-address"] == remote && line["path"] == hdPath {
						return true
					}
				}
				return false
			}, time.Second, 5*time.Millisecond,
				"no log line with remote-address %s and path %s; logs:\n%s", remote, hdPath, server.logs)
		})
	}
}
