package rafthttp_test

import (
	"context"
	"net"
	"testing"

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
	require.Equal(t, "dial", upgradeErr.Step)

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
