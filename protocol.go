package rafthttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The wire protocol both sides share: the upgrade request a Layer sends,
// the checks a Handler makes of it, and the 101 that switches the
// connection to raft. DESIGN.md describes it; nodes running the original
// package send and accept the same, less the extension headers below.

// DefaultTimeout bounds what waits on a peer when nothing else does: it is
// the Handler's timeout when [HandlerConfig.Timeout] is zero, and a dial
// without a deadline gives its Dial this long to connect.
const DefaultTimeout = 10 * time.Second

const (
	// bodyHeader, on an upgrade request, says how many bytes of raft data
	// its body holds (see early_data.go). Every rafthttp dial sends it, 0
	// when there is no body, which also asks the peer to say whether it
	// takes bodies.
	bodyHeader = "Rafthttp-Body"

	// bodyMaxHeader, on a 101, answers a request that sent bodyHeader: the
	// peer read the body whole, and takes bodies of up to this many bytes.
	bodyMaxHeader = "Rafthttp-Body-Max"

	// clusterIDHeader names the cluster a request is meant for
	// (LayerConfig.ClusterID), and on a 412 the cluster of the Handler
	// that refused it.
	clusterIDHeader = "Rafthttp-Cluster-Id"

	// protocolHeaderPrefix starts every header name this protocol owns.
	protocolHeaderPrefix = "Rafthttp-"
)

// switchingProtocols is the whole 101 answer. It is written by hand after
// hijacking because net/http cannot send a 101 and then hand the socket
// over. Original nodes send the same without the Connection header.
const switchingProtocols = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nConnection: Upgrade\r\n\r\n"

// switchingProtocolsBytes is switchingProtocols ready to write, converted
// once rather than on every upgrade; switchingProtocolsBody is the answer
// to a request that announced early data, which says the body was read and
// how large a body the Handler takes.
var (
	switchingProtocolsBytes = []byte(switchingProtocols)
	switchingProtocolsBody  = []byte(strings.TrimSuffix(switchingProtocols, "\r\n") +
		bodyMaxHeader + ": " + strconv.Itoa(maxEarlyData) + "\r\n\r\n")
)

// aLongTimeAgo is a deadline in the past, set to make blocked I/O return
// at once when whatever waits on it is canceled.
var aLongTimeAgo = time.Unix(1, 0)

// maxErrorBody is how much of a refusal's body an error quotes.
const maxErrorBody = 512

// appendUpgradeRequest appends the request head that asks addr to switch
// the connection to raft, with the header lines in extra (see
// headerLines), announcing body bytes of early data (see bodyHeader); a
// negative body announces nothing, as the original nodes do. It is
// written by hand: the request never varies but for the Host and the
// body's length, and building an http.Request for it costs more than the
// rest of the handshake.
func appendUpgradeRequest(head []byte, path, addr string, extra []byte, body int) []byte {
	head = append(head, "GET "...)
	head = append(head, path...)
	head = append(head, " HTTP/1.1\r\nHost: "...)
	head = append(head, addr...)
	head = append(head, "\r\nUpgrade: raft\r\nConnection: Upgrade\r\n"...)
	head = append(head, extra...)
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

// requestHeader builds what every request of a Layer carries besides the
// protocol's own headers: the user's header, checked by checkUserHeader,
// and the cluster ID, if any.
func requestHeader(user http.Header, clusterID string) http.Header {
	header := user.Clone()
	if header == nil {
		header = http.Header{}
	}
	if clusterID != "" {
		header.Set(clusterIDHeader, clusterID)
	}
	return header
}

// headerLines renders header as request head lines, in a fixed order.
func headerLines(header http.Header) []byte {
	var lines []byte
	for _, name := range slices.Sorted(maps.Keys(header)) {
		for _, value := range header[name] {
			lines = append(lines, name...)
			lines = append(lines, ": "...)
			lines = append(lines, value...)
			lines = append(lines, "\r\n"...)
		}
	}
	return lines
}

// checkUserHeader refuses a header a Layer cannot send on the user's
// behalf: invalid names or values, which would break the request head, and
// the headers the protocol sets itself.
func checkUserHeader(header http.Header) error {
	for name, values := range header {
		if !isToken(name) {
			return fmt.Errorf("rafthttp: LayerConfig.Header: invalid header name %q", name)
		}
		if isProtocolHeader(name) {
			return fmt.Errorf("rafthttp: LayerConfig.Header: %s is set by rafthttp itself", name)
		}
		for _, value := range values {
			if strings.IndexFunc(value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) >= 0 {
				return fmt.Errorf("rafthttp: LayerConfig.Header: the value of %s holds control characters", name)
			}
		}
	}
	return nil
}

// isProtocolHeader reports whether name is a header the protocol owns.
func isProtocolHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Host", "Upgrade", "Connection", "Content-Length", "Transfer-Encoding":
		return true
	}
	return hasPrefixFold(name, protocolHeaderPrefix) || hasPrefixFold(name, webSocketHeaderPrefix)
}

// webSocketHeaderPrefix starts the names of the headers of a WebSocket
// handshake, which a WebSocket dial sets itself.
const webSocketHeaderPrefix = "Sec-WebSocket-"

// hasPrefixFold reports whether s starts with prefix, compared without
// regard to case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isToken reports whether s is a non-empty RFC 9110 token, as a header
// name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// maxClusterID bounds a cluster ID: it travels in every request.
const maxClusterID = 256

// checkClusterIDValue refuses a cluster ID that cannot travel in a header.
func checkClusterIDValue(id string) error {
	if len(id) > maxClusterID {
		return fmt.Errorf("%d bytes: at most %d", len(id), maxClusterID)
	}
	if strings.IndexFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("%q holds control characters", id)
	}
	if strings.TrimSpace(id) != id {
		return fmt.Errorf("%q starts or ends with white space", id)
	}
	return nil
}

// checkClusterID compares the cluster ID a request names with the
// Handler's, if the Handler has one, and returns the reason to refuse it
// with 412, or "".
func checkClusterID(r *http.Request, clusterID string) string {
	if clusterID == "" {
		return ""
	}
	got := r.Header.Values(clusterIDHeader)
	switch {
	case len(got) == 0:
		return fmt.Sprintf("rafthttp: cluster ID mismatch: this node is in cluster %q and the request names none (%s)", clusterID, clusterIDHeader)
	case len(got) > 1 || got[0] != clusterID:
		return fmt.Sprintf("rafthttp: cluster ID mismatch: this node is in cluster %q, the request is for %q", clusterID, strings.Join(got, ", "))
	}
	return ""
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

// checkUpgrade validates an upgrade request and returns the status and
// reason to refuse it with, or 0 if it may proceed.
func checkUpgrade(r *http.Request) (int, string) {
	upgrade := r.Header.Values("Upgrade")
	if len(upgrade) == 0 {
		return http.StatusUpgradeRequired, "rafthttp: this endpoint only serves raft connections: send Upgrade: raft"
	}
	if !r.ProtoAtLeast(1, 1) {
		// RFC 9110 section 7.8: a server must ignore Upgrade in an
		// HTTP/1.0 request, whose intermediaries may have forwarded it
		// without understanding it.
		return http.StatusUpgradeRequired, fmt.Sprintf("rafthttp: an upgrade needs HTTP/1.1: the Upgrade header of this %s request is ignored", r.Proto)
	}
	if !headerHasToken(upgrade, "raft") {
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: unsupported upgrade %q: only raft, and websocket with the raft subprotocol, are served here", strings.Join(upgrade, ", "))
	}
	return checkEarlyData(r)
}

// isWebSocketUpgrade reports whether r asks for the WebSocket form of the
// upgrade: Upgrade names websocket and not raft, which an original node
// or a raw-mode Layer would send, and wins where a request names both.
func isWebSocketUpgrade(r *http.Request) bool {
	upgrade := r.Header.Values("Upgrade")
	return r.ProtoAtLeast(1, 1) && headerHasToken(upgrade, webSocketUpgrade) && !headerHasToken(upgrade, "raft")
}

// headerHasToken reports whether any of the comma-separated values holds
// token, compared case-insensitively as RFC 9110 section 7.8 requires for
// protocol names.
func headerHasToken(values []string, token string) bool {
	for _, value := range values {
		for part := range strings.SplitSeq(value, ",") {
			// A protocol may carry a version ("raft/1"); the name is what
			// the original peers send and what we match. Only spaces and
			// tabs separate list elements (RFC 9110 section 5.6.1): "raft"
			// next to a Unicode space such as U+00A0 is another name.
			name, _, _ := strings.Cut(strings.Trim(part, " \t"), "/")
			if strings.EqualFold(name, token) {
				return true
			}
		}
	}
	return false
}

// answerReader is what the bufio.Reader that parses a peer's answer reads
// from: the connection, with the first error it returned kept. net/http
// reports a header line cut short by a deadline or a reset as a malformed
// one; the kept error says what really happened.
type answerReader struct {
	conn net.Conn
	err  error
}

func (r *answerReader) Read(p []byte) (int, error) {
	n, err := r.conn.Read(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// newAnswerReader returns the reader to parse conn's answer with. Its
// buffer may read past the 101 if the peer wrote more; bufferedConn keeps
// those bytes for raft.
func newAnswerReader(conn net.Conn) (*bufio.Reader, *answerReader) {
	source := &answerReader{conn: conn}
	return bufio.NewReader(source), source
}

// readUpgradeResponse reads the answer to an upgrade request and checks
// that it is a 101 to raft, leaving any bytes behind it buffered in
// reader. It returns what the 101's bodyMaxHeader says the peer takes (0
// without one), or the failed step and its error: for a refusal, a
// *StatusError.
func readUpgradeResponse(reader *bufio.Reader, source *answerReader, clusterID string) (bodyMax int, step UpgradeStep, err error) {
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		// EOF needs no saying: net/http reports it as such.
		if source.err != nil && source.err != io.EOF && !errors.Is(err, source.err) {
			err = fmt.Errorf("%w (%v)", source.err, err)
		}
		return 0, StepReadResponse, err
	}
	if response.StatusCode != http.StatusSwitchingProtocols {
		return 0, StepStatus, refusal(response, clusterID)
	}
	if !headerHasToken(response.Header.Values("Upgrade"), "raft") {
		return 0, StepUpgradeHeader, fmt.Errorf("101 without Upgrade: raft (got %q)", response.Header.Get("Upgrade"))
	}
	bodyMax, _ = parseBodyMax(response.Header.Get(bodyMaxHeader))
	return bodyMax, "", nil
}

// refusal turns an answer that refuses a request into an error: a
// *StatusError quoting the start of its body, which for a rafthttp Handler
// is a plain-text reason, and for a 412 from a Handler in another cluster
// a *ClusterIDError around it, given this node's clusterID. It does not
// close the body.
func refusal(response *http.Response, clusterID string) error {
	body, _ := io.ReadAll(io.LimitReader(response.Body, maxErrorBody))
	statusErr := &StatusError{StatusCode: response.StatusCode, Body: strings.TrimSpace(string(body))}
	if response.StatusCode == http.StatusPreconditionFailed {
		return &ClusterIDError{Local: clusterID, Remote: response.Header.Get(clusterIDHeader), Status: statusErr}
	}
	return statusErr
}

// parseBodyMax parses a byte count in an early-data header: decimal
// digits, at most nine of them so that no int overflows, between optional
// white space.
func parseBodyMax(value string) (int, bool) {
	value = strings.Trim(value, " \t")
	if len(value) == 0 || len(value) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(value) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
