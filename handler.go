package rafthttp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

	// DefaultMaxConns is how many upgraded connections may be open at once
	// when [HandlerConfig.MaxConns] is zero. A peer holds a handful (raft's
	// pool, its pipeline, a snapshot), so this serves clusters of a
	// hundred nodes; raft gives each about 260 KiB of buffers.
	DefaultMaxConns = 512

	// DefaultMaxPendingUpgrades is how many upgrades may wait at once for
	// room in the backlog or for their early data when
	// [HandlerConfig.MaxPendingUpgrades] is zero.
	DefaultMaxPendingUpgrades = 128

	// DefaultMaxPendingChanges is how many join, leave and membership
	// requests may wait at once for their answer when [HandlerConfig.MaxPendingChanges]
	// is zero. Changes are applied one at a time.
	DefaultMaxPendingChanges = 16

	// MaxEarlyData is the most raft data a Handler takes in the body of an
	// upgrade request (see [LayerConfig.EagerHandshake]); a larger body is
	// refused with 413 before any 101.
	MaxEarlyData = maxEarlyData

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

	// Timeout bounds how long a join, leave or membership request waits for
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

	// Authorize, if set, sees every request the Handler serves before
	// anything else happens: upgrades, joins, leaves, membership views and
	// any other. A
	// non-nil error refuses the request with 403 Forbidden, or 401
	// Unauthorized when errors.Is(err, ErrUnauthorized): no connection is
	// taken over, no early data read, nothing reaches Requests or Accept.
	// The error is logged with the remote address; the client gets no
	// more than the status. Authorize by client certificate (r.TLS) or by
	// header (see LayerConfig.Header). Nil allows every request.
	Authorize func(r *http.Request) error

	// ClusterID names the cluster this node serves. When set, a request
	// whose Rafthttp-Cluster-Id header (see LayerConfig.ClusterID) is
	// missing or different is refused with 412 Precondition Failed, before
	// any connection is taken over, and the answer names this ID. Empty
	// checks nothing, so original nodes and Layers without an ID get in.
	ClusterID string

	// MaxConns bounds the upgraded connections open at once, from the 101
	// until raft or the peer closes them; past it, upgrades are refused
	// with 503 before any 101. A connection whose peer sends nothing
	// within Timeout of Layer.Accept taking it is closed: raft's own send
	// their first request at once. Zero means DefaultMaxConns.
	MaxConns int

	// MaxPendingUpgrades bounds the upgrades that may wait at once for
	// room in the backlog or for the early data their request announces;
	// past it, upgrades are refused with 503 at once. Zero means
	// DefaultMaxPendingUpgrades.
	MaxPendingUpgrades int

	// MaxPendingChanges bounds the join, leave and membership requests
	// that may wait at once for the consumer of Requests and its answer;
	// past it, they
	// are refused with 503 at once, and the client retries. Zero means
	// DefaultMaxPendingChanges.
	MaxPendingChanges int
}

// Handler serves the raft endpoint of an HTTP server. Mount it on a
// ServeMux at the path given to the [Layer]:
//
//   - GET with "Upgrade: raft" switches the connection to raw raft traffic,
//     which the Layer hands to raft through Accept; GET with "Upgrade:
//     websocket" and the raft subprotocol does the same with raft's
//     stream in WebSocket messages (see [LayerConfig.WebSocket]);
//   - GET without an Upgrade header answers this node's view of the
//     membership as JSON (see [Membership]);
//   - POST ?id=ID&address=ADDR asks for ID to join the cluster (add
//     &voter=false for a non-voter), DELETE ?id=ID asks for it to leave.
//
// Joins, leaves and membership views are passed on through
// [Handler.Requests].
//
// Everything a peer can make the Handler hold is bounded: see
// [HandlerConfig]. The http.Server it is mounted on bounds the rest
// (ReadHeaderTimeout, MaxHeaderBytes): see the README's Security section.
//
// A Handler is used by exactly one Layer. It is safe for concurrent use.
type Handler struct {
	logger    hclog.Logger
	timeout   atomic.Int64 // time.Duration
	authorize func(r *http.Request) error
	clusterID string

	// open counts upgraded connections from the 101 until they close,
	// bounded by maxConns.
	open     atomic.Int64
	maxConns int64
	// pendingUpgrades and pendingChanges hold a token per upgrade or
	// membership request in progress.
	pendingUpgrades chan struct{}
	pendingChanges  chan struct{}
	// probe is the Layer's check that a joiner can be reached.
	probe atomic.Pointer[raftmembership.ReachabilityCheck]

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
// take their defaults. A negative Timeout or bound is treated as zero.
func NewHandlerWithConfig(config HandlerConfig) *Handler {
	logger := config.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "rafthttp"})
	}
	backlog := orDefault(config.Backlog, DefaultBacklog)
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		logger:          logger,
		authorize:       config.Authorize,
		clusterID:       config.ClusterID,
		maxConns:        int64(orDefault(config.MaxConns, DefaultMaxConns)),
		pendingUpgrades: make(chan struct{}, orDefault(config.MaxPendingUpgrades, DefaultMaxPendingUpgrades)),
		pendingChanges:  make(chan struct{}, orDefault(config.MaxPendingChanges, DefaultMaxPendingChanges)),
		requests:        make(chan *raftmembership.ChangeRequest),
		conns:           make(chan net.Conn, backlog),
		slots:           make(chan struct{}, backlog),
		ctx:             ctx,
		cancel:          cancel,
	}
	h.Timeout(config.Timeout)
	return h
}

// orDefault returns n, or def if n is zero or less.
func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// setProbe sets the Layer's reachability check for joins.
func (h *Handler) setProbe(probe raftmembership.ReachabilityCheck) {
	h.probe.Store(&probe)
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

// Requests returns the channel on which join, leave and membership
// requests (raftmembership.MembersRequest) arrive. Pass it to
// raftmembership.HandleChangeRequests, which answers all three. It is closed by
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
			h.connClosed()
		default:
			return
		}
	}
}

// ServeHTTP answers raft upgrades (GET with Upgrade), membership views
// (GET without Upgrade), joins (POST) and leaves (DELETE), once Authorize
// and the cluster ID check let the request through.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.authorize != nil {
		if err := h.authorize(r); err != nil {
			status := http.StatusForbidden
			if errors.Is(err, ErrUnauthorized) {
				status = http.StatusUnauthorized
			}
			countRefused("authorize")
			h.logger.Info("refused request: not authorized", "method", r.Method, "path", r.URL.Path,
				"remote-address", r.RemoteAddr, "status", status, "error", err)
			h.refuse(w, r, status, "rafthttp: "+strings.ToLower(http.StatusText(status)))
			return
		}
	}
	if reason := checkClusterID(r, h.clusterID); reason != "" {
		countRefused("cluster_id")
		h.logger.Info("refused request: cluster ID mismatch", "method", r.Method, "path", r.URL.Path,
			"remote-address", r.RemoteAddr, "cluster-id", h.clusterID, "request-cluster-id", r.Header.Values(clusterIDHeader))
		w.Header().Set(clusterIDHeader, h.clusterID)
		h.refuse(w, r, http.StatusPreconditionFailed, reason)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if _, upgrade := r.Header["Upgrade"]; !upgrade {
			h.serveMembers(w, r)
			return
		}
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
	countAnswer(r, status)
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
	countAnswer(r, status)
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
	if isWebSocketUpgrade(r) {
		h.serveWebSocket(w, r)
		return
	}
	if status, reason := checkUpgrade(r); status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Upgrade", "raft")
			w.Header().Set("Connection", "Upgrade")
		}
		h.refuse(w, r, status, reason)
		return
	}
	if status, reason := h.admitUpgrade(); status != 0 {
		h.refuse(w, r, status, reason)
		return
	}
	delivered := false
	defer func() { h.finishUpgrade(delivered) }()
	if r.ContentLength > 0 {
		delivered = h.serveEarlyData(w, r)
		return
	}
	if !h.takeSlot(w, r) {
		return
	}
	conn, rw, ok := h.hijack(w, r)
	if !ok {
		h.releaseSlot()
		return
	}
	delivered = h.switchProtocols(conn, rw.Reader, r, nil)
}

// takeSlot reserves a backlog slot for an upgrade about to be answered
// with a 101, waiting as reserveSlot does, or refuses the request and
// reports false.
func (h *Handler) takeSlot(w http.ResponseWriter, r *http.Request) bool {
	if status, reason := h.reserveSlot(r.Context()); status != 0 {
		h.refuse(w, r, status, reason)
		return false
	}
	if h.ctx.Err() != nil {
		// Checked again so that a Close racing the reservation still gets
		// an HTTP refusal rather than a 101 and a dropped socket.
		h.releaseSlot()
		h.refuse(w, r, http.StatusServiceUnavailable, "rafthttp: handler closed")
		return false
	}
	return true
}

// admitUpgrade takes what an upgrade in progress holds: a pending-upgrade
// token and a count among the open connections. It returns the status and
// reason to refuse the upgrade with if either is at its bound.
func (h *Handler) admitUpgrade() (int, string) {
	select {
	case h.pendingUpgrades <- struct{}{}:
	default:
		return http.StatusServiceUnavailable, fmt.Sprintf("rafthttp: %d upgrades already in progress", cap(h.pendingUpgrades))
	}
	for {
		open := h.open.Load()
		if open >= h.maxConns {
			<-h.pendingUpgrades
			return http.StatusServiceUnavailable, fmt.Sprintf("rafthttp: %d raft connections already open", h.maxConns)
		}
		if h.open.CompareAndSwap(open, open+1) {
			addOpenConns(1)
			return 0, ""
		}
	}
}

// finishUpgrade gives back what admitUpgrade took, but for the count of a
// connection that was delivered, which connClosed gives back.
func (h *Handler) finishUpgrade(delivered bool) {
	<-h.pendingUpgrades
	if !delivered {
		h.connClosed()
	}
}

// connClosed tells the Handler that an upgraded connection it counted is
// closed.
func (h *Handler) connClosed() {
	h.open.Add(-1)
	addOpenConns(-1)
}

// serveEarlyData serves an upgrade whose body holds early data. The body is
// read before a backlog slot is taken, so that a peer that never sends it
// holds no slot, and from the hijacked reader rather than the request's
// Body: reaching the end of that would start net/http's background read of
// the connection, which the hijack must then stop, a goroutine and two
// wake-ups for nothing. Refusals are written by hand. It reports whether
// the connection was delivered.
func (h *Handler) serveEarlyData(w http.ResponseWriter, r *http.Request) bool {
	conn, rw, ok := h.hijack(w, r)
	if !ok {
		return false
	}
	body, err := h.readEarlyData(conn, rw.Reader, r.ContentLength)
	if err == nil && h.ctx.Err() == nil {
		if status, reason := h.reserveSlot(context.Background()); status != 0 {
			h.refuseHijacked(conn, r, status, reason)
			return false
		}
		if h.ctx.Err() == nil {
			return h.switchProtocols(conn, rw.Reader, r, body)
		}
		h.releaseSlot()
	}
	if h.ctx.Err() != nil {
		h.refuseHijacked(conn, r, http.StatusServiceUnavailable, "rafthttp: handler closed")
		return false
	}
	h.refuseHijacked(conn, r, http.StatusBadRequest, "rafthttp: reading the raft data in the upgrade request's body: "+err.Error())
	return false
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
// request announced one (see bodyHeader). It reports whether the
// connection was delivered; if not, it is closed and the slot released.
func (h *Handler) switchProtocols(conn net.Conn, buffered *bufio.Reader, r *http.Request, body []byte) bool {
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
		return false
	}
	countAnswer(r, http.StatusSwitchingProtocols)
	// A peer may also send raft bytes right behind its request without
	// waiting for the 101; net/http may already have read them.
	if n := buffered.Buffered(); n > 0 {
		early, _ := buffered.Peek(n)
		body = append(body, early...)
	}
	if len(body) > 0 {
		return h.deliver(&prefixConn{Conn: conn, prefix: body}, r)
	}
	return h.deliver(conn, r)
}

// deliver queues an upgraded connection for Accept, or closes it if the
// Handler closed while the 101 was being written, and reports which.
func (h *Handler) deliver(conn net.Conn, r *http.Request) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		conn.Close()
		h.releaseSlot()
		h.logger.Debug("closed upgraded connection: handler closed during the handshake", "remote-address", r.RemoteAddr, "path", r.URL.Path)
		return false
	}
	// Cannot block: the slot taken in reserveSlot guarantees room.
	h.conns <- conn
	// Guarded: building the arguments allocates even when Debug is off,
	// and this runs on every upgrade.
	if h.logger.IsDebug() {
		h.logger.Debug("upgraded connection", "remote-address", r.RemoteAddr, "path", r.URL.Path)
	}
	return true
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
	if probe := h.probe.Load(); probe != nil && kind != raftmembership.LeaveRequest {
		request.WithReachabilityCheck(*probe)
	}
	select {
	case h.pendingChanges <- struct{}{}:
		defer func() { <-h.pendingChanges }()
	default:
		h.refuse(w, r, http.StatusServiceUnavailable, fmt.Sprintf("rafthttp: %d membership requests already waiting", cap(h.pendingChanges)))
		return
	}
	err = h.submit(r.Context(), request)
	if err == nil {
		h.logger.Info("membership change done", "kind", request.Kind(), "id", request.ID(), "address", request.Address(),
			"remote-address", r.RemoteAddr, "path", r.URL.Path, "status", http.StatusOK)
		countAnswer(r, http.StatusOK)
		w.WriteHeader(http.StatusOK)
		return
	}
	var different *raftmembership.ErrDifferentLeader
	if errors.As(err, &different) {
		location := leaderURL(r, different.Leader())
		h.logger.Debug("redirecting membership request to the leader", "kind", request.Kind(), "id", request.ID(), "leader", different.Leader(),
			"remote-address", r.RemoteAddr, "path", r.URL.Path, "status", http.StatusTemporaryRedirect)
		countAnswer(r, http.StatusTemporaryRedirect)
		http.Redirect(w, r, location, http.StatusTemporaryRedirect)
		return
	}
	status := http.StatusInternalServerError
	var inUse *raftmembership.ErrAddressInUse
	switch {
	case errors.As(err, &inUse):
		status = http.StatusConflict
	case refusedCheck(err):
		// The joiner's Handler refused the leader's check: the two are
		// set up for different clusters or credentials, which no retry
		// mends.
		status = http.StatusForbidden
	case retryable(err):
		status = http.StatusServiceUnavailable
	}
	h.refuse(w, r, status, fmt.Sprintf("rafthttp: %s %s: %v", request.Kind(), request.ID(), err))
}

// serveMembers answers a GET without Upgrade with the membership view the
// consumer of Requests gives, as JSON. It waits as a join or leave does,
// under the same bound and timeout.
func (h *Handler) serveMembers(w http.ResponseWriter, r *http.Request) {
	select {
	case h.pendingChanges <- struct{}{}:
		defer func() { <-h.pendingChanges }()
	default:
		h.refuse(w, r, http.StatusServiceUnavailable, fmt.Sprintf("rafthttp: %d membership requests already waiting", cap(h.pendingChanges)))
		return
	}
	request := raftmembership.NewMembersRequest()
	err := h.submit(r.Context(), request)
	membership := request.Members()
	if err == nil && membership == nil {
		// A consumer of Requests other than HandleChangeRequests, written
		// before membership requests existed, that answers any request.
		err = errors.New("the consumer of Requests answered without a membership view: it does not handle raftmembership.MembersRequest")
	}
	if err != nil {
		status := http.StatusInternalServerError
		if retryable(err) {
			status = http.StatusServiceUnavailable
		}
		h.refuse(w, r, status, fmt.Sprintf("rafthttp: %s: %v", request.Kind(), err))
		return
	}
	body, err := json.Marshal(membership)
	if err != nil {
		h.refuse(w, r, http.StatusInternalServerError, fmt.Sprintf("rafthttp: %s: %v", request.Kind(), err))
		return
	}
	h.logger.Debug("served membership view", "servers", len(membership.Servers),
		"remote-address", r.RemoteAddr, "path", r.URL.Path, "status", http.StatusOK)
	w.Header().Set("Content-Type", "application/json")
	// A view of this moment: caches and proxies must not keep it.
	w.Header().Set("Cache-Control", "no-store")
	countAnswer(r, http.StatusOK)
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
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
	if err := raftmembership.CheckID(raft.ServerID(id)); err != nil {
		return nil, fmt.Errorf("rafthttp: bad id: %w", err)
	}
	if kind == raftmembership.LeaveRequest {
		return raftmembership.NewLeaveRequest(raft.ServerID(id)), nil
	}
	address, err := singleValue(query, "address")
	if err != nil {
		return nil, err
	}
	if err := raftmembership.CheckAddress(raft.ServerAddress(address)); err != nil {
		return nil, fmt.Errorf("rafthttp: bad address: %w", err)
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

// refusedCheck reports whether err is a reachability check that the
// joiner's Handler refused for want of authorization (401, 403) or for
// another cluster ID (412).
func refusedCheck(err error) bool {
	var (
		unreachable *raftmembership.ErrUnreachable
		status      *StatusError
	)
	if !errors.As(err, &unreachable) || !errors.As(unreachable.Err, &status) {
		return false
	}
	switch status.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusPreconditionFailed:
		return true
	}
	return false
}

// retryable reports whether a failed membership request may succeed if sent
// again later, which the client is told with a 503.
func retryable(err error) bool {
	var (
		unknown     *raftmembership.ErrUnknownLeader
		unreachable *raftmembership.ErrUnreachable
	)
	return errors.As(err, &unknown) ||
		errors.As(err, &unreachable) ||
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

// leaderURL points the same request at the leader, with no scheme
// ("//leader/path?query"), so that every client keeps the one it used: an
// https client stays on https, and one that puts TLS inside its Dial and
// sends http:// URLs, as the original package's client does, stays on
// http:// rather than wrapping TLS in TLS.
func leaderURL(r *http.Request, leader string) string {
	// A request's query may hold a bare '#', which net/http and
	// url.ParseQuery take as a plain byte, but which in Location would
	// start a fragment and cut the query short at the leader. Escaped, it
	// reads back as the same values.
	query := strings.ReplaceAll(r.URL.RawQuery, "#", "%23")
	u := url.URL{Host: leader, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: query}
	return u.String()
}
