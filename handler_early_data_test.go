package rafthttp_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// The Handler's side of early data: an upgrade request whose body holds
// raft's first bytes. These tests speak raw HTTP to a real Handler, so they
// see the exact bytes on the wire; early_data_test.go covers the Layer's
// side.

// TestHandlerEarlyData101 checks the exact 101: a request with
// Rafthttp-Body, even announcing no body, is told the Handler reads bodies
// and how large (so the Layer learns it may send them), while a request
// without it, from an original node, gets the original 101 unchanged, byte
// for byte, since original clients were written against that answer.
func TestHandlerEarlyData101(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers []string
		want    string
	}{
		{name: "Rafthttp-Body 0", headers: []string{"Rafthttp-Body: 0"}, want: handlerEarly101},
		{name: "Rafthttp-Body 0 with Content-Length 0", headers: announceBody(0), want: handlerEarly101},
		{name: "lower-case header name", headers: []string{"rafthttp-body: 0"}, want: handlerEarly101},
		{name: "count between spaces", headers: []string{"Rafthttp-Body:  0 "}, want: handlerEarly101},
		{name: "original client", want: handler101},
		{name: "original client with Content-Length 0", headers: []string{"Content-Length: 0"}, want: handler101},
	}
	for _, tt := range tests {
		for _, useTLS := range []bool{false, true} {
			t.Run(tt.name+"/"+transportName(useTLS), func(t *testing.T) {
				t.Parallel()
				server := startServer(t, serverOptions{tls: useTLS})
				client := server.dialRaw(t)
				write(t, client, server.upgradeHead(tt.headers...))
				require.Equal(t, tt.want, readFull(t, client, len(tt.want)))
				accepted := server.accept(t)
				// What follows the blank line is raft's: the Handler added
				// nothing, then or later.
				transfer(t, accepted, client, "raft's first bytes")
				exchange(t, client, accepted)
			})
		}
	}
}

// TestHandlerEarlyDataDelivered checks what raft reads from an accepted
// connection whose request carried a body, sent in one write with the head
// and with raw bytes behind it: the body, then those raw bytes, then what
// the peer wrote after the 101, in that order and nothing else. The sizes
// take the body past net/http's 4 KiB read buffer and up to the limit,
// where the Handler's read and net/http's own reads of the socket meet.
func TestHandlerEarlyDataDelivered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		raw  string
	}{
		{name: "1 byte", body: "x", raw: "raw bytes behind the body"},
		{name: "3000 bytes", body: randomBytes(3000, 1), raw: "raw bytes behind the body"},
		{name: "4096 bytes", body: randomBytes(maxEarlyData, 2), raw: "raw bytes behind the body"},
		{name: "4096 bytes and 10000 raw bytes", body: randomBytes(maxEarlyData, 3), raw: randomBytes(10000, 4)},
		{name: "3000 bytes and no raw bytes", body: randomBytes(3000, 5)},
		{name: "no body and raw bytes", raw: "raw bytes behind a head announcing 0"},
	}
	for _, tt := range tests {
		for _, useTLS := range []bool{false, true} {
			t.Run(tt.name+"/"+transportName(useTLS), func(t *testing.T) {
				t.Parallel()
				server := startServer(t, serverOptions{tls: useTLS})
				client := server.dialRaw(t)
				write(t, client, server.upgradeHead(announceBody(len(tt.body))...)+tt.body+tt.raw)
				require.Equal(t, handlerEarly101, readFull(t, client, len(handlerEarly101)))
				const later = "written after the 101"
				write(t, client, later)

				accepted := server.accept(t)
				transfer(t, accepted, client, "the other way")
				require.NoError(t, client.Close())
				got := readUntilClosed(t, accepted)
				requireSameBytes(t, tt.body+tt.raw+later, got, "what raft read")
			})
		}
	}
}

// TestHandlerEarlyDataSlowBody checks a body that arrives in pieces, as it
// may behind a proxy or on a congested link: the Handler waits for all of
// it, answers nothing until then (a 101 confirms the whole body arrived),
// and raft reads it whole.
func TestHandlerEarlyDataSlowBody(t *testing.T) {
	t.Parallel()
	body := randomBytes(3000, 6)
	tests := []struct {
		name string
		// pieces, written one at a time after the head, make up the body.
		pieces []string
		// withHead is sent in the head's write.
		withHead string
	}{
		{name: "three pieces", pieces: []string{body[:1], body[1:2000], body[2000:]}},
		{name: "first bytes with the head", withHead: body[:100], pieces: []string{body[100:101], body[101:]}},
		{name: "byte by byte at the end", withHead: body[:2997], pieces: []string{body[2997:2998], body[2998:2999], body[2999:]}},
	}
	for _, tt := range tests {
		for _, useTLS := range []bool{false, true} {
			t.Run(tt.name+"/"+transportName(useTLS), func(t *testing.T) {
				t.Parallel()
				tracker := newRequestTracker()
				server := startServer(t, serverOptions{tls: useTLS, wrap: tracker.wrap, recordWire: true})
				client := server.dialRaw(t)
				// Any TLS handshake is over: from here the server has
				// nothing to say before it has read the whole body.
				sending := server.wire.mark()
				write(t, client, server.upgradeHead(announceBody(len(body))...)+tt.withHead)
				receive(t, tracker.entered, "the request to reach the Handler")
				for _, piece := range tt.pieces {
					// The server reads each piece apart.
					read := server.wire.readFrom(client)
					write(t, client, piece)
					server.wire.awaitRead(t, client, read)
				}
				require.Equal(t, handlerEarly101, readFull(t, client, len(handlerEarly101)))
				// The client has sent nothing since the body: the answer
				// was written by a server that had read all of it.
				sent := server.wire.readFrom(client)
				for _, w := range server.wire.writesTo(client) {
					if w.marks >= sending {
						require.Equal(t, sent, w.read, "the Handler answered having read %d of the %d bytes sent", w.read, sent)
					}
				}
				const later = "written after the 101"
				write(t, client, later)

				accepted := server.accept(t)
				require.NoError(t, client.Close())
				got := readUntilClosed(t, accepted)
				requireSameBytes(t, body+later, got, "what raft read")
			})
		}
	}
}

// TestHandlerEarlyDataRefused checks every request whose body the Handler
// will not take: it is refused with the status that says why and a message
// a person can act on, before any 101, and before it waits for room in the
// backlog, so a full backlog (one connection, a long timeout) does not
// delay the answer into a 503. Nothing of it reaches Accept.
func TestHandlerEarlyDataRefused(t *testing.T) {
	t.Parallel()
	chunked := "Transfer-Encoding: chunked"
	tests := []struct {
		name       string
		headers    []string
		body       string
		wantStatus int
		wantReason string
	}{
		{name: "count x", headers: []string{"Rafthttp-Body: x"}, wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{name: "count -1", headers: []string{"Rafthttp-Body: -1"}, wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{name: "count +5", headers: []string{"Rafthttp-Body: +5", "Content-Length: 5"}, body: "hello", wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{name: "empty count", headers: []string{"Rafthttp-Body:"}, wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{name: "count in hex", headers: []string{"Rafthttp-Body: 0x5", "Content-Length: 5"}, body: "hello", wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{name: "count with a unit", headers: []string{"Rafthttp-Body: 5 bytes", "Content-Length: 5"}, body: "hello", wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{name: "count too long to parse", headers: []string{"Rafthttp-Body: 10000000000"}, wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body"},
		{
			name: "two headers", headers: []string{"Rafthttp-Body: 5", "Rafthttp-Body: 5", "Content-Length: 5"}, body: "hello",
			wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body",
		},
		{
			name: "two counts in one header", headers: []string{"Rafthttp-Body: 5, 5", "Content-Length: 5"}, body: "hello",
			wantStatus: http.StatusBadRequest, wantReason: "invalid Rafthttp-Body",
		},
		{
			name: "announced 10 with a body of 5", headers: []string{"Rafthttp-Body: 10", "Content-Length: 5"}, body: "hello",
			wantStatus: http.StatusBadRequest, wantReason: "changed it",
		},
		{name: "announced 5 without a body", headers: []string{"Rafthttp-Body: 5"}, wantStatus: http.StatusBadRequest, wantReason: "changed it"},
		{
			name: "announced 0 with a body of 5", headers: []string{"Rafthttp-Body: 0", "Content-Length: 5"}, body: "hello",
			wantStatus: http.StatusBadRequest, wantReason: "changed it",
		},
		{
			name: "chunked", headers: []string{"Rafthttp-Body: 5", chunked}, body: "5\r\nhello\r\n0\r\n\r\n",
			wantStatus: http.StatusLengthRequired, wantReason: "Content-Length",
		},
		{
			name: "chunked announcing 0", headers: []string{"Rafthttp-Body: 0", chunked}, body: "0\r\n\r\n",
			wantStatus: http.StatusLengthRequired, wantReason: "Content-Length",
		},
		{
			name: "4097 bytes", headers: announceBody(maxEarlyData + 1), body: randomBytes(maxEarlyData+1, 7),
			wantStatus: http.StatusRequestEntityTooLarge, wantReason: "at most 4096",
		},
		{
			name: "body without Rafthttp-Body", headers: []string{"Content-Length: 5"}, body: "hello",
			wantStatus: http.StatusBadRequest, wantReason: "must be announced in Rafthttp-Body",
		},
		{
			name: "chunked body without Rafthttp-Body", headers: []string{chunked}, body: "5\r\nhello\r\n0\r\n\r\n",
			wantStatus: http.StatusBadRequest, wantReason: "must be announced in Rafthttp-Body",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: longTimeout}})
			const waiting = "the connection that fills the backlog"
			filler := server.upgradeWithBody(t, waiting)

			refused := server.dialRaw(t)
			write(t, refused, server.upgradeHead(tt.headers...)+tt.body)
			// A 101 first would be read as the response and fail the status.
			response := readResponse(t, bufio.NewReader(refused), http.MethodGet)
			require.Equal(t, tt.wantStatus, response.status, "body: %s", response.body)
			requirePlainText(t, response)
			assert.Contains(t, response.body, tt.wantReason)

			// The backlog holds the filler and nothing else.
			accepted := server.accept(t)
			require.Equal(t, waiting, readFull(t, accepted, len(waiting)))
			exchange(t, filler, accepted)
			server.requireNextAccepted(t)
		})
	}
}

// TestHandlerEarlyDataIncompleteBody checks a body that never arrives
// whole: its peer closes the connection, or stops sending, partway. The
// Handler gives up within its timeout, answers 400 if the peer can still
// read it, never 101, and frees its backlog slot, so with a backlog of one
// the next upgrade still gets through; nothing reaches Accept.
func TestHandlerEarlyDataIncompleteBody(t *testing.T) {
	t.Parallel()
	const announced = 10
	tests := []struct {
		name string
		sent int // bytes of the body sent before the peer stops
		// end is what the peer does then: "half-close" shuts its side for
		// writing and reads the answer, "close" goes away, "stall" waits.
		end string
	}{
		{name: "half-closed after 3 of 10 bytes", sent: 3, end: "half-close"},
		{name: "half-closed after the head", end: "half-close"},
		{name: "half-closed after 9 of 10 bytes", sent: 9, end: "half-close"},
		{name: "closed after 3 of 10 bytes", sent: 3, end: "close"},
		{name: "closed after the head", end: "close"},
		{name: "stalled after 3 of 10 bytes", sent: 3, end: "stall"},
		{name: "stalled after the head", end: "stall"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tracker := newRequestTracker()
			server := startServer(t, serverOptions{
				config: rafthttp.HandlerConfig{Backlog: 1, Timeout: shortTimeout},
				wrap:   tracker.wrap,
			})
			client := server.dialRaw(t)
			start := time.Now()
			write(t, client, server.upgradeHead(announceBody(announced)...)+randomBytes(tt.sent, 8))
			receive(t, tracker.entered, "the request to reach the Handler")
			switch tt.end {
			case "half-close":
				require.NoError(t, client.(*net.TCPConn).CloseWrite())
			case "close":
				require.NoError(t, client.Close())
			}
			if tt.end != "close" {
				raw := readUntilClosed(t, client)
				require.True(t, strings.HasPrefix(raw, "HTTP/1.1 400 "), "want a 400 and nothing before it, got %q", raw)
				response := readResponse(t, bufio.NewReader(strings.NewReader(raw)), http.MethodGet)
				requirePlainText(t, response)
				assert.Contains(t, response.body, "reading the raft data")
			}
			if tt.end == "stall" {
				require.GreaterOrEqual(t, time.Since(start), shortTimeout, "refused before the Handler's timeout")
			}
			receive(t, tracker.left, "the Handler to give up on the body")
			server.requireNextAccepted(t)
		})
	}
}

// TestHandlerEarlyDataRefusalWithBodyLeft checks that a refusal of an
// upgrade with a body reaches the peer, and that the connection is then
// closed: before the Handler reads the body (a mismatch), net/http would
// otherwise first wait for the rest of it, with no time limit; after (a
// full backlog), the Handler answers by hand.
func TestHandlerEarlyDataRefusalWithBodyLeft(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers []string
		status  string
	}{
		{name: "backlog full", headers: announceBody(3), status: "503"},
		{name: "length mismatch", headers: []string{"Rafthttp-Body: 10", "Content-Length: 5"}, status: "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: shortTimeout}})
			server.upgrade(t) // fills the backlog: nobody accepts
			client := server.dialRaw(t)
			write(t, client, server.upgradeHead(tt.headers...)+"abc")
			raw := readUntilClosed(t, client)
			require.True(t, strings.HasPrefix(raw, "HTTP/1.1 "+tt.status+" "), "want a %s, got %q", tt.status, raw)
			assert.Contains(t, raw, "Connection: close")
		})
	}
}

// TestHandlerEarlyDataClose checks that closing the Handler ends an upgrade
// that is waiting for its body: the peer is refused with 503 at once,
// never sent a 101 that would confirm a body raft will not read.
func TestHandlerEarlyDataClose(t *testing.T) {
	t.Parallel()
	tracker := newRequestTracker()
	server := startServer(t, serverOptions{
		config: rafthttp.HandlerConfig{Timeout: time.Minute},
		wrap:   tracker.wrap,
	})
	client := server.dialRaw(t)
	write(t, client, server.upgradeHead(announceBody(10)...)+"abc")
	receive(t, tracker.entered, "the request to reach the Handler")
	server.handler.Close()
	receive(t, tracker.left, "the Handler to give up on the body")
	raw := readUntilClosed(t, client)
	require.True(t, strings.HasPrefix(raw, "HTTP/1.1 503 "), "want a 503, got %q", raw)
	assert.Contains(t, raw, "handler closed")
}

// TestHandlerEarlyDataStalledBodyHoldsNoSlot checks that an upgrade whose
// body never arrives does not hold a backlog slot while the Handler waits
// for it: with a backlog of one, another upgrade goes through meanwhile.
func TestHandlerEarlyDataStalledBodyHoldsNoSlot(t *testing.T) {
	t.Parallel()
	tracker := newRequestTracker()
	server := startServer(t, serverOptions{
		config: rafthttp.HandlerConfig{Backlog: 1, Timeout: time.Minute},
		wrap:   tracker.wrap,
	})
	stalled := server.dialRaw(t)
	write(t, stalled, server.upgradeHead(announceBody(10)...)+"abc")
	receive(t, tracker.entered, "the stalled request to reach the Handler")
	server.requireNextAccepted(t)
}

// TestHandlerEarlyDataBacklogFull runs a Layer's dial with early data
// against a Handler whose backlog is full: the Handler reads the body,
// waits its Timeout for room, and refuses with 503, which the dial's first
// Read returns as an *UpgradeError with the StatusError, never as data.
func TestHandlerEarlyDataBacklogFull(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Backlog: 1, Timeout: shortTimeout}})
	client := newLayer(t, rafthttp.LayerConfig{})
	// The first dial learns, and fills the backlog: nobody accepts.
	dialConn(t, client, server.addr(), testWait)

	conn := dialConn(t, client, server.addr(), testWait)
	_, err := io.WriteString(conn, "early")
	require.NoError(t, err)
	n, err := conn.Read(make([]byte, 16))
	assert.Zero(t, n)
	upgradeErr := requireUpgradeError(t, err, server.addr())
	assert.Equal(t, rafthttp.StepStatus, upgradeErr.Step)
	var statusErr *rafthttp.StatusError
	require.ErrorAs(t, err, &statusErr)
	assert.Equal(t, http.StatusServiceUnavailable, statusErr.StatusCode)
	assert.Contains(t, statusErr.Body, "backlog full")
}
