package rafthttp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestNewLayerWithConfig checks that the constructor validates its config
// up front and applies the defaults of optional fields.
func TestNewLayerWithConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		noAddr  bool
		noHand  bool
		dial    rafthttp.Dial
		logger  hclog.Logger
		wantErr bool
	}{
		{name: "empty path", path: "", wantErr: true},
		{name: "relative path", path: "raft", wantErr: true},
		{name: "relative nested path", path: "raft/v1", wantErr: true},
		{name: "query", path: "/raft?x=1", wantErr: true},
		{name: "empty query", path: "/raft?", wantErr: true},
		{name: "fragment", path: "/raft#top", wantErr: true},
		{name: "CRLF", path: "/raft\r\nX-Evil: 1", wantErr: true},
		{name: "LF", path: "/ra\nft", wantErr: true},
		{name: "tab", path: "/ra\tft", wantErr: true},
		{name: "NUL", path: "/raft\x00", wantErr: true},
		{name: "DEL", path: "/raft\x7f", wantErr: true},
		{name: "nil Addr", path: "/raft", noAddr: true, wantErr: true},
		{name: "nil Handler", path: "/raft", noHand: true, wantErr: true},
		{name: "plain", path: "/raft"},
		{name: "root", path: "/"},
		{name: "nested", path: "/cluster/raft/"},
		{name: "space", path: "/raft node"},
		{name: "non-ASCII", path: "/rafté"},
		{name: "explicit Dial and Logger", path: "/raft", dial: rafthttp.NewDialTCP(), logger: hclog.NewNullLogger()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			config := rafthttp.LayerConfig{Path: tt.path, Dial: tt.dial, Logger: tt.logger}
			if !tt.noAddr {
				config.Addr = advertised
			}
			if !tt.noHand {
				handler := rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "handler"))
				t.Cleanup(handler.Close)
				config.Handler = handler
			}
			layer, err := rafthttp.NewLayerWithConfig(config)
			if tt.wantErr {
				assert.Error(t, err)
				assert.Nil(t, layer)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, layer)
			assert.NoError(t, layer.Close())
		})
	}
}

// TestNewLayerPanics checks that the constructors without an error result
// panic on an invalid argument, at construction rather than later inside
// raft, and do not panic on valid ones.
func TestNewLayerPanics(t *testing.T) {
	t.Parallel()
	handler := rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "handler"))
	t.Cleanup(handler.Close)
	tests := []struct {
		name string
		new  func() *rafthttp.Layer
	}{
		{name: "NewLayer relative path", new: func() *rafthttp.Layer {
			return rafthttp.NewLayer("raft", advertised, handler, nil)
		}},
		{name: "NewLayer empty path", new: func() *rafthttp.Layer {
			return rafthttp.NewLayer("", advertised, handler, nil)
		}},
		{name: "NewLayer query", new: func() *rafthttp.Layer {
			return rafthttp.NewLayer("/raft?x", advertised, handler, nil)
		}},
		{name: "NewLayer nil Addr", new: func() *rafthttp.Layer {
			return rafthttp.NewLayer("/raft", nil, handler, nil)
		}},
		{name: "NewLayer nil Handler", new: func() *rafthttp.Layer {
			return rafthttp.NewLayer("/raft", advertised, nil, nil)
		}},
		{name: "NewLayerWithLogger control character", new: func() *rafthttp.Layer {
			return rafthttp.NewLayerWithLogger("/raft\n", advertised, handler, nil, hclog.NewNullLogger())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Panics(t, func() { tt.new() })
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		for _, newLayer := range []func(*rafthttp.Handler) *rafthttp.Layer{
			func(h *rafthttp.Handler) *rafthttp.Layer {
				return rafthttp.NewLayer("/raft", advertised, h, nil)
			},
			func(h *rafthttp.Handler) *rafthttp.Layer {
				return rafthttp.NewLayerWithLogger("/raft", advertised, h, rafthttp.NewDialTCP(), hclog.NewNullLogger())
			},
		} {
			var layer *rafthttp.Layer
			require.NotPanics(t, func() { layer = newLayer(rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "handler"))) })
			assert.NoError(t, layer.Close())
		}
	})
}

// TestLayerAddr checks that Addr is the advertised address from the
// config, not the listener's.
func TestLayerAddr(t *testing.T) {
	t.Parallel()
	handler := rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "handler"))
	layer := rafthttp.NewLayer("/raft", advertised, handler, nil)
	t.Cleanup(func() { layer.Close() })
	assert.Equal(t, net.Addr(advertised), layer.Addr())
	assert.Equal(t, "10.0.0.7:8080", layer.Addr().String())
}

// TestLayerNilDialUsesTCP checks that a Layer built without a Dial dials
// plain TCP, through every constructor.
func TestLayerNilDialUsesTCP(t *testing.T) {
	t.Parallel()
	node := startServer(t, serverOptions{})
	tests := []struct {
		name string
		new  func(*rafthttp.Handler) (*rafthttp.Layer, error)
	}{
		{name: "NewLayer", new: func(h *rafthttp.Handler) (*rafthttp.Layer, error) {
			return rafthttp.NewLayer("/raft", advertised, h, nil), nil
		}},
		{name: "NewLayerWithLogger", new: func(h *rafthttp.Handler) (*rafthttp.Layer, error) {
			return rafthttp.NewLayerWithLogger("/raft", advertised, h, nil, nil), nil
		}},
		{name: "NewLayerWithConfig", new: func(h *rafthttp.Handler) (*rafthttp.Layer, error) {
			return rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: "/raft", Addr: advertised, Handler: h})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the subtests share the node's Accept.
			layer, err := tt.new(rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "client")))
			require.NoError(t, err)
			t.Cleanup(func() { layer.Close() })
			dialed, accepted := node.connect(t, layer)
			exchange(t, dialed, accepted)
		})
	}
}

// TestLayerPathEscaping checks that a path with characters that must be
// escaped is escaped on the wire and still reaches a Handler mounted on a
// ServeMux at the unescaped path.
func TestLayerPathEscaping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path string
		// pattern mounts the Handler at path; a ServeMux pattern with a
		// space needs a method, or the part before the space is taken
		// for one.
		pattern    string
		wantOnWire string
	}{
		{name: "space", path: "/raft node", pattern: "GET /raft node", wantOnWire: "/raft%20node"},
		{name: "non-ASCII", path: "/rafté", pattern: "/rafté", wantOnWire: "/raft%C3%A9"},
		{name: "plain", path: "/raft", pattern: "/raft", wantOnWire: "/raft"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			type seen struct{ path, requestURI string }
			requests := make(chan seen, 1)
			record := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case requests <- seen{r.URL.Path, r.RequestURI}:
					default:
					}
					next.ServeHTTP(w, r)
				})
			}
			node := startServer(t, serverOptions{path: tt.path, pattern: tt.pattern, wrap: record})
			client := newLayer(t, rafthttp.LayerConfig{Path: tt.path, EagerHandshake: true})
			dialed, accepted := node.connect(t, client)
			exchange(t, dialed, accepted)
			got := receive(t, requests, "the request")
			assert.Equal(t, tt.wantOnWire, got.requestURI, "escaped on the wire")
			assert.Equal(t, tt.path, got.path, "the server sees the path")
		})
	}
}

// TestLayerAcceptAfterClose checks that Accept returns an error wrapping
// net.ErrClosed promptly after Close: both an Accept blocked when Close is
// called and one called afterwards.
func TestLayerAcceptAfterClose(t *testing.T) {
	t.Parallel()
	node := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Timeout: shortTimeout}})
	// Two Accepts wait for one upgrade: one returns it, exactly it, and
	// the other is still waiting when Close is called. The upgrade comes
	// once the Handler's timeout, the only one there is, has passed.
	blocked := make(chan connResult, 2)
	for range 2 {
		go func() {
			conn, err := node.layer.Accept()
			blocked <- connResult{conn, err}
		}()
	}
	waitPast(time.Now().Add(2 * shortTimeout))
	const marker = "the one upgrade"
	write(t, dialConn(t, eagerLayer(t, nil), node.addr(), testWait), marker)
	r := receive(t, blocked, "a blocked Accept to return the upgrade")
	require.NoError(t, r.err)
	accepted := r.conn
	t.Cleanup(func() { accepted.Close() })
	require.Equal(t, marker, readFull(t, accepted, len(marker)), "Accept returned some other connection")

	require.NoError(t, node.layer.Close())
	r = receive(t, blocked, "the blocked Accept to return after Close")
	assert.Nil(t, r.conn)
	assert.ErrorIs(t, r.err, net.ErrClosed)
	assert.ErrorIs(t, r.err, rafthttp.ErrClosed)

	r = receive(t, acceptAsync(node.layer.Accept), "Accept after Close")
	assert.Nil(t, r.conn)
	assert.ErrorIs(t, r.err, net.ErrClosed)
	assert.ErrorIs(t, r.err, rafthttp.ErrClosed)
}

// TestLayerCloseIdempotent checks that Close may be called more than once,
// also concurrently, and always returns nil; and that it closes the
// Handler: the Requests channel is closed and upgrades are refused before
// any 101.
func TestLayerCloseIdempotent(t *testing.T) {
	t.Parallel()
	node := startServer(t, serverOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() { errs <- node.layer.Close() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.NoError(t, node.layer.Close())

	request := receive(t, node.handler.Requests(), "the Handler's Requests channel to close after Layer.Close")
	assert.Nil(t, request, "no request was sent")

	conn, err := eagerLayer(t, nil).Dial(node.raftAddr(), testWait)
	require.Nil(t, conn)
	upgradeErr := requireUpgradeError(t, err, node.addr())
	assert.Equal(t, rafthttp.StepStatus, upgradeErr.Step)
	var statusErr *rafthttp.StatusError
	require.ErrorAs(t, err, &statusErr)
	assert.Equal(t, http.StatusServiceUnavailable, statusErr.StatusCode)
}

// TestLayerMethodsAfterClose checks that Dial, Join and Leave and their
// context forms fail with ErrClosed after Close, even against a live peer.
func TestLayerMethodsAfterClose(t *testing.T) {
	t.Parallel()
	peer := startServer(t, serverOptions{})
	layer := eagerLayer(t, nil)
	require.NoError(t, layer.Close())

	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{name: "Dial", call: func(context.Context) error {
			conn, err := layer.Dial(peer.raftAddr(), testWait)
			assert.Nil(t, conn)
			return err
		}},
		{name: "DialContext", call: func(ctx context.Context) error {
			conn, err := layer.DialContext(ctx, peer.raftAddr())
			assert.Nil(t, conn)
			return err
		}},
		{name: "Join", call: func(context.Context) error { return layer.Join("a", peer.raftAddr(), testWait) }},
		{name: "JoinContext", call: func(ctx context.Context) error { return layer.JoinContext(ctx, "a", peer.raftAddr()) }},
		{name: "JoinNonvoterContext", call: func(ctx context.Context) error { return layer.JoinNonvoterContext(ctx, "a", peer.raftAddr()) }},
		{name: "Leave", call: func(context.Context) error { return layer.Leave("a", peer.raftAddr(), testWait) }},
		{name: "LeaveContext", call: func(ctx context.Context) error { return layer.LeaveContext(ctx, "a", peer.raftAddr()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Bounded, so a method that ignored Close would fail rather
			// than hang.
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			err := tt.call(ctx)
			assert.ErrorIs(t, err, rafthttp.ErrClosed)
			assert.ErrorIs(t, err, net.ErrClosed)
		})
	}
}

// TestLayerCloseCancelsJoin checks that Close ends a Join in flight with
// ErrClosed instead of leaving it to its timeout.
func TestLayerCloseCancelsJoin(t *testing.T) {
	t.Parallel()
	peer := startServer(t, serverOptions{})
	layer := eagerLayer(t, nil)
	// Canceled when the test ends, so a Join that Close failed to stop
	// still ends before the servers close.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	results := make(chan error, 1)
	go func() { results <- layer.JoinContext(ctx, "a", peer.raftAddr()) }()
	// Take the request and never answer it: the Join is in flight.
	receive(t, peer.handler.Requests(), "the join request")
	require.NoError(t, layer.Close())
	err := receive(t, results, "Join to return after Close")
	assert.ErrorIs(t, err, rafthttp.ErrClosed)
}

// TestLayerCloseClosesUpgradedConns checks that Close closes every
// upgraded connection the Layer handed out and that is still open, on the
// accepting and on the dialing side: a read blocked on it returns, and the
// peer sees the socket close.
func TestLayerCloseClosesUpgradedConns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// closeServer closes the accepting Layer; otherwise the dialing one.
		closeServer bool
	}{
		{name: "accepted", closeServer: true},
		{name: "dialed", closeServer: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			node := startServer(t, serverOptions{})
			client := eagerLayer(t, nil)
			dialed, accepted := node.connect(t, client)
			exchange(t, dialed, accepted)

			// Two connections each way, so Close has more than one to close.
			dialed2, accepted2 := node.connect(t, client)

			own, peer := []net.Conn{dialed, dialed2}, []net.Conn{accepted, accepted2}
			closing := client
			if tt.closeServer {
				own, peer = peer, own
				closing = node.layer
			}
			var ownReads, peerReads []<-chan readResult
			for i := range own {
				ownReads = append(ownReads, readEach(own[i]))
				peerReads = append(peerReads, readEach(peer[i]))
			}
			// Each read waits for its peer: it returns exactly the byte
			// the peer then sends, and reads on.
			for i := range own {
				write(t, peer[i], "x")
				r := receive(t, ownReads[i], "a read to return the peer's byte")
				require.NoError(t, r.err)
				require.Equal(t, "x", r.data)
			}

			require.NoError(t, closing.Close())
			for i := range own {
				r := receive(t, ownReads[i], "a read on a conn the Layer handed out to return after Close")
				assert.Empty(t, r.data)
				if tt.closeServer {
					assert.Equal(t, io.EOF, r.err, "raft sees an orderly end of stream")
				} else {
					assert.Error(t, r.err)
				}
				r = receive(t, peerReads[i], "the peer to see the socket close")
				assert.Empty(t, r.data)
				assert.ErrorIs(t, r.err, io.EOF)
			}
		})
	}
}

// TestLayerNetworkTransport runs raft's NetworkTransport over two Layers
// on two HTTP servers: AppendEntries RPCs succeed both ways, and closing
// the transports (which close the Layers) leaves no goroutine behind, which
// the package's goleak check verifies.
func TestLayerNetworkTransport(t *testing.T) {
	t.Parallel()
	nodes := []*testServer{startServer(t, serverOptions{}), startServer(t, serverOptions{})}
	logger := clustertest.DebugLogger(t, "transport")
	var transports []*raft.NetworkTransport
	for _, node := range nodes {
		transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: node.layer, MaxPool: 2, Timeout: testWait, Logger: logger,
		})
		t.Cleanup(func() { transport.Close() })
		transports = append(transports, transport)
	}

	// Each transport's consumer answers AppendEntries with the number of
	// entries it got, echoing the term.
	done := make(chan struct{})
	var consumers sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		consumers.Wait()
	})
	for _, transport := range transports {
		consumers.Go(func() {
			for {
				select {
				case rpc := <-transport.Consumer():
					request, ok := rpc.Command.(*raft.AppendEntriesRequest)
					if !ok {
						rpc.Respond(nil, errors.New("unexpected command"))
						continue
					}
					rpc.Respond(&raft.AppendEntriesResponse{
						Term: request.Term, LastLog: uint64(len(request.Entries)), Success: true,
					}, nil)
				case <-done:
					return
				}
			}
		})
	}

	for round := range 2 { // the second round reuses pooled connections
		for from, to := range []int{1, 0} {
			request := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte(nodes[from].raftAddr())},
				Term:      uint64(10*round + from + 1),
				Entries:   []*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("a")}, {Index: 2, Term: 1, Type: raft.LogCommand, Data: []byte("b")}},
			}
			var response raft.AppendEntriesResponse
			err := transports[from].AppendEntries("node", nodes[to].raftAddr(), request, &response)
			require.NoError(t, err, "round %d from %d to %d", round, from, to)
			assert.True(t, response.Success)
			assert.Equal(t, request.Term, response.Term)
			assert.Equal(t, uint64(2), response.LastLog)
		}
	}

	for _, transport := range transports {
		require.NoError(t, transport.Close())
	}
	for _, node := range nodes {
		r := receive(t, acceptAsync(node.layer.Accept), "Accept after the transport closed")
		assert.ErrorIs(t, r.err, net.ErrClosed, "closing the transport closed the Layer")
	}
}

// TestLayerForgetsConnsClosedByUser checks that a connection the user
// closes before Layer.Close is no longer tracked, on the dialing and on the
// accepting side, so the set does not grow with every connection raft ever
// opened and Close does not close them again.
func TestLayerForgetsConnsClosedByUser(t *testing.T) {
	t.Parallel()
	node := startServer(t, serverOptions{})
	// The layer dials its own server, so it holds both ends.
	dialed, accepted := node.connect(t, node.layer)
	assert.Equal(t, 2, rafthttp.TrackedConns(node.layer), "both ends are tracked")

	require.NoError(t, dialed.Close())
	assert.Equal(t, 1, rafthttp.TrackedConns(node.layer), "the dialed conn is forgotten once closed")
	require.NoError(t, accepted.Close())
	assert.Equal(t, 0, rafthttp.TrackedConns(node.layer), "the accepted conn is forgotten once closed")

	require.NoError(t, node.layer.Close())
	assert.Equal(t, 0, rafthttp.TrackedConns(node.layer))
}
