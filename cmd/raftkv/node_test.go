package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testPKI is a CA and one certificate it signed for 127.0.0.1, good for
// serving and for client authentication, written as PEM files.
type testPKI struct {
	certFile, keyFile, caFile string
	certificate               tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca := clustertest.NewCA(t)
	pki := &testPKI{certificate: ca.Certificate, pool: ca.Pool}
	pki.certFile, pki.keyFile, pki.caFile = ca.WriteFiles(t, t.TempDir())
	return pki
}

func (p *testPKI) configure(config *nodeConfig) {
	config.TLSCert, config.TLSKey, config.TLSCA = p.certFile, p.keyFile, p.caFile
}

// client returns an HTTPS client that trusts the CA and, with present,
// presents the certificate.
func (p *testPKI) client(t *testing.T, present, follow bool) *http.Client {
	client := newAPIClient(t, follow)
	config := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if present {
		config.Certificates = []tls.Certificate{p.certificate}
	}
	client.Transport.(*http.Transport).TLSClientConfig = config
	return client
}

// TestNodeTLS runs a cluster over mutual TLS: redirects say https, and a
// client without a certificate the CA signed is refused.
func TestNodeTLS(t *testing.T) {
	pki := newTestPKI(t)
	nodes := startCluster(t, 2, pki.configure)
	leader := waitLeader(t, nodes)
	follower := nodeFollowers(nodes, leader)[0]
	direct := pki.client(t, true, false)
	following := pki.client(t, true, true)
	https := func(n *testNode, path string) string { return "https://" + n.addr() + path }

	got := do(t, direct, http.MethodPut, https(follower, "/kv/secret"), strings.NewReader("v"))
	require.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
	assert.Equal(t, https(leader, "/kv/secret"), got.header.Get("Location"))
	got = do(t, direct, http.MethodGet, https(follower, "/kv/secret?consistent=true"), nil)
	require.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
	assert.Equal(t, https(leader, "/kv/secret?consistent=true"), got.header.Get("Location"))

	got = do(t, following, http.MethodPut, https(follower, "/kv/secret"), strings.NewReader("over TLS"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	require.Eventually(t, func() bool {
		return sendGet(direct, https(follower, "/kv/secret"), http.StatusOK, "over TLS")
	}, waitTimeout, pollEvery)
	got = do(t, direct, http.MethodGet, https(follower, "/status"), nil)
	assert.Equal(t, http.StatusOK, got.status)
	assert.Contains(t, got.body, `"address":"`+leader.addr()+`"`)

	t.Run("client without certificate", func(t *testing.T) {
		request, err := http.NewRequest(http.MethodGet, https(leader, "/kv/secret"), nil)
		require.NoError(t, err)
		response, err := pki.client(t, false, false).Do(request)
		if err == nil {
			response.Body.Close()
		}
		require.Error(t, err, "a client without a certificate is refused")
	})
	t.Run("plain http", func(t *testing.T) {
		request, err := http.NewRequest(http.MethodGet, leader.url("/kv/secret"), nil)
		require.NoError(t, err)
		response, err := newAPIClient(t, false).Do(request)
		if err != nil {
			return
		}
		// net/http answers a plain request on a TLS connection itself.
		response.Body.Close()
		assert.Equal(t, http.StatusBadRequest, response.StatusCode, "the port speaks only TLS")
	})
}

// TestNodeNonvoter joins a non-voter: it receives the log, shows as
// Nonvoter, and redirects writes to the leader.
func TestNodeNonvoter(t *testing.T) {
	nodes := startCluster(t, 3, func(config *nodeConfig) { config.Nonvoter = config.ID == "node3" })
	leader := waitLeader(t, nodes)
	require.NotEqual(t, "node3", leader.config.ID)
	nonvoter := nodes[2]
	direct := newAPIClient(t, false)

	status, err := nonvoter.status()
	require.NoError(t, err)
	suffrage := map[string]string{}
	for _, server := range status.Servers {
		suffrage[server.ID] = server.Suffrage
	}
	assert.Equal(t, map[string]string{"node1": "Voter", "node2": "Voter", "node3": "Nonvoter"}, suffrage)

	got := do(t, direct, http.MethodPut, nonvoter.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
	assert.Equal(t, leader.url("/kv/k"), got.header.Get("Location"))
	got = do(t, direct, http.MethodPut, leader.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	require.Eventually(t, func() bool {
		return sendGet(direct, nonvoter.url("/kv/k"), http.StatusOK, "v")
	}, waitTimeout, pollEvery)
}

// TestNodeLeaveOnShutdown stops a node configured to leave: the others
// drop it from the configuration and keep taking writes.
func TestNodeLeaveOnShutdown(t *testing.T) {
	tests := []struct {
		name, leaver string
	}{
		// node1 bootstrapped, so it leads until something changes.
		{name: "leader", leaver: "node1"},
		{name: "follower", leaver: "node3"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			nodes := startCluster(t, 3, func(config *nodeConfig) { config.LeaveOnShutdown = config.ID == test.leaver })
			waitLeader(t, nodes)
			var leaver *testNode
			var rest []*testNode
			for _, n := range nodes {
				if n.config.ID == test.leaver {
					leaver = n
				} else {
					rest = append(rest, n)
				}
			}
			leaver.stopNow()

			leader := waitLeader(t, rest)
			require.Eventually(t, func() bool {
				for _, n := range rest {
					status, err := n.status()
					if err != nil || len(status.Servers) != 2 {
						return false
					}
					for _, server := range status.Servers {
						if server.ID == test.leaver {
							return false
						}
					}
				}
				return true
			}, waitTimeout, pollEvery, "%s is still a member", test.leaver)
			got := do(t, newAPIClient(t, false), http.MethodPut, leader.url("/kv/after-leave"), strings.NewReader("v"))
			assert.Equal(t, http.StatusNoContent, got.status, got.body)
		})
	}
}

// fakeMember is an HTTP server that is not a raftkv node. Without TLS it
// answers every request with status; with serving, it presents that
// certificate, which the joiner may not trust.
type fakeMember struct {
	addr     string
	attempts atomic.Int64
	// reached is closed at the first attempt.
	reached     chan struct{}
	reachedOnce sync.Once
}

func (f *fakeMember) attempt() {
	f.attempts.Add(1)
	f.reachedOnce.Do(func() { close(f.reached) })
}

func newFakeMember(t *testing.T, status int, serving *testPKI) *fakeMember {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fake := &fakeMember{addr: listener.Addr().String(), reached: make(chan struct{})}
	if serving != nil {
		listener = tls.NewListener(listener, &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				fake.attempt()
				return &serving.certificate, nil
			}})
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fake.attempt()
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "fake member", status)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	served := make(chan struct{})
	go func() {
		defer close(served)
		server.Serve(listener)
	}()
	t.Cleanup(func() {
		server.Close()
		<-served
	})
	return fake
}

// startJoiner starts a node that joins through members, bounded by ctx,
// and returns what startNode returned and how long it took.
func startJoiner(t *testing.T, ctx context.Context, config nodeConfig, members ...string) (*node, time.Duration, error) {
	t.Helper()
	config.ID = "joiner"
	config.Join = members
	config.Listen = "127.0.0.1:0"
	config.DataDir = t.TempDir()
	// Not Warn: one line per failed attempt could flood the output.
	config.Logger = hclog.New(&hclog.LoggerOptions{Name: "raftkv", Output: clustertest.LogWriter(t), Level: hclog.Error}).Named(config.ID)
	start := time.Now()
	n, err := startNode(ctx, config)
	if n != nil {
		t.Cleanup(n.stop)
	}
	return n, time.Since(start), err
}

// TestNodeJoinPermanentFailure joins through a member that can never add
// the node. The membership client reports such failures at once instead of
// retrying them; startNode must then give up, or at least pause between
// rounds, not send thousands of requests a second until the join times out.
func TestNodeJoinPermanentFailure(t *testing.T) {
	const (
		patience    = 3 * time.Second
		maxAttempts = 20
	)
	tests := []struct {
		name string
		tls  bool
		want string
	}{
		{name: "member answers 404", want: "404"},
		{name: "member certificate not trusted", tls: true, want: "certificate"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var config nodeConfig
			var fake *fakeMember
			if test.tls {
				ours, theirs := newTestPKI(t), newTestPKI(t)
				ours.configure(&config)
				fake = newFakeMember(t, http.StatusNotFound, theirs)
			} else {
				fake = newFakeMember(t, http.StatusNotFound, nil)
			}
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			n, took, err := startJoiner(t, ctx, config, fake.addr)
			assert.Nil(t, n)
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.want)
			attempts := fake.attempts.Load()
			assert.LessOrEqual(t, attempts, int64(maxAttempts),
				"startNode retried a permanent join failure %d times in %v without giving up or pausing",
				attempts, took.Round(time.Millisecond))
			assert.Less(t, len(err.Error()), 4000,
				"the error is a reason, not every attempt's: %d bytes, %d lines", len(err.Error()), strings.Count(err.Error(), "\n")+1)
		})
	}
}

// TestNodeJoinCancelled cancels the join while the only member keeps
// answering 503: startNode returns soon after, with what it started stopped
// (goleak checks the goroutines at the end).
func TestNodeJoinCancelled(t *testing.T) {
	fake := newFakeMember(t, http.StatusServiceUnavailable, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the joiner has been heard from.
		select {
		case <-fake.reached:
		case <-time.After(waitTimeout):
		}
		cancel()
	}()
	defer cancel()
	n, took, err := startJoiner(t, ctx, nodeConfig{}, fake.addr)
	assert.Nil(t, n)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, took, 5*time.Second)
}

// TestServeStartErrors covers failures only startNode sees: exit code 1
// and the reason on the last line.
func TestServeStartErrors(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	notADirectory := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notADirectory, []byte("x"), 0o600))
	noPEM := filepath.Join(dir, "empty.pem")
	require.NoError(t, os.WriteFile(noPEM, []byte("not PEM\n"), 0o600))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "data is a file", args: []string{"-data", notADirectory}, want: "data directory"},
		{name: "listen address in use", args: []string{"-listen", busy.Addr().String()}, want: "listen"},
		{name: "missing certificate", args: []string{"-tls-cert", filepath.Join(dir, "missing.pem"), "-tls-key", pki.keyFile}, want: "load TLS certificate"},
		{name: "key does not match", args: []string{"-tls-cert", pki.certFile, "-tls-key", noPEM}, want: "load TLS certificate"},
		{name: "missing CA", args: []string{"-tls-cert", pki.certFile, "-tls-key", pki.keyFile, "-tls-ca", filepath.Join(dir, "missing-ca.pem")}, want: "read TLS CA"},
		{name: "CA without certificates", args: []string{"-tls-cert", pki.certFile, "-tls-key", pki.keyFile, "-tls-ca", noPEM}, want: "no PEM certificates"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			args := []string{"serve", "-id", "node1", "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-bootstrap", "-log-level", "error"}
			args = append(args, test.args...)
			code, stdout, stderr := runCommand(t, args...)
			assert.Equal(t, 1, code, stderr)
			assert.Empty(t, stdout)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			assert.True(t, strings.HasPrefix(last, "raftkv serve: "), "stderr %q", stderr)
			assert.Contains(t, last, test.want)
		})
	}
}

// tokenClient is newAPIClient sending token on every request, redirects
// included.
func tokenClient(t *testing.T, token bearerToken, follow bool) *http.Client {
	client := newAPIClient(t, follow)
	client.Transport = withToken{token: token, base: client.Transport}
	return client
}

func TestAuthorizer(t *testing.T) {
	verified := &tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{{}}}}
	unverified := &tls.ConnectionState{HandshakeComplete: true}
	tests := []struct {
		name          string
		token         bearerToken
		certificate   bool
		tls           *tls.ConnectionState
		authorization []string
		// allowed says the request gets through; otherwise it is refused
		// with ErrUnauthorized, for a 401.
		allowed bool
	}{
		{name: "token", token: "s3cret", authorization: []string{"Bearer s3cret"}, allowed: true},
		{name: "token scheme in any case", token: "s3cret", authorization: []string{"bEARER s3cret"}, allowed: true},
		{name: "token missing", token: "s3cret"},
		{name: "token wrong", token: "s3cret", authorization: []string{"Bearer s3cre"}},
		{name: "token longer", token: "s3cret", authorization: []string{"Bearer s3crets"}},
		{name: "token empty", token: "s3cret", authorization: []string{"Bearer "}},
		{name: "token without scheme", token: "s3cret", authorization: []string{"s3cret"}},
		{name: "token in another scheme", token: "s3cret", authorization: []string{"Basic s3cret"}},
		{name: "token twice", token: "s3cret", authorization: []string{"Bearer s3cret", "Bearer s3cret"}},
		{name: "token over verified TLS", token: "s3cret", tls: verified, authorization: []string{"Bearer s3cret"}, allowed: true},
		{name: "certificate verified", certificate: true, tls: verified, allowed: true},
		{name: "certificate not verified", certificate: true, tls: unverified},
		{name: "certificate without TLS", certificate: true},
		{name: "certificate with a token it does not need", certificate: true, tls: verified, authorization: []string{"Bearer x"}, allowed: true},
		{name: "both", token: "s3cret", certificate: true, tls: verified, authorization: []string{"Bearer s3cret"}, allowed: true},
		{name: "both without certificate", token: "s3cret", certificate: true, tls: unverified, authorization: []string{"Bearer s3cret"}},
		{name: "both without token", token: "s3cret", certificate: true, tls: verified},
		{name: "both with wrong token", token: "s3cret", certificate: true, tls: verified, authorization: []string{"Bearer wrong"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			authorize := newAuthorizer(test.token, test.certificate)
			require.NotNil(t, authorize)
			request := httptest.NewRequest(http.MethodGet, "/status", nil)
			request.TLS = test.tls
			request.Header["Authorization"] = test.authorization
			err := authorize(request)
			if test.allowed {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, rafthttp.ErrUnauthorized)
			assert.NotContains(t, err.Error(), "s3cret", "the reason does not show the token")
		})
	}
	assert.Nil(t, newAuthorizer("", false), "without a token or a CA, nothing is checked")
}

// TestNodeTokenAndClusterID runs a cluster whose nodes share a token and a
// cluster ID: they join and replicate, and requests without the token, or
// raft requests without the cluster ID, are refused.
func TestNodeTokenAndClusterID(t *testing.T) {
	const token bearerToken = "the-cluster-token"
	nodes := startCluster(t, 3, func(config *nodeConfig) {
		config.Token, config.ClusterID = token, "prod"
	})
	leader := waitLeader(t, nodes)
	follower := nodeFollowers(nodes, leader)[0]

	got := do(t, tokenClient(t, token, true), http.MethodPut, follower.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	require.Eventually(t, func() bool {
		return sendGet(tokenClient(t, token, false), follower.url("/kv/k"), http.StatusOK, "v")
	}, waitTimeout, pollEvery)

	tests := []struct {
		name, method, path string
		header             http.Header
		want               int
	}{
		{name: "api get without token", method: http.MethodGet, path: "/kv/k", want: http.StatusUnauthorized},
		{name: "api put without token", method: http.MethodPut, path: "/kv/k", want: http.StatusUnauthorized},
		{name: "api delete without token", method: http.MethodDelete, path: "/kv/k", want: http.StatusUnauthorized},
		{name: "status without token", method: http.MethodGet, path: "/status", want: http.StatusUnauthorized},
		{name: "unknown path without token", method: http.MethodGet, path: "/nothing", want: http.StatusUnauthorized},
		{name: "api with wrong token", method: http.MethodGet, path: "/kv/k",
			header: http.Header{"Authorization": {"Bearer the-cluster-tokeN"}}, want: http.StatusUnauthorized},
		{name: "status with token", method: http.MethodGet, path: "/status",
			header: http.Header{"Authorization": {"Bearer " + string(token)}}, want: http.StatusOK},
		{name: "join without token", method: http.MethodPost, path: "/raft?id=intruder&address=127.0.0.1:1",
			header: http.Header{"Rafthttp-Cluster-Id": {"prod"}}, want: http.StatusUnauthorized},
		{name: "leave without token", method: http.MethodDelete, path: "/raft?id=node2",
			header: http.Header{"Rafthttp-Cluster-Id": {"prod"}}, want: http.StatusUnauthorized},
		{name: "upgrade without token", method: http.MethodGet, path: "/raft",
			header: http.Header{"Upgrade": {"raft"}, "Connection": {"Upgrade"}, "Rafthttp-Cluster-Id": {"prod"}}, want: http.StatusUnauthorized},
		{name: "join without cluster id", method: http.MethodPost, path: "/raft?id=intruder&address=127.0.0.1:1",
			header: http.Header{"Authorization": {"Bearer " + string(token)}}, want: http.StatusPreconditionFailed},
		{name: "upgrade for another cluster", method: http.MethodGet, path: "/raft",
			header: http.Header{"Authorization": {"Bearer " + string(token)}, "Upgrade": {"raft"}, "Connection": {"Upgrade"}, "Rafthttp-Cluster-Id": {"staging"}},
			want:   http.StatusPreconditionFailed},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			request, err := http.NewRequest(test.method, leader.url(test.path), strings.NewReader("intruder"))
			require.NoError(t, err)
			request.Header = test.header
			response, err := newAPIClient(t, false).Do(request)
			require.NoError(t, err)
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			require.Equal(t, test.want, response.StatusCode, "%s", body)
			if test.want == http.StatusUnauthorized && !strings.HasPrefix(test.path, "/raft") {
				assert.Equal(t, `Bearer realm="raftkv"`, response.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// Nothing the refused requests asked for happened.
	got = do(t, tokenClient(t, token, false), http.MethodGet, leader.url("/kv/k"), nil)
	assert.Equal(t, "v", got.body)
	status, err := leader.status()
	require.NoError(t, err)
	assert.Len(t, status.Servers, 3)
}

// TestNodeJoinRefused joins a node whose token or cluster ID is not the
// cluster's: startNode fails at once, with a one-line reason that names
// the flag to check, even with another member left to ask.
func TestNodeJoinRefused(t *testing.T) {
	const patience = 8 * time.Second
	logs := clustertest.LogWriter(t)
	member := startTestNode(t, logs, nodeConfig{ID: "node1", Bootstrap: true, Token: "right", ClusterID: "prod"})
	waitLeader(t, []*testNode{member})
	tests := []struct {
		name      string
		token     bearerToken
		clusterID string
		// want is the whole error, with MEMBER for the member's address.
		want string
		is   error
	}{
		{name: "wrong token", token: "wrong", clusterID: "prod",
			want: "join MEMBER refused: 401 Unauthorized: check -token-file", is: rafthttp.ErrUnauthorized},
		{name: "no token", clusterID: "prod",
			want: "join MEMBER refused: 401 Unauthorized: check -token-file", is: rafthttp.ErrUnauthorized},
		{name: "wrong cluster id", token: "right", clusterID: "staging",
			want: `join MEMBER refused: cluster ID mismatch: this node is in cluster "staging", the peer in cluster "prod": check -cluster-id`,
			is:   rafthttp.ErrClusterIDMismatch},
		{name: "no cluster id", token: "right",
			want: `join MEMBER refused: cluster ID mismatch: this node is in cluster (none set), the peer in cluster "prod": check -cluster-id`,
			is:   rafthttp.ErrClusterIDMismatch},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			// The second member refuses connections, which is worth
			// retrying; the first one's refusal ends the join anyway.
			n, took, err := startJoiner(t, ctx, nodeConfig{Token: test.token, ClusterID: test.clusterID},
				member.addr(), clustertest.RefusingAddr(t))
			assert.Nil(t, n)
			require.Error(t, err)
			require.NoError(t, ctx.Err(), "startNode ran out of time: it kept asking after a refusal (%v): %v", took, err)
			assert.Equal(t, strings.ReplaceAll(test.want, "MEMBER", member.addr()), err.Error())
			if test.is == rafthttp.ErrUnauthorized {
				var status *rafthttp.StatusError
				require.ErrorAs(t, err, &status)
				assert.Equal(t, http.StatusUnauthorized, status.StatusCode)
			} else {
				assert.ErrorIs(t, err, test.is)
			}
		})
	}
	status, err := member.status()
	require.NoError(t, err)
	assert.Len(t, status.Servers, 1, "no refused node became a member")
}

// TestNodeMutualTLSAuthorizesByCertificate runs a cluster over mutual TLS
// with a token: both are required. The TLS server already refuses a
// handshake without a certificate; a request that reached the handlers
// without a verified one is refused too.
func TestNodeMutualTLSAuthorizesByCertificate(t *testing.T) {
	const token bearerToken = "tls-and-token"
	pki := newTestPKI(t)
	nodes := startCluster(t, 2, func(config *nodeConfig) {
		pki.configure(config)
		config.Token = token
	})
	leader := waitLeader(t, nodes)
	https := "https://" + leader.addr()

	withBoth := pki.client(t, true, false)
	withBoth.Transport = withToken{token: token, base: withBoth.Transport}
	got := do(t, withBoth, http.MethodPut, https+"/kv/k", strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)

	got = do(t, pki.client(t, true, false), http.MethodGet, https+"/kv/k", nil)
	assert.Equal(t, http.StatusUnauthorized, got.status, "a certificate without the token: %s", got.body)

	withoutCertificate := pki.client(t, false, false)
	withoutCertificate.Transport = withToken{token: token, base: withoutCertificate.Transport}
	_, err := send(withoutCertificate, http.MethodGet, https+"/kv/k", nil)
	require.Error(t, err, "the token without a certificate")

	// The same requests as if the TLS server had not checked the
	// certificate: the token alone does not get them through.
	leaf, err := x509.ParseCertificate(pki.certificate.Certificate[0])
	require.NoError(t, err)
	// The Handler answers a GET without Upgrade with the membership view.
	for _, path := range []string{"/kv/k", "/status", "/raft"} {
		for _, verified := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s verified=%v", path, verified), func(t *testing.T) {
				request := httptest.NewRequest(http.MethodGet, https+path, nil)
				request.Header.Set("Authorization", "Bearer "+string(token))
				request.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}
				if verified {
					request.TLS.VerifiedChains = [][]*x509.Certificate{{leaf}}
				}
				recorder := httptest.NewRecorder()
				leader.server.Handler.ServeHTTP(recorder, request)
				want := http.StatusUnauthorized
				switch {
				case verified:
					want = http.StatusOK
				}
				assert.Equal(t, want, recorder.Code, recorder.Body.String())
			})
		}
	}
}

// TestNodeServerBounds checks the http.Server's bounds: a request head
// larger than 64 KiB is refused, and a request body that stalls ends at
// the read timeout instead of holding the connection.
func TestNodeServerBounds(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	n := startTestNode(t, clustertest.LogWriter(t), nodeConfig{ID: "node1", Bootstrap: true, ReadTimeout: readTimeout})
	waitLeader(t, []*testNode{n})
	client := newAPIClient(t, false)

	t.Run("header size", func(t *testing.T) {
		for _, test := range []struct {
			size int
			want int
		}{
			{size: 32 << 10, want: http.StatusOK},
			{size: 100 << 10, want: http.StatusRequestHeaderFieldsTooLarge},
		} {
			request, err := http.NewRequest(http.MethodGet, n.url("/status"), nil)
			require.NoError(t, err)
			request.Header.Set("X-Padding", strings.Repeat("p", test.size))
			response, err := client.Do(request)
			require.NoError(t, err)
			response.Body.Close()
			assert.Equal(t, test.want, response.StatusCode, "a header of %d bytes", test.size)
		}
	})

	t.Run("stalled body", func(t *testing.T) {
		conn, err := net.Dial("tcp", n.addr())
		require.NoError(t, err)
		defer conn.Close()
		// Three bytes of the ten announced, then nothing.
		_, err = io.WriteString(conn, "PUT /kv/slow HTTP/1.1\r\nHost: "+n.addr()+"\r\nContent-Length: 10\r\n\r\nabc")
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, conn.SetReadDeadline(start.Add(waitTimeout)))
		answer, err := io.ReadAll(conn)
		require.NoError(t, err, "the server still holds the connection after %v (got %q)", time.Since(start).Round(time.Millisecond), answer)
		assert.True(t, strings.HasPrefix(string(answer), "HTTP/1.1 400 "), "answer %q", answer)
		_, ok := n.fsm.Get("slow")
		assert.False(t, ok, "nothing was stored")
	})
}

// TestNodeWebSocket runs three nodes started with -websocket, each reached
// only through its own strict WebSocket-only proxy (which refuses raw
// upgrades and checks every frame): they join, a write through a follower
// follows its redirect to the leader's proxy, every node reads it, and the
// followers' proxies relayed the leader's WebSocket upgrades; no proxy
// refused one.
func TestNodeWebSocket(t *testing.T) {
	var proxies []*clustertest.WebSocketProxy
	nodes := startCluster(t, 3, func(config *nodeConfig) {
		config.WebSocket = true
		config.Listen = clustertest.ReservedAddr(t)
		proxy := clustertest.StartWebSocketProxy(t, config.Listen)
		proxies = append(proxies, proxy)
		config.Advertise = proxy.Addr()
		if len(config.Join) > 0 {
			config.Join = []string{proxies[0].Addr()}
		}
	})
	leader := waitLeader(t, nodes)
	follower := nodeFollowers(nodes, leader)[0]
	require.Equal(t, proxies[slices.Index(nodes, follower)].Addr(), follower.addr(), "the node advertises its proxy")

	got := do(t, newAPIClient(t, true), http.MethodPut, follower.url("/kv/k"), strings.NewReader("v"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	for _, node := range nodes {
		require.Eventually(t, func() bool {
			return sendGet(newAPIClient(t, false), node.url("/kv/k"), http.StatusOK, "v")
		}, waitTimeout, pollEvery, "%s reads the write", node.config.ID)
	}
	for i, proxy := range proxies {
		stats := proxy.Stats()
		if nodes[i] != leader {
			assert.Positive(t, stats.Upgrades, "the leader's WebSocket upgrades through %s's proxy", nodes[i].config.ID)
		}
		assert.Zero(t, stats.Refused, "refused upgrades through %s's proxy", nodes[i].config.ID)
	}
}
