package rafthttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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

// upgradeRequest returns the request head that asks addr to switch the
// connection to raft. It is written by hand: the request never varies but
// for the Host, and building an http.Request for it costs more than the
// rest of the handshake.
func upgradeRequest(path, addr string) []byte {
	head := make([]byte, 0, len(path)+len(addr)+64)
	head = append(head, "GET "...)
	head = append(head, path...)
	head = append(head, " HTTP/1.1\r\nHost: "...)
	head = append(head, addr...)
	head = append(head, "\r\nUpgrade: raft\r\nConnection: Upgrade\r\n\r\n"...)
	return head
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
func dialUpgrade(ctx context.Context, deadline time.Time, dial Dial, path, addr string) (net.Conn, error) {
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
	upgraded, step, err := upgrade(ctx, conn, path, addr, deadline)
	if err != nil {
		conn.Close()
		return nil, &UpgradeError{Addr: addr, Step: step, Err: err}
	}
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
// raft, or the failed step and its error. It does not close conn.
func upgrade(ctx context.Context, conn net.Conn, path, addr string, deadline time.Time) (_ net.Conn, step string, err error) {
	// A zero deadline clears any the Dial may have left.
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, "dial", err
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
	if _, err := conn.Write(upgradeRequest(path, addr)); err != nil {
		return nil, "write request", contextCause(ctx, deadline, err)
	}
	// The reader that parses the 101 may read past it if the peer wrote
	// more; those bytes are kept below.
	reader := bufio.NewReader(conn)
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		return nil, "read response", contextCause(ctx, deadline, err)
	}
	if response.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(response.Body, maxErrorBody))
		response.Body.Close()
		return nil, "status", &StatusError{StatusCode: response.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	if !headerHasToken(response.Header.Values("Upgrade"), "raft") {
		return nil, "upgrade header", fmt.Errorf("101 without Upgrade: raft (got %q)", response.Header.Get("Upgrade"))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, "read response", err
	}
	if n := reader.Buffered(); n > 0 {
		early, _ := reader.Peek(n)
		return newPrefixConn(conn, early), "", nil
	}
	return conn, "", nil
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
