package rafthttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp/raftmembership"
)

const (
	// DefaultBacklog is how many upgraded connections may wait for
	// [Layer.Accept] when [HandlerConfig.Backlog] is zero.
	DefaultBacklog = 64

	// retryAfterSeconds is what a 503 tells the caller to wait. Elections
	// settle within a few heartbeat timeouts, about a second by default.
	retryAfterSeconds = "1"
)

// HandlerConfig configures a [Handler]. The zero value of each field means
// its documented default.
type HandlerConfig struct {
	// Logger receives the Handler's logs. Nil means an hclog logger named
	// "rafthttp" at the default level.
	Logger hclog.Logger

	// Timeout bounds how long a join or leave request waits for
	// raftmembership.HandleChangeRequests to take it and answer, how long
	// an upgrade waits for room in the backlog, and how long it waits for
	// the early data its request announces (see
	// LayerConfig.EagerHandshake). Zero means DefaultTimeout.
	Timeout time.Duration

	// Backlog is how many upgraded connections may wait to be taken by
	// [Layer.Accept]. An upgrade that finds no room waits up to Timeout and
	// is then refused with 503, before any 101 is sent. Zero means
	// DefaultBacklog.
	Backlog int
}

// Handler serves the raft endpoint of an HTTP server. Mount it on a
// ServeMux at the path given to the [Layer]:
//
//   - GET with "Upgrade: raft" switches the connection to raw raft traffic,
//     which the Layer hands to raft through Accept;
//   - POST ?id=ID&address=ADDR asks for ID to join the cluster (add
//     &voter=false for a non-voter), DELETE ?id=ID asks for it to leave.
//     Both are passed on through [Handler.Requests].
//
// A Handler is used by exactly one Layer. It is safe for concurrent use.
type Handler struct {
	logger  hclog.Logger
	timeout atomic.Int64 // time.Duration

	requests chan *raftmembership.ChangeRequest
	conns    chan net.Conn
	// slots holds one token per upgraded connection that is on its way to,
	// or waiting in, conns. Taking a token before hijacking is what lets a
	// full backlog be refused with an HTTP 503 rather than a dropped socket.
	slots chan struct{}

	// ctx ends when the Handler is closed; every wait in the Handler
	// selects on it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu orders sends on requests and conns (read-locked) against Close
	// (write-locked), which closes requests and drains conns.
	mu     sync.RWMutex
	closed bool
}

// NewHandler returns a Handler with the default configuration.
func NewHandler() *Handler {
	return NewHandlerWithConfig(HandlerConfig{})
}

// NewHandlerWithLogger returns a Handler that logs to logger.
func NewHandlerWithLogger(logger hclog.Logger) *Handler {
	return NewHandlerWithConfig(HandlerConfig{Logger: logger})
}

// NewHandlerWithConfig returns a Handler configured by config; zero fields
// take their defaults. A negative Timeout or Backlog is treated as zero.
func NewHandlerWithConfig(config HandlerConfig) *Handler {
	logger := config.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "rafthttp"})
	}
	backlog := config.Backlog
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		logger:   logger,
		requests: make(chan *raftmembership.ChangeRequest),
		conns:    make(chan net.Conn, backlog),
		slots:    make(chan struct{}, backlog),
		ctx:      ctx,
		cancel:   cancel,
	}
	h.Timeout(config.Timeout)
	return h
}

// Timeout sets how long a membership request waits to be handled, and how
// long an upgrade waits for room in the backlog and for its early data.
// Zero or less restores DefaultTimeout. It may be called at any time.
func (h *Handler) Timeout(timeout time.Duration) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	h.timeout.Store(int64(timeout))
}

func (h *Handler) currentTimeout() time.Duration {
	return time.Duration(h.timeout.Load())
}

// Requests returns the channel on which join and leave requests arrive. Pass
// it to raftmembership.HandleChangeRequests. It is closed by
// [Handler.Close], which makes HandleChangeRequests return.
func (h *Handler) Requests() <-chan *raftmembership.ChangeRequest {
	return h.requests
}

// Close stops the Handler: upgrades and membership requests are refused
// with 503 from now on, requests waiting for an answer end with 503, the
// Requests channel is closed, and upgraded connections not yet accepted are
// closed. Close is idempotent and never blocks on a consumer.
//
// Closing the Layer closes its Handler; close the Handler alone only when it
// has no Layer, since raft's accept loop retries a closed one until the
// transport is closed.
func (h *Handler) Close() {
	// Cancel first: it wakes every ServeHTTP waiting under the read lock, so
	// taking the write lock below cannot wait on a consumer that never comes.
	h.cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.requests)
	for {
		select {
		case conn := <-h.conns:
			conn.Close()
		default:
			return
		}
	}
}

// ServeHTTP answers raft upgrades (GET), joins (POST) and leaves (DELETE).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.serveUpgrade(w, r)
	case http.MethodPost:
		h.serveMembership(w, r, raftmembership.JoinRequest)
	case http.MethodDelete:
		h.serveMembership(w, r, raftmembership.LeaveRequest)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		h.refuse(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("rafthttp: method %s not allowed", r.Method))
	}
}

// refuse answers with a plain-text error and logs why.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	h.logRefusal(r, status, reason)
	bodyLeft := r.Method == http.MethodGet && r.ContentLength != 0
	if bodyLeft {
		// An upgrade's body is raft data, left unread when refused, so the
		// connection cannot serve another request.
		w.Header().Set("Connection", "close")
	}
	http.Error(w, reason, status)
	if bodyLeft {
		// net/http would read and discard the rest of the body before
		// closing, with no time limit, holding the connection for as long
		// as the peer cares to. The answer is written first regardless.
		http.NewResponseController(w).SetReadDeadline(aLongTimeAgo)
	}
}

// refuseHijacked is refuse on a connection already taken from net/http: it
// writes the same plain-text answer by hand and closes the connection.
func (h *Handler) refuseHijacked(conn net.Conn, r *http.Request, status int, reason string) {
	defer conn.Close()
	h.logRefusal(r, status, reason)
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"
	if status == http.StatusServiceUnavailable {
		head += "Retry-After: " + retryAfterSeconds + "\r\n"
	}
	body := reason + "\n"
	if err := conn.SetWriteDeadline(time.Now().Add(h.currentTimeout())); err == nil {
		io.WriteString(conn, head+"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}
}

// logRefusal logs why a request was refused. Refusals of bad requests are
// routine (probes, elections, retries); only the server's own failures
// deserve a warning.
func (h *Handler) logRefusal(r *http.Request, status int, reason string) {
	log := h.logger.Debug
	if status >= http.StatusInternalServerError {
		log = h.logger.Warn
	}
	log("refused request", "method", r.Method, "path", r.URL.Path, "remote-address", r.RemoteAddr, "status", status, "reason", reason)
}

func (h *Handler) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if status, reason := checkUpgrade(r); status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Upgrade", "raft")
			w.Header().Set("Connection", "Upgrade")
		}
		h.refuse(w, r, status, reason)
		return
	}
	if r.ContentLength > 0 {
		h.serveEarlyData(w, r)
		return
	}
	if status, reason := h.reserveSlot(r.Context()); status != 0 {
		h.refuse(w, r, status, reason)
		return
	}
	if h.ctx.Err() != nil {
		// Checked again so that a Close racing the reservation still gets
		// an HTTP refusal rather than a 101 and a dropped socket.
		h.releaseSlot()
		h.refuse(w, r, http.StatusServiceUnavailable, "rafthttp: handler closed")
		return
	}
	conn, rw, ok := h.hijack(w, r)
	if !ok {
		h.releaseSlot()
		return
	}
	h.switchProtocols(conn, rw.Reader, r, nil)
}

// serveEarlyData serves an upgrade whose body holds early data. The body is
// read before a backlog slot is taken, so that a peer that never sends it
// holds no slot, and from the hijacked reader rather than the request's
// Body: reaching the end of that would start net/http's background read of
// the connection, which the hijack must then stop, a goroutine and two
// wake-ups for nothing. Refusals are written by hand.
func (h *Handler) serveEarlyData(w http.ResponseWriter, r *http.Request) {
	conn, rw, ok := h.hijack(w, r)
	if !ok {
		return
	}
	body, err := h.readEarlyData(conn, rw.Reader, r.ContentLength)
	if err == nil && h.ctx.Err() == nil {
		if status, reason := h.reserveSlot(context.Background()); status != 0 {
			h.refuseHijacked(conn, r, status, reason)
			return
		}
		if h.ctx.Err() == nil {
			h.switchProtocols(conn, rw.Reader, r, body)
			return
		}
		h.releaseSlot()
	}
	if h.ctx.Err() != nil {
		h.refuseHijacked(conn, r, http.StatusServiceUnavailable, "rafthttp: handler closed")
		return
	}
	h.refuseHijacked(conn, r, http.StatusBadRequest, "rafthttp: reading the raft data in the upgrade request's body: "+err.Error())
}

// hijack takes the connection over from net/http, or refuses the request
// and reports false.
func (h *Handler) hijack(w http.ResponseWriter, r *http.Request) (net.Conn, *bufio.ReadWriter, bool) {
	// NewResponseController finds Hijack through middleware wrappers that
	// implement Unwrap, which a type assertion on w would miss.
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		reason := "rafthttp: cannot take over this connection: " + err.Error()
		if errors.Is(err, http.ErrNotSupported) {
			reason = "rafthttp: cannot take over this connection: the ResponseWriter does not support hijacking (HTTP/2, or a middleware that hides http.Hijacker without an Unwrap method)"
		}
		h.refuse(w, r, http.StatusInternalServerError, reason)
		return nil, nil, false
	}
	return conn, rw, true
}

// reserveSlot takes a backlog token, waiting up to the timeout for one.
func (h *Handler) reserveSlot(ctx context.Context) (int, string) {
	select {
	case h.slots <- struct{}{}:
		return 0, ""
	default:
	}
	timer := time.NewTimer(h.currentTimeout())
	defer timer.Stop()
	select {
	case h.slots <- struct{}{}:
		return 0, ""
	case <-h.ctx.Done():
		return http.StatusServiceUnavailable, "rafthttp: handler closed"
	case <-ctx.Done():
		return http.StatusServiceUnavailable, "rafthttp: request canceled while waiting for room in the connection backlog"
	case <-timer.C:
		return http.StatusServiceUnavailable, "rafthttp: connection backlog full: raft is not accepting connections"
	}
}

func (h *Handler) releaseSlot() { <-h.slots }

// switchProtocols answers 101 on a hijacked connection, for which a
// backlog slot is taken, and queues for Accept the connection raft will
// use, which yields first body, the early data already read, then any
// bytes the peer sent behind the request. The 101 confirms the body if the
// request announced one (see bodyHeader). On failure the connection is
// closed and the slot released.
func (h *Handler) switchProtocols(conn net.Conn, buffered *bufio.Reader, r *http.Request, body []byte) {
	answer := switchingProtocolsBytes
	if _, announced := r.Header[bodyHeader]; announced {
		answer = switchingProtocolsBody
	}
	// raft's connections live for hours: no deadline may stay on them.
	// net/http clears its own on hijack; this also clears any a wrapping
	// listener or middleware may have set. Only the write of the 101 is
	// bounded.
	err := conn.SetDeadline(time.Time{})
	if err == nil {
		err = conn.SetWriteDeadline(time.Now().Add(h.currentTimeout()))
	}
	if err == nil {
		_, err = conn.Write(answer)
	}
	if err == nil {
		err = conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		h.releaseSlot()
		h.logger.Warn("upgrade failed after hijacking", "remote-address", r.RemoteAddr, "path", r.URL.Path, "error", fmt.Errorf("write 101: %w", err))
		return
	}
	// A peer may also send raft bytes right behind its request without
	// waiting for the 101; net/http may already have read them.
	if n := buffered.Buffered(); n > 0 {
		early, _ := buffered.Peek(n)
		body = append(body, early...)
	}
	if len(body) > 0 {
		h.deliver(&prefixConn{Conn: conn, prefix: body}, r)
		return
	}
	h.deliver(conn, r)
}

// deliver queues an upgraded connection for Accept, or closes it if the
// Handler closed while the 101 was being written.
func (h *Handler) deliver(conn net.Conn, r *http.Request) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		conn.Close()
		h.releaseSlot()
		h.logger.Debug("closed upgraded connection: handler closed during the handshake", "remote-address", r.RemoteAddr, "path", r.URL.Path)
		return
	}
	// Cannot block: the slot taken in reserveSlot guarantees room.
	h.conns <- conn
	// Guarded: building the arguments allocates even when Debug is off,
	// and this runs on every upgrade.
	if h.logger.IsDebug() {
		h.logger.Debug("upgraded connection", "remote-address", r.RemoteAddr, "path", r.URL.Path)
	}
}

// accept returns the next upgraded connection, or ErrClosed once the
// Handler is closed.
func (h *Handler) accept() (net.Conn, error) {
	select {
	case <-h.ctx.Done():
		return nil, ErrClosed
	default:
	}
	select {
	case conn := <-h.conns:
		h.releaseSlot()
		return conn, nil
	case <-h.ctx.Done():
		return nil, ErrClosed
	}
}

// serveMembership parses a join or leave request, hands it to Requests and
// turns the outcome into an HTTP answer.
func (h *Handler) serveMembership(w http.ResponseWriter, r *http.Request, kind raftmembership.ChangeRequestKind) {
	request, err := parseChangeRequest(r, kind)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	err = h.submit(r.Context(), request)
	if err == nil {
		h.logger.Info("membership change done", "kind", request.Kind(), "id", request.ID(), "address", request.Address(),
			"remote-address", r.RemoteAddr, "path", r.URL.Path, "status", http.StatusOK)
		w.WriteHeader(http.StatusOK)
		return
	}
	var different *raftmembership.ErrDifferentLeader
	if errors.As(err, &different) {
		location := leaderURL(r, different.Leader())
		h.logger.Debug("redirecting membership request to the leader", "kind", request.Kind(), "id", request.ID(), "leader", different.Leader(),
			"remote-address", r.RemoteAddr, "path", r.URL.Path, "status", http.StatusTemporaryRedirect)
		http.Redirect(w, r, location, http.StatusTemporaryRedirect)
		return
	}
	status := http.StatusInternalServerError
	if retryable(err) {
		status = http.StatusServiceUnavailable
	}
	h.refuse(w, r, status, fmt.Sprintf("rafthttp: %s %s: %v", request.Kind(), request.ID(), err))
}

// parseChangeRequest reads the query of a join or leave request. It parses
// the raw query itself because Request.URL.Query drops values it cannot
// decode, which would turn a bad request into a missing-parameter one.
func parseChangeRequest(r *http.Request, kind raftmembership.ChangeRequestKind) (*raftmembership.ChangeRequest, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("rafthttp: bad query: %v", err)
	}
	id, err := singleValue(query, "id")
	if err != nil {
		return nil, err
	}
	if kind == raftmembership.LeaveRequest {
		return raftmembership.NewLeaveRequest(raft.ServerID(id)), nil
	}
	address, err := singleValue(query, "address")
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		return nil, fmt.Errorf("rafthttp: bad address %q: want host:port", address)
	}
	if query.Has("voter") {
		voter, err := strconv.ParseBool(query.Get("voter"))
		if err != nil || len(query["voter"]) > 1 {
			return nil, fmt.Errorf("rafthttp: bad voter %q: want true or false", query.Get("voter"))
		}
		if !voter {
			return raftmembership.NewJoinNonvoterRequest(raft.ServerID(id), raft.ServerAddress(address)), nil
		}
	}
	return raftmembership.NewJoinRequest(raft.ServerID(id), raft.ServerAddress(address)), nil
}

func singleValue(query url.Values, name string) (string, error) {
	values := query[name]
	switch {
	case len(values) == 0 || values[0] == "":
		return "", fmt.Errorf("rafthttp: missing %s", name)
	case len(values) > 1:
		return "", fmt.Errorf("rafthttp: more than one %s", name)
	}
	return values[0], nil
}

// errNoConsumer is the outcome when nothing reads Requests in time.
var errNoConsumer = errors.New("no one took the request in time: raftmembership.HandleChangeRequests is not running, or is busy with another request")

// errNoAnswer is the outcome when the request was taken but not answered
// in time. Join and leave are idempotent, so the caller may retry.
var errNoAnswer = errors.New("the request was not answered in time")

// submit passes request to the Requests consumer and waits for its outcome,
// bounded by the timeout, the caller's context and Close.
func (h *Handler) submit(ctx context.Context, request *raftmembership.ChangeRequest) error {
	ctx, cancel := context.WithTimeout(ctx, h.currentTimeout())
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()

	if err := h.send(ctx, request); err != nil {
		return err
	}
	err := request.Wait(ctx)
	switch {
	case ctx.Err() == nil || err != ctx.Err():
		return err // the outcome HandleChangeRequests reported
	case h.ctx.Err() != nil:
		return ErrClosed
	default:
		return errNoAnswer
	}
}

func (h *Handler) send(ctx context.Context, request *raftmembership.ChangeRequest) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return ErrClosed
	}
	select {
	case h.requests <- request:
		return nil
	case <-h.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		if h.ctx.Err() != nil {
			return ErrClosed
		}
		return errNoConsumer
	}
}

// retryable reports whether a failed membership request may succeed if sent
// again later, which the client is told with a 503.
func retryable(err error) bool {
	var unknown *raftmembership.ErrUnknownLeader
	return errors.As(err, &unknown) ||
		errors.Is(err, ErrClosed) ||
		errors.Is(err, errNoConsumer) ||
		errors.Is(err, errNoAnswer) ||
		errors.Is(err, raft.ErrRaftShutdown) ||
		errors.Is(err, raft.ErrEnqueueTimeout) ||
		// raftmembership already turns these into redirects; kept for a
		// consumer of Requests that passes raft's errors through.
		errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrNotLeader)
}

// leaderURL points the same request at the leader, keeping the scheme the
// request came in on so a TLS cluster stays TLS.
func leaderURL(r *http.Request, leader string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: leader, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	return u.String()
}
