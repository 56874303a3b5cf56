package rafthttp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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

// learnedThenSilent starts a peer whose first connection answers with a
// 101 offering early data, and whose later connections read the request
// and then answer nothing but prefix, and returns a Layer that has learned
// that the peer takes early data.
func learnedThenSilent(t *testing.T, prefix string) (string, *rafthttp.Layer) {
	t.Helper()
	addr, requests := edPeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i == 0 {
			edEcho(i, conn, reader)
			return
		}
		io.WriteString(conn, prefix)
		dlAwaitClosed(reader)
	})
	// requests has room for every later request: nobody needs to read it.
	return addr, edLearned(t, addr, requests)
}

// requireTimeout asserts that err reports a timeout the way a net.Conn
// does.
func requireTimeout(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	var netErr net.Error
	require.ErrorAs(t, err, &netErr, "error: %v", err)
	assert.True(t, netErr.Timeout(), "Timeout() of %v", err)
}

// TestLazyConnHonoursItsOwnDeadline checks that a call waiting for the 101
// of an early-data dial ends at the deadline of its own direction: a Write
// with more to send than the request holds at the write deadline, a Read
// at the read deadline, even when the dial itself set none.
func TestLazyConnHonoursItsOwnDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		wait  func(conn net.Conn) error
		write bool
	}{
		{name: "write", write: true, wait: func(conn net.Conn) error {
			_, err := conn.Write(make([]byte, 1000)) // more than the peer's 100 of early data
			return err
		}},
		{name: "read", wait: func(conn net.Conn) error {
			_, err := conn.Read(make([]byte, 10))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, layer := learnedThenSilent(t, "")
			conn, err := layer.DialContext(context.Background(), raft.ServerAddress(addr))
			require.NoError(t, err)
			defer conn.Close()
			if tt.write {
				require.NoError(t, conn.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
			} else {
				require.NoError(t, conn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
			}
			done := make(chan error, 1)
			go func() { done <- tt.wait(conn) }()
			requireTimeout(t, receive(t, done, "the call to end at its deadline"))
		})
	}
}

// TestLazyConnWaitersHonourTheirDeadlines checks that a Read waiting for
// the 101 that a Write is reading ends at the read deadline, without
// failing the Write's upgrade, and that a deadline set while a call waits
// applies to it.
func TestLazyConnWaitersHonourTheirDeadlines(t *testing.T) {
	t.Parallel()
	answer := make(chan struct{})
	addr, requests := edPeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i > 0 {
			<-answer
		}
		edEcho(i, conn, reader)
	})
	layer := edLearned(t, addr, requests)
	conn, err := layer.DialContext(context.Background(), raft.ServerAddress(addr))
	require.NoError(t, err)
	defer conn.Close()

	// The Write sends the request with 100 bytes and waits for the 101 to
	// send the rest.
	payload := strings.Repeat("w", 300)
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, payload)
		wrote <- err
	}()
	request := receive(t, requests, "the request")
	require.Equal(t, payload[:len(request.body)], request.body)

	// A Read without a deadline waits; setting one while it waits ends it.
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		read <- err
	}()
	require.Eventually(t, func() bool {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		select {
		case err := <-read:
			requireTimeout(t, err)
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, testWait, time.Millisecond)

	// The Write's upgrade goes on, and completes once the peer answers.
	require.NoError(t, conn.SetReadDeadline(time.Time{}))
	close(answer)
	require.NoError(t, receive(t, wrote, "the Write to finish after the 101"))
	// The peer echoes what follows the body.
	rest := payload[len(request.body):]
	got := make([]byte, len(rest))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(testWait)))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	assert.Equal(t, rest, string(got))
}

// TestDialTimeoutMidHeaderIsATimeout checks that a deadline falling inside
// a header line of the 101 is reported as a timeout, by an eager dial and
// by the first Read of an early-data one alike.
func TestDialTimeoutMidHeaderIsATimeout(t *testing.T) {
	t.Parallel()
	const partial = "HTTP/1.1 101 Switching Protocols\r\nUpgra"
	for _, eager := range []bool{true, false} {
		name := map[bool]string{true: "eager", false: "early data"}[eager]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr, layer := learnedThenSilent(t, partial)
			if eager {
				layer = edLayer(t, rafthttp.LayerConfig{EagerHandshake: true})
			}
			conn, err := layer.Dial(raft.ServerAddress(addr), 300*time.Millisecond)
			if !eager {
				require.NoError(t, err)
				defer conn.Close()
				_, err = conn.Write([]byte("x"))
				require.NoError(t, err)
				_, err = conn.Read(make([]byte, 1))
			}
			upgradeErr := dlUpgradeError(t, err, addr)
			assert.Equal(t, rafthttp.StepReadResponse, upgradeErr.Step)
			assert.True(t, upgradeErr.Timeout(), "Timeout() of %v", err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		})
	}
}

// TestLayerCloseEndsDialsInFlight checks that Close ends a Layer.Dial at
// once, whether its connect or its handshake is under way, with an error
// that wraps ErrClosed, although the dial's own timeout is far off.
func TestLayerCloseEndsDialsInFlight(t *testing.T) {
	t.Parallel()
	silent := dlRawPeer(t, func(conn net.Conn) { dlAwaitClosed(conn) })
	tests := []struct {
		name string
		// start returns the Layer to dial with and the address to dial,
		// and a channel that says when the dial is under way.
		start func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{})
	}{
		{name: "connect", start: func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{}) {
			dial, entered, release, _ := blockingDial()
			t.Cleanup(func() { close(release) })
			return newCancelLayer(t, dial), "127.0.0.1:1", entered
		}},
		{name: "handshake", start: func(t *testing.T) (*rafthttp.Layer, string, <-chan struct{}) {
			connected := make(chan struct{}, 1)
			dial := func(addr string, timeout time.Duration) (net.Conn, error) {
				conn, err := rafthttp.NewDialTCP()(addr, timeout)
				connected <- struct{}{}
				return conn, err
			}
			return newCancelLayer(t, dial), silent, connected
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
			layer := msLayer(t, "127.0.0.1:7000", dial)
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

// countingConn records the size of each write that reaches the socket.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) reset() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	writes := c.writes
	c.writes = nil
	return writes
}

// TestEarlyDataFitsOneSegmentOverTLS checks that an upgrade request with
// early data fits maxEarlyRequest (1,200 bytes) on the wire with TLS's
// record overhead counted, so that it still travels in one TCP segment,
// and that raft's bytes arrive whole.
func TestEarlyDataFitsOneSegmentOverTLS(t *testing.T) {
	t.Parallel()
	logger := hclog.NewNullLogger()
	handler := rafthttp.NewHandlerWithLogger(logger)
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	server := httptest.NewUnstartedServer(mux)
	server.StartTLS()
	t.Cleanup(server.Close)
	roots := x509.NewCertPool()
	roots.AddCert(server.Certificate())

	conns := make(chan *countingConn, 4)
	dial := func(addr string, timeout time.Duration) (net.Conn, error) {
		raw, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		counted := &countingConn{Conn: raw}
		conn := tls.Client(counted, &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"http/1.1"}})
		if err := conn.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		counted.reset()
		conns <- counted
		return conn, nil
	}
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: server.Listener.Addr(), Handler: handler, Dial: dial, Logger: logger,
	})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })
	addr := raft.ServerAddress(server.Listener.Addr().String())

	// The first dial learns that the peer takes early data.
	first, err := layer.Dial(addr, testWait)
	require.NoError(t, err)
	first.Close()
	receive(t, conns, "the first connection")
	accepted, err := layer.Accept()
	require.NoError(t, err)
	accepted.Close()

	conn, err := layer.Dial(addr, testWait)
	require.NoError(t, err)
	defer conn.Close()
	counted := receive(t, conns, "the second connection")
	payload := strings.Repeat("r", 4000)
	_, err = io.WriteString(conn, payload)
	require.NoError(t, err)
	writes := counted.reset()
	require.NotEmpty(t, writes)
	assert.LessOrEqual(t, writes[0], 1200, "the request with early data, as a TLS record on the wire")

	accepted, err = layer.Accept()
	require.NoError(t, err)
	defer accepted.Close()
	got := make([]byte, len(payload))
	require.NoError(t, accepted.SetReadDeadline(time.Now().Add(testWait)))
	_, err = io.ReadFull(accepted, got)
	require.NoError(t, err)
	assert.Equal(t, payload, string(got))
}

// TestHandlerIgnoresUpgradeOnHTTP10 checks RFC 9110 section 7.8: the
// Upgrade header of an HTTP/1.0 request is ignored, so it gets no 101 and
// nothing reaches Accept.
func TestHandlerIgnoresUpgradeOnHTTP10(t *testing.T) {
	t.Parallel()
	server := startHDServer(t, hdServerOptions{})
	conn := server.dialRaw(t)
	hdWrite(t, conn, "GET /raft HTTP/1.0\r\nHost: raft\r\nUpgrade: raft\r\nConnection: Upgrade\r\n\r\n")
	response := hdReadResponse(t, bufio.NewReader(conn), http.MethodGet)
	assert.Equal(t, http.StatusUpgradeRequired, response.status)
	assert.Contains(t, response.body, "HTTP/1.1")

	// The next connection raft accepts is a real upgrade, not the 1.0 one.
	hdExchange(t, server.upgrade(t), server.accept(t))
}

// TestUpgradeStepsAreTyped checks that errors carry the exported step
// constants, so callers can compare them.
func TestUpgradeStepsAreTyped(t *testing.T) {
	t.Parallel()
	layer := edLayer(t, rafthttp.LayerConfig{EagerHandshake: true})
	_, err := layer.Dial(raft.ServerAddress(clustertest.RefusingAddr(t)), testWait)
	var upgradeErr *rafthttp.UpgradeError
	require.ErrorAs(t, err, &upgradeErr)
	assert.Equal(t, rafthttp.StepDial, upgradeErr.Step)
	assert.False(t, errors.Is(err, rafthttp.ErrClosed))
}
