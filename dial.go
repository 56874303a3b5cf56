package rafthttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dial opens a connection to a raft peer's HTTP server. The Layer performs
// the HTTP upgrade over the connection it returns, so a Dial only connects
// (and, for TLS, completes the TLS handshake) within timeout.
//
// A Dial cannot see a context. When a DialContext, JoinContext or
// LeaveContext call is canceled, the call returns at once, but the connect
// underneath runs on in the background until its timeout (the time left
// before the context's deadline, or DefaultTimeout for a context without
// one), and a connection it still makes is closed.
type Dial func(addr string, timeout time.Duration) (net.Conn, error)

// NewDialTCP returns a Dial that opens plain TCP connections.
func NewDialTCP() Dial {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		dialer := net.Dialer{Timeout: timeout}
		return dialer.Dial("tcp", addr)
	}
}

// NewDialTLS returns a Dial that opens TLS connections configured by config
// (nil means the zero tls.Config). The config is cloned, so later changes to
// it have no effect. Whatever config.NextProtos says, the Dial offers ALPN
// "http/1.1" only: a server with HTTP/2 enabled would otherwise pick h2,
// which has no Upgrade.
func NewDialTLS(config *tls.Config) Dial {
	if config == nil {
		config = &tls.Config{}
	}
	config = config.Clone()
	config.NextProtos = []string{"http/1.1"}
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		dialer := &net.Dialer{Timeout: timeout}
		conn, err := tls.DialWithDialer(dialer, "tcp", addr, config)
		if err != nil {
			// Not the typed nil *tls.Conn, which would pass a nil check.
			return nil, err
		}
		return conn, nil
	}
}

// maxErrorBody is how much of a refusal's body an UpgradeError quotes.
const maxErrorBody = 512

// aLongTimeAgo is a deadline in the past, set to make blocked I/O return
// at once when the dial's context is canceled.
var aLongTimeAgo = time.Unix(1, 0)

// appendUpgradeRequest appends the request head that asks addr to switch
// the connection to raft, announcing body bytes of early data (see
// bodyHeader); a negative body announces nothing, as the original nodes
// do. It is written by hand: the request never varies but for the Host
// and the body's length, and building an http.Request for it costs more
// than the rest of the handshake.
func appendUpgradeRequest(head []byte, path, addr string, body int) []byte {
	head = append(head, "GET "...)
	head = append(head, path...)
	head = append(head, " HTTP/1.1\r\nHost: "...)
	head = append(head, addr...)
	head = append(head, "\r\nUpgrade: raft\r\nConnection: Upgrade\r\n"...)
	if body >= 0 {
		head = append(head, bodyHeader+": "...)
		head = strconv.AppendInt(head, int64(body), 10)
		head = append(head, "\r\n"...)
	}
	if body > 0 {
		head = append(head, "Content-Length: "...)
		head = strconv.AppendInt(head, int64(body), 10)
		head = append(head, "\r\n"...)
	}
	return append(head, "\r\n"...)
}

// validHost rejects addresses that would break the request head: anything
// with white space or control characters could inject headers.
func validHost(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if strings.IndexFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("address %q contains white space or control characters", addr)
	}
	return nil
}

// dialUpgrade connects to addr with dial and switches the connection to raft.
// One deadline covers the connect, the request and the 101; it is cleared on
// success. ctx, if it can be canceled, stops the dial early: raft's own
// dials pass context.Background and pay for no cancellation machinery. On
// failure the connection is closed and the error is an *UpgradeError naming
// the failed step.
//
// If peers says addr takes early data, dialUpgrade returns once connected,
// and the connection upgrades itself on first use (see lazyConn), still
// under the deadline. Otherwise it waits for the 101 and records in peers
// what the 101 said about early data. A nil peers means no early data, and
// the request says nothing about it.
func dialUpgrade(ctx context.Context, deadline time.Time, dial Dial, path, addr string, peers *peerTable) (net.Conn, error) {
	if err := validHost(addr); err != nil {
		return nil, &UpgradeError{Addr: addr, Step: "dial", Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, &UpgradeError{Addr: addr, Step: "dial", Err: err}
	}
	conn, err := connect(ctx, dial, addr, dialTimeout(deadline))
	if err != nil {
		return nil, &UpgradeError{Addr: addr, Step: "dial", Err: contextCause(ctx, deadline, err)}
	}
	if early := peers.earlyData(addr); early > 0 {
		// A zero deadline clears any the Dial may have left.
		if err := conn.SetDeadline(deadline); err != nil {
			conn.Close()
			return nil, &UpgradeError{Addr: addr, Step: "dial", Err: err}
		}
		return &lazyConn{Conn: conn, path: path, addr: addr, bodyMax: early, peers: peers}, nil
	}
	announce := -1
	if peers != nil {
		announce = 0
	}
	upgraded, bodyMax, step, err := upgrade(ctx, conn, path, addr, deadline, announce)
	if err != nil {
		conn.Close()
		return nil, &UpgradeError{Addr: addr, Step: step, Err: err}
	}
	peers.learned(addr, bodyMax)
	return upgraded, nil
}

// connect calls dial, returning early if ctx ends first. A Dial cannot see
// ctx, so an abandoned dial runs on in the background until its timeout, and
// the connection it may still make is closed.
func connect(ctx context.Context, dial Dial, addr string, timeout time.Duration) (net.Conn, error) {
	if ctx.Done() == nil {
		return checkConn(dial(addr, timeout))
	}
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := checkConn(dial(addr, timeout))
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func checkConn(conn net.Conn, err error) (net.Conn, error) {
	if err == nil && conn == nil {
		err = errors.New("Dial returned no connection and no error")
	}
	return conn, err
}

// upgrade performs the handshake on conn and returns the connection to give
// raft and the early data the peer takes (0 if it said nothing), or the
// failed step and its error. announce is as for appendUpgradeRequest. It
// does not close conn.
func upgrade(ctx context.Context, conn net.Conn, path, addr string, deadline time.Time, announce int) (_ net.Conn, bodyMax int, step string, err error) {
	// A zero deadline clears any the Dial may have left.
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, 0, "dial", err
	}
	if ctx.Done() != nil {
		// Cancellation unblocks the handshake through the deadline, which
		// works for every net.Conn without a goroutine per dial.
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
		defer func() {
			if !stop() && err == nil {
				// Canceled just as the handshake finished: the deadline
				// may already be in the past, so the conn cannot be used.
				step, err = "read response", ctx.Err()
			}
		}()
	}
	hs := getHandshake(conn)
	defer putHandshake(hs)
	hs.head = appendUpgradeRequest(hs.head[:0], path, addr, announce)
	if _, err := conn.Write(hs.head); err != nil {
		return nil, 0, "write request", contextCause(ctx, deadline, err)
	}
	// The reader that parses the 101 may read past it if the peer wrote
	// more; those bytes are kept below.
	bodyMax, step, err = readHead(ctx, hs.reader, deadline)
	if err != nil {
		return nil, 0, step, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, 0, "read response", err
	}
	if n := hs.reader.Buffered(); n > 0 {
		early, _ := hs.reader.Peek(n)
		// newPrefixConn copies: the reader goes back to the pool.
		return newPrefixConn(conn, early), bodyMax, "", nil
	}
	return conn, bodyMax, "", nil
}

// readHead reads the answer to the upgrade request and checks that it is a
// 101 to raft, leaving any bytes behind it buffered in reader. It returns
// the early data the 101 says the peer takes, or the failed step and its
// error.
func readHead(ctx context.Context, reader *bufio.Reader, deadline time.Time) (bodyMax int, step string, err error) {
	if ok, bodyMax := readUpgraded(reader); ok {
		return bodyMax, "", nil
	}
	// Not the answer hoped for, or not in the one form the fast path
	// knows: net/http decides, exactly as if there were no fast path.
	bodyMax, step, err = readResponse(reader)
	if step == "read response" {
		err = contextCause(ctx, deadline, err)
	}
	return bodyMax, step, err
}

// readResponse reads the response head with net/http and checks it is a
// 101 to raft. It is the slow path, for refusals and for any 101 the fast
// path does not recognize; it returns what readHead does.
func readResponse(reader *bufio.Reader) (bodyMax int, step string, err error) {
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		return 0, "read response", err
	}
	if response.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(response.Body, maxErrorBody))
		response.Body.Close()
		return 0, "status", &StatusError{StatusCode: response.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	if !headerHasToken(response.Header.Values("Upgrade"), "raft") {
		return 0, "upgrade header", fmt.Errorf("101 without Upgrade: raft (got %q)", response.Header.Get("Upgrade"))
	}
	bodyMax, _ = parseBodyMax([]byte(response.Header.Get(bodyMaxHeader)))
	return bodyMax, "", nil
}

// parseBodyMax parses the value of a bodyMaxHeader: decimal digits, at most
// nine of them so that no int overflows, between optional white space.
func parseBodyMax(value []byte) (int, bool) {
	value = bytes.Trim(value, " \t")
	if len(value) == 0 || len(value) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range value {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// handshake holds the buffers of one upgrade dial. They are pooled: raft
// dials often (at start, after every failure or leader change, for every
// snapshot), and nothing of them outlives the handshake.
type handshake struct {
	head   []byte
	reader *bufio.Reader
}

// handshakeReadSize is the handshake's read buffer. A 101 is under 100
// bytes; the room is for proxies that add headers, and for refusals, which
// net/http reads through the same buffer.
const handshakeReadSize = 4096

// maxPooledHead keeps a dial to an absurdly long address from pinning its
// request buffer in the pool. It leaves room for requests that carry early
// data, which maxEarlyRequest bounds.
const maxPooledHead = 4096

var handshakePool = sync.Pool{
	New: func() any {
		return &handshake{
			head:   make([]byte, 0, 128),
			reader: bufio.NewReaderSize(nil, handshakeReadSize),
		}
	},
}

func getHandshake(conn net.Conn) *handshake {
	hs := handshakePool.Get().(*handshake)
	hs.reader.Reset(conn)
	return hs
}

func putHandshake(hs *handshake) {
	// Drop the conn so the pool does not keep it alive.
	hs.reader.Reset(nil)
	if cap(hs.head) > maxPooledHead {
		hs.head = nil
	}
	handshakePool.Put(hs)
}

// readUpgraded reads the response head from reader, leaving the bytes
// behind it buffered, if it is a well-formed 101 with Upgrade: raft in the
// plain form every rafthttp and original node sends, and returns the value
// of its bodyMaxHeader (0 without one). For anything else it consumes
// nothing and returns false, so that net/http can read the response from
// the start. This spares each dial the header map, the strings and the
// http.Response that http.ReadResponse builds.
func readUpgraded(reader *bufio.Reader) (bool, int) {
	for {
		buffered, _ := reader.Peek(reader.Buffered())
		switch scan, n, bodyMax := scanUpgraded(buffered); scan {
		case headUpgraded:
			reader.Discard(n)
			return true, bodyMax
		case headOther:
			return false, 0
		}
		// Wait for more. On an error (EOF, timeout, a head larger than the
		// buffer), net/http reads again and reports it as it always has.
		if _, err := reader.Peek(len(buffered) + 1); err != nil {
			return false, 0
		}
	}
}

// headScan is what scanUpgraded makes of the bytes read so far.
type headScan int

const (
	// headIncomplete: so far a 101 to raft, but the head has not ended.
	headIncomplete headScan = iota
	// headUpgraded: a complete 101 head with Upgrade: raft.
	headUpgraded
	// headOther: anything else, left to net/http.
	headOther
)

// scanUpgraded looks for a complete response head in buf that is a 101 with
// the token raft in an Upgrade header, and returns its length and the value
// of its bodyMaxHeader. It accepts only what http.ReadResponse also
// accepts, with the same meaning: CRLF line ends, an HTTP/1.1 status line,
// header names that are tokens, values without control characters, no
// folded lines, no Content-Length or Transfer-Encoding (which net/http
// validates), and at most one bodyMaxHeader, holding a number. Everything
// else is headOther, even when net/http would take it.
func scanUpgraded(buf []byte) (scan headScan, length, bodyMax int) {
	upgraded, sawBodyMax := false, false
	n := 0
	for first := true; ; first = false {
		end := bytes.IndexByte(buf[n:], '\n')
		if end < 0 {
			if first && !bytes.HasPrefix(status101, buf) && !bytes.HasPrefix(buf, status101) {
				return headOther, 0, 0
			}
			return headIncomplete, 0, 0
		}
		line := buf[n : n+end]
		n += end + 1
		var ok bool
		if line, ok = bytes.CutSuffix(line, []byte("\r")); !ok {
			return headOther, 0, 0
		}
		switch {
		case first:
			if !isStatus101(line) {
				return headOther, 0, 0
			}
		case len(line) == 0:
			if !upgraded {
				return headOther, 0, 0
			}
			return headUpgraded, n, bodyMax
		default:
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok || !isToken(name) || !isFieldValue(value) {
				return headOther, 0, 0
			}
			switch {
			case asciiEqualFold(name, "Upgrade"):
				upgraded = upgraded || tokenListHas(value, "raft")
			case asciiEqualFold(name, bodyMaxHeader):
				if bodyMax, ok = parseBodyMax(value); !ok || sawBodyMax {
					return headOther, 0, 0
				}
				sawBodyMax = true
			case asciiEqualFold(name, "Content-Length"), asciiEqualFold(name, "Transfer-Encoding"):
				return headOther, 0, 0
			}
		}
	}
}

// status101 starts the only status line the fast path takes.
var status101 = []byte("HTTP/1.1 101")

// isStatus101 reports whether line is "HTTP/1.1 101", with or without a
// reason phrase.
func isStatus101(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, status101)
	return ok && (len(rest) == 0 || rest[0] == ' ')
}

// isToken reports whether name is a non-empty RFC 9110 token, the only
// header names net/textproto accepts.
func isToken(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !isTokenByte(c) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isFieldValue reports whether value holds no control characters but tab,
// as net/textproto requires.
func isFieldValue(value []byte) bool {
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// tokenListHas is headerHasToken for one raw header value, in ASCII: a
// value it does not match goes to net/http, which decides.
func tokenListHas(value []byte, token string) bool {
	for len(value) > 0 {
		var part []byte
		part, value, _ = bytes.Cut(value, []byte(","))
		part = bytes.Trim(part, " \t")
		// A protocol may carry a version ("raft/1"), as in headerHasToken.
		name, _, _ := bytes.Cut(part, []byte("/"))
		if asciiEqualFold(name, token) {
			return true
		}
	}
	return false
}

// asciiEqualFold reports whether b equals the ASCII string s, ignoring
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// dialTimeout returns the timeout to give a Dial: the time left before the
// deadline, or DefaultTimeout without one, so that a Dial never runs
// unbounded after its caller has given up.
func dialTimeout(deadline time.Time) time.Duration {
	if deadline.IsZero() {
		return DefaultTimeout
	}
	// A deadline already past still gets a positive timeout: zero would mean
	// "no limit" to net.Dialer. The Dial then fails at once.
	return max(time.Until(deadline), time.Nanosecond)
}

// contextCause reports the context's error in place of the I/O error its
// cancellation or deadline caused, so the caller sees "context deadline
// exceeded" rather than, say, "malformed MIME header": net/http reports a
// header line cut short by the deadline as a malformed one, and the conn's
// deadline may fire just before the context's own timer does.
func contextCause(ctx context.Context, deadline time.Time, err error) error {
	ctxErr := ctx.Err()
	if ctxErr == nil && !deadline.IsZero() && !time.Now().Before(deadline) {
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return err
}
