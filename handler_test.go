package rafthttp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

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
			t.Run(tt.name+"/"+transportName(useTLS), func(t *testing.T) {
				t.Parallel()
				server := startServer(t, serverOptions{tls: useTLS})
				client := server.dialRaw(t)
				write(t, client, requestHead(http.MethodGet, raftPath, server.addr(), tt.headers...))
				require101(t, client)
				exchange(t, client, server.accept(t))
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
		// A GET with no Upgrade header at all asks for the membership
		// view: see TestHandlerMembers.
		{name: "empty Upgrade header", headers: []string{"Upgrade:"}},
		{name: "websocket", headers: []string{"Upgrade: websocket", "Connection: Upgrade"}},
		{name: "raft only as a prefix", headers: []string{"Upgrade: raftx", "Connection: Upgrade"}},
		{name: "raft only as a suffix", headers: []string{"Upgrade: notraft"}},
		{name: "several other tokens", headers: []string{"Upgrade: websocket, h2c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{})
			client := server.dialRaw(t)
			write(t, client, requestHead(http.MethodGet, raftPath, server.addr(), tt.headers...))
			response := readResponse(t, bufio.NewReader(client), http.MethodGet)
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
			requirePlainText(t, response)
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodHead, http.MethodOptions, "PROPFIND"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{})
			taken := answerRequests(t, server.handler, answerWith(nil))
			response := server.do(t, method, url.Values{"id": {"node2"}, "address": {"127.0.0.1:9002"}}.Encode())
			require.Equal(t, http.StatusMethodNotAllowed, response.status, "body: %s", response.body)
			require.Equal(t, "GET, POST, DELETE", response.header.Get("Allow"))
			if method != http.MethodHead {
				requirePlainText(t, response)
			}
			require.Empty(t, taken, "a refused method reached Requests")
		})
	}
}

func TestHandlerUpgradeThroughMiddleware(t *testing.T) {
	t.Parallel()
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(unwrappingWriter{w}, r)
		})
	}
	for _, useTLS := range []bool{false, true} {
		t.Run(transportName(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{tls: useTLS, wrap: wrap})
			client := server.upgrade(t)
			exchange(t, client, server.accept(t))
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
				w = opaqueWriter{w}
			}
			next.ServeHTTP(w, r)
		})
	}
	// One backlog slot: if a failed hijack kept its slot, the next upgrade
	// would be refused with 503 once the short timeout passed.
	server := startServer(t, serverOptions{
		config: rafthttp.HandlerConfig{Backlog: 1, Timeout: shortTimeout},
		wrap:   wrap,
	})
	for attempt := range 3 {
		client := server.dialRaw(t)
		write(t, client, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: raft", "X-Opaque-Writer: 1"))
		response := readResponse(t, bufio.NewReader(client), http.MethodGet)
		require.Equal(t, http.StatusInternalServerError, response.status, "attempt %d: body: %s", attempt, response.body)
		requirePlainText(t, response)
		require.Contains(t, strings.ToLower(response.body), "hijack", "the reason should say the connection could not be hijacked")
	}
	client := server.upgrade(t)
	exchange(t, client, server.accept(t))
}

func TestHandlerUpgradeHijackFailureClosesConnAndFreesSlot(t *testing.T) {
	t.Parallel()
	logger, _ := newTestLogger(t, false)
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: logger, Backlog: 1, Timeout: shortTimeout})
	t.Cleanup(handler.Close)
	for attempt := range 3 {
		w := newFailingHijacker(t)
		handler.ServeHTTP(w, upgradeRequest())
		require.True(t, w.hijacked, "attempt %d was refused before hijacking: a failed attempt kept its backlog slot (status %d)", attempt, w.Code)
		require.True(t, w.conn.wasClosed(), "attempt %d: the hijacked connection was left open after the 101 could not be written", attempt)
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
	client, err := net.DialTimeout("tcp", listener.Addr().String(), testWait)
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.SetDeadline(time.Now().Add(testWait)))
	served, err := listener.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { served.Close() })
	require.NoError(t, served.SetDeadline(time.Now().Add(-time.Second)))

	logger, _ := newTestLogger(t, false)
	handler := rafthttp.NewHandlerWithLogger(logger)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: raftPath, Addr: listener.Addr(), Handler: handler})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })
	server := &testServer{path: raftPath, handler: handler, layer: layer}

	handler.ServeHTTP(newFakeHijacker(served), upgradeRequest())
	require101(t, client)
	exchange(t, client, server.accept(t))
}

func TestHandlerBacklogFullRefusesBefore101(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: shortTimeout}})
	first := server.upgrade(t) // fills the backlog: nothing accepts

	// Connection: close makes the server close after its answer, so
	// everything it sends, a 101 included, is read.
	refused := server.dialRaw(t)
	start := time.Now()
	write(t, refused, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: raft", "Connection: close"))
	raw := readUntilClosed(t, refused)
	require.True(t, strings.HasPrefix(raw, "HTTP/1.1 503 "), "want a 503 and nothing before it, got %q", raw)
	require.NotContains(t, raw, "101 Switching Protocols")
	require.GreaterOrEqual(t, time.Since(start), shortTimeout, "refused before the timeout: the upgrade did not wait for room")
	response := readResponse(t, bufio.NewReader(strings.NewReader(raw)), http.MethodGet)
	assert.Contains(t, response.body, "backlog full")
	requireRetryAfter(t, response)
	requirePlainText(t, response)

	// The queued connection is intact, and accepting it makes room.
	exchange(t, first, server.accept(t))
	third := server.upgrade(t)
	exchange(t, third, server.accept(t))
}

func TestHandlerBacklogUpgradeWaitsForRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// timeout is the Handler's; room: Accept makes room before it
		// passes. Without room the upgrade ends as the timeout says.
		timeout time.Duration
		room    bool
	}{
		{name: "until the timeout", timeout: shortTimeout},
		{name: "until Accept makes room", timeout: longTimeout, room: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			backlog := startFullBacklog(t, tt.timeout)
			server := backlog.server
			if !tt.room {
				// Neither 101 nor 503 before the timeout: the first thing
				// the peer reads is the timeout's 503, after it.
				response := readResponse(t, bufio.NewReader(backlog.waiting), http.MethodGet)
				require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
				require.GreaterOrEqual(t, time.Since(backlog.sent), tt.timeout, "answered before the timeout")
				assert.Contains(t, response.body, "backlog full")
				requireRetryAfter(t, response)
				exchange(t, backlog.first, server.accept(t))
				return
			}
			room := server.wire.mark()
			exchange(t, backlog.first, server.accept(t))
			require101(t, backlog.waiting)
			// Neither 101 nor 503 while the backlog was full, however late.
			server.wire.requireWritesAfter(t, backlog.waiting, room, "Accept made room")
			exchange(t, backlog.waiting, server.accept(t))
		})
	}
}

func TestHandlerBacklogWaitBoundedByTimeoutMethod(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: longTimeout}})
	server.handler.Timeout(shortTimeout)
	server.upgrade(t)

	refused := server.dialRaw(t)
	write(t, refused, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: raft"))
	response := readResponse(t, bufio.NewReader(refused), http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
	requireRetryAfter(t, response)
}

func TestHandlerBacklogCanceledUpgradeReleasesHandler(t *testing.T) {
	t.Parallel()
	backlog := startFullBacklog(t, longTimeout)
	require.NoError(t, backlog.waiting.Close()) // the peer gives up
	receive(t, backlog.tracker.left, "the abandoned upgrade to leave the handler")
}

func TestHandlerUpgradeAfterCloseRefused(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(transportName(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{tls: useTLS})
			closeWithin(t, server.handler)

			client := server.dialRaw(t)
			write(t, client, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: raft", "Connection: close"))
			raw := readUntilClosed(t, client)
			require.NotContains(t, raw, "101 Switching Protocols")
			response := readResponse(t, bufio.NewReader(strings.NewReader(raw)), http.MethodGet)
			require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
			requireRetryAfter(t, response)
			requirePlainText(t, response)
		})
	}
}

func TestHandlerCloseEndsUpgradeWaitingForRoom(t *testing.T) {
	t.Parallel()
	backlog := startFullBacklog(t, longTimeout)
	closing := backlog.server.wire.mark()
	closeWithin(t, backlog.server.handler)
	response := readResponse(t, bufio.NewReader(backlog.waiting), http.MethodGet)
	require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
	assert.Contains(t, response.body, "handler closed", "the answer was not Close's")
	requireRetryAfter(t, response)
	backlog.server.wire.requireWritesAfter(t, backlog.waiting, closing, "Close")
}

func TestHandlerCloseClosesQueuedConnections(t *testing.T) {
	t.Parallel()
	tracker := newRequestTracker()
	server := startServer(t, serverOptions{wrap: tracker.wrap})
	queued := []net.Conn{server.upgrade(t), server.upgrade(t)}
	// ServeHTTP queues the connection before it returns.
	for range queued {
		receive(t, tracker.left, "an upgrade to be queued")
	}
	closeWithin(t, server.handler)
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
		t.Run(transportName(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{tls: useTLS})
			client := server.dialRaw(t)
			const early = "raft bytes sent behind the request head"
			// One write: the server reads the head and these bytes together.
			write(t, client, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: raft")+early)
			require101(t, client)

			accepted := server.accept(t)
			require.Equal(t, early, readFull(t, accepted, len(early)), "early bytes must come first")
			exchange(t, client, accepted)
		})
	}
}

// TestHandlerWrapsConnOnlyWithEarlyBytes checks that raft gets the hijacked
// connection itself unless the peer's early bytes must be replayed, so the
// common case pays nothing for the wrapper.
func TestHandlerWrapsConnOnlyWithEarlyBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tls    bool
		early  string
		isWrap bool
	}{
		{name: "tcp without early bytes"},
		{name: "tls without early bytes", tls: true},
		{name: "tcp with early bytes", early: "early raft bytes", isWrap: true},
		{name: "tls with early bytes", tls: true, early: "early raft bytes", isWrap: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{tls: tt.tls})
			client := server.dialRaw(t)
			write(t, client, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: raft")+tt.early)
			require101(t, client)

			r := receive(t, acceptAsync(func() (net.Conn, error) { return rafthttp.HandlerAccept(server.handler) }),
				"the Handler to queue the upgraded connection")
			require.NoError(t, r.err)
			t.Cleanup(func() { r.conn.Close() })
			if !tt.isWrap {
				if tt.tls {
					require.IsType(t, &tls.Conn{}, r.conn)
				} else {
					require.IsType(t, &net.TCPConn{}, r.conn)
				}
				return
			}
			require.IsType(t, &rafthttp.PrefixConn{}, r.conn)
			require.Equal(t, tt.early, readFull(t, r.conn, len(tt.early)))
		})
	}
}

func TestHandlerUpgradedConnOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	const serverTimeout = 100 * time.Millisecond
	for _, useTLS := range []bool{false, true} {
		t.Run(transportName(useTLS), func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{
				tls: useTLS,
				configure: func(s *http.Server) {
					s.ReadTimeout = serverTimeout
					s.WriteTimeout = serverTimeout
				},
			})
			client := server.upgrade(t)
			upgraded := time.Now()
			accepted := server.accept(t)

			// The server set its deadlines before the upgrade. Once they
			// have passed, a read or a write they still bound fails.
			waitPast(upgraded.Add(2 * serverTimeout))
			fromClient := readAsync(accepted, 1)
			fromServer := readAsync(client, 1)
			write(t, client, "c")
			r := receive(t, fromClient, "the accepted conn's read")
			require.NoError(t, r.err, "a read deadline was left on the accepted conn")
			require.Equal(t, "c", r.data)
			write(t, accepted, "s")
			r = receive(t, fromServer, "the client's read")
			require.NoError(t, r.err, "a write deadline was left on the accepted conn")
			require.Equal(t, "s", r.data)

			exchange(t, client, accepted)
		})
	}
}

func TestHandlerInteropOriginalClient(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{})
	client := server.dialRaw(t)
	// Exactly what a node running the original package sends: the request
	// Go's http.Request.Write produces, with no Connection header.
	write(t, client, "GET /raft HTTP/1.1\r\nHost: "+server.addr()+"\r\nUser-Agent: Go-http-client/1.1\r\nUpgrade: raft\r\n\r\n")
	raw := readFull(t, client, len(handler101))
	require.Equal(t, handler101, raw)

	// The original client checks only the status and the Upgrade header.
	response, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, response.StatusCode)
	require.Equal(t, "raft", response.Header.Get("Upgrade"))

	exchange(t, client, server.accept(t))
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
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "//" + leader + "/raft?" + join,
		},
		{
			name: "leave at a follower", method: http.MethodDelete, query: leave,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "//" + leader + "/raft?" + leave,
		},
		// Over TLS the Location is the same: with no scheme, every client
		// keeps its own (README, Membership).
		{
			name: "join at a follower over TLS", tls: true, method: http.MethodPost, query: join,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "//" + leader + "/raft?" + join,
		},
		{
			name: "leave at a follower over TLS", tls: true, method: http.MethodDelete, query: leave,
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "//" + leader + "/raft?" + leave,
		},
		{
			name: "redirect keeps a nested path and the query as sent", path: "/cluster/raft", method: http.MethodPost,
			query:      "address=127.0.0.1%3A9002&id=node2&x=%C3%A9",
			outcome:    raftmembership.NewErrDifferentLeader(leader),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "//" + leader + "/cluster/raft?address=127.0.0.1%3A9002&id=node2&x=%C3%A9",
		},
		{
			name: "wrapped different leader", method: http.MethodPost, query: join,
			outcome:    fmt.Errorf("membership: %w", raftmembership.NewErrDifferentLeader(leader)),
			wantStatus: http.StatusTemporaryRedirect, wantLocation: "//" + leader + "/raft?" + join,
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
			server := startServer(t, serverOptions{tls: tt.tls, path: tt.path})
			taken := answerRequests(t, server.handler, answerWith(tt.outcome))
			response := server.do(t, tt.method, tt.query)
			require.Equal(t, tt.wantStatus, response.status, "body: %s", response.body)

			request := receive(t, taken, "the request on Requests")
			require.Equal(t, raft.ServerID("node2"), request.ID())

			switch tt.wantStatus {
			case http.StatusTemporaryRedirect:
				require.Equal(t, tt.wantLocation, response.header.Get("Location"))
			case http.StatusServiceUnavailable:
				requireRetryAfter(t, response)
				requirePlainText(t, response)
			case http.StatusInternalServerError:
				requirePlainText(t, response)
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
			server := startServer(t, serverOptions{})
			taken := answerRequests(t, server.handler, answerWith(nil))
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
			server := startServer(t, serverOptions{})
			taken := answerRequests(t, server.handler, answerWith(nil))
			response := server.do(t, tt.method, tt.query)
			require.Equal(t, http.StatusBadRequest, response.status, "body: %s", response.body)
			requirePlainText(t, response)
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
			server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Timeout: shortTimeout}})
			var taken <-chan *raftmembership.ChangeRequest
			if tt.consume {
				taken = answerRequests(t, server.handler, nil)
			}
			start := time.Now()
			response := server.do(t, tt.method, tt.query) // the client gives up after testWait
			require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
			require.GreaterOrEqual(t, time.Since(start), shortTimeout, "answered before the timeout")
			requireRetryAfter(t, response)
			requirePlainText(t, response)
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
			tracker := newRequestTracker()
			server := startServer(t, serverOptions{
				config: rafthttp.HandlerConfig{Timeout: longTimeout},
				wrap:   tracker.wrap,
			})
			var taken <-chan *raftmembership.ChangeRequest
			if consume {
				taken = answerRequests(t, server.handler, nil)
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
			tracker := newRequestTracker()
			server := startServer(t, serverOptions{
				config: rafthttp.HandlerConfig{Timeout: longTimeout},
				wrap:   tracker.wrap,
			})
			var taken <-chan *raftmembership.ChangeRequest
			if tt.consume {
				taken = answerRequests(t, server.handler, nil)
			}
			type result struct {
				response httpResponse
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
			closeWithin(t, server.handler)
			r := receive(t, answered, "an answer after Close")
			require.NoError(t, r.err)
			require.Equal(t, http.StatusServiceUnavailable, r.response.status, "body: %s", r.response.body)
			requireRetryAfter(t, r.response)
		})
	}
}

func TestHandlerMembershipAfterCloseRefused(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{})
	closeWithin(t, server.handler)
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		response := server.do(t, method, "id=node2&address=127.0.0.1:9002")
		require.Equal(t, http.StatusServiceUnavailable, response.status, "%s: body: %s", method, response.body)
		requireRetryAfter(t, response)
	}
}

func TestHandlerCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, server *testServer)
	}{
		{name: "nobody consuming", setup: func(*testing.T, *testServer) {}},
		{
			name: "consumer ranging over Requests",
			setup: func(t *testing.T, server *testServer) {
				answerRequests(t, server.handler, answerWith(nil))
			},
		},
		{
			name: "upgraded connections queued",
			setup: func(t *testing.T, server *testServer) {
				server.upgrade(t)
				server.upgrade(t)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{})
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
			closeWithin(t, server.handler)
			require.NoError(t, server.layer.Close())
			closeWithin(t, server.handler)
		})
	}
}

func TestHandlerCloseClosesRequests(t *testing.T) {
	t.Parallel()
	logger, _ := newTestLogger(t, false)
	handler := rafthttp.NewHandlerWithLogger(logger)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for request := range handler.Requests() {
			request.Done(nil)
		}
	}()
	closeWithin(t, handler)
	receive(t, ended, "a range over Requests to end after Close")
	_, open := <-handler.Requests()
	require.False(t, open)
}

func TestHandlerTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler func(hclog.Logger) *rafthttp.Handler
		// want is the timeout the Handler applies. With shortTimeout,
		// requests are also seen to end with 503 once it has passed.
		want time.Duration
	}{
		{
			name: "HandlerConfig.Timeout bounds the wait", want: shortTimeout,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				return rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: shortTimeout})
			},
		},
		{
			name: "Timeout shortens the default", want: shortTimeout,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithLogger(l)
				h.Timeout(shortTimeout)
				return h
			},
		},
		{
			name: "Timeout replaces a configured timeout", want: shortTimeout,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: longTimeout})
				h.Timeout(shortTimeout)
				return h
			},
		},
		{
			name: "NewHandler uses the default", want: rafthttp.DefaultTimeout,
			handler: func(hclog.Logger) *rafthttp.Handler {
				return rafthttp.NewHandler()
			},
		},
		{
			name: "zero HandlerConfig.Timeout means the default", want: rafthttp.DefaultTimeout,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				return rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l})
			},
		},
		{
			name: "Timeout(0) restores the default", want: rafthttp.DefaultTimeout,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: shortTimeout})
				h.Timeout(0)
				return h
			},
		},
		{
			name: "negative Timeout restores the default", want: rafthttp.DefaultTimeout,
			handler: func(l hclog.Logger) *rafthttp.Handler {
				h := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: l, Timeout: shortTimeout})
				h.Timeout(-time.Second)
				return h
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, _ := newTestLogger(t, false)
			handler := tt.handler(logger)
			t.Cleanup(handler.Close)
			require.Equal(t, tt.want, rafthttp.HandlerTimeout(handler))
			if tt.want != shortTimeout {
				return
			}
			server := startServer(t, serverOptions{handler: handler})
			// Nobody consumes Requests: only the timeout ends the wait.
			start := time.Now()
			response := server.do(t, http.MethodPost, "id=node2&address=127.0.0.1:9002")
			require.Equal(t, http.StatusServiceUnavailable, response.status, "body: %s", response.body)
			require.GreaterOrEqual(t, time.Since(start), shortTimeout)
		})
	}
}

// TestHandlerLogsRequests checks the logging rule: every request's
// outcome is logged with key/value pairs naming the remote address and the
// request path, so an operator can tell which peer got which answer.
func TestHandlerLogsRequests(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{jsonLogs: true})
	answerRequests(t, server.handler, func(request *raftmembership.ChangeRequest) error {
		if request.Kind() == raftmembership.MembersRequest {
			request.DoneMembers(&raftmembership.Membership{Servers: []raftmembership.Server{}})
			return nil
		}
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
		{name: "membership view", method: http.MethodGet, target: "/raft", wantStatus: http.StatusOK},
		{name: "upgrade refused", method: http.MethodGet, target: "/raft", headers: []string{"Upgrade: websocket"}, wantStatus: http.StatusBadRequest},
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
			write(t, conn, requestHead(tt.method, tt.target, server.addr(), headers...))
			response := readResponse(t, bufio.NewReader(conn), tt.method)
			require.Equal(t, tt.wantStatus, response.status, "body: %s", response.body)
			if tt.wantStatus == http.StatusSwitchingProtocols {
				server.accept(t)
			}
			remote := conn.LocalAddr().String()
			assert.Eventually(t, func() bool {
				for _, line := range server.logs.jsonLines() {
					if line["remote-address"] == remote && line["path"] == raftPath {
						return true
					}
				}
				return false
			}, testWait, 5*time.Millisecond,
				"no log line with remote-address %s and path %s; logs:\n%s", remote, raftPath, server.logs)
		})
	}
}

// TestHandlerIgnoresUpgradeOnHTTP10 checks RFC 9110 section 7.8: the
// Upgrade header of an HTTP/1.0 request is ignored, so it gets no 101 and
// nothing reaches Accept.
func TestHandlerIgnoresUpgradeOnHTTP10(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{})
	conn := server.dialRaw(t)
	write(t, conn, "GET /raft HTTP/1.0\r\nHost: raft\r\nUpgrade: raft\r\nConnection: Upgrade\r\n\r\n")
	response := readResponse(t, bufio.NewReader(conn), http.MethodGet)
	assert.Equal(t, http.StatusUpgradeRequired, response.status)
	assert.Contains(t, response.body, "HTTP/1.1")

	// The next connection raft accepts is a real upgrade, not the 1.0 one.
	exchange(t, server.upgrade(t), server.accept(t))
}
