//go:build unix

package clustertest_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// testWait bounds every wait in these tests for something that should
// happen promptly; it only decides how long a failing test takes.
const testWait = 10 * time.Second

// switching is the backend's answer to an upgrade, with the custom header
// rafthttp's handler sends, which nginx must pass through.
const switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nConnection: Upgrade\r\n" +
	"Rafthttp-Body-Max: 65536\r\n\r\n"

// upgradeRequest is what the backend saw of one upgrade request.
type upgradeRequest struct {
	Host   string
	Header http.Header
	// Body is the request body, read through r.Body before the hijack.
	Body []byte
}

// backend is the Go HTTP server nginx proxies to. It answers a GET with
// Upgrade: raft by reading the body the request declares, reporting the
// request on requests, switching protocols, and then echoing every byte
// that reaches it after the request: those buffered by net/http, then
// those read from the connection. Since the body was consumed through
// r.Body first, the echo holds only bytes sent beyond the request, and a
// body forwarded twice, or late, would show up in it.
type backend struct {
	addr     string
	requests chan upgradeRequest
	// hold, if set, makes the handler wait until it is closed between
	// reporting the request and answering it.
	hold chan struct{}

	server    *http.Server
	serveDone chan struct{}
	mu        sync.Mutex
	closed    bool
	closing   chan struct{}
	conns     map[net.Conn]struct{}
	handlers  sync.WaitGroup
}

// startBackend starts a backend on a free loopback port, closed with every
// connection it took over, and waited for, when the test ends.
func startBackend(t *testing.T, hold chan struct{}) *backend {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &backend{
		addr:      listener.Addr().String(),
		requests:  make(chan upgradeRequest, 8),
		hold:      hold,
		serveDone: make(chan struct{}),
		closing:   make(chan struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	b.server = &http.Server{Handler: b, ReadHeaderTimeout: testWait}
	go func() {
		defer close(b.serveDone)
		b.server.Serve(listener)
	}()
	t.Cleanup(func() {
		b.server.Close()
		<-b.serveDone
		// http.Server.Close leaves hijacked connections alone.
		b.mu.Lock()
		b.closed = true
		close(b.closing)
		for conn := range b.conns {
			conn.Close()
		}
		b.mu.Unlock()
		b.handlers.Wait()
	})
	return b
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.EqualFold(r.Header.Get("Upgrade"), "raft") {
		http.Error(w, "want GET with Upgrade: raft", http.StatusBadRequest)
		return
	}
	var body []byte
	if r.ContentLength > 0 {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	select {
	case b.requests <- upgradeRequest{Host: r.Host, Header: r.Header.Clone(), Body: body}:
	default: // more requests than any test sends: the test fails on its own
	}
	if b.hold != nil {
		select {
		case <-b.hold:
		case <-b.closing:
			return
		case <-time.After(testWait):
			return
		}
	}
	conn, buffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if !b.track(conn) {
		conn.Close()
		return
	}
	defer b.untrack(conn)
	if _, err := io.WriteString(conn, switching); err != nil {
		return
	}
	// Reading through buffered yields what net/http had already read past
	// the request first.
	io.Copy(conn, buffered.Reader)
}

// track registers a hijacked connection for the cleanup to close, unless
// the cleanup has begun.
func (b *backend) track(conn net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.conns[conn] = struct{}{}
	b.handlers.Add(1)
	return true
}

func (b *backend) untrack(conn net.Conn) {
	conn.Close()
	b.mu.Lock()
	delete(b.conns, conn)
	b.mu.Unlock()
	b.handlers.Done()
}

// request waits, bounded, for the next upgrade request the backend saw.
func (b *backend) request(t *testing.T) upgradeRequest {
	t.Helper()
	select {
	case request := <-b.requests:
		return request
	case <-time.After(testWait):
		t.Fatalf("backend saw no upgrade request within %v", testWait)
		panic("unreachable")
	}
}

// dial connects to addr with a deadline of testWait on everything done on
// the connection, which is closed when the test ends.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testWait)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(testWait)))
	return conn, bufio.NewReader(conn)
}

// upgradeHead is a raft upgrade request's head, with a Content-Length
// header unless length is negative.
func upgradeHead(addr string, length int) string {
	head := "GET /raft HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: raft\r\nConnection: Upgrade\r\n"
	if length >= 0 {
		head += fmt.Sprintf("Content-Length: %d\r\n", length)
	}
	return head + "\r\n"
}

// readSwitch reads the answer to an upgrade through nginx and checks that
// it is the backend's 101 with its headers intact.
func readSwitch(t *testing.T, reader *bufio.Reader) {
	t.Helper()
	response, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, response.StatusCode, "status %s", response.Status)
	assert.Equal(t, "raft", response.Header.Get("Upgrade"))
	assert.True(t, strings.EqualFold(response.Header.Get("Connection"), "upgrade"),
		"Connection: %q", response.Header.Get("Connection"))
	assert.Equal(t, "65536", response.Header.Get("Rafthttp-Body-Max"))
}

// echo writes each message in turn and checks that exactly the messages
// come back, in order.
func echo(t *testing.T, conn net.Conn, reader *bufio.Reader, messages ...[]byte) {
	t.Helper()
	want := bytes.Join(messages, nil)
	written := make(chan error, 1)
	// Write while reading, so that a message larger than the buffers on the
	// way cannot block the write.
	go func() {
		for _, message := range messages {
			if _, err := conn.Write(message); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	got := make([]byte, len(want))
	_, readErr := io.ReadFull(reader, got)
	require.NoError(t, <-written)
	require.NoError(t, readErr)
	require.True(t, bytes.Equal(want, got), "echo differs from the %d bytes written", len(want))
}

// pattern returns n bytes that differ from a shifted copy of themselves, so
// that a lost or repeated chunk shows.
func pattern(n int, seed byte) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7+i/251) + seed
	}
	return data
}

// startProxy starts a backend and nginx in front of it.
func startProxy(t *testing.T, hold chan struct{}) (*backend, string) {
	t.Helper()
	b := startBackend(t, hold)
	return b, clustertest.StartNginx(t, b.addr)
}

func TestNginxUpgrade(t *testing.T) {
	b, proxy := startProxy(t, nil)
	conn, reader := dial(t, proxy)
	_, err := io.WriteString(conn, upgradeHead(proxy, -1))
	require.NoError(t, err)

	readSwitch(t, reader)
	request := b.request(t)
	assert.Empty(t, request.Body)
	assert.Equal(t, "raft", request.Header.Get("Upgrade"), "Upgrade header set again by nginx")
	assert.Equal(t, "upgrade", request.Header.Get("Connection"), "from the $connection_upgrade map")
	assert.Equal(t, "127.0.0.1", request.Host, "$host drops the port")

	echo(t, conn, reader, []byte("after the 101"), []byte(" and more"), pattern(256<<10, 1))
}

// TestNginxUpgradeWithBody sends an upgrade request with a body in the same
// write as the head, as rafthttp sends its first message. nginx reads the
// whole body (request buffering; 60000 bytes go through a temporary file)
// before it connects to the backend, sends it with the request, and after
// the 101 relays only what follows.
func TestNginxUpgradeWithBody(t *testing.T) {
	for _, size := range []int{100, 60000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			b, proxy := startProxy(t, nil)
			conn, reader := dial(t, proxy)
			body := pattern(size, 0)
			_, err := conn.Write(append([]byte(upgradeHead(proxy, size)), body...))
			require.NoError(t, err)

			readSwitch(t, reader)
			request := b.request(t)
			assert.Equal(t, fmt.Sprint(size), request.Header.Get("Content-Length"))
			require.Len(t, request.Body, size)
			require.True(t, bytes.Equal(body, request.Body), "backend got a different body")

			echo(t, conn, reader, []byte("first after the 101"), pattern(1000, 2), pattern(128<<10, 3))
		})
	}
}

// earlyBytesWait bounds how long TestNginxEarlyBytes waits for early bytes
// to come back before it calls them lost. Forwarded bytes come back within
// milliseconds of the 101.
const earlyBytesWait = 2 * time.Second

// TestNginxEarlyBytes records what nginx does with bytes a client sends
// right behind an upgrade request that declares no body, before the 101
// arrives: a client that starts talking the upgraded protocol without
// waiting for the answer.
//
// nginx 1.22 forwards them. The request has no body, so nginx leaves the
// bytes unread (those that came in with the head stay in its header
// buffer, later ones in the socket), and once the backend's 101 turns the
// connection into a tunnel, ngx_http_upstream_upgrade sends the header
// buffer's leftovers to the backend first and then relays the socket. They
// reach the backend after its 101, in order, ahead of anything sent later.
//
// The same holds behind a body: nginx reads exactly Content-Length bytes of
// body (from its header buffer, then from the socket, never more than the
// rest), sends them with the request, and leaves what follows for the
// tunnel.
func TestNginxEarlyBytes(t *testing.T) {
	for _, test := range []struct {
		name string
		// body is the size of a body sent with the head, 0 for none (and no
		// Content-Length).
		body int
		// held makes the backend wait until the early bytes are written
		// before it answers, so that they reach nginx apart from the head
		// while it waits for the 101; otherwise they go in the head's write.
		held bool
	}{
		{name: "same write as head"},
		{name: "while nginx waits for 101", held: true},
		{name: "same write as head and 100-byte body", body: 100},
		{name: "same write as head and 60000-byte body", body: 60000},
	} {
		t.Run(test.name, func(t *testing.T) {
			var hold chan struct{}
			if test.held {
				hold = make(chan struct{})
			}
			b, proxy := startProxy(t, hold)
			conn, reader := dial(t, proxy)
			early := []byte("early bytes, sent before the 101")
			length := -1
			if test.body > 0 {
				length = test.body
			}
			body := pattern(test.body, 4)
			head := append([]byte(upgradeHead(proxy, length)), body...)
			if test.held {
				_, err := conn.Write(head)
				require.NoError(t, err)
				// The backend has the request: nginx has parsed the head
				// and is waiting for the answer.
				b.request(t)
				_, err = conn.Write(early)
				require.NoError(t, err)
				close(hold)
			} else {
				_, err := conn.Write(append(head, early...))
				require.NoError(t, err)
			}

			readSwitch(t, reader)
			if !test.held {
				request := b.request(t)
				require.True(t, bytes.Equal(body, request.Body),
					"backend got a %d-byte body, want the %d bytes sent", len(request.Body), len(body))
			}
			got, forwarded := readWithin(t, conn, reader, len(early), earlyBytesWait)
			t.Logf("early bytes forwarded: %v (%q)", forwarded, got)
			require.True(t, forwarded, "nginx 1.22 forwards early bytes after the upgrade; got only %q", got)
			require.Equal(t, string(early), string(got))

			echo(t, conn, reader, []byte("late bytes, sent after the 101"))
		})
	}
}

// readWithin reads n bytes, waiting at most wait, and reports whether it
// got all of them. It restores the test-wide deadline.
func readWithin(t *testing.T, conn net.Conn, reader *bufio.Reader, n int, wait time.Duration) ([]byte, bool) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	got := make([]byte, n)
	read, err := io.ReadFull(reader, got)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testWait)))
	return got[:read], err == nil
}

// TestNginxSaysWhenBackendUnreachable: an answer nginx gives because it
// could not connect to the backend says so, so that a client knows its
// request never reached it; an answer from the backend says how long the
// connect took.
func TestNginxSaysWhenBackendUnreachable(t *testing.T) {
	front := clustertest.StartNginx(t, clustertest.RefusingAddr(t))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	response, err := client.Get("http://" + front + "/kv/x")
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != http.StatusBadGateway || response.Header.Get(clustertest.UpstreamConnectTime) != "-" {
		t.Errorf("through nginx to a refused backend: %d, %s %q; want 502 and \"-\"",
			response.StatusCode, clustertest.UpstreamConnectTime, response.Header.Get(clustertest.UpstreamConnectTime))
	}

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer backend.Close()
	front = clustertest.StartNginx(t, backend.Listener.Addr().String())
	response, err = client.Get("http://" + front + "/")
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if got := response.Header.Get(clustertest.UpstreamConnectTime); got == "" || got == "-" {
		t.Errorf("through nginx to a live backend: %s %q; want a time", clustertest.UpstreamConnectTime, got)
	}
}
