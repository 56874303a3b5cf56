package rafthttp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestWebSocketDialHandshake checks the request a Layer in WebSocket mode
// sends, as the wire has it: RFC 6455's handshake with the raft
// subprotocol, a fresh key per dial, the Layer's Header and cluster ID, no
// extension and no early data; and that what it writes travels in masked,
// final binary frames, and what the peer sends in unmasked ones reads
// back as the stream.
func TestWebSocketDialHandshake(t *testing.T) {
	payloads := make(chan []byte, 4)
	addr, requests := webSocketPeer(t, func(conn net.Conn, reader *bufio.Reader, request webSocketRequest) {
		io.WriteString(conn, webSocket101(request.header.Get("Sec-WebSocket-Key"), "raft"))
		f, err := readFrame(reader)
		if err != nil {
			return
		}
		if !f.fin || f.rsv != 0 || f.opcode != opBinary || !f.masked {
			payloads <- []byte(fmt.Sprintf("bad frame: %+v", f))
			return
		}
		payloads <- f.payload
		conn.Write(appendFrame(nil, opBinary, []byte("answer"), false))
		readFrame(reader) // the close frame, or the end
	})
	layer := webSocketLayer(t, rafthttp.LayerConfig{
		Header:    http.Header{"Authorization": {"Bearer token"}},
		ClusterID: "blue",
	})

	var keys []string
	for range 2 {
		conn := dialConn(t, layer, addr, testWait)
		request := receive(t, requests, "the handshake")
		assert.Equal(t, "GET "+raftPath+" HTTP/1.1", request.target)
		header := request.header
		assert.Equal(t, addr, header.Get("Host"))
		assert.Equal(t, "websocket", header.Get("Upgrade"))
		assert.Equal(t, "Upgrade", header.Get("Connection"))
		assert.Equal(t, "13", header.Get("Sec-WebSocket-Version"))
		assert.Equal(t, "raft", header.Get("Sec-WebSocket-Protocol"))
		assert.Empty(t, header.Values("Sec-WebSocket-Extensions"), "no extension offered")
		assert.Equal(t, "Bearer token", header.Get("Authorization"))
		assert.Equal(t, "blue", header.Get("Rafthttp-Cluster-Id"))
		assert.Empty(t, header.Values("Rafthttp-Body"), "no early data")
		assert.Empty(t, header.Values("Content-Length"), "no body")
		key := header.Get("Sec-WebSocket-Key")
		decoded, err := base64.StdEncoding.DecodeString(key)
		require.NoError(t, err, "the key is base64")
		assert.Len(t, decoded, 16, "the key is 16 bytes")
		keys = append(keys, key)

		write(t, conn, "raft's request")
		assert.Equal(t, "raft's request", string(receive(t, payloads, "the frame the Layer wrote")))
		assert.Equal(t, "answer", readFull(t, conn, len("answer")))
	}
	assert.NotEqual(t, keys[0], keys[1], "each dial has a fresh key")
}

// TestWebSocketStream carries raft's stream over a WebSocket connection
// between a Layer and a Handler, both ways, in writes of every size the
// frame encoding distinguishes and larger than the write buffer, read in
// pieces that do not match the writes.
func TestWebSocketStream(t *testing.T) {
	server := startServer(t, serverOptions{})
	client := webSocketLayer(t, rafthttp.LayerConfig{})
	dialed, accepted := server.connect(t, client)
	exchange(t, dialed, accepted)

	for _, size := range []int{1, 125, 126, 65535, 65536, 200 << 10, 1 << 20} {
		for _, ends := range [][2]net.Conn{{dialed, accepted}, {accepted, dialed}} {
			data := randomBytes(size, byte(size))
			received := readAsync(ends[1], size)
			write(t, ends[0], data)
			r := receive(t, received, fmt.Sprintf("%d bytes", size))
			require.NoError(t, r.err)
			require.Equal(t, data, r.data, "%d bytes", size)
		}
	}
	// An empty write sends nothing and is not an error, as on TCP.
	n, err := dialed.Write(nil)
	assert.NoError(t, err)
	assert.Zero(t, n)
	transfer(t, dialed, accepted, "after an empty write")
}

// TestWebSocketHandlerServesBothForms dials one Handler, on one path,
// with a raw Layer and a WebSocket Layer: both connections reach Accept
// and carry raft's bytes.
func TestWebSocketHandlerServesBothForms(t *testing.T) {
	server := startServer(t, serverOptions{})
	raw := eagerLayer(t, nil)
	ws := webSocketLayer(t, rafthttp.LayerConfig{})
	for _, client := range []*rafthttp.Layer{raw, ws, raw} {
		dialed, accepted := server.connect(t, client)
		exchange(t, dialed, accepted)
	}
}

// TestWebSocketHandlerRefusals sends WebSocket upgrades that a Handler
// must refuse, by hand: each gets its HTTP error, never a 101, and
// nothing reaches Accept.
func TestWebSocketHandlerRefusals(t *testing.T) {
	tests := []struct {
		name   string
		drop   []string
		extra  []string
		status int
		reason string
	}{
		{name: "no subprotocol", drop: []string{"Sec-WebSocket-Protocol"}, status: 400, reason: `must offer the "raft" subprotocol`},
		{name: "another subprotocol", drop: []string{"Sec-WebSocket-Protocol"}, extra: []string{"Sec-WebSocket-Protocol: chat, superchat"}, status: 400, reason: `offered: "chat, superchat"`},
		{name: "a versioned subprotocol", drop: []string{"Sec-WebSocket-Protocol"}, extra: []string{"Sec-WebSocket-Protocol: raft/2"}, status: 400, reason: `must offer the "raft" subprotocol`},
		{name: "subprotocol on a second line", drop: []string{"Sec-WebSocket-Protocol"}, extra: []string{"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: raft"}, status: 400, reason: `must offer the "raft" subprotocol`},
		{name: "no key", drop: []string{"Sec-WebSocket-Key"}, status: 400, reason: "Sec-WebSocket-Key"},
		{name: "short key", drop: []string{"Sec-WebSocket-Key"}, extra: []string{"Sec-WebSocket-Key: c2hvcnQ="}, status: 400, reason: "Sec-WebSocket-Key"},
		{name: "version 8", drop: []string{"Sec-WebSocket-Version"}, extra: []string{"Sec-WebSocket-Version: 8"}, status: 400, reason: "version"},
		{name: "no Connection", drop: []string{"Connection"}, status: 400, reason: "Connection"},
		{name: "a body", extra: []string{"Content-Length: 4"}, status: 400, reason: "no body"},
		{name: "foreign origin", extra: []string{"Origin: https://elsewhere.example"}, status: 403, reason: "origin"},
	}
	server := startServer(t, serverOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := server.dialRaw(t)
			head := server.webSocketHead(tt.drop, tt.extra...)
			if strings.Contains(head, "Content-Length: 4") {
				head += "body"
			}
			write(t, conn, head)
			response, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			body, _ := io.ReadAll(response.Body)
			assert.Equal(t, tt.status, response.StatusCode, "status; body %q", body)
			assert.Contains(t, strings.ToLower(string(body)), strings.ToLower(tt.reason))
			assert.True(t, strings.HasPrefix(string(body), "rafthttp: "), "the Handler's own refusal: %q", body)
			assert.Equal(t, "13", response.Header.Get("Sec-WebSocket-Version"), "the version served (RFC 6455 section 4.4)")
		})
	}
	server.requireNextAccepted(t)
}

// TestWebSocketDataBeforeHandshake: a client that sends frames behind its
// request, without waiting for the 101, breaks RFC 6455 and gets a 400
// saying so, not a dropped connection; nothing reaches Accept.
func TestWebSocketDataBeforeHandshake(t *testing.T) {
	server := startServer(t, serverOptions{})
	conn := server.dialRaw(t)
	write(t, conn, server.webSocketHead(nil)+string(appendFrame(nil, opBinary, []byte("too soon"), true)))
	response, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(response.Body)
	assert.Equal(t, http.StatusBadRequest, response.StatusCode)
	assert.Contains(t, string(body), "sends nothing before the 101")
	server.requireNextAccepted(t)
}

// TestWebSocketAuthorizeAndClusterID checks that a WebSocket dial passes
// the same gate as a raw one: Authorize sees it (401 without the
// credentials, not retried), and a cluster ID mismatch is a 412 that
// names both clusters.
func TestWebSocketAuthorizeAndClusterID(t *testing.T) {
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{
		ClusterID: "blue",
		Authorize: func(r *http.Request) error {
			if r.Header.Get("Authorization") != "Bearer secret" {
				return rafthttp.ErrUnauthorized
			}
			return nil
		},
	}})
	credentials := http.Header{"Authorization": {"Bearer secret"}}

	_, err := webSocketLayer(t, rafthttp.LayerConfig{ClusterID: "blue"}).Dial(server.raftAddr(), testWait)
	var status *rafthttp.StatusError
	require.ErrorAs(t, err, &status)
	assert.Equal(t, http.StatusUnauthorized, status.StatusCode)

	_, err = webSocketLayer(t, rafthttp.LayerConfig{Header: credentials, ClusterID: "green"}).Dial(server.raftAddr(), testWait)
	require.ErrorIs(t, err, rafthttp.ErrClusterIDMismatch)
	assert.Contains(t, err.Error(), `"green"`)
	assert.Contains(t, err.Error(), `"blue"`)

	dialed, accepted := server.connect(t, webSocketLayer(t, rafthttp.LayerConfig{Header: credentials, ClusterID: "blue"}))
	exchange(t, dialed, accepted)
}

// TestWebSocketLayerRefusesCustomWebSocketHeaders: the handshake's headers
// are the Layer's to set.
func TestWebSocketLayerRefusesCustomWebSocketHeaders(t *testing.T) {
	for _, name := range []string{"Sec-WebSocket-Protocol", "sec-websocket-extensions", "Sec-WebSocket-Key"} {
		_, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: raftPath, Addr: advertised,
			Handler: rafthttp.NewHandler(), WebSocket: true, Header: http.Header{name: {"x"}}})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "set by rafthttp itself")
	}
}

// TestWebSocketDialFailures has a Layer in WebSocket mode dial peers that
// answer wrongly: each dial fails with an *UpgradeError naming the step
// and saying what was wrong, and the connection is closed.
func TestWebSocketDialFailures(t *testing.T) {
	tests := []struct {
		name   string
		answer func(key string) string
		step   rafthttp.UpgradeStep
		want   string
	}{
		{
			// What a node running the original package answers.
			name:   "original node",
			answer: func(string) string { return plainAnswer(400, "missing or invalid upgrade header") },
			step:   rafthttp.StepStatus, want: "400 Bad Request: missing or invalid upgrade header (the refusal is not a rafthttp Handler's: a node running the original package cannot serve WebSocket mode",
		},
		{
			name:   "no subprotocol selected",
			answer: func(key string) string { return webSocket101(key, "") },
			step:   rafthttp.StepUpgradeHeader, want: `selects subprotocol "", not "raft"`,
		},
		{
			name:   "wrong accept",
			answer: func(string) string { return webSocket101("another key", "raft") },
			step:   rafthttp.StepUpgradeHeader, want: "does not complete the WebSocket handshake",
		},
		{
			name: "raw 101",
			answer: func(string) string {
				return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nConnection: Upgrade\r\n\r\n"
			},
			step: rafthttp.StepUpgradeHeader, want: "does not complete the WebSocket handshake",
		},
		{
			name: "extension not offered",
			answer: func(key string) string {
				return webSocket101(key, "raft", "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover")
			},
			step: rafthttp.StepUpgradeHeader, want: "extensions that were not offered",
		},
		{
			name:   "closed without an answer",
			answer: func(string) string { return "" },
			step:   rafthttp.StepReadResponse, want: "EOF",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed := make(chan error, 1)
			addr, _ := webSocketPeer(t, func(conn net.Conn, reader *bufio.Reader, request webSocketRequest) {
				answer := tt.answer(request.header.Get("Sec-WebSocket-Key"))
				if answer == "" {
					return
				}
				io.WriteString(conn, answer)
				closed <- awaitClosed(reader)
			})
			_, err := webSocketLayer(t, rafthttp.LayerConfig{}).Dial(raft.ServerAddress(addr), testWait)
			upgradeErr := requireUpgradeError(t, err, addr)
			assert.Equal(t, tt.step, upgradeErr.Step, "%v", err)
			assert.Contains(t, err.Error(), tt.want)
			if tt.step != rafthttp.StepReadResponse {
				assert.NoError(t, receive(t, closed, "the dial to close its connection"))
			}
		})
	}
}

// TestWebSocketDialTimeout: a peer that never answers fails the dial at
// its deadline with a timeout.
func TestWebSocketDialTimeout(t *testing.T) {
	addr, _ := webSocketPeer(t, func(_ net.Conn, reader *bufio.Reader, _ webSocketRequest) {
		awaitClosed(reader)
	})
	var err error
	within(t, "the dial to time out", testWait, func() {
		_, err = webSocketLayer(t, rafthttp.LayerConfig{}).Dial(raft.ServerAddress(addr), 100*time.Millisecond)
	})
	upgradeErr := requireUpgradeError(t, err, addr)
	assert.Equal(t, rafthttp.StepReadResponse, upgradeErr.Step)
	assert.True(t, upgradeErr.Timeout(), "%v", err)
}

// plainAnswer is an HTTP answer with a plain-text body.
func plainAnswer(status int, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// TestWebSocketControlFrames has a hand-written peer send control frames
// to a Layer's WebSocket connection: a ping is answered by a pong with its
// payload, while raft's bytes around it read as one stream; a text
// message fails the read; a close frame reads as the end of the stream and
// is answered with a close frame.
func TestWebSocketControlFrames(t *testing.T) {
	script := make(chan func(conn net.Conn, reader *bufio.Reader), 1)
	addr, _ := webSocketPeer(t, func(conn net.Conn, reader *bufio.Reader, request webSocketRequest) {
		io.WriteString(conn, webSocket101(request.header.Get("Sec-WebSocket-Key"), "raft"))
		(<-script)(conn, reader)
	})
	layer := webSocketLayer(t, rafthttp.LayerConfig{})

	t.Run("ping", func(t *testing.T) {
		pong := make(chan frame, 1)
		script <- func(conn net.Conn, reader *bufio.Reader) {
			var out []byte
			out = appendFrame(out, opBinary, []byte("before "), false)
			out = appendFrame(out, opPing, []byte("are you there"), false)
			out = appendFrame(out, opBinary, []byte("after"), false)
			conn.Write(out)
			f, _ := readFrame(reader)
			pong <- f
		}
		conn := dialConn(t, layer, addr, testWait)
		assert.Equal(t, "before after", readFull(t, conn, len("before after")))
		f := receive(t, pong, "the pong")
		assert.Equal(t, byte(opPong), f.opcode)
		assert.True(t, f.masked, "a client's pong is masked")
		assert.Equal(t, "are you there", string(f.payload))
	})

	t.Run("text", func(t *testing.T) {
		answered := make(chan frame, 1)
		script <- func(conn net.Conn, reader *bufio.Reader) {
			conn.Write(appendFrame(nil, opText, []byte("hello"), false))
			f, _ := readFrame(reader)
			answered <- f
		}
		conn := dialConn(t, layer, addr, testWait)
		r := receive(t, readAsync(conn, 1), "the read")
		require.Error(t, r.err)
		assert.Contains(t, r.err.Error(), "text message")
		f := receive(t, answered, "the close frame")
		assert.Equal(t, byte(opClose), f.opcode)
		assert.Equal(t, closePayload(1003, "raft's stream travels in binary messages"), f.payload)
		_, err := conn.Write([]byte("x"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "closed on the peer", "this end closed the connection, not the peer")
		assert.Contains(t, err.Error(), "text message")
	})

	t.Run("close", func(t *testing.T) {
		answered := make(chan frame, 1)
		script <- func(conn net.Conn, reader *bufio.Reader) {
			var out []byte
			out = appendFrame(out, opBinary, []byte("last words"), false)
			out = appendFrame(out, opClose, closePayload(1000, "bye"), false)
			conn.Write(out)
			f, _ := readFrame(reader)
			answered <- f
		}
		conn := dialConn(t, layer, addr, testWait)
		assert.Equal(t, "last words", readFull(t, conn, len("last words")))
		r := receive(t, readAsync(conn, 1), "the read")
		assert.ErrorIs(t, r.err, io.EOF, "a close frame ends the stream as a FIN does")
		f := receive(t, answered, "the close frame")
		assert.Equal(t, byte(opClose), f.opcode)
		assert.Equal(t, uint16(1000), uint16(f.payload[0])<<8|uint16(f.payload[1]))
	})
}

// TestWebSocketConnCloses checks the ends of a WebSocket connection
// between a Layer and a Handler as raft sees them: closing one end sends a
// close frame, and the other end reads io.EOF; after Close, calls on the
// closed end fail with net.ErrClosed, a second Close included; a Close
// ends a Read blocked on the same end.
func TestWebSocketConnCloses(t *testing.T) {
	server := startServer(t, serverOptions{})
	client := webSocketLayer(t, rafthttp.LayerConfig{})
	for _, closer := range []string{"dialed", "accepted"} {
		t.Run(closer, func(t *testing.T) {
			dialed, accepted := server.connect(t, client)
			exchange(t, dialed, accepted)
			closing, other := dialed, accepted
			if closer == "accepted" {
				closing, other = accepted, dialed
			}
			require.NoError(t, closing.Close())
			r := receive(t, readAsync(other, 1), "the other end's read")
			assert.Equal(t, io.EOF, r.err, "the other end reads the end of the stream")

			_, err := closing.Read(make([]byte, 1))
			assert.ErrorIs(t, err, net.ErrClosed)
			_, err = closing.Write([]byte("x"))
			assert.ErrorIs(t, err, net.ErrClosed)
			assert.ErrorIs(t, closing.Close(), net.ErrClosed)
		})
	}
	t.Run("blocked read", func(t *testing.T) {
		dialed, _ := server.connect(t, client)
		reading := readAsync(dialed, 1)
		require.NoError(t, dialed.Close())
		r := receive(t, reading, "the blocked read to end")
		assert.ErrorIs(t, r.err, net.ErrClosed)
	})
}

// TestWebSocketConnDeadlines checks deadlines as raft uses them: a read
// deadline that passes fails the read with a timeout that matches
// os.ErrDeadlineExceeded, as on a raw connection; one set in the past
// ends a Read in progress; a write deadline ends a Write blocked on a
// peer that does not read; and Close does not wait on such a Write.
func TestWebSocketConnDeadlines(t *testing.T) {
	server := startServer(t, serverOptions{})
	client := webSocketLayer(t, rafthttp.LayerConfig{})
	requireTimeout := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var netErr net.Error
		require.ErrorAs(t, err, &netErr)
		assert.True(t, netErr.Timeout())
	}

	t.Run("read deadline", func(t *testing.T) {
		dialed, accepted := server.connect(t, client)
		exchange(t, dialed, accepted)
		for _, end := range []net.Conn{dialed, accepted} {
			require.NoError(t, end.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
			r := receive(t, readAsync(end, 1), "the read to time out")
			requireTimeout(t, r.err)
		}
	})
	t.Run("deadline ends a blocked read", func(t *testing.T) {
		dialed, _ := server.connect(t, client)
		reading := readAsync(dialed, 1)
		require.NoError(t, dialed.SetDeadline(aLongTimeAgo))
		requireTimeout(t, receive(t, reading, "the blocked read to end").err)
	})
	for _, end := range []string{"dialed", "accepted"} {
		t.Run("write deadline/"+end, func(t *testing.T) {
			dialed, accepted := server.connect(t, client)
			writer := dialed
			if end == "accepted" {
				writer = accepted
			}
			// The other end does not read: the socket buffers fill and
			// a Write blocks.
			blocked := make(chan error, 1)
			go func() {
				chunk := make([]byte, 1<<20)
				for {
					if _, err := writer.Write(chunk); err != nil {
						blocked <- err
						return
					}
				}
			}()
			select {
			case err := <-blocked:
				t.Fatalf("a write failed before any deadline: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			require.NoError(t, writer.SetWriteDeadline(aLongTimeAgo))
			requireTimeout(t, receive(t, blocked, "the blocked write to end"))
			within(t, "Close", testWait, func() { writer.Close() })
		})
	}
}

// aLongTimeAgo is a deadline in the past.
var aLongTimeAgo = time.Unix(1, 0)

// TestWebSocketConcurrentWrites writes from several goroutines at once, as
// a net.Conn allows: each Write arrives whole (gorilla alone would panic on
// concurrent writes).
func TestWebSocketConcurrentWrites(t *testing.T) {
	server := startServer(t, serverOptions{})
	dialed, accepted := server.connect(t, webSocketLayer(t, rafthttp.LayerConfig{}))
	const writers, writes, size = 4, 50, 3000
	received := readAsync(accepted, writers*writes*size)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			chunk := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range writes {
				if _, err := dialed.Write(chunk); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	r := receive(t, received, "every write")
	require.NoError(t, r.err)
	for i := 0; i < len(r.data); i += size {
		assert.Equal(t, strings.Repeat(r.data[i:i+1], size), r.data[i:i+size], "write at %d arrived whole", i)
	}
}

// TestWebSocketLayerCloseEndsConns: Layer.Close closes the WebSocket
// connections the Layer handed out, and raft's reader of an accepted one
// sees the end of the stream, as with raw connections.
func TestWebSocketLayerCloseEndsConns(t *testing.T) {
	server := startServer(t, serverOptions{})
	client := webSocketLayer(t, rafthttp.LayerConfig{})
	dialed, accepted := server.connect(t, client)
	reading := readAsync(accepted, 1)
	require.NoError(t, server.layer.Close())
	assert.Equal(t, io.EOF, receive(t, reading, "the accepted end's read").err)
	assert.Equal(t, io.EOF, receive(t, readAsync(dialed, 1), "the dialed end's read").err)
	_, err := client.Dial(server.raftAddr(), testWait)
	require.Error(t, err, "the closed Handler refuses")
	var status *rafthttp.StatusError
	if assert.ErrorAs(t, err, &status) {
		assert.Equal(t, http.StatusServiceUnavailable, status.StatusCode)
	}
	assert.False(t, errors.Is(err, rafthttp.ErrClosed), "the client Layer is open")
}

// TestWebSocketHandlerAnswer upgrades by hand, offering a compression
// extension as browsers do, and checks the Handler's side on the wire: a
// 101 that selects raft, carries the accept value of the key and enables
// no extension; raft's bytes in the client's masked frames reach Accept,
// and the accepted end's writes arrive in unmasked binary frames; a ping
// is answered with a pong carrying its payload; a close frame from the
// client reads as the end of the stream and is answered with a close
// frame.
func TestWebSocketHandlerAnswer(t *testing.T) {
	server := startServer(t, serverOptions{})
	conn := server.dialRaw(t)
	write(t, conn, server.webSocketHead(nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"))
	reader := bufio.NewReader(conn)
	response, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, response.StatusCode)
	assert.Equal(t, "websocket", response.Header.Get("Upgrade"))
	assert.Equal(t, "Upgrade", response.Header.Get("Connection"))
	assert.Equal(t, acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), response.Header.Get("Sec-WebSocket-Accept"))
	assert.Equal(t, "raft", response.Header.Get("Sec-WebSocket-Protocol"))
	assert.Empty(t, response.Header.Values("Sec-WebSocket-Extensions"), "no extension enabled")

	write(t, conn, string(appendFrame(nil, opBinary, []byte("raft's request"), true)))
	accepted := server.accept(t)
	assert.Equal(t, "raft's request", readFull(t, accepted, len("raft's request")))
	write(t, accepted, "raft's answer")
	f, err := readFrame(reader)
	require.NoError(t, err)
	assert.Equal(t, frame{fin: true, opcode: opBinary, payload: []byte("raft's answer")}, f, "an unmasked final binary frame")

	// The accepted end answers control frames while raft reads it.
	reading := readAsync(accepted, len("more"))
	write(t, conn, string(appendFrame(appendFrame(nil, opPing, []byte("ping payload"), true), opBinary, []byte("more"), true)))
	f, err = readFrame(reader)
	require.NoError(t, err)
	assert.Equal(t, frame{fin: true, opcode: opPong, payload: []byte("ping payload")}, f)
	assert.Equal(t, "more", receive(t, reading, "the bytes after the ping").data)

	reading = readAsync(accepted, 1)
	write(t, conn, string(appendFrame(nil, opClose, closePayload(1001, "going away"), true)))
	assert.Equal(t, io.EOF, receive(t, reading, "the read after the close frame").err)
	f, err = readFrame(reader)
	require.NoError(t, err)
	assert.Equal(t, byte(opClose), f.opcode, "the close frame answered")
}

// TestWebSocketUsesLayerDial: a WebSocket handshake runs over the
// connection the Layer's own Dial makes, as a raw one does: every dial
// goes through it.
func TestWebSocketUsesLayerDial(t *testing.T) {
	server := startServer(t, serverOptions{})
	var dials atomic.Int32
	client := webSocketLayer(t, rafthttp.LayerConfig{Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
		dials.Add(1)
		return rafthttp.NewDialTCP()(addr, timeout)
	}})
	for range 3 {
		dialed, accepted := server.connect(t, client)
		exchange(t, dialed, accepted)
	}
	assert.Equal(t, int32(3), dials.Load())
}

// TestWebSocketRefusesMalformedHandshakeAtOnce: a malformed WebSocket
// handshake is refused before it waits for room in a full backlog, as a
// malformed raw upgrade is.
func TestWebSocketRefusesMalformedHandshakeAtOnce(t *testing.T) {
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: longTimeout}})
	server.upgrade(t) // fills the backlog: nothing accepts it
	conn := server.dialRaw(t)
	write(t, conn, server.webSocketHead([]string{"Sec-WebSocket-Key"}))
	response := readResponse(t, bufio.NewReader(conn), http.MethodGet)
	assert.Equal(t, http.StatusBadRequest, response.status, response.body)
	assert.Contains(t, response.body, "Sec-WebSocket-Key")
}

// TestWebSocketHandlerBounds: WebSocket upgrades count against MaxConns as
// raw ones do, refused with 503 before any 101 past it, and a WebSocket
// connection closed gives its place back.
func TestWebSocketHandlerBounds(t *testing.T) {
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{MaxConns: 2}})
	client := webSocketLayer(t, rafthttp.LayerConfig{})
	first, firstAccepted := server.connect(t, client)
	server.connect(t, client)

	_, err := client.Dial(server.raftAddr(), testWait)
	var status *rafthttp.StatusError
	require.ErrorAs(t, err, &status)
	assert.Equal(t, http.StatusServiceUnavailable, status.StatusCode)
	assert.Contains(t, status.Body, "2 raft connections already open")

	exchange(t, first, firstAccepted)
	require.NoError(t, firstAccepted.Close())
	dialed, accepted := server.connect(t, client)
	exchange(t, dialed, accepted)
}

// TestWebSocketDialCanceled: canceling a DialContext, or closing the Layer,
// while the WebSocket handshake waits for its answer ends the dial at once
// with the cause, and closes its connection.
func TestWebSocketDialCanceled(t *testing.T) {
	closed := make(chan error, 4)
	addr, requests := webSocketPeer(t, func(_ net.Conn, reader *bufio.Reader, _ webSocketRequest) {
		closed <- awaitClosed(reader)
	})
	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			layer := webSocketLayer(t, rafthttp.LayerConfig{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dialed := make(chan error, 1)
			go func() {
				_, err := layer.DialContext(ctx, raft.ServerAddress(addr))
				dialed <- err
			}()
			receive(t, requests, "the handshake")
			if how == "cancel" {
				cancel()
			} else {
				require.NoError(t, layer.Close())
			}
			err := receive(t, dialed, "the dial to end")
			if how == "cancel" {
				assert.ErrorIs(t, err, context.Canceled)
			} else {
				assert.ErrorIs(t, err, rafthttp.ErrClosed)
			}
			var upgradeErr *rafthttp.UpgradeError
			require.ErrorAs(t, err, &upgradeErr)
			assert.Equal(t, rafthttp.StepReadResponse, upgradeErr.Step)
			assert.NoError(t, receive(t, closed, "the dial's connection to close"))
		})
	}
}

// TestWebSocketDialWriteFails: a request cut short by the connection
// fails the dial at the step that writes it.
func TestWebSocketDialWriteFails(t *testing.T) {
	server := startServer(t, serverOptions{})
	layer := webSocketLayer(t, rafthttp.LayerConfig{Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := rafthttp.NewDialTCP()(addr, timeout)
		if err != nil {
			return nil, err
		}
		recording := newRecordingConn(conn)
		recording.failWrite = true
		return recording, nil
	}})
	_, err := layer.Dial(server.raftAddr(), testWait)
	upgradeErr := requireUpgradeError(t, err, server.addr())
	assert.Equal(t, rafthttp.StepWriteRequest, upgradeErr.Step)
	assert.ErrorIs(t, err, errInjected)
}

// TestWebSocketThroughMiddleware: a WebSocket upgrade finds Hijack through
// middleware that implements Unwrap, as a raw one does; through one that
// hides it, it is refused with 500 saying why, and gives its backlog slot
// back.
func TestWebSocketThroughMiddleware(t *testing.T) {
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Opaque-Writer") != "" {
				next.ServeHTTP(opaqueWriter{w}, r)
				return
			}
			next.ServeHTTP(unwrappingWriter{w}, r)
		})
	}
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: shortTimeout}, wrap: wrap})
	for range 2 {
		conn := server.dialRaw(t)
		write(t, conn, server.webSocketHead(nil, "X-Opaque-Writer: 1"))
		response := readResponse(t, bufio.NewReader(conn), http.MethodGet)
		require.Equal(t, http.StatusInternalServerError, response.status, response.body)
		assert.Contains(t, response.body, "hijack")
	}
	dialed, accepted := server.connect(t, webSocketLayer(t, rafthttp.LayerConfig{}))
	exchange(t, dialed, accepted)
}

// TestWebSocketDialZonedIPv6: an IPv6 address with a zone, which a URL
// must escape, dials in WebSocket mode as in raw mode.
func TestWebSocketDialZonedIPv6(t *testing.T) {
	listener, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	zone := loopbackInterface(t)
	handler := rafthttp.NewHandlerWithLogger(clustertest.DebugLogger(t, "handler"))
	server := &http.Server{Handler: handler, ReadHeaderTimeout: testWait}
	go server.Serve(listener)
	t.Cleanup(func() { server.Close() })
	serving := newLayer(t, rafthttp.LayerConfig{Addr: listener.Addr(), Handler: handler})
	port := listener.Addr().(*net.TCPAddr).Port
	addr := fmt.Sprintf("[::1%%%s]:%d", zone, port)
	for _, layer := range []*rafthttp.Layer{eagerLayer(t, nil), webSocketLayer(t, rafthttp.LayerConfig{})} {
		dialed := dialConn(t, layer, addr, testWait)
		accepted := receive(t, acceptAsync(serving.Accept), "the accepted connection")
		require.NoError(t, accepted.err)
		exchange(t, dialed, accepted.conn)
		accepted.conn.Close()
	}
}

// loopbackInterface names the loopback interface, which an IPv6 zone on
// ::1 may name.
func loopbackInterface(t *testing.T) string {
	interfaces, err := net.Interfaces()
	require.NoError(t, err)
	for _, iface := range interfaces {
		if iface.Flags&net.FlagLoopback != 0 {
			return iface.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}
