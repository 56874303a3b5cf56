package rafthttp_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestLazyThroughReverseProxy runs a two-node cluster whose second node is
// reached only through an httputil.ReverseProxy: the leader replicates to
// it through the proxy. It runs with eager and with lazy dials.
func TestLazyThroughReverseProxy(t *testing.T) {
	for _, eager := range []bool{true, false} {
		name := map[bool]string{true: "eager", false: "lazy"}[eager]
		t.Run(name, func(t *testing.T) {
			start := func(id raft.ServerID, serve, advertise net.Listener) (*raft.Raft, *clustertest.FSM) {
				logger := clustertest.Logger(t, string(id))
				handler := rafthttp.NewHandlerWithLogger(logger.Named("rafthttp"))
				layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
					Path: clustertest.Path, Addr: advertise.Addr(), Handler: handler, LazyHandshake: !eager,
				})
				require.NoError(t, err)
				mux := http.NewServeMux()
				mux.Handle(clustertest.Path, handler)
				server := &http.Server{Handler: mux}
				go server.Serve(serve)
				transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
					Stream: layer, MaxPool: 3, Timeout: time.Second, Logger: logger.Named("transport"),
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
			listen := func() net.Listener {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				return l
			}
			a := listen()
			bBackend, bProxy := listen(), listen()
			target, _ := url.Parse("http://" + bBackend.Addr().String())
			proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
			go proxy.Serve(bProxy)
			t.Cleanup(func() { proxy.Close() })

			leader, _ := start("a", a, a)
			_, follower := start("b", bBackend, bProxy) // advertised: the proxy
			require.NoError(t, leader.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
				{ID: "a", Address: raft.ServerAddress(a.Addr().String())},
			}}).Error())
			require.Eventually(t, func() bool { return leader.State() == raft.Leader }, 5*time.Second, 10*time.Millisecond)
			// A non-voter: the leader commits alone, and only replication
			// to b goes through the proxy.
			require.NoError(t, leader.AddNonvoter("b", raft.ServerAddress(bProxy.Addr().String()), 0, 0).Error())
			require.NoError(t, leader.Apply([]byte("through the proxy"), time.Second).Error())
			require.Eventually(t, func() bool {
				commands := follower.Commands()
				return len(commands) > 0 && commands[len(commands)-1] == "through the proxy"
			}, 10*time.Second, 10*time.Millisecond, "b never received the command through the proxy")
		})
	}
}

// TestLazyEarlyBytesThroughReverseProxy counts how many lazy dials through
// an httputil.ReverseProxy get their first write, sent right behind the
// request head, to the peer: the peer's Layer echoes it.
func TestLazyEarlyBytesThroughReverseProxy(t *testing.T) {
	for _, eager := range []bool{true, false} {
		name := map[bool]string{true: "eager", false: "lazy"}[eager]
		t.Run(name, func(t *testing.T) {
			logger := clustertest.Logger(t, "node")
			handler := rafthttp.NewHandlerWithLogger(logger)
			backend, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: clustertest.Path, Addr: backend.Addr(), Handler: handler, LazyHandshake: !eager})
			require.NoError(t, err)
			t.Cleanup(func() { layer.Close() })
			mux := http.NewServeMux()
			mux.Handle(clustertest.Path, handler)
			server := &http.Server{Handler: mux}
			go server.Serve(backend)
			t.Cleanup(func() { server.Close() })
			go func() {
				for {
					conn, err := layer.Accept()
					if err != nil {
						return
					}
					go func() { defer conn.Close(); io.Copy(conn, conn) }()
				}
			}()
			front, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			target, _ := url.Parse("http://" + backend.Addr().String())
			proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
			go proxy.Serve(front)
			t.Cleanup(func() { proxy.Close() })

			const dials = 20
			lost, lostDirect := 0, 0
			for i := range 2 * dials {
				addr := front.Addr().String()
				if i%2 == 1 {
					addr = backend.Addr().String()
				}
				conn, err := layer.Dial(raft.ServerAddress(addr), time.Second)
				require.NoError(t, err)
				_, err = conn.Write([]byte("ping"))
				require.NoError(t, err)
				conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				buf := make([]byte, 4)
				if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
					if i%2 == 1 {
						lostDirect++
					} else {
						lost++
					}
				}
				conn.Close()
			}
			t.Logf("%s: %d of %d first writes lost through the proxy, %d of %d direct", name, lost, dials, lostDirect, dials)
			require.Zero(t, lostDirect)
			if !eager {
				return
			}
			require.Zero(t, lost)
		})
	}
}
