package rafthttp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// A DialContext canceled while its Dial is still connecting returns at once,
// and the connection the Dial makes afterwards is closed, not leaked.
func TestDialContextCancelDuringConnect(t *testing.T) {
	dial, entered, release, made := blockingDial()
	layer := newLayer(t, rafthttp.LayerConfig{Dial: dial})

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		_, err := layer.DialContext(ctx, "127.0.0.1:9")
		result <- err
	}()
	receive(t, entered, "the Dial to be called")
	cancel()
	err := receive(t, result, "DialContext to return after cancel")
	require.ErrorIs(t, err, context.Canceled)
	var upgradeErr *rafthttp.UpgradeError
	require.ErrorAs(t, err, &upgradeErr)
	require.Equal(t, rafthttp.StepDial, upgradeErr.Step)

	close(release)
	conn := receive(t, made, "the Dial to make its connection")
	receive(t, conn.closed, "the connection the Dial made after the cancel to be closed")
}

// Closing the Layer ends a DialContext in flight with ErrClosed.
func TestLayerCloseCancelsDialContext(t *testing.T) {
	dial, entered, release, _ := blockingDial()
	t.Cleanup(func() { close(release) })
	layer := newLayer(t, rafthttp.LayerConfig{Dial: dial})

	result := make(chan error, 1)
	go func() {
		_, err := layer.DialContext(context.Background(), "127.0.0.1:9")
		result <- err
	}()
	receive(t, entered, "the Dial to be called")
	layer.Close()
	err := receive(t, result, "DialContext to return after Layer.Close")
	require.ErrorIs(t, err, rafthttp.ErrClosed)
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestLayerCloseEndsDialsInFlight checks that Close ends a Layer.Dial at
// once, whether its connect or its handshake is under way, with an error
// that wraps ErrClosed, although the dial's own timeout is far off.
func TestLayerCloseEndsDialsInFlight(t *testing.T) {
	t.Parallel()
	silent := rawPeer(t, func(conn net.Conn) { awaitClosed(conn) })
	tests := []struct {
		name string
		// start returns the Layer to dial with and the address to dial,
		// and a channel that says when the dial is under way.
		start func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{})
	}{
		{name: "connect", start: func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{}) {
			dial, entered, release, _ := blockingDial()
			t.Cleanup(func() { close(release) })
			return eagerLayer(t, dial), "127.0.0.1:1", entered
		}},
		{name: "connect with a DialContext", start: func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{}) {
			entered := make(chan struct{}, 1)
			dial := func(ctx context.Context, _ string) (net.Conn, error) {
				entered <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return newLayer(t, rafthttp.LayerConfig{DialContext: dial, EagerHandshake: true}), "127.0.0.1:1", entered
		}},
		{name: "handshake", start: func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{}) {
			connected := make(chan struct{}, 1)
			dial := func(addr string, timeout time.Duration) (net.Conn, error) {
				conn, err := rafthttp.NewDialTCP()(addr, timeout)
				connected <- struct{}{}
				return conn, err
			}
			return eagerLayer(t, dial), silent, connected
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			layer, addr, started := tt.start(t)
			dialed := make(chan error, 1)
			go func() {
				conn, err := layer.Dial(raft.ServerAddress(addr), time.Hour)
				if conn != nil {
					conn.Close()
				}
				dialed <- err
			}()
			receive(t, started, "the dial to start")
			require.NoError(t, layer.Close())
			err := receive(t, dialed, "Close to end the dial")
			assert.ErrorIs(t, err, rafthttp.ErrClosed)
		})
	}
}
