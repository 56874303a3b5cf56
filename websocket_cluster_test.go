//go:build unix

package rafthttp_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestWebSocketClusterThroughProxies runs a three-node cluster in
// WebSocket mode whose nodes reach each other only through a proxy in
// front of each: nginx with the usual WebSocket configuration, Go's
// httputil.ReverseProxy, and a strict proxy that forwards WebSocket
// upgrades alone and checks every frame it relays. Through each, the nodes
// join, the leader replicates, another node takes over when the leader
// stops, the old leader, restarted after the log was compacted past what
// it has, catches up from a snapshot, a node reads the membership view,
// and a follower leaves.
func TestWebSocketClusterThroughProxies(t *testing.T) {
	for _, kind := range []string{"nginx", "httputil", "strict"} {
		t.Run(kind, func(t *testing.T) {
			var mu sync.Mutex
			var strict []*clustertest.WebSocketProxy
			front := func(t testing.TB, backend string) string {
				switch kind {
				case "nginx":
					return clustertest.StartNginx(t, backend)
				case "httputil":
					return startReverseProxy(t, backend)
				}
				proxy := clustertest.StartWebSocketProxy(t, backend)
				mu.Lock()
				strict = append(strict, proxy)
				mu.Unlock()
				return proxy.Addr()
			}
			cluster := clustertest.Start(t, 3, clustertest.Options{
				Front: front,
				Layer: func(config *rafthttp.LayerConfig) { config.WebSocket = true },
				Raft:  func(config *raft.Config) { config.TrailingLogs = 1 },
			})
			for _, node := range cluster.Nodes {
				require.NotEqual(t, node.Listen, node.Addr, "%s is reached through its proxy", node.ID)
			}
			requireVoters(t, cluster.Nodes...)
			want := []string{"replicated"}
			cluster.Apply(want[0])

			old := cluster.Leader()
			old.Stop()
			want = append(want, "after failover")
			cluster.Apply(want[1])
			assert.NotEqual(t, old.ID, cluster.Leader().ID)

			for i := range 20 {
				command := fmt.Sprintf("%02d %s", i, strings.Repeat("x", 1000))
				cluster.Apply(command)
				want = append(want, command)
			}
			require.NoError(t, cluster.Leader().Raft.Snapshot().Error())
			restarted := cluster.Restart(old)
			requireCaughtUpFromSnapshot(t, restarted, want)

			// The membership view and a leave, through the proxies.
			leader := cluster.Leader()
			members, err := restarted.Layer.Members(context.Background(), raft.ServerAddress(leader.Addr))
			require.NoError(t, err)
			require.NotNil(t, members.Leader)
			assert.Equal(t, raft.ServerAddress(leader.Addr), members.Leader.Address)
			leaving := cluster.Followers()[0]
			require.NoError(t, leaving.Layer.Leave(leaving.ID, raft.ServerAddress(leader.Addr), clustertest.WaitTimeout))
			leaving.Stop()
			requireVoters(t, cluster.Running()...)

			if kind == "strict" {
				var requests int
				for _, proxy := range strict {
					stats := proxy.Stats()
					requests += stats.Requests
					assert.Positive(t, stats.Upgrades, "WebSocket upgrades through %s", proxy.Addr())
					assert.Positive(t, stats.ClientFrames[opBinary], "binary frames to the node behind %s", proxy.Addr())
					assert.Positive(t, stats.ServerFrames[opBinary], "binary frames from the node behind %s", proxy.Addr())
					assert.Zero(t, stats.ClientFrames[opText]+stats.ServerFrames[opText], "text frames")
					assert.Zero(t, stats.Refused, "refused upgrades")
				}
				assert.Positive(t, requests, "the joins went through the proxies as plain requests")
			}
		})
	}
}

// TestWebSocketOnlyProxyRefusesRawDial dials a Handler through the strict
// WebSocket-only proxy: a raw-mode Layer's dial fails with the proxy's
// refusal and a hint to set LayerConfig.WebSocket, and a WebSocket Layer's
// dial gets through.
func TestWebSocketOnlyProxyRefusesRawDial(t *testing.T) {
	server := startServer(t, serverOptions{})
	proxy := clustertest.StartWebSocketProxy(t, server.addr())

	for _, config := range []rafthttp.LayerConfig{{}, {EagerHandshake: true}} {
		_, err := newLayer(t, config).Dial(raft.ServerAddress(proxy.Addr()), testWait)
		upgradeErr := requireUpgradeError(t, err, proxy.Addr())
		assert.Equal(t, rafthttp.StepStatus, upgradeErr.Step)
		var status *rafthttp.StatusError
		require.ErrorAs(t, err, &status)
		assert.Equal(t, http.StatusBadRequest, status.StatusCode)
		assert.Contains(t, err.Error(), "passes only WebSocket upgrades")
		assert.Contains(t, err.Error(), "set LayerConfig.WebSocket")
	}
	assert.Equal(t, 2, proxy.Stats().Refused)

	dialed := dialConn(t, webSocketLayer(t, rafthttp.LayerConfig{}), proxy.Addr(), testWait)
	accepted := server.accept(t)
	exchange(t, dialed, accepted)
}

// TestWebSocketMixedCluster runs a cluster in which one node dials in
// WebSocket mode and the others raw: every Handler serves both forms, so
// the nodes join, replicate and elect a new leader as a uniform cluster
// does, and both forms are seen on the wire.
func TestWebSocketMixedCluster(t *testing.T) {
	var started atomic.Int32
	var mu sync.Mutex
	seen := map[string]int{}
	cluster := clustertest.Start(t, 3, clustertest.Options{
		Layer: func(config *rafthttp.LayerConfig) { config.WebSocket = started.Add(1) == 2 },
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if upgrade := r.Header.Get("Upgrade"); upgrade != "" {
					mu.Lock()
					seen[strings.ToLower(upgrade)]++
					mu.Unlock()
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	requireVoters(t, cluster.Nodes...)
	cluster.Apply("mixed")
	old := cluster.Leader()
	old.Stop()
	cluster.Apply("after failover")
	for _, node := range cluster.Running() {
		assert.Equal(t, []string{"mixed", "after failover"}, node.FSM.Commands(), "FSM of %s", node.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, seen["raft"], "raw upgrades")
	assert.Positive(t, seen["websocket"], "WebSocket upgrades")
}

// startReverseProxy starts Go's httputil.ReverseProxy on a loopback port
// in front of backend, stopped when the test ends, and returns its
// address. It forwards upgrades, WebSocket and raw alike.
func startReverseProxy(t testing.TB, backend string) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	target := &url.URL{Scheme: "http", Host: backend}
	server := &http.Server{Handler: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		// A node stopped on purpose is a 502 the proxy logs.
		ErrorLog: log.New(clustertest.LogWriter(t), "reverse proxy: ", 0),
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		server.Serve(listener)
	}()
	t.Cleanup(func() {
		server.Close()
		<-done
	})
	return listener.Addr().String()
}

// TestWebSocketClusterTLS runs a cluster in WebSocket mode over mutual
// TLS, whose servers enable HTTP/2: the handshake runs inside the TLS
// connection NewDialTLS makes, with ALPN http/1.1.
func TestWebSocketClusterTLS(t *testing.T) {
	options := clustertest.NewCA(t).Options(true)
	options.Layer = func(config *rafthttp.LayerConfig) { config.WebSocket = true }
	cluster := clustertest.Start(t, 3, options)
	requireVoters(t, cluster.Nodes...)
	cluster.Apply("over tls")
	for _, node := range cluster.Nodes {
		assert.Equal(t, []string{"over tls"}, node.FSM.Commands(), "FSM of %s", node.ID)
	}
}
