package rafthttp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// closeRecorder is a connection that only records being closed.
type closeRecorder struct {
	net.Conn
	closed chan struct{}
}

func (c *closeRecorder) Close() error {
	close(c.closed)
	return nil
}

// blockingDial is a Dial stuck in its connect until release is closed, as a
// dial to an unresponsive host is; the connection it then makes is recorded.
func blockingDial() (dial rafthttp.Dial, entered, release chan struct{}, made chan *closeRecorder) {
	entered = make(chan struct{}, 1)
	release = make(chan struct{})
	made = make(chan *closeRecorder, 1)
	dial = func(string, time.Duration) (net.Conn, error) {
		entered <- struct{}{}
		<-release
		conn := &closeRecorder{closed: make(chan struct{})}
		made <- conn
		return conn, nil
	}
	return dial, entered, release, made
}

func awaitDial(t *testing.T, entered chan struct{}) {
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the Dial was never called")
	}
}

func newCancelLayer(t *testing.T, dial rafthttp.Dial) *rafthttp.Layer {
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Handler: rafthttp.NewHandler(), Dial: dial,
	})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })
	return layer
}

// A DialContext canceled while its Dial is still connecting returns at once,
// and the connection the Dial makes afterwards is closed, not leaked.
func TestDialContextCancelDuringConnect(t *testing.T) {
	dial, entered, release, made := blockingDial()
	layer := newCancelLayer(t, dial)

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		_, err := layer.DialContext(ctx, "127.0.0.1:9")
		result <- err
	}()
	awaitDial(t, entered)
	cancel()
	select {
	case err := <-result:
		require.ErrorIs(t, err, context.Canceled)
		var upgradeErr *rafthttp.UpgradeError
		require.ErrorAs(t, err, &upgradeErr)
		require.Equal(t, "dial", upgradeErr.Step)
	case <-time.After(5 * time.Second):
		t.Fatal("DialContext did not return after cancel")
	}

	close(release)
	conn := <-made
	select {
	case <-conn.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection the Dial made after the cancel was not closed")
	}
}

// Closing the Layer ends a DialContext in flight with ErrClosed.
func TestLayerCloseCancelsDialContext(t *testing.T) {
	dial, entered, release, _ := blockingDial()
	t.Cleanup(func() { close(release) })
	layer := newCancelLayer(t, dial)

	result := make(chan error, 1)
	go func() {
		_, err := layer.DialContext(context.Background(), "127.0.0.1:9")
		result <- err
	}()
	awaitDial(t, entered)
	layer.Close()
	select {
	case err := <-result:
		require.ErrorIs(t, err, rafthttp.ErrClosed)
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("DialContext did not return after Layer.Close")
	}
}
