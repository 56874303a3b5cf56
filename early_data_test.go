package rafthttp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// TestEarlyDataLearned checks the Layer's side of early data: the first dial
// to a peer announces none and waits for the 101, which tells the limit;
// later dials return before writing anything, and their first write goes
// out as the request's body, up to the peer's limit, the rest after the
// 101.
func TestEarlyDataLearned(t *testing.T) {
	t.Parallel()
	addr, requests := upgradePeer(t, echoEarly)
	layer := newLayer(t, rafthttp.LayerConfig{})

	first := dialConn(t, layer, addr, testWait)
	request := receive(t, requests, "the first request")
	assert.Equal(t, "GET /raft HTTP/1.1", request.line)
	assert.Equal(t, "0", request.announced, "a rafthttp dial asks whether the peer takes early data")
	assert.True(t, request.eager(), "the first dial sends no body")
	roundTrip(t, first, "after the 101", "after the 101")

	second := dialConn(t, layer, addr, testWait)
	roundTrip(t, second, "hello", "")
	// The next request the peer read carries the first write: a request
	// sent before it, however late, would have had no body.
	request = receive(t, requests, "the second request")
	assert.Equal(t, peerRequest{line: "GET /raft HTTP/1.1", announced: "5", length: "5", body: "hello"}, request.withoutHeader())
	roundTrip(t, second, "more", "more")

	// More than the peer takes: the body holds its limit, the rest follows
	// the 101 on the same Write.
	third := dialConn(t, layer, addr, testWait)
	large := strings.Repeat("0123456789", 25)
	roundTrip(t, third, large, large[100:])
	request = receive(t, requests, "the third request")
	assert.Equal(t, "100", request.announced)
	assert.Equal(t, large[:100], request.body)
}

// TestEarlyDataOriginalPeer checks that a peer whose 101 says nothing of
// early data, as an original node's does not, is always dialed eagerly.
func TestEarlyDataOriginalPeer(t *testing.T) {
	t.Parallel()
	addr, requests := upgradePeer(t, answerThenEcho(original101))
	layer := newLayer(t, rafthttp.LayerConfig{})
	for i := range 3 {
		conn := dialConn(t, layer, addr, testWait)
		request := receive(t, requests, "request "+strconv.Itoa(i))
		assert.True(t, request.eager(), "dial %d sent its request without a body, before returning", i)
		roundTrip(t, conn, "ping", "ping")
	}
}

// TestEarlyDataEagerHandshake checks that LayerConfig.EagerHandshake keeps
// every request in the original's form, without even asking.
func TestEarlyDataEagerHandshake(t *testing.T) {
	t.Parallel()
	addr, requests := upgradePeer(t, echoEarly)
	layer := newLayer(t, rafthttp.LayerConfig{EagerHandshake: true})
	for i := range 2 {
		conn := dialConn(t, layer, addr, testWait)
		request := receive(t, requests, "request "+strconv.Itoa(i))
		assert.Equal(t, peerRequest{line: "GET /raft HTTP/1.1"}, request.withoutHeader(), "dial %d", i)
		roundTrip(t, conn, "ping", "ping")
	}
}

// TestEarlyDataRefusals checks what a dial with early data does when the
// answer is not a 101 that confirms the body: the Read that waits for it
// returns the *UpgradeError an eager dial would have, never data, so does
// every later Read, a Write fails, and the connection is closed. The next
// dial to the peer is eager if early data may be what went wrong: a 101
// that does not confirm the body, a refusal of the request as such, or a
// connection cut before any answer; not after a timeout or another refusal.
func TestEarlyDataRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer string
		step         rafthttp.UpgradeStep
		timeout      bool
		staysEarly   bool
	}{
		{name: "EOF", answer: "close", step: rafthttp.StepReadResponse},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH_9.6\r\n", step: rafthttp.StepReadResponse, staysEarly: true},
		{name: "503", answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 25\r\n\r\nrafthttp: handler closed\n", step: rafthttp.StepStatus, staysEarly: true},
		{name: "400", answer: "HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nbody", step: rafthttp.StepStatus},
		{name: "413", answer: "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 4\r\n\r\nbody", step: rafthttp.StepStatus},
		{name: "404", answer: "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nbody", step: rafthttp.StepStatus, staysEarly: true},
		{name: "101 websocket", answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", step: rafthttp.StepUpgradeHeader},
		{name: "101 without confirmation", answer: original101 + "raft bytes", step: rafthttp.StepUpgradeHeader},
		{name: "silent", answer: "wait", step: rafthttp.StepReadResponse, timeout: true, staysEarly: true},
		{name: "101 and data", answer: peerEarly101 + "raft bytes", staysEarly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
				switch {
				case i != 1:
					// The dial that learns, and the one after the test.
					echoEarly(i, conn, reader)
					return
				case tt.answer == "close":
					return
				case tt.answer != "wait":
					io.WriteString(conn, tt.answer)
				}
				awaitClosed(reader)
			})
			layer := learnedLayer(t, addr, requests, rafthttp.LayerConfig{})

			conn := dialConn(t, layer, addr, 300*time.Millisecond)
			_, err := io.WriteString(conn, "early")
			require.NoError(t, err)
			assert.Equal(t, "early", receive(t, requests, "the request with early data").body)

			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if tt.step == "" {
				require.NoError(t, err)
				assert.Equal(t, "raft bytes", string(buf[:n]))
			} else {
				assert.Zero(t, n)
				upgradeErr := requireUpgradeError(t, err, addr)
				assert.Equal(t, tt.step, upgradeErr.Step, "error: %v", err)
				assert.Equal(t, tt.timeout, upgradeErr.Timeout(), "error: %v", err)
				assert.LessOrEqual(t, strings.Count(err.Error(), "deadline exceeded"), 1, "said once: %v", err)
				n, again := conn.Read(buf)
				assert.Zero(t, n)
				assert.Same(t, err, again, "every Read returns the refusal")
				_, again = conn.Write([]byte("x"))
				assert.Same(t, err, again, "so does every Write")
			}

			next := dialConn(t, layer, addr, testWait)
			_, err = io.WriteString(next, "next")
			require.NoError(t, err)
			request := receive(t, requests, "the next request")
			assert.Equal(t, tt.staysEarly, !request.eager(), "early data on the next dial: %+v", request)
		})
	}
}

// TestEarlyDataReadFirst checks that a dial with early data whose first use
// is a Read sends its request without a body and reads the answer.
func TestEarlyDataReadFirst(t *testing.T) {
	t.Parallel()
	addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i == 0 {
			echoEarly(i, conn, reader)
			return
		}
		io.WriteString(conn, peerEarly101+"the peer speaks first")
		awaitClosed(reader)
	})
	layer := learnedLayer(t, addr, requests, rafthttp.LayerConfig{})

	conn := dialConn(t, layer, addr, testWait)
	assert.Equal(t, "the peer speaks first", readFull(t, conn, len("the peer speaks first")))
	request := receive(t, requests, "the request")
	assert.Equal(t, "0", request.announced)
	assert.True(t, request.eager())
}

// TestEarlyDataWritesWaitForTheAnswer checks that nothing is written behind
// the body before the 101 has come back: a proxy may drop such bytes, and
// after a refusal they must not be sent at all. A second Write, and a Read,
// wait for the answer; then both go through, or both return the refusal
// and the peer never sees the Write's bytes.
func TestEarlyDataWritesWaitForTheAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer string
		// refused: the answer is a refusal, which the waiting Write and
		// Read must both return.
		refused bool
	}{
		{name: "101", answer: peerEarly101 + "answer"},
		{name: "refused", answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			behind := make(chan readResult, 1)
			addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
				if i == 0 {
					echoEarly(i, conn, reader)
					return
				}
				select {
				case <-release:
				case <-time.After(testWait):
					return
				}
				io.WriteString(conn, tt.answer)
				// Everything the client sends behind its body, until it
				// closes: whenever a Write that did not wait sent it, it
				// is in here.
				behind <- readToClose(reader)
			})
			_, conn, reading := dialEarly(t, addr, requests, "first")
			written := make(chan error, 1)
			go func() {
				_, err := io.WriteString(conn, "second")
				written <- err
			}()
			// The Write reads the answer before it writes: it waits.
			receive(t, reading, "the second Write to read the answer")
			read := readAsync(conn, len("answer"))
			close(release)

			writeErr := receive(t, written, "the second Write")
			r := receive(t, read, "the Read")
			if tt.refused {
				upgradeErr := requireUpgradeError(t, writeErr, addr)
				assert.Equal(t, rafthttp.StepStatus, upgradeErr.Step)
				assert.Same(t, writeErr, r.err, "the Read returns the refusal too")
				peer := receive(t, behind, "the peer to see the client close")
				require.NoError(t, peer.err, "the client closes the refused connection")
				assert.Empty(t, peer.data, "bytes written behind the body reached the peer")
				return
			}
			require.NoError(t, writeErr)
			require.NoError(t, r.err)
			assert.Equal(t, "answer", r.data)
			require.NoError(t, conn.Close())
			peer := receive(t, behind, "the second Write at the peer")
			require.NoError(t, peer.err)
			assert.Equal(t, "second", peer.data, "exactly the second Write follows the body")
		})
	}
}

// TestEarlyDataDeadlines checks the deadlines of a dial with early data:
// the dial's own bounds the answer unless the caller sets one, and is
// lifted once the connection is upgraded.
func TestEarlyDataDeadlines(t *testing.T) {
	t.Parallel()
	addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i == 2 {
			// Silent: only a deadline ends the wait.
			awaitClosed(reader)
			return
		}
		echoEarly(i, conn, reader)
	})
	layer := learnedLayer(t, addr, requests, rafthttp.LayerConfig{})

	t.Run("lifted", func(t *testing.T) {
		const timeout = 50 * time.Millisecond
		conn := dialConn(t, layer, addr, timeout)
		dialed := time.Now()
		_, err := io.WriteString(conn, "a")
		require.NoError(t, err)
		// The second Write waits for the 101; the peer echoes it.
		_, err = io.WriteString(conn, "b")
		require.NoError(t, err)
		got := make([]byte, 1)
		_, err = io.ReadFull(conn, got)
		require.NoError(t, err)
		// The dial's deadline fell before dialed+timeout: left on the
		// conn, it fails the Write and the Read below at once.
		waitPast(dialed.Add(2 * timeout))
		_, err = io.WriteString(conn, "c")
		require.NoError(t, err, "no write deadline is left")
		_, err = io.ReadFull(conn, got)
		require.NoError(t, err, "no read deadline is left")
		assert.Equal(t, "c", string(got))
	})
	t.Run("caller's", func(t *testing.T) {
		conn := dialConn(t, layer, addr, testWait)
		_, err := io.WriteString(conn, "a")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		start := time.Now()
		_, err = conn.Read(make([]byte, 1))
		upgradeErr := requireUpgradeError(t, err, addr)
		assert.True(t, upgradeErr.Timeout(), "error: %v", err)
		assert.Less(t, time.Since(start), testWait/2, "the caller's deadline, not the dial's")
	})
}

// TestEarlyDataOriginalTakesTheAddress checks what happens when a peer the
// Layer learned takes early data is replaced, at the same address, by an
// original node, whose Handler drops what net/http buffered with the
// request and answers a plain 101. Request and early data fit one segment,
// so the original's raft reads none of it; the Layer fails the connection
// on the unconfirmed 101 (raft retries), never sends the rest of the write,
// and dials the peer eagerly from then on.
func TestEarlyDataOriginalTakesTheAddress(t *testing.T) {
	t.Parallel()
	seen := make(chan readResult, 1)
	var count atomic.Int64
	addr := rawPeer(t, func(conn net.Conn) {
		if count.Add(1) == 1 {
			// The rafthttp node the Layer learns from.
			reader, _, _, err := readHead(conn)
			if err == nil {
				io.WriteString(conn, handlerEarly101)
				awaitClosed(reader)
			}
			return
		}
		// The original node: net/http's 4 KiB reader, dropped on hijack.
		if _, err := http.ReadRequest(bufio.NewReaderSize(conn, 4096)); err != nil {
			return
		}
		io.WriteString(conn, original101)
		// What its raft reads, until the Layer closes the connection.
		seen <- readToClose(conn)
	})
	layer := newLayer(t, rafthttp.LayerConfig{})
	dialConn(t, layer, addr, testWait)

	conn := dialConn(t, layer, addr, testWait)
	_, err := conn.Write(bytes.Repeat([]byte("r"), 3000))
	upgradeErr := requireUpgradeError(t, err, addr)
	assert.Equal(t, rafthttp.StepUpgradeHeader, upgradeErr.Step, "error: %v", err)
	read := receive(t, seen, "the Layer to close its connection to the original node")
	require.NoError(t, read.err, "the Layer left the failed connection open")
	assert.Empty(t, read.data, "the original's raft read bytes of the write")

	eager, err := layer.Dial(raft.ServerAddress(addr), testWait)
	require.NoError(t, err, "an eager dial takes the plain 101")
	eager.Close()
}

// TestEarlyDataCloseDuringHandshake checks that closing a dial with early
// data while its Read waits for the 101 ends the Read with net.ErrClosed,
// and is not held against the peer: the next dial still sends early data.
func TestEarlyDataCloseDuringHandshake(t *testing.T) {
	t.Parallel()
	addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i == 1 {
			awaitClosed(reader) // silent
			return
		}
		echoEarly(i, conn, reader)
	})
	layer, conn, reading := dialEarly(t, addr, requests, "early")
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		read <- err
	}()
	receive(t, reading, "the Read to wait for the 101")
	require.NoError(t, conn.Close())
	assert.ErrorIs(t, receive(t, read, "the Read"), net.ErrClosed)

	next := dialConn(t, layer, addr, testWait)
	write(t, next, "next")
	assert.Equal(t, "next", receive(t, requests, "the next request").body)
}

// learnedThenSilent starts a peer whose first connection answers with a
// 101 offering early data, and whose later connections read the request
// and then answer nothing but prefix, and returns a Layer that has learned
// that the peer takes early data.
func learnedThenSilent(t *testing.T, prefix string) (string, *rafthttp.Layer) {
	t.Helper()
	addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i == 0 {
			echoEarly(i, conn, reader)
			return
		}
		io.WriteString(conn, prefix)
		awaitClosed(reader)
	})
	// requests has room for every later request: nobody needs to read it.
	return addr, learnedLayer(t, addr, requests, rafthttp.LayerConfig{})
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
	var answerOnce sync.Once
	release := func() { answerOnce.Do(func() { close(answer) }) }
	t.Cleanup(release) // so that the peer never outlives a failed test
	addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i > 0 {
			<-answer
		}
		echoEarly(i, conn, reader)
	})
	dial, reading := readWatchingDial()
	layer := learnedLayer(t, addr, requests, rafthttp.LayerConfig{Dial: dial})
	drain(reading)
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
	// The Write is the call that reads the answer: the Read below waits
	// for it, rather than reading the answer itself.
	receive(t, reading, "the Write to start reading the answer")

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
	release()
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
				layer = newLayer(t, rafthttp.LayerConfig{EagerHandshake: true})
			}
			conn, err := layer.Dial(raft.ServerAddress(addr), 300*time.Millisecond)
			if !eager {
				require.NoError(t, err)
				defer conn.Close()
				_, err = conn.Write([]byte("x"))
				require.NoError(t, err)
				_, err = conn.Read(make([]byte, 1))
			}
			upgradeErr := requireUpgradeError(t, err, addr)
			assert.Equal(t, rafthttp.StepReadResponse, upgradeErr.Step)
			assert.True(t, upgradeErr.Timeout(), "Timeout() of %v", err)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		})
	}
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

	conns := make(chan *recordingConn, 4)
	dial := func(addr string, timeout time.Duration) (net.Conn, error) {
		raw, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		counted := newRecordingConn(raw)
		conn := tls.Client(counted, &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"http/1.1"}})
		if err := conn.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		counted.takeWrites()
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
	writes := counted.takeWrites()
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
