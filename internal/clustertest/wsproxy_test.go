package clustertest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wsTestWait bounds each wait in these tests for something that should
// happen promptly; it only decides how long a failing test takes.
const wsTestWait = 10 * time.Second

// wsTestKey is the sample nonce of RFC 6455 section 1.3; its accept value
// is wsTestAccept.
const (
	wsTestKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	wsTestAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// startEchoBackend starts a gorilla/websocket server that selects the
// "raft" subprotocol and echoes every message, in frames of at most 1024
// bytes, so that long messages come back fragmented. It answers a close
// frame with the same code and reason, so that the bytes it sends are known.
func startEchoBackend(t *testing.T) string {
	upgrader := websocket.Upgrader{Subprotocols: []string{"raft"}, WriteBufferSize: 1024}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetCloseHandler(func(code int, text string) error {
			message := websocket.FormatCloseMessage(code, text)
			conn.WriteControl(websocket.CloseMessage, message, time.Now().Add(wsTestWait))
			return nil
		})
		for {
			messageType, reader, err := conn.NextReader()
			if err != nil {
				return
			}
			writer, err := conn.NextWriter(messageType)
			if err != nil {
				return
			}
			if _, err := io.Copy(writer, reader); err != nil {
				return
			}
			if err := writer.Close(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(server.Close)
	return server.Listener.Addr().String()
}

// startSinkBackend starts a gorilla/websocket server that completes the
// handshake and then discards whatever comes, without answering even a
// close frame, until the proxy closes the connection: what a test of bad
// client frames needs behind the proxy, which must stop them itself.
func startSinkBackend(t *testing.T) string {
	upgrader := websocket.Upgrader{Subprotocols: []string{"raft"}}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(io.Discard, conn.NetConn())
	}))
	t.Cleanup(server.Close)
	return server.Listener.Addr().String()
}

// startRawBackend starts a TCP server that reads each connection's request
// and hands both to serve, for answers no real WebSocket server gives.
func startRawBackend(t *testing.T, serve func(conn net.Conn, request *http.Request)) string {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[conn] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				request, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				serve(conn, request)
			})
		}
	})
	t.Cleanup(func() {
		listener.Close()
		mu.Lock()
		for conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return listener.Addr().String()
}

// switchingProtocols is a backend's 101 with the accept value and
// subprotocol given.
func switchingProtocols(accept, protocol string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + accept + "\r\nSec-WebSocket-Protocol: " + protocol + "\r\n\r\n"
}

// upgradeHeader is a valid WebSocket upgrade request's header, offering
// the "raft" subprotocol, for tests to break.
func upgradeHeader() http.Header {
	return http.Header{
		"Connection":             {"Upgrade"},
		"Upgrade":                {"websocket"},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Key":      {wsTestKey},
		"Sec-Websocket-Protocol": {"raft"},
	}
}

// requestHead returns a request's head, as a client writes it.
func requestHead(method, host string, header http.Header) []byte {
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s /raft HTTP/1.1\r\nHost: %s\r\n", method, host)
	header.Write(&head)
	head.WriteString("\r\n")
	return head.Bytes()
}

// dialRaw connects to addr and writes data.
func dialRaw(t *testing.T, addr string, data []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, wsTestWait)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(wsTestWait)))
	_, err = conn.Write(data)
	require.NoError(t, err)
	return conn, bufio.NewReader(conn)
}

// upgradeRaw completes a valid WebSocket handshake through the proxy at
// addr by hand, and returns the connection for the test's own frames.
func upgradeRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, reader := dialRaw(t, addr, requestHead(http.MethodGet, addr, upgradeHeader()))
	resp, err := http.ReadResponse(reader, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return conn, reader
}

// awaitClosedByPeer reads and discards until the peer closes the
// connection, failing the test if it is still open after wsTestWait.
func awaitClosedByPeer(t *testing.T, conn net.Conn, reader io.Reader) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wsTestWait)))
	_, err := io.Copy(io.Discard, reader)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("the connection is still open after %v", wsTestWait)
	}
}

// frameMask is the masking key of the frames the tests build.
var frameMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frame builds a frame with the payload length in its minimal encoding,
// masked with frameMask if masked is set.
func frame(fin bool, rsv, opcode byte, masked bool, payload []byte) []byte {
	first := rsv<<4 | opcode
	if fin {
		first |= 0x80
	}
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	out := []byte{first}
	switch n := len(payload); {
	case n < 126:
		out = append(out, maskBit|byte(n))
	case n <= 0xffff:
		out = append(out, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	return append(out, maskPayload(masked, payload)...)
}

// maskPayload returns payload masked with frameMask if masked is set, and
// after frameMask itself.
func maskPayload(masked bool, payload []byte) []byte {
	if !masked {
		return slices.Clone(payload)
	}
	out := append([]byte(nil), frameMask[:]...)
	for i, b := range payload {
		out = append(out, b^frameMask[i%4])
	}
	return out
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func concat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// TestWebSocketProxyRelaysValidTraffic sends gorilla/websocket traffic of
// every length encoding, fragmented messages, a ping and a close handshake
// through the proxy to an echo server, and checks that it all comes back,
// that the proxy saw nothing wrong, and that it counted every frame.
func TestWebSocketProxyRelaysValidTraffic(t *testing.T) {
	proxy := StartWebSocketProxy(t, startEchoBackend(t))
	dialer := websocket.Dialer{Subprotocols: []string{"raft"}, HandshakeTimeout: wsTestWait}
	conn, resp, err := dialer.Dial("ws://"+proxy.Addr()+"/raft", nil)
	require.NoError(t, err)
	defer conn.Close()
	resp.Body.Close()
	assert.Equal(t, "raft", conn.Subprotocol())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wsTestWait)))

	var clientBytes int64
	binaryMessages := 0
	echo := func(messageType int, message []byte) {
		t.Helper()
		require.NoError(t, conn.WriteMessage(messageType, message))
		gotType, got, err := conn.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, messageType, gotType)
		assert.True(t, bytes.Equal(message, got), "a %d-byte message came back as %d bytes, or changed", len(message), len(got))
		clientBytes += int64(len(message))
		if messageType == websocket.BinaryMessage {
			binaryMessages++
		}
	}
	// Each length at an edge of the 7-, 16- and 64-bit encodings, and a
	// snapshot-sized one, which the proxy must stream.
	for _, size := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		message := make([]byte, size)
		for i := range message {
			message[i] = byte(i * 7)
		}
		echo(websocket.BinaryMessage, message)
	}
	// Each Write is longer than the client's 4096-byte write buffer, so
	// the message leaves in many frames.
	writer, err := conn.NextWriter(websocket.BinaryMessage)
	require.NoError(t, err)
	var fragmented []byte
	for i := range 3 {
		piece := bytes.Repeat([]byte{byte('a' + i)}, 10000)
		_, err := writer.Write(piece)
		require.NoError(t, err)
		fragmented = append(fragmented, piece...)
	}
	require.NoError(t, writer.Close())
	messageType, got, err := conn.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, websocket.BinaryMessage, messageType)
	assert.True(t, bytes.Equal(fragmented, got), "the fragmented message changed on its way")
	clientBytes += int64(len(fragmented))
	binaryMessages++
	// Two-byte characters, one of them split between frames both ways:
	// the proxy's UTF-8 check must carry over from frame to frame.
	echo(websocket.TextMessage, []byte("a"+strings.Repeat("é", 5000)))

	ping := []byte("are you there")
	var pongs [][]byte
	conn.SetPongHandler(func(data string) error {
		pongs = append(pongs, []byte(data))
		return nil
	})
	require.NoError(t, conn.WriteControl(websocket.PingMessage, ping, time.Now().Add(wsTestWait)))
	// The server answers the ping before it reads this message, so the
	// pong has been handled once the echo is read.
	echo(websocket.BinaryMessage, []byte("after the ping"))
	assert.Equal(t, [][]byte{ping}, pongs)

	// gorilla would answer the server's close frame with one of its own,
	// a second close from the client, which the proxy rightly flags.
	conn.SetCloseHandler(func(int, string) error { return nil })
	closing := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	require.NoError(t, conn.WriteControl(websocket.CloseMessage, closing, time.Now().Add(wsTestWait)))
	_, _, err = conn.ReadMessage()
	var closeErr *websocket.CloseError
	require.ErrorAs(t, err, &closeErr)
	assert.Equal(t, websocket.CloseNormalClosure, closeErr.Code)
	assert.Equal(t, "bye", closeErr.Text)

	// The proxy counts a frame once it has relayed it, which may be just
	// after the other side has read it.
	serverBytes := clientBytes + int64(len(ping)+len(closing))
	clientBytes += int64(len(ping) + len(closing))
	Eventually(t, func() error {
		stats := proxy.Stats()
		if stats.ClientBytes != clientBytes || stats.ServerBytes != serverBytes {
			return fmt.Errorf("payload bytes client->server %d, server->client %d; want %d, %d",
				stats.ClientBytes, stats.ServerBytes, clientBytes, serverBytes)
		}
		if stats.ClientFrames[websocket.CloseMessage] != 1 || stats.ServerFrames[websocket.CloseMessage] != 1 {
			return fmt.Errorf("close frames not both counted: %v, %v", stats.ClientFrames, stats.ServerFrames)
		}
		return nil
	})
	stats := proxy.Stats()
	assert.Equal(t, 1, stats.Upgrades)
	assert.Zero(t, stats.Refused)
	assert.Zero(t, stats.Requests)
	// How gorilla splits a long message into frames is its own business;
	// that every message starts with one frame of its type is not.
	for name, frames := range map[string]map[int]int{"client->server": stats.ClientFrames, "server->client": stats.ServerFrames} {
		continuations := frames[0]
		assert.Greater(t, continuations, 0, "%s: no continuation frame: nothing was fragmented", name)
		want := map[int]int{0: continuations, websocket.TextMessage: 1, websocket.BinaryMessage: binaryMessages, websocket.CloseMessage: 1}
		if name == "client->server" {
			want[websocket.PingMessage] = 1
		} else {
			want[websocket.PongMessage] = 1
		}
		assert.Equal(t, want, maps.Clone(frames), name)
	}
	assert.Empty(t, proxy.Violations())
}

// TestWebSocketProxyForwardsPlainRequests checks that requests without an
// Upgrade header, such as joins and membership views, reach the backend,
// and that a redirect comes back as the backend sent it.
func TestWebSocketProxyForwardsPlainRequests(t *testing.T) {
	var followed sync.Mutex
	followedCount := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /raft/join", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Joined-Host", r.Host)
		fmt.Fprintf(w, "joined %s", body)
	})
	const leader = "http://10.0.0.2:8080/raft/join?from=follower"
	mux.HandleFunc("POST /raft/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, leader, http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		followed.Lock()
		followedCount++
		followed.Unlock()
		http.NotFound(w, r)
	})
	backend := httptest.NewServer(mux)
	t.Cleanup(backend.Close)
	proxy := StartWebSocketProxy(t, backend.Listener.Addr().String())
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{
		Transport:     transport,
		Timeout:       wsTestWait,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	resp, err := client.Post("http://"+proxy.Addr()+"/raft/join", "text/plain", strings.NewReader("node-2"))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "joined node-2", string(body))
	assert.Equal(t, proxy.Addr(), resp.Header.Get("Joined-Host"), "the backend saw another Host than the client sent")

	resp, err = client.Post("http://"+proxy.Addr()+"/raft/redirect", "text/plain", strings.NewReader("node-3"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	assert.Equal(t, leader, resp.Header.Get("Location"))

	followed.Lock()
	assert.Zero(t, followedCount, "a request reached the backend at a path it was not sent to")
	followed.Unlock()
	stats := proxy.Stats()
	assert.Equal(t, 2, stats.Requests)
	assert.Zero(t, stats.Upgrades+stats.Refused)
	assert.Empty(t, proxy.Violations())
}

// TestWebSocketProxyRefusesUpgrades checks that an upgrade to another
// protocol, and WebSocket handshakes that break RFC 6455 or ask for what
// rafthttp never uses, are refused with a 400 without reaching the
// backend, and that the broken handshakes are recorded as violations.
func TestWebSocketProxyRefusesUpgrades(t *testing.T) {
	tests := []struct {
		name   string
		method string
		change func(http.Header)
		body   string
		// message is the whole body of the refusal, if set.
		message string
		// violation is part of the violation recorded, or "" if none is.
		violation string
	}{
		{
			name:    "raw mode",
			change:  func(h http.Header) { h.Set("Upgrade", "raft") },
			message: `wsproxy: this proxy passes only WebSocket upgrades, not "raft"`,
		},
		{
			name:      "missing key",
			change:    func(h http.Header) { h.Del("Sec-WebSocket-Key") },
			violation: "Sec-WebSocket-Key",
		},
		{
			name:      "key of 15 bytes",
			change:    func(h http.Header) { h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j") },
			violation: "Sec-WebSocket-Key",
		},
		{
			name:      "wrong version",
			change:    func(h http.Header) { h.Set("Sec-WebSocket-Version", "8") },
			violation: "Sec-WebSocket-Version",
		},
		{
			name:      "no subprotocol offered",
			change:    func(h http.Header) { h.Del("Sec-WebSocket-Protocol") },
			violation: "Sec-WebSocket-Protocol",
		},
		{
			name:      "extension offered",
			change:    func(h http.Header) { h.Set("Sec-WebSocket-Extensions", "permessage-deflate") },
			violation: "Sec-WebSocket-Extensions",
		},
		{
			name:      "body",
			change:    func(h http.Header) { h.Set("Content-Length", "5") },
			body:      "hello",
			violation: "body",
		},
		{
			name:      "POST",
			method:    http.MethodPost,
			violation: "method POST",
		},
		{
			name:      "no upgrade in Connection",
			change:    func(h http.Header) { h.Set("Connection", "keep-alive") },
			violation: "Connection",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			var reached sync.Mutex
			reachedCount := 0
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached.Lock()
				reachedCount++
				reached.Unlock()
			}))
			t.Cleanup(backend.Close)
			proxy := StartWebSocketProxy(t, backend.Listener.Addr().String())
			proxy.ExpectViolations()
			header := upgradeHeader()
			if test.change != nil {
				test.change(header)
			}
			method := test.method
			if method == "" {
				method = http.MethodGet
			}
			_, reader := dialRaw(t, proxy.Addr(), append(requestHead(method, proxy.Addr(), header), test.body...))
			resp, err := http.ReadResponse(reader, nil)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)

			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			if test.message != "" {
				assert.Equal(t, test.message, strings.TrimSuffix(string(body), "\n"))
			}
			violations := proxy.Violations()
			if test.violation == "" {
				assert.Empty(t, violations)
			} else if assert.Len(t, violations, 1) {
				assert.Contains(t, violations[0], test.violation)
				assert.Contains(t, string(body), test.violation, "the refusal does not say what was wrong")
			}
			stats := proxy.Stats()
			assert.Equal(t, 1, stats.Refused)
			assert.Zero(t, stats.Upgrades+stats.Requests)
			reached.Lock()
			assert.Zero(t, reachedCount, "a refused request reached the backend")
			reached.Unlock()
		})
	}
}

// TestWebSocketProxyChecksBackendHandshake checks that a 101 that does not
// complete the client's handshake is recorded as a violation and not
// passed on: the client's connection is closed instead.
func TestWebSocketProxyChecksBackendHandshake(t *testing.T) {
	tests := []struct {
		name      string
		answer    string
		violation string
	}{
		{"wrong accept", switchingProtocols("dGhlIHNhbXBsZSBub25jZQ==", "raft"), "Sec-WebSocket-Accept"},
		{"subprotocol not offered", switchingProtocols(wsTestAccept, "raft2"), "Sec-WebSocket-Protocol"},
		{
			"extension selected",
			strings.TrimSuffix(switchingProtocols(wsTestAccept, "raft"), "\r\n") + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
			"Sec-WebSocket-Extensions",
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			backend := startRawBackend(t, func(conn net.Conn, _ *http.Request) {
				io.WriteString(conn, test.answer)
				io.Copy(io.Discard, conn)
			})
			proxy := StartWebSocketProxy(t, backend)
			proxy.ExpectViolations()
			conn, reader := dialRaw(t, proxy.Addr(), requestHead(http.MethodGet, proxy.Addr(), upgradeHeader()))
			_, err := http.ReadResponse(reader, nil)
			require.Error(t, err, "the proxy passed the 101 on")
			awaitClosedByPeer(t, conn, reader)
			violations := proxy.Violations()
			if assert.Len(t, violations, 1) {
				assert.Contains(t, violations[0], test.violation)
			}
			assert.Zero(t, proxy.Stats().Upgrades)
		})
	}
}

// TestWebSocketProxyRejectsInvalidFrames sends frames that break RFC 6455
// from a hand-made client after a valid handshake, and checks that the
// proxy records each and closes the connection.
func TestWebSocketProxyRejectsInvalidFrames(t *testing.T) {
	hello := []byte("hello")
	tests := []struct {
		name      string
		frames    []byte
		violation string
	}{
		{"unmasked", frame(true, 0, 2, false, hello), "unmasked"},
		{"RSV1", frame(true, 4, 2, true, hello), "RSV1-3"},
		{"opcode 3", frame(true, 0, 3, true, hello), "opcode 3"},
		{"fragmented ping", frame(false, 0, 9, true, hello), "FIN clear"},
		{"long ping", frame(true, 0, 9, true, bytes.Repeat([]byte{'p'}, 126)), "126-byte payload"},
		{"continuation without a start", frame(true, 0, 0, true, hello), "no fragmented message"},
		{
			"data frame inside a fragmented message",
			concat(frame(false, 0, 2, true, hello), frame(true, 0, 1, true, hello)),
			"inside a fragmented message",
		},
		{
			"16-bit length for 5 bytes",
			concat([]byte{0x82, 0x80 | 126, 0, 5}, maskPayload(true, hello)),
			"16-bit form",
		},
		{
			"64-bit length for 200 bytes",
			concat([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200}, maskPayload(true, make([]byte, 200))),
			"64-bit form",
		},
		{"64-bit length with its top bit set", []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, "most significant bit"},
		{"close code 1005", frame(true, 0, 8, true, closePayload(1005, "")), "code 1005"},
		{"close code 2000", frame(true, 0, 8, true, closePayload(2000, "")), "code 2000"},
		{"close with a 1-byte payload", frame(true, 0, 8, true, []byte{3}), "1-byte payload"},
		{"close reason not UTF-8", frame(true, 0, 8, true, closePayload(1000, "\xff")), "not UTF-8"},
		{
			"frame after close",
			concat(frame(true, 0, 8, true, closePayload(1000, "bye")), frame(true, 0, 2, true, hello)),
			"after this side's close",
		},
		{"text not UTF-8", frame(true, 0, 1, true, []byte("caf\xff!")), "not UTF-8"},
		{"text ending inside a character", frame(true, 0, 1, true, []byte("caf\xc3")), "inside a UTF-8 sequence"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			proxy := StartWebSocketProxy(t, startSinkBackend(t))
			proxy.ExpectViolations()
			conn, reader := upgradeRaw(t, proxy.Addr())
			_, err := conn.Write(test.frames)
			require.NoError(t, err)
			awaitClosedByPeer(t, conn, reader)
			violations := proxy.Violations()
			if assert.Len(t, violations, 1) {
				assert.Contains(t, violations[0], test.violation)
				assert.Contains(t, violations[0], "client->server")
			}
		})
	}
}

// TestWebSocketProxyRejectsMaskedServerFrame checks the server's side of
// the masking rule, with a backend that masks its frame.
func TestWebSocketProxyRejectsMaskedServerFrame(t *testing.T) {
	backend := startRawBackend(t, func(conn net.Conn, _ *http.Request) {
		io.WriteString(conn, switchingProtocols(wsTestAccept, "raft"))
		conn.Write(frame(true, 0, 2, true, []byte("masked")))
		io.Copy(io.Discard, conn)
	})
	proxy := StartWebSocketProxy(t, backend)
	proxy.ExpectViolations()
	conn, reader := upgradeRaw(t, proxy.Addr())
	awaitClosedByPeer(t, conn, reader)
	violations := proxy.Violations()
	if assert.Len(t, violations, 1) {
		assert.Contains(t, violations[0], "server->client")
		assert.Contains(t, violations[0], "masked frame from the server")
	}
}

// TestWebSocketProxyRelaysBytesBehindHandshake checks that frames sent in
// the same write as the handshake, which the proxy reads into a buffer
// along with it, are relayed: from the backend right behind its 101, and
// from the client right behind its request.
func TestWebSocketProxyRelaysBytesBehindHandshake(t *testing.T) {
	t.Run("backend", func(t *testing.T) {
		message := []byte("right behind the 101")
		backend := startRawBackend(t, func(conn net.Conn, request *http.Request) {
			answer := switchingProtocols(acceptKey(request.Header.Get("Sec-WebSocket-Key")), "raft")
			conn.Write(append([]byte(answer), frame(true, 0, 2, false, message)...))
			io.Copy(io.Discard, conn)
		})
		proxy := StartWebSocketProxy(t, backend)
		dialer := websocket.Dialer{Subprotocols: []string{"raft"}, HandshakeTimeout: wsTestWait}
		conn, resp, err := dialer.Dial("ws://"+proxy.Addr()+"/raft", nil)
		require.NoError(t, err)
		defer conn.Close()
		resp.Body.Close()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(wsTestWait)))
		_, got, err := conn.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, message, got)
		assert.Equal(t, map[int]int{websocket.BinaryMessage: 1}, proxy.Stats().ServerFrames)
	})
	t.Run("client", func(t *testing.T) {
		proxy := StartWebSocketProxy(t, startEchoBackend(t))
		message := []byte("right behind the request")
		conn, reader := dialRaw(t, proxy.Addr(),
			concat(requestHead(http.MethodGet, proxy.Addr(), upgradeHeader()), frame(true, 0, 2, true, message)))
		resp, err := http.ReadResponse(reader, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		echoed := make([]byte, 2+len(message))
		_, err = io.ReadFull(reader, echoed)
		require.NoError(t, err)
		assert.Equal(t, frame(true, 0, 2, false, message), echoed)
		conn.Close()
	})
}

// violationsTB is a testing.TB whose cleanup the test runs itself, to see
// what the proxy reports then.
type violationsTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errors   []string
}

func (tb *violationsTB) Cleanup(f func()) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.cleanups = append(tb.cleanups, f)
}

func (tb *violationsTB) Errorf(format string, args ...any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.errors = append(tb.errors, fmt.Sprintf(format, args...))
}

func (tb *violationsTB) runCleanups() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}

// TestWebSocketProxyReportsViolationsAtCleanup checks that a violation the
// test did not expect fails it at cleanup, naming the rule.
func TestWebSocketProxyReportsViolationsAtCleanup(t *testing.T) {
	tb := &violationsTB{TB: t}
	proxy := StartWebSocketProxy(tb, startSinkBackend(t))
	conn, reader := upgradeRaw(t, proxy.Addr())
	_, err := conn.Write(frame(true, 0, 2, false, []byte("unmasked")))
	require.NoError(t, err)
	awaitClosedByPeer(t, conn, reader)
	tb.runCleanups()
	if assert.Len(t, tb.errors, 1) {
		assert.Contains(t, tb.errors[0], "unmasked frame from the client")
	}
}
