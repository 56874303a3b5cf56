package rafthttp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// TestChangeMembershipQuery checks the method and query of each kind of
// change, with values that only survive if they are URL-encoded.
func TestChangeMembershipQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		kind       raftmembership.ChangeRequestKind
		id         raft.ServerID
		address    string
		wantMethod string
		wantQuery  url.Values
	}{
		{
			name: "join", kind: raftmembership.JoinRequest, id: "node1", address: "10.0.0.1:8080",
			wantMethod: http.MethodPost, wantQuery: url.Values{"id": {"node1"}, "address": {"10.0.0.1:8080"}},
		},
		{
			name: "join non-voter", kind: raftmembership.JoinNonvoterRequest, id: "node1", address: "10.0.0.1:8080",
			wantMethod: http.MethodPost, wantQuery: url.Values{"id": {"node1"}, "address": {"10.0.0.1:8080"}, "voter": {"false"}},
		},
		{
			name: "leave sends only the ID", kind: raftmembership.LeaveRequest, id: "node1", address: "10.0.0.1:8080",
			wantMethod: http.MethodDelete, wantQuery: url.Values{"id": {"node1"}},
		},
		{
			name: "leave without address", kind: raftmembership.LeaveRequest, id: "node1",
			wantMethod: http.MethodDelete, wantQuery: url.Values{"id": {"node1"}},
		},
		{
			name: "ID with space and ampersand", kind: raftmembership.JoinRequest, id: "node 1&address=evil:1", address: "10.0.0.1:8080",
			wantMethod: http.MethodPost, wantQuery: url.Values{"id": {"node 1&address=evil:1"}, "address": {"10.0.0.1:8080"}},
		},
		{
			name: "ID with reserved characters", kind: raftmembership.LeaveRequest, id: "a+b%20c#d?e/f;g=h",
			wantMethod: http.MethodDelete, wantQuery: url.Values{"id": {"a+b%20c#d?e/f;g=h"}},
		},
		{
			name: "unicode ID", kind: raftmembership.JoinNonvoterRequest, id: "nœud-✓-日本", address: "node.example:8080",
			wantMethod: http.MethodPost, wantQuery: url.Values{"id": {"nœud-✓-日本"}, "address": {"node.example:8080"}, "voter": {"false"}},
		},
		{
			name: "IPv6 address", kind: raftmembership.JoinRequest, id: "node1", address: "[::1]:8080",
			wantMethod: http.MethodPost, wantQuery: url.Values{"id": {"node1"}, "address": {"[::1]:8080"}},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, respondOK)
			dial := recordDial(rafthttp.NewDialTCP())
			err := rafthttp.ChangeMembership(test.kind, raftPath, dial.Dial, test.id, test.address, server.addr, testWait)
			require.NoError(t, err)

			seen := server.seen()
			require.Len(t, seen, 1)
			assert.Equal(t, test.wantMethod, seen[0].Method)
			assert.Equal(t, raftPath, seen[0].Path)
			assert.Equal(t, server.addr, seen[0].Host)
			// Parse the raw query strictly: URL.Query drops what it cannot
			// decode, which would hide a badly encoded value.
			query, err := url.ParseQuery(seen[0].RawQuery)
			require.NoError(t, err, "raw query %q", seen[0].RawQuery)
			assert.Equal(t, test.wantQuery, query, "raw query %q", seen[0].RawQuery)
			assert.NotContains(t, seen[0].RawQuery, " ")
			requireAllClosed(t, dial, server)
		})
	}
}

// The mount path is escaped on the request line and arrives as given.
func TestChangeMembershipPathEscaping(t *testing.T) {
	t.Parallel()
	server := newScriptedServer(t, respondOK)
	const path = "/raft cluster/nœud"
	require.NoError(t, rafthttp.ChangeMembership(raftmembership.LeaveRequest, path, rafthttp.NewDialTCP(), "node1", "", server.addr, testWait))
	seen := server.seen()
	require.Len(t, seen, 1)
	assert.Equal(t, path, seen[0].Path)
}

// The Layer's membership methods send the Layer's advertised address and
// the right kind of change.
func TestMembershipLayerMethods(t *testing.T) {
	t.Parallel()
	advertise := advertised.String()
	tests := []struct {
		name       string
		call       func(layer *rafthttp.Layer, target raft.ServerAddress) error
		wantMethod string
		wantQuery  url.Values
	}{
		{
			name:       "Join",
			call:       func(l *rafthttp.Layer, target raft.ServerAddress) error { return l.Join("node 1", target, testWait) },
			wantMethod: http.MethodPost,
			wantQuery:  url.Values{"id": {"node 1"}, "address": {advertise}},
		},
		{
			name: "JoinContext",
			call: func(l *rafthttp.Layer, target raft.ServerAddress) error {
				return l.JoinContext(context.Background(), "node 1", target)
			},
			wantMethod: http.MethodPost,
			wantQuery:  url.Values{"id": {"node 1"}, "address": {advertise}},
		},
		{
			name: "JoinNonvoterContext",
			call: func(l *rafthttp.Layer, target raft.ServerAddress) error {
				return l.JoinNonvoterContext(context.Background(), "node 1", target)
			},
			wantMethod: http.MethodPost,
			wantQuery:  url.Values{"id": {"node 1"}, "address": {advertise}, "voter": {"false"}},
		},
		{
			name:       "Leave",
			call:       func(l *rafthttp.Layer, target raft.ServerAddress) error { return l.Leave("node 1", target, testWait) },
			wantMethod: http.MethodDelete,
			wantQuery:  url.Values{"id": {"node 1"}},
		},
		{
			name: "LeaveContext",
			call: func(l *rafthttp.Layer, target raft.ServerAddress) error {
				return l.LeaveContext(context.Background(), "node 1", target)
			},
			wantMethod: http.MethodDelete,
			wantQuery:  url.Values{"id": {"node 1"}},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, respondOK)
			dial := recordDial(rafthttp.NewDialTCP())
			layer := newLayer(t, rafthttp.LayerConfig{Dial: dial.Dial})
			require.NoError(t, test.call(layer, raft.ServerAddress(server.addr)))

			seen := server.seen()
			require.Len(t, seen, 1)
			assert.Equal(t, test.wantMethod, seen[0].Method)
			assert.Equal(t, raftPath, seen[0].Path)
			assert.Equal(t, test.wantQuery, seen[0].Query)
			assert.Equal(t, []string{server.addr}, dial.dialed(), "the Layer's Dial was not used")
			requireAllClosed(t, dial, server)
		})
	}
}

// A Layer's membership client is reused across calls; each call leaves no
// connection behind.
func TestMembershipLayerRepeatedCalls(t *testing.T) {
	t.Parallel()
	server := newScriptedServer(t, respondOK)
	dial := recordDial(rafthttp.NewDialTCP())
	layer := newLayer(t, rafthttp.LayerConfig{Dial: dial.Dial})
	for i := range 5 {
		require.NoError(t, layer.Join(raft.ServerID(fmt.Sprintf("node%d", i)), raft.ServerAddress(server.addr), testWait))
		require.NoError(t, layer.Leave(raft.ServerID(fmt.Sprintf("node%d", i)), raft.ServerAddress(server.addr), testWait))
	}
	assert.Equal(t, 10, server.count())
	// The Layer is still open: its client must not keep connections idle.
	requireAllClosed(t, dial, server)
}

// Not the leader: the request is sent again, with the same method and
// query, to the node the redirect names, over the same Dial.
func TestChangeMembershipFollowsRedirects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		kind     raftmembership.ChangeRequestKind
		noScheme bool // the Location has no scheme, rather than http
		status   int
		hops     int
	}{
		{name: "join 307", kind: raftmembership.JoinRequest, status: http.StatusTemporaryRedirect, hops: 1},
		// The Location a Handler sends: "//leader/path?query".
		{name: "join 307 without scheme", kind: raftmembership.JoinRequest, noScheme: true, status: http.StatusTemporaryRedirect, hops: 1},
		{name: "leave 307 without scheme", kind: raftmembership.LeaveRequest, noScheme: true, status: http.StatusTemporaryRedirect, hops: 1},
		{name: "three hops without scheme", kind: raftmembership.JoinRequest, noScheme: true, status: http.StatusTemporaryRedirect, hops: 3},
		{name: "join 308", kind: raftmembership.JoinRequest, status: http.StatusPermanentRedirect, hops: 1},
		{name: "leave 307", kind: raftmembership.LeaveRequest, status: http.StatusTemporaryRedirect, hops: 1},
		{name: "leave 308", kind: raftmembership.LeaveRequest, status: http.StatusPermanentRedirect, hops: 1},
		{name: "non-voter join 307", kind: raftmembership.JoinNonvoterRequest, status: http.StatusTemporaryRedirect, hops: 1},
		// A leadership change while the request travels adds hops.
		{name: "three hops", kind: raftmembership.JoinRequest, status: http.StatusTemporaryRedirect, hops: 3},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			leader := newScriptedServer(t, respondOK)
			servers := []*scriptedServer{leader}
			next := leader
			scheme := "http"
			if test.noScheme {
				scheme = ""
			}
			for range test.hops {
				next = newScriptedServer(t, redirectTo(scheme, next.addr, test.status))
				servers = append([]*scriptedServer{next}, servers...)
			}
			dial := recordDial(rafthttp.NewDialTCP())
			err := rafthttp.ChangeMembership(test.kind, raftPath, dial.Dial, "node 1", "10.0.0.1:8080", servers[0].addr, testWait)
			require.NoError(t, err)

			var wantDialed []string
			for _, server := range servers {
				wantDialed = append(wantDialed, server.addr)
				seen := server.seen()
				require.Len(t, seen, 1, "server %s", server.addr)
				assert.Equal(t, servers[0].seen()[0].Method, seen[0].Method)
				assert.Equal(t, servers[0].seen()[0].Query, seen[0].Query)
				assert.Equal(t, "node 1", seen[0].Query.Get("id"))
				server.requireConnsClosed(t)
			}
			assert.Equal(t, wantDialed, dial.dialed())
			dial.requireClosed(t)
		})
	}
}

// Nodes that redirect to each other disagree on the leader, which an
// election settles: the client keeps trying until its timeout, then says
// what went wrong.
func TestChangeMembershipRedirectLoop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		servers int
	}{
		{name: "to itself", servers: 1},
		{name: "between two nodes", servers: 2},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			var servers []*scriptedServer
			for i := range test.servers {
				servers = append(servers, newScriptedServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
					// Each server redirects to the next, the last to the first.
					redirectTo("http", servers[(i+1)%len(servers)].addr, http.StatusTemporaryRedirect)(w, r, n)
				}))
			}
			const timeout = 500 * time.Millisecond
			start := time.Now()
			dial := recordDial(rafthttp.NewDialTCP())
			err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", servers[0].addr, timeout)
			elapsed := time.Since(start)

			require.Error(t, err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			// The error names the redirects only if the deadline fell
			// between attempts: see
			// TestChangeMembershipTimeoutMidAttemptKeepsLastStatus.
			assert.GreaterOrEqual(t, elapsed, timeout, "a redirect loop is worth retrying until the timeout")
			assert.Less(t, elapsed, timeout+testWait/2)
			total := 0
			for _, server := range servers {
				total += server.count()
				server.requireConnsClosed(t)
			}
			// One attempt follows a bounded number of redirects; more
			// requests than a handful mean it was retried, and not
			// endlessly fast.
			assert.Greater(t, total, 10, "the loop was not retried")
			dial.requireClosed(t)
		})
	}
}

// One attempt follows a bounded number of redirects: a chain longer than
// any settled or settling cluster produces never reaches its end.
func TestChangeMembershipRedirectBound(t *testing.T) {
	t.Parallel()
	leader := newScriptedServer(t, respondOK)
	servers := []*scriptedServer{leader}
	for range 10 {
		servers = append([]*scriptedServer{newScriptedServer(t, redirectTo("http", servers[0].addr, http.StatusTemporaryRedirect))}, servers...)
	}
	dial := recordDial(rafthttp.NewDialTCP())
	err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", servers[0].addr, 300*time.Millisecond)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 0, leader.count(), "followed more than ten redirects in one attempt")
	assert.Greater(t, servers[0].count(), 1, "the attempt was not retried")
	requireAllClosed(t, dial, servers...)
}

// In a TLS cluster every hop is TLS, dialed by the TLS Dial itself, whether
// the redirect has no scheme (as the Handler sends it), says https (as the
// Handler did before) or http.
func TestChangeMembershipRedirectOverTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		scheme string
	}{
		{name: "location without scheme", scheme: ""},
		{name: "https location", scheme: "https"},
		{name: "http location", scheme: "http"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			leader := newScriptedTLSServer(t, respondOK)
			follower := newScriptedTLSServer(t, redirectTo(test.scheme, leader.addr, http.StatusTemporaryRedirect))
			dial := recordDial(rafthttp.NewDialTLS(trust(leader.Server, follower.Server)))

			err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", follower.addr, testWait)
			require.NoError(t, err)

			for _, server := range []*scriptedServer{follower, leader} {
				seen := server.seen()
				require.Len(t, seen, 1, "server %s", server.addr)
				assert.True(t, seen[0].TLS, "server %s got a request outside TLS", server.addr)
				assert.Equal(t, "node1", seen[0].Query.Get("id"))
				// TLS inside TLS, or plain text to a TLS port, shows up as
				// a handshake error in the server's log.
				assert.Empty(t, server.errors.String(), "server %s", server.addr)
				server.requireConnsClosed(t)
			}
			assert.Equal(t, []string{follower.addr, leader.addr}, dial.dialed())
			assert.Empty(t, dial.failures())
			dial.requireClosed(t)
		})
	}
}

// 503 means the cluster has no leader yet: try again, waiting longer each
// time, until it works.
func TestChangeMembershipRetriesUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter string
	}{
		{name: "no Retry-After"},
		// The Handler sends Retry-After: 1; it must not slow retries down
		// beyond the backoff.
		{name: "Retry-After 1", retryAfter: "1"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			const failures = 4
			server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, n int) {
				if n <= failures {
					if test.retryAfter != "" {
						w.Header().Set("Retry-After", test.retryAfter)
					}
					http.Error(w, "leader unknown", http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			dial := recordDial(rafthttp.NewDialTCP())
			start := time.Now()
			err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", server.addr, testWait)
			require.NoError(t, err)
			assert.Less(t, time.Since(start), 5*time.Second, "retries waited too long")

			seen := server.seen()
			require.Len(t, seen, failures+1, "one request per attempt until success")
			var gaps []time.Duration
			for i := 1; i < len(seen); i++ {
				gaps = append(gaps, seen[i].At.Sub(seen[i-1].At))
			}
			for i, gap := range gaps {
				assert.GreaterOrEqual(t, gap, 10*time.Millisecond, "attempt %d was retried without waiting (gaps %v)", i+2, gaps)
			}
			// Jittered exponential backoff: each wait is at least the
			// previous one's base, so the waits grow.
			assert.Greater(t, gaps[len(gaps)-1], 2*gaps[0], "waits do not grow: %v", gaps)
			requireAllClosed(t, dial, server)
		})
	}
}

// Errors other than 503 will not go away by asking again: one attempt, and
// the error carries the status and the node's reason.
func TestChangeMembershipFinalStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
	}{
		{name: "bad request", status: http.StatusBadRequest},
		{name: "forbidden", status: http.StatusForbidden},
		{name: "not found", status: http.StatusNotFound},
		{name: "method not allowed", status: http.StatusMethodNotAllowed},
		{name: "conflict", status: http.StatusConflict},
		{name: "internal server error", status: http.StatusInternalServerError},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			reason := fmt.Sprintf("rafthttp: reason %d", test.status)
			server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				http.Error(w, reason, test.status)
			})
			dial := recordDial(rafthttp.NewDialTCP())
			start := time.Now()
			err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", server.addr, testWait)
			elapsed := time.Since(start)

			require.Error(t, err)
			var status *rafthttp.StatusError
			require.ErrorAs(t, err, &status)
			assert.Equal(t, test.status, status.StatusCode)
			assert.Equal(t, reason, status.Body)
			assert.Contains(t, err.Error(), reason)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, 1, server.count(), "a final error was retried")
			assert.Less(t, elapsed, testWait/2)
			requireAllClosed(t, dial, server)
		})
	}
}

// A redirect that names no leader is a final error, not a retry loop.
func TestChangeMembershipRedirectWithoutLocation(t *testing.T) {
	t.Parallel()
	server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, rafthttp.NewDialTCP(), "node1", "10.0.0.1:8080", server.addr, testWait)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 1, server.count())
}

// A node that is restarting refuses connections for a while; the request
// is retried until it listens again.
func TestChangeMembershipRetriesConnectionRefused(t *testing.T) {
	t.Parallel()
	// Reserve a port, then free it: connecting to it is refused until the
	// server starts on it below.
	reserved, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := reserved.Addr().String()
	require.NoError(t, reserved.Close())

	dial := recordDial(rafthttp.NewDialTCP())
	dial.failed = make(chan error, 10)
	results := make(chan error, 1)
	go func() {
		results <- rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", addr, testWait)
	}()
	for i := range 2 {
		err := receive(t, dial.failed, fmt.Sprintf("dial %d to be attempted", i+1))
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "dial %d", i+1)
	}

	listener, err := net.Listen("tcp", addr)
	if err != nil {
		receive(t, results, "ChangeMembership")
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	server := startScriptedServer(t, respondOK, false, listener)

	require.NoError(t, receive(t, results, "ChangeMembership"))
	assert.Equal(t, 1, server.count())
	assert.GreaterOrEqual(t, len(dial.failures()), 2)
	requireAllClosed(t, dial, server)
}

// A certificate the client does not trust will not become trusted by
// retrying: fail at once.
func TestChangeMembershipUntrustedServerFailsFast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		plain    bool // the server speaks plain HTTP
		config   func(server *scriptedServer) *tls.Config
		wantCert bool // the error is a certificate verification error
	}{
		{
			name:     "unknown authority",
			config:   func(*scriptedServer) *tls.Config { return &tls.Config{} },
			wantCert: true,
		},
		{
			name: "wrong host name",
			config: func(server *scriptedServer) *tls.Config {
				config := trust(server.Server)
				config.ServerName = "wrong.invalid"
				return config
			},
			wantCert: true,
		},
		{
			name:   "plain HTTP server",
			plain:  true,
			config: func(*scriptedServer) *tls.Config { return &tls.Config{} },
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			server := startScriptedServer(t, respondOK, !test.plain, nil)
			dial := recordDial(rafthttp.NewDialTLS(test.config(server)))
			const timeout = 5 * time.Second
			start := time.Now()
			err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", server.addr, timeout)
			elapsed := time.Since(start)

			require.Error(t, err)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			if test.wantCert {
				var verification *tls.CertificateVerificationError
				assert.ErrorAs(t, err, &verification)
			}
			assert.Less(t, elapsed, timeout/5, "failed only at the timeout")
			assert.Len(t, dial.dialed(), 1, "retried a TLS failure")
			assert.Equal(t, 0, server.count())
			requireAllClosed(t, dial, server)
		})
	}
}

// When time runs out the error says so, wrapping the context's error, and
// says what the last attempt got. The context ends right after the first
// 503 has been read (when the client closes that connection), so the client
// is between attempts whatever the machine's speed.
func TestChangeMembershipContextEndReportsLastAttempt(t *testing.T) {
	t.Parallel()
	deadline := func() (context.Context, func()) {
		ctx := newEndingContext(context.DeadlineExceeded)
		return ctx, ctx.end
	}
	cancelable := func() (context.Context, func()) { return context.WithCancel(context.Background()) }
	tests := []struct {
		name    string
		context func() (ctx context.Context, end func())
		call    func(t *testing.T, ctx context.Context, dial rafthttp.Dial, target string) error
		want    error
	}{
		{
			name:    "ChangeMembershipContext deadline",
			context: deadline,
			call: func(_ *testing.T, ctx context.Context, dial rafthttp.Dial, target string) error {
				return rafthttp.ChangeMembershipContext(ctx, raftmembership.JoinRequest, raftPath, dial, "node1", "10.0.0.1:8080", target)
			},
			want: context.DeadlineExceeded,
		},
		{
			name:    "ChangeMembershipContext canceled",
			context: cancelable,
			call: func(_ *testing.T, ctx context.Context, dial rafthttp.Dial, target string) error {
				return rafthttp.ChangeMembershipContext(ctx, raftmembership.LeaveRequest, raftPath, dial, "node1", "", target)
			},
			want: context.Canceled,
		},
		{
			name:    "Layer.JoinContext deadline",
			context: deadline,
			call: func(t *testing.T, ctx context.Context, dial rafthttp.Dial, target string) error {
				return newLayer(t, rafthttp.LayerConfig{Dial: dial}).JoinContext(ctx, "node1", raft.ServerAddress(target))
			},
			want: context.DeadlineExceeded,
		},
		{
			name:    "Layer.JoinNonvoterContext deadline",
			context: deadline,
			call: func(t *testing.T, ctx context.Context, dial rafthttp.Dial, target string) error {
				return newLayer(t, rafthttp.LayerConfig{Dial: dial}).JoinNonvoterContext(ctx, "node1", raft.ServerAddress(target))
			},
			want: context.DeadlineExceeded,
		},
		{
			name:    "Layer.LeaveContext canceled",
			context: cancelable,
			call: func(t *testing.T, ctx context.Context, dial rafthttp.Dial, target string) error {
				return newLayer(t, rafthttp.LayerConfig{Dial: dial}).LeaveContext(ctx, "node1", raft.ServerAddress(target))
			},
			want: context.Canceled,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "rafthttp: no leader yet", http.StatusServiceUnavailable)
			})
			ctx, end := test.context()
			defer end()
			dial := recordDial(closeHookDial(rafthttp.NewDialTCP(), end))

			err := test.call(t, ctx, dial.Dial, server.addr)
			require.Error(t, err)
			assert.ErrorIs(t, err, test.want)
			var status *rafthttp.StatusError
			require.ErrorAs(t, err, &status, "the last attempt's answer is lost: %v", err)
			assert.Equal(t, http.StatusServiceUnavailable, status.StatusCode)
			assert.Equal(t, "rafthttp: no leader yet", status.Body)
			assert.Contains(t, err.Error(), "503")
			assert.Equal(t, 1, server.count(), "tried again after the context ended")
			requireAllClosed(t, dial, server)
		})
	}
}

// ChangeMembership's own timeout ends the request with an error wrapping
// context.DeadlineExceeded, soon after the timeout.
func TestChangeMembershipTimeout(t *testing.T) {
	t.Parallel()
	server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, "rafthttp: no leader yet", http.StatusServiceUnavailable)
	})
	const timeout = 300 * time.Millisecond
	start := time.Now()
	err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, rafthttp.NewDialTCP(), "node1", "10.0.0.1:8080", server.addr, timeout)
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "last attempt")
	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, timeout+testWait/2)
	assert.Greater(t, server.count(), 1, "a 503 was not retried")
	server.requireConnsClosed(t)
}

// When time runs out while an attempt is under way, that attempt got
// nothing; the error must still say what the node last answered, which is
// what tells an operator why the join failed (here: no leader).
func TestChangeMembershipTimeoutMidAttemptKeepsLastStatus(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	server := newScriptedServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			http.Error(w, "rafthttp: no leader yet", http.StatusServiceUnavailable)
			return
		}
		// Later attempts are taken and never answered.
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	t.Cleanup(func() { close(stop) })

	err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, rafthttp.NewDialTCP(), "node1", "10.0.0.1:8080", server.addr, 300*time.Millisecond)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	var status *rafthttp.StatusError
	assert.ErrorAs(t, err, &status, "the 503 the node answered is missing from: %v", err)
	assert.Contains(t, err.Error(), "503")
	assert.Equal(t, 2, server.count())
	server.requireConnsClosed(t)
}

// A node that takes the request and never answers holds the client only
// until its timeout.
func TestChangeMembershipTimeoutWhileWaitingForAnswer(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	server := newScriptedServer(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	// Runs before the server's Close, which waits for handlers.
	t.Cleanup(func() { close(stop) })

	const timeout = 300 * time.Millisecond
	start := time.Now()
	err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, rafthttp.NewDialTCP(), "node1", "10.0.0.1:8080", server.addr, timeout)
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, timeout+testWait/2)
	server.requireConnsClosed(t)
}

// Canceling a request whose TLS handshake is stuck must not leave the
// connection, and the goroutine dialing it, behind: the caller has been
// told the request is over.
func TestChangeMembershipCancelDuringTLSHandshake(t *testing.T) {
	t.Parallel()
	// A peer that accepts connections and never answers the handshake.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { listener.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := listener.Accept()
		if err == nil {
			accepted <- conn
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan error, 1)
	go func() {
		results <- rafthttp.ChangeMembershipContext(ctx, raftmembership.JoinRequest, raftPath,
			rafthttp.NewDialTLS(&tls.Config{}), "node1", "10.0.0.1:8080", listener.Addr().String())
	}()
	conn := receive(t, accepted, "the client to connect")
	// Closing the peer's end, when the test ends, ends a handshake still
	// in progress, so a failure here leaks nothing past the test.
	t.Cleanup(func() { conn.Close() })

	cancel()
	err = receive(t, results, "ChangeMembershipContext after cancel")
	require.ErrorIs(t, err, context.Canceled)
	// A Dial cannot see the context, so the handshake itself goes on until
	// the Dial's timeout (DefaultTimeout here, as the context has no
	// deadline) or until the peer hangs up, which the cleanup above does;
	// goleak then checks that nothing was left behind.
}

// Arguments that can never work are rejected before anything is sent.
func TestChangeMembershipInvalidArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		kind    raftmembership.ChangeRequestKind
		path    string
		id      raft.ServerID
		address string
		target  func(server *scriptedServer) string
	}{
		{name: "empty path", kind: raftmembership.JoinRequest, path: "", id: "node1", address: "10.0.0.1:8080"},
		{name: "relative path", kind: raftmembership.JoinRequest, path: "raft", id: "node1", address: "10.0.0.1:8080"},
		{name: "path with query", kind: raftmembership.JoinRequest, path: "/raft?id=other", id: "node1", address: "10.0.0.1:8080"},
		{name: "path with fragment", kind: raftmembership.LeaveRequest, path: "/raft#x", id: "node1"},
		{name: "path with control character", kind: raftmembership.LeaveRequest, path: "/ra\nft", id: "node1"},
		{name: "unknown kind", kind: raftmembership.ChangeRequestKind(42), path: raftPath, id: "node1", address: "10.0.0.1:8080"},
		{name: "negative kind", kind: raftmembership.ChangeRequestKind(-1), path: raftPath, id: "node1", address: "10.0.0.1:8080"},
		{name: "empty ID join", kind: raftmembership.JoinRequest, path: raftPath, id: "", address: "10.0.0.1:8080"},
		{name: "empty ID non-voter join", kind: raftmembership.JoinNonvoterRequest, path: raftPath, id: "", address: "10.0.0.1:8080"},
		{name: "empty ID leave", kind: raftmembership.LeaveRequest, path: raftPath, id: ""},
		{name: "join without address", kind: raftmembership.JoinRequest, path: raftPath, id: "node1", address: ""},
		{
			name: "empty target", kind: raftmembership.JoinRequest, path: raftPath, id: "node1", address: "10.0.0.1:8080",
			target: func(*scriptedServer) string { return "" },
		},
		{
			name: "target with white space", kind: raftmembership.JoinRequest, path: raftPath, id: "node1", address: "10.0.0.1:8080",
			target: func(server *scriptedServer) string { return server.addr + " x" },
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, respondOK)
			target := server.addr
			if test.target != nil {
				target = test.target(server)
			}
			dial := recordDial(rafthttp.NewDialTCP())
			start := time.Now()
			err := rafthttp.ChangeMembership(test.kind, test.path, dial.Dial, test.id, test.address, target, testWait)
			require.Error(t, err)
			assert.Less(t, time.Since(start), testWait/5, "an invalid argument was retried")
			assert.Empty(t, dial.dialed(), "dialed for a request that cannot work")
			assert.Equal(t, 0, server.count())
		})
	}
}

// A nil Dial means plain TCP, as for the Layer.
func TestChangeMembershipNilDial(t *testing.T) {
	t.Parallel()
	server := newScriptedServer(t, respondOK)
	require.NoError(t, rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, nil, "node1", "10.0.0.1:8080", server.addr, testWait))
	assert.Equal(t, 1, server.count())
	server.requireConnsClosed(t)
}

// Large answers are read only as far as needed, and their connections
// still closed, whatever the outcome.
func TestChangeMembershipLargeBodies(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("x", 1<<20)
	tests := []struct {
		name    string
		respond respondFunc
		wantErr bool
	}{
		{
			name: "success",
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				io.WriteString(w, body)
			},
		},
		{
			name: "final error",
			respond: func(w http.ResponseWriter, _ *http.Request, _ int) {
				http.Error(w, body, http.StatusBadRequest)
			},
			wantErr: true,
		},
		{
			name: "unavailable then success",
			respond: func(w http.ResponseWriter, _ *http.Request, n int) {
				if n <= 2 {
					http.Error(w, body, http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, body)
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, test.respond)
			// A context that never ends: nothing but the client's own
			// reading and closing releases the connection.
			dial := recordDial(rafthttp.NewDialTCP())
			err := rafthttp.ChangeMembershipContext(context.Background(), raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", server.addr)
			if test.wantErr {
				var status *rafthttp.StatusError
				require.ErrorAs(t, err, &status)
				assert.Less(t, len(status.Body), 64<<10, "the error holds the whole body")
			} else {
				require.NoError(t, err)
			}
			requireAllClosed(t, dial, server)
		})
	}
}

// TestMembershipDialGetsTheTimeLeft checks that Join and Leave give the
// Dial the time left before their deadline, not DefaultTimeout, so that a
// connect abandoned with the call does not run on long after it.
func TestMembershipDialGetsTheTimeLeft(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	for _, kind := range []string{"join", "leave"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var timeouts []time.Duration
			dial := func(addr string, timeout time.Duration) (net.Conn, error) {
				mu.Lock()
				timeouts = append(timeouts, timeout)
				mu.Unlock()
				return rafthttp.NewDialTCP()(addr, timeout)
			}
			layer := newLayer(t, rafthttp.LayerConfig{Dial: dial})
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			target := raft.ServerAddress(clustertest.RefusingAddr(t))
			var err error
			if kind == "join" {
				err = layer.JoinContext(ctx, "n1", target)
			} else {
				err = layer.LeaveContext(ctx, "n1", target)
			}
			require.ErrorIs(t, err, context.DeadlineExceeded)
			mu.Lock()
			defer mu.Unlock()
			require.NotEmpty(t, timeouts, "the Dial was called")
			for _, timeout := range timeouts {
				assert.Positive(t, timeout)
				assert.LessOrEqual(t, timeout, deadline, "a Dial was given more than the call had left")
			}
		})
	}
}
