//go:build unix

package rafthttp_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestEarlyDataThroughProxies runs a two-node cluster whose second node is
// reached only through a reverse proxy, with default Layers: the leader
// replicates through the proxy, dialing for every RPC (its transport keeps
// no pool), with appends too large for one request. Through Go's
// httputil.ReverseProxy and nginx configured as for WebSockets, the node
// behind the proxy sees early data and the leader's Layer never falls back
// from it. Through proxies that break it, one dropping request bodies and
// one hiding the 101's offer, the Layer falls back to eager dials. Every
// command arrives in all cases.
func TestEarlyDataThroughProxies(t *testing.T) {
	tests := []struct {
		kind string
		// falls: the leader's Layer warns that it falls back.
		early, falls bool
	}{
		{kind: "httputil", early: true},
		{kind: "nginx", early: true},
		{kind: "httputil dropping bodies", falls: true},
		{kind: "httputil hiding the offer"},
	}
	for _, tt := range tests {
		kind := tt.kind
		t.Run(kind, func(t *testing.T) {
			listen := func() net.Listener {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				return l
			}
			a, bBackend := listen(), listen()
			var front string
			switch kind {
			case "nginx":
				front = clustertest.StartNginx(t, bBackend.Addr().String())
			default:
				proxyListener := listen()
				target, _ := url.Parse("http://" + bBackend.Addr().String())
				reverse := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
					r.SetURL(target)
					if kind == "httputil dropping bodies" {
						r.Out.Body, r.Out.ContentLength = nil, 0
						r.Out.Header.Del("Content-Length")
					}
				}}
				if kind == "httputil hiding the offer" {
					reverse.ModifyResponse = func(r *http.Response) error {
						r.Header.Del("Rafthttp-Body-Max")
						return nil
					}
				}
				proxy := &http.Server{Handler: reverse}
				go proxy.Serve(proxyListener)
				t.Cleanup(func() { proxy.Close() })
				front = proxyListener.Addr().String()
			}
			frontAddr, err := net.ResolveTCPAddr("tcp", front)
			require.NoError(t, err)

			var early atomic.Int64
			warnings := newLogBuffer(t)
			start := func(id raft.ServerID, serve net.Listener, advertise net.Addr, pool int) (*raft.Raft, *clustertest.FSM) {
				logger := clustertest.Logger(t, string(id))
				handler := rafthttp.NewHandlerWithLogger(logger.Named("rafthttp"))
				layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
					Path: clustertest.Path, Addr: advertise, Handler: handler,
					Logger: hclog.New(&hclog.LoggerOptions{Name: string(id), Level: hclog.Warn, Output: warnings}),
				})
				require.NoError(t, err)
				mux := http.NewServeMux()
				mux.Handle(clustertest.Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.ContentLength > 0 {
						early.Add(1)
					}
					handler.ServeHTTP(w, r)
				}))
				server := &http.Server{Handler: mux}
				go server.Serve(serve)
				transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
					Stream: layer, MaxPool: pool, Timeout: time.Second, Logger: logger.Named("transport"),
				})
				fsm := &clustertest.FSM{}
				store := raft.NewInmemStore()
				r, err := raft.NewRaft(clustertest.Config(id, logger.Named("raft")), fsm, store, store,
					raft.NewInmemSnapshotStore(), transport)
				require.NoError(t, err)
				t.Cleanup(func() {
					r.Shutdown().Error()
					transport.Close()
					server.Close()
				})
				return r, fsm
			}
			leader, _ := start("a", a, a.Addr(), 0)
			_, follower := start("b", bBackend, frontAddr, 3) // advertised: the proxy
			require.NoError(t, leader.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
				{ID: "a", Address: raft.ServerAddress(a.Addr().String())},
			}}).Error())
			require.Eventually(t, func() bool { return leader.State() == raft.Leader }, testWait, 10*time.Millisecond)
			// A non-voter: the leader commits alone, and only replication
			// to b goes through the proxy.
			require.NoError(t, leader.AddNonvoter("b", raft.ServerAddress(front), 0, 0).Error())
			const commands = 20
			for i := range commands {
				// Larger than a request with early data holds: the first
				// write of an append goes partly in the body, partly after
				// the 101.
				require.NoError(t, leader.Apply(bytes.Repeat([]byte{byte('a' + i)}, 3000), time.Second).Error())
			}
			clustertest.Eventually(t, func() error {
				if got := len(follower.Commands()); got < commands {
					return fmt.Errorf("b has %d of %d commands", got, commands)
				}
				if got := early.Load(); tt.early && got < 3 {
					return fmt.Errorf("b has seen %d upgrades with early data, want 3", got)
				}
				return nil
			})
			if !tt.early {
				assert.Zero(t, early.Load(), "b has seen early data")
			}
			if tt.falls {
				assert.Contains(t, warnings.String(), "early data failed", "the leader's Layer fell back")
			} else {
				assert.Equal(t, "", warnings.String(), "no Layer fell back from early data")
			}
		})
	}
}
