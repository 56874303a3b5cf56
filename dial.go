package rafthttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Dial opens a connection to a raft peer's HTTP server. The Layer performs
// the HTTP upgrade over the connection it returns, so a Dial only connects
// (and, for TLS, completes the TLS handshake) within timeout.
//
// timeout is the time left for the whole call that dials: the time left
// before the deadline of Layer.Dial, DialContext, Join or Leave, or
// DefaultTimeout for a call without one. A Dial cannot see a context: when
// such a call is canceled or the Layer closed, the call returns at once,
// but the connect underneath runs on in the background until its timeout,
// and a connection it still makes is closed.
type Dial func(addr string, timeout time.Duration) (net.Conn, error)

// DialContext is a [Dial] that ctx bounds: its deadline is the time left
// for the call that dials, and its cancellation, when that call is
// canceled or the Layer closed, ends the connect at once. Give one to
// [LayerConfig.DialContext] in preference to a Dial: a Layer runs a Dial
// in a goroutine of its own so that it can give up on it, which costs each
// dial a hand-off between goroutines (about 10 µs on a loaded machine).
type DialContext func(ctx context.Context, addr string) (net.Conn, error)

// NewDialTCP returns a Dial that opens plain TCP connections.
func NewDialTCP() Dial {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		dialer := net.Dialer{Timeout: timeout}
		return dialer.Dial("tcp", addr)
	}
}

// NewDialContextTCP returns a DialContext that opens plain TCP
// connections. It is what a Layer dials with when its config gives
// neither a Dial nor a DialContext.
func NewDialContextTCP() DialContext {
	var dialer net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", addr)
	}
}

// NewDialTLS returns a Dial that opens TLS connections configured by config
// (nil means the zero tls.Config). The config is cloned, so later changes to
// it have no effect. Whatever config.NextProtos says, the Dial offers ALPN
// "http/1.1" only: a server with HTTP/2 enabled would otherwise pick h2,
// which has no Upgrade.
func NewDialTLS(config *tls.Config) Dial {
	config = upgradeTLSConfig(config)
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

// NewDialContextTLS is NewDialTLS as a DialContext.
func NewDialContextTLS(config *tls.Config) DialContext {
	dialer := &tls.Dialer{Config: upgradeTLSConfig(config)}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			// Not a typed nil in a non-nil interface.
			return nil, err
		}
		return conn, nil
	}
}

// upgradeTLSConfig returns a copy of config (nil: the zero config) that
// offers ALPN "http/1.1" only.
func upgradeTLSConfig(config *tls.Config) *tls.Config {
	if config == nil {
		config = &tls.Config{}
	}
	config = config.Clone()
	config.NextProtos = []string{"http/1.1"}
	return config
}

// connector is how the Layer connects: through a DialContext, or through
// a Dial run where the caller can give up on it.
type connector struct {
	dial        Dial
	dialContext DialContext
}

// connect connects to addr, by deadline (zero: within DefaultTimeout),
// returning early if ctx ends first.
func (c connector) connect(ctx context.Context, addr string, deadline time.Time) (net.Conn, error) {
	if c.dialContext != nil {
		if deadline.IsZero() {
			deadline = time.Now().Add(DefaultTimeout)
		}
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return checkConn(c.dialContext(ctx, addr))
	}
	return connect(ctx, c.dial, addr, dialTimeout(deadline))
}

// upgrader holds what every upgrade dial of a Layer needs.
type upgrader struct {
	dial connector
	// path is escaped, as sent in the request line.
	path string
	// extra holds the header lines every request carries: the user's
	// headers and the cluster ID (see headerLines).
	extra []byte
	// header holds the same headers as extra, for a WebSocket handshake,
	// which gorilla writes.
	header http.Header
	// clusterID is this node's, to name in a mismatch.
	clusterID string
	// webSocket dials with a WebSocket handshake (LayerConfig.WebSocket).
	webSocket bool
	// peers is what the Layer learned about early data; nil dials without
	// it, and then the request says nothing about it.
	peers *peerTable
}

// dialUpgrade connects to addr and switches the connection to raft. One
// deadline covers the connect, the request and the 101; it is cleared on
// success. Canceling ctx stops the dial at once. On failure the connection
// is closed and the error is an *UpgradeError naming the failed step.
//
// If u.peers says addr takes early data, dialUpgrade returns once
// connected, and the connection upgrades itself on first use (see
// lazyConn), still under the deadline. Otherwise it waits for the 101 and
// records in u.peers what the 101 said about early data.
func (u *upgrader) dialUpgrade(ctx context.Context, deadline time.Time, addr string) (_ net.Conn, err error) {
	start := time.Now()
	early := false
	defer func() { countDial(start, u.dialMode(early), err) }()
	if err := validHost(addr); err != nil {
		return nil, &UpgradeError{Addr: addr, Step: StepDial, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, &UpgradeError{Addr: addr, Step: StepDial, Err: err}
	}
	conn, err := u.dial.connect(ctx, addr, deadline)
	if err != nil {
		return nil, &UpgradeError{Addr: addr, Step: StepDial, Err: contextCause(ctx, deadline, err)}
	}
	if u.webSocket {
		upgraded, step, err := u.upgradeWebSocket(ctx, conn, addr, deadline)
		if err != nil {
			conn.Close()
			return nil, &UpgradeError{Addr: addr, Step: step, Err: err, hint: originalNodeHint(err)}
		}
		return upgraded, nil
	}
	if room := u.peers.earlyData(addr); room > 0 {
		early = true
		// A zero deadline clears any the Dial may have left.
		if err := conn.SetDeadline(deadline); err != nil {
			conn.Close()
			return nil, &UpgradeError{Addr: addr, Step: StepDial, Err: err}
		}
		return newLazyConn(conn, u, addr, room, deadline), nil
	}
	announce := -1
	if u.peers != nil {
		announce = 0
	}
	upgraded, bodyMax, step, err := u.upgrade(ctx, conn, addr, deadline, announce)
	if err != nil {
		conn.Close()
		return nil, &UpgradeError{Addr: addr, Step: step, Err: err, hint: webSocketOnlyHint(err)}
	}
	u.peers.learned(addr, bodyMax)
	return upgraded, nil
}

// dialMode names how a dial went, for the metrics: "websocket", or for
// a raw upgrade "early_data" or "eager".
func (u *upgrader) dialMode(early bool) string {
	switch {
	case u.webSocket:
		return "websocket"
	case early:
		return "early_data"
	}
	return "eager"
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
func (u *upgrader) upgrade(ctx context.Context, conn net.Conn, addr string, deadline time.Time, announce int) (_ net.Conn, bodyMax int, step UpgradeStep, err error) {
	// A zero deadline clears any the Dial may have left.
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, 0, StepDial, err
	}
	if ctx.Done() != nil {
		// Cancellation unblocks the handshake through the deadline, which
		// works for every net.Conn without a goroutine per dial.
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
		defer func() {
			if !stop() && err == nil {
				// Canceled just as the handshake finished: the deadline
				// may already be in the past, so the conn cannot be used.
				step, err = StepReadResponse, ctx.Err()
			}
		}()
	}
	if _, err := conn.Write(appendUpgradeRequest(nil, u.path, addr, u.extra, announce)); err != nil {
		return nil, 0, StepWriteRequest, contextCause(ctx, deadline, err)
	}
	reader, source := newAnswerReader(conn)
	bodyMax, step, err = readUpgradeResponse(reader, source, u.clusterID)
	if err != nil {
		if step == StepReadResponse {
			err = contextCause(ctx, deadline, err)
		}
		return nil, 0, step, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, 0, StepReadResponse, err
	}
	return bufferedConn(conn, reader), bodyMax, "", nil
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
