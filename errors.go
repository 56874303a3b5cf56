package rafthttp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// ErrClosed is returned by [Layer.Accept], [Layer.Dial] and the membership
// methods once the Layer or its Handler has been closed. It wraps
// [net.ErrClosed], so errors.Is(err, net.ErrClosed) holds as it does for a
// closed net.Listener.
var ErrClosed = fmt.Errorf("rafthttp: closed: %w", net.ErrClosed)

// ErrUnauthorized, returned by a [HandlerConfig.Authorize] function (or
// wrapped in what it returns), makes the Handler answer 401 Unauthorized
// instead of 403 Forbidden: the request carried no credentials, or ones
// that could not be verified, rather than ones that do not allow it.
var ErrUnauthorized = errors.New("rafthttp: unauthorized")

// ErrClusterIDMismatch is matched, through errors.Is, by the error a dial,
// Join, Leave or Members call returns when the peer's Handler belongs to
// another cluster (see [LayerConfig.ClusterID]). The error itself is a
// [*ClusterIDError].
var ErrClusterIDMismatch = errors.New("rafthttp: cluster ID mismatch")

// ClusterIDError is a peer's refusal (412 Precondition Failed) of a request
// meant for another cluster. errors.Is(err, ErrClusterIDMismatch) holds for
// it, and errors.As finds the [*StatusError] it wraps.
type ClusterIDError struct {
	// Local is this node's cluster ID, "" if it has none.
	Local string
	// Remote is the peer's cluster ID, as its answer named it.
	Remote string
	// Status is the peer's answer.
	Status *StatusError
}

func (e *ClusterIDError) Error() string {
	return fmt.Sprintf("cluster ID mismatch: this node is in cluster %s, the peer in cluster %s", quoteClusterID(e.Local), quoteClusterID(e.Remote))
}

func quoteClusterID(id string) string {
	if id == "" {
		return "(none set)"
	}
	return strconv.Quote(id)
}

// Is reports whether target is ErrClusterIDMismatch.
func (e *ClusterIDError) Is(target error) bool { return target == ErrClusterIDMismatch }

func (e *ClusterIDError) Unwrap() error { return e.Status }

// UpgradeError reports a failed upgrade dial: the peer it was dialing and the
// step that failed. Err holds the cause: a network error, or a
// [*StatusError] when the peer answered with something other than 101.
type UpgradeError struct {
	// Addr is the address that was dialed.
	Addr string
	// Step is the step that failed.
	Step UpgradeStep
	// Err is the underlying error.
	Err error

	// hint, if set, follows the error's text: what the failure may mean.
	hint string
}

// UpgradeStep names a step of an upgrade dial, for [UpgradeError].
type UpgradeStep string

// The steps of an upgrade dial, in order.
const (
	// StepDial is the connect, made by the Layer's [Dial] (for TLS, with
	// the TLS handshake).
	StepDial UpgradeStep = "dial"
	// StepWriteRequest is sending the upgrade request.
	StepWriteRequest UpgradeStep = "write request"
	// StepReadResponse is reading the answer's head: a connection closed
	// or timed out before a whole answer arrived, or one that is not HTTP.
	StepReadResponse UpgradeStep = "read response"
	// StepStatus is an answer other than 101; Err is a [*StatusError].
	StepStatus UpgradeStep = "status"
	// StepUpgradeHeader is a 101 that does not switch to raft, or that
	// does not confirm the early data sent with the request.
	StepUpgradeHeader UpgradeStep = "upgrade header"
)

func (e *UpgradeError) Error() string {
	text := fmt.Sprintf("rafthttp: upgrade to %s: %s: %v", e.Addr, e.Step, e.Err)
	if e.hint != "" {
		text += " (" + e.hint + ")"
	}
	return text
}

// originalNodeHint explains a WebSocket upgrade refused with 400 by
// something that is not a rafthttp Handler: a node running the original
// package answers any upgrade but raw ones so.
func originalNodeHint(err error) string {
	var status *StatusError
	if !errors.As(err, &status) || strings.HasPrefix(status.Body, "rafthttp:") || status.StatusCode != http.StatusBadRequest {
		return ""
	}
	return "the refusal is not a rafthttp Handler's: a node running the original package cannot serve WebSocket mode; dial it without LayerConfig.WebSocket"
}

// webSocketOnlyHint explains a raw upgrade refused by something that is
// not a rafthttp Handler, whose refusals all start "rafthttp:", with a
// status a proxy gives an upgrade it does not forward: Envoy's 403 with
// no body, a 400, 426 or 501 from others. The proxy may forward
// WebSocket upgrades alone, which LayerConfig.WebSocket gets through.
func webSocketOnlyHint(err error) string {
	var status *StatusError
	if !errors.As(err, &status) || strings.HasPrefix(status.Body, "rafthttp:") {
		return ""
	}
	switch status.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusUpgradeRequired, http.StatusNotImplemented:
		return "the refusal is not a rafthttp Handler's: if a proxy between the nodes forwards only WebSocket upgrades, set LayerConfig.WebSocket"
	}
	return ""
}

func (e *UpgradeError) Unwrap() error { return e.Err }

// Timeout reports whether the step failed because its deadline passed, so an
// UpgradeError can be used like a net.Error.
func (e *UpgradeError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}

// StatusError is an HTTP answer other than the one asked for: a refused
// upgrade, or a membership request that failed on the remote node.
type StatusError struct {
	// StatusCode is the HTTP status code, such as 503.
	StatusCode int
	// Body holds the first bytes of the response body, which for a rafthttp
	// Handler is a plain-text reason.
	Body string
}

func (e *StatusError) Error() string {
	text := fmt.Sprintf("got %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		text += ": " + e.Body
	}
	return text
}
