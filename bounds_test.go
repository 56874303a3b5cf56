package rafthttp_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// TestHandlerBoundDefaults checks the documented defaults of the bounds a
// zero HandlerConfig takes.
func TestHandlerBoundDefaults(t *testing.T) {
	t.Parallel()
	assert.Equal(t, 512, rafthttp.DefaultMaxConns)
	assert.Equal(t, 128, rafthttp.DefaultMaxPendingUpgrades)
	assert.Equal(t, 16, rafthttp.DefaultMaxPendingChanges)
	assert.Equal(t, 4096, rafthttp.MaxEarlyData)
	assert.Equal(t, rafthttp.DefaultMaxConns, rafthttp.HandlerMaxConns(rafthttp.NewHandler()))
}

// TestHandlerMaxConns checks that past MaxConns an upgrade is refused with
// 503 before any 101, and that a connection closed, by raft or by the
// peer, gives its place back.
func TestHandlerMaxConns(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{MaxConns: 2}})
	first := server.upgrade(t)
	firstAccepted := server.accept(t)
	server.upgrade(t)
	server.accept(t)

	refused := server.dialRaw(t)
	write(t, refused, server.upgradeHead())
	response := readResponse(t, bufio.NewReader(refused), http.MethodGet)
	assert.Equal(t, http.StatusServiceUnavailable, response.status)
	assert.Contains(t, response.body, "2 raft connections already open")
	requireRetryAfter(t, response)

	// raft closes one: there is room again.
	exchange(t, first, firstAccepted)
	require.NoError(t, firstAccepted.Close())
	exchange(t, server.upgrade(t), server.accept(t))
}

// TestLayerClosesConnsThatSendNothing checks that a connection upgraded
// by a peer that sends nothing within the Handler's timeout of Accept
// taking it ends for raft as an orderly end of stream, while one that
// sends its first byte in time keeps no deadline.
func TestLayerClosesConnsThatSendNothing(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Timeout: shortTimeout}})

	silent := server.upgrade(t)
	accepted := server.accept(t)
	start := time.Now()
	n, err := accepted.Read(make([]byte, 1))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF, "raft takes the end quietly")
	assert.GreaterOrEqual(t, time.Since(start), shortTimeout/2, "ended before the timeout")
	require.NoError(t, accepted.Close())
	assert.Empty(t, readUntilClosed(t, silent), "the peer sees its connection closed")

	talking := server.upgrade(t)
	accepted = server.accept(t)
	transfer(t, talking, accepted, "first request")
	waitPast(time.Now().Add(2 * shortTimeout))
	// Past the timeout, the connection still carries bytes both ways:
	// the first byte lifted the deadline.
	exchange(t, talking, accepted)
}

// TestHandlerMaxPendingChanges checks that past MaxPendingChanges a join
// is refused with 503 at once, and that a request answered gives its
// place back.
func TestHandlerMaxPendingChanges(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{MaxPendingChanges: 1}})
	// Nothing consumes Requests: the first join waits for the timeout.
	waiting := make(chan httpResponse, 1)
	go func() {
		response, _ := server.tryDo(t.Context(), http.MethodPost, "id=a&address=127.0.0.1:7001")
		waiting <- response
	}()
	request := receive(t, server.handler.Requests(), "the first join")
	response := server.do(t, http.MethodPost, "id=b&address=127.0.0.1:7002")
	assert.Equal(t, http.StatusServiceUnavailable, response.status)
	assert.Contains(t, response.body, "1 membership requests already waiting")
	requireRetryAfter(t, response)

	request.Done(nil)
	assert.Equal(t, http.StatusOK, receive(t, waiting, "the first join's answer").status)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if request, ok := <-server.handler.Requests(); ok {
			request.Done(nil)
		}
	}()
	// The place comes back once the Handler returns, a moment after its
	// answer: a join soon gets in again.
	require.Eventually(t, func() bool {
		return server.do(t, http.MethodPost, "id=b&address=127.0.0.1:7002").status == http.StatusOK
	}, testWait, 10*time.Millisecond, "room again")
	receive(t, done, "the second join to be answered")
}

// TestHandlerMaxPendingUpgrades checks that past MaxPendingUpgrades an
// upgrade is refused with 503 at once, while another waits for its early
// data, and that the place comes back when that one ends.
func TestHandlerMaxPendingUpgrades(t *testing.T) {
	t.Parallel()
	// entered closes when the first request reaches the Handler, so that
	// the upgrade held waiting is the first to take the one place.
	entered := make(chan struct{})
	var once sync.Once
	server := startServer(t, serverOptions{
		config: rafthttp.HandlerConfig{MaxPendingUpgrades: 1},
		wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				once.Do(func() { close(entered) })
				next.ServeHTTP(w, r)
			})
		},
	})
	body := "raft bytes that come late"
	waiting := server.dialRaw(t)
	write(t, waiting, server.upgradeHead(announceBody(len(body))...))
	receive(t, entered, "the held upgrade to reach the Handler")
	// The Handler holds it, waiting for the body: the next is refused.
	require.Eventually(t, func() bool {
		refused := server.dialRaw(t)
		write(t, refused, server.upgradeHead())
		response := readResponse(t, bufio.NewReader(refused), http.MethodGet)
		if response.status != http.StatusServiceUnavailable {
			// Not yet held: this upgrade went through; let raft have it.
			server.accept(t)
			return false
		}
		assert.Contains(t, response.body, fmt.Sprintf("%d upgrades already in progress", 1))
		return true
	}, testWait, 10*time.Millisecond)

	write(t, waiting, body)
	require.Equal(t, handlerEarly101, readFull(t, waiting, len(handlerEarly101)))
	accepted := server.accept(t)
	require.Equal(t, body, readFull(t, accepted, len(body)))
	// The place comes back once the Handler returns, a moment after its
	// 101: an upgrade soon gets in again.
	require.Eventually(t, func() bool {
		client := server.dialRaw(t)
		write(t, client, server.upgradeHead())
		if readResponse(t, bufio.NewReader(client), http.MethodGet).status != http.StatusSwitchingProtocols {
			return false
		}
		server.accept(t)
		return true
	}, testWait, 10*time.Millisecond)
}
