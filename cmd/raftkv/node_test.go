package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
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

// startJoiner starts a node that joins through member, bounded by ctx, and
// returns what startNode returned and how long it took.
func startJoiner(t *testing.T, ctx context.Context, config nodeConfig, member string) (*node, time.Duration, error) {
	t.Helper()
	config.ID = "joiner"
	config.Join = []string{member}
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
