package rafthttp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// msWait bounds every wait in the membership client tests.
const msWait = 10 * time.Second

// msPath is where the scripted servers pretend the Handler is mounted.
const msPath = "/raft"

// msRequest is what a scripted server saw of one request.
type msRequest struct {
	Method   string
	Path     string
	RawQuery string
	Query    url.Values
	Host     string
	TLS      bool
	At       time.Time
}

// msServer is a loopback HTTP server whose answers a test scripts. It
// records every request and counts the connections it opened and saw
// closed, so tests can check that the client leaves none behind.
type msServer struct {
	*httptest.Server
	addr string

	mu       sync.Mutex
	requests []msRequest
	errors   []string // lines net/http logged, such as TLS handshake errors

	opened atomic.Int64
	closed atomic.Int64
}

// msRespond answers the nth (1-based) request a server receives.
type msRespond func(w http.ResponseWriter, r *http.Request, n int)

// msOK answers every request with 200.
func msOK(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusOK) }

// newMSServer starts a plain HTTP server answering with respond.
func newMSServer(t *testing.T, respond msRespond) *msServer {
	return startMSServer(t, respond, false, nil)
}

// newMSTLSServer starts a TLS server answering with respond.
func newMSTLSServer(t *testing.T, respond msRespond) *msServer {
	return startMSServer(t, respond, true, nil)
}

// startMSServer starts a server answering with respond, over TLS if
// useTLS, on listener if it is not nil.
func startMSServer(t *testing.T, respond msRespond, useTLS bool, listener net.Listener) *msServer {
	t.Helper()
	s := &msServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, msRequest{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query(),
			Host: r.Host, TLS: r.TLS != nil, At: time.Now(),
		})
		n := len(s.requests)
		s.mu.Unlock()
		respond(w, r, n)
	}))
	s.Config.ErrorLog = log.New(msErrorLog{s}, "", 0)
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

type msErrorLog struct{ s *msServer }

func (l msErrorLog) Write(p []byte) (int, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.errors = append(l.s.errors, strings.TrimSpace(string(p)))
	return len(p), nil
}

// seen returns the requests received so far.
func (s *msServer) seen() []msRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]msRequest(nil), s.requests...)
}

// count returns how many requests were received.
func (s *msServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// logged returns what net/http logged about failed connections.
func (s *msServer) logged() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errors...)
}

// requireConnsClosed waits until every connection the server accepted has
// been closed: the client drained and closed what it opened, leaving no
// idle connection behind.
func (s *msServer) requireConnsClosed(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return s.closed.Load() == s.opened.Load() },
		msWait, 5*time.Millisecond, "server %s: %d connections opened, %d closed", s.addr, s.opened.Load(), s.closed.Load())
}

// redirectTo answers with a redirect of the given status to the same path
// and query at addr, with scheme, as the Handler does for a follower.
func redirectTo(scheme, addr string, status int) msRespond {
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		location := url.URL{Scheme: scheme, Host: addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, location.String(), status)
	}
}

// msDialRecorder wraps a Dial: it records every address dialed and every
// error returned, and tracks whether the client closed each connection.
type msDialRecorder struct {
	dial rafthttp.Dial

	mu     sync.Mutex
	addrs  []string
	errors []error
	conns  []*msTrackedConn
	// failed receives one value per failed dial, if not nil.
	failed chan error
}

func recordDial(dial rafthttp.Dial) *msDialRecorder {
	return &msDialRecorder{dial: dial}
}

func (d *msDialRecorder) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := d.dial(addr, timeout)
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	if err != nil {
		d.errors = append(d.errors, err)
	}
	var tracked *msTrackedConn
	// Checked by err, not conn: a failed Dial may return a non-nil
	// interface holding a nil pointer.
	if err == nil {
		tracked = &msTrackedConn{Conn: conn}
		d.conns = append(d.conns, tracked)
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
	return tracked, nil
}

func (d *msDialRecorder) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

func (d *msDialRecorder) failures() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]error(nil), d.errors...)
}

// requireClosed waits until the client has closed every connection it
// dialed: none is left idle or half-read.
func (d *msDialRecorder) requireClosed(t *testing.T) {
	t.Helper()
	open := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		n := 0
		for _, conn := range d.conns {
			if !conn.closed.Load() {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return open() == 0 }, msWait, 5*time.Millisecond,
		"the client left %d connections open", open())
}

type msTrackedConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *msTrackedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// msTrustServers returns a TLS client config that trusts the servers'
// certificates.
func msTrustServers(servers ...*msServer) *tls.Config {
	pool := x509.NewCertPool()
	for _, server := range servers {
		pool.AddCert(server.Certificate())
	}
	return &tls.Config{RootCAs: pool}
}

// msLayer returns a Layer advertising advertise and dialing with dial,
// closed when the test ends.
func msLayer(t *testing.T, advertise string, dial rafthttp.Dial) *rafthttp.Layer {
	t.Helper()
	addr, err := net.ResolveTCPAddr("tcp", advertise)
	require.NoError(t, err)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: msPath, Addr: addr, Handler: rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "rafthttp")), Dial: dial,
	})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })
	return layer
}

// msCloseHookDial wraps dial so that onClose runs when the client first
// closes a connection it dialed: for a membership request, once it has read
// the answer.
func msCloseHookDial(dial rafthttp.Dial, onClose func()) rafthttp.Dial {
	var once sync.Once
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := dial(addr, timeout)
		if err != nil {
			return nil, err
		}
		return &msHookConn{Conn: conn, onClose: func() { once.Do(onClose) }}, nil
	}
}

type msHookConn struct {
	net.Conn
	onClose func()
}

func (c *msHookConn) Close() error {
	err := c.Conn.Close()
	c.onClose()
	return err
}

// msEndingContext is a context the test ends when it chooses, with the error
// it chooses: with context.DeadlineExceeded, a deadline that passes at an
// exact point of the client's work.
type msEndingContext struct {
	context.Context
	err  error
	done chan struct{}
	once sync.Once
}

func newMSEndingContext(err error) *msEndingContext {
	return &msEndingContext{Context: context.Background(), err: err, done: make(chan struct{})}
}

func (c *msEndingContext) Done() <-chan struct{} { return c.done }

func (c *msEndingContext) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *msEndingContext) end() { c.once.Do(func() { close(c.done) }) }
