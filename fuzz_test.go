package rafthttp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// Fuzz targets for the code that reads what a peer sends: the Handler's
// side of the upgrade and of join and leave, the dialing side of the
// upgrade, and the membership client. Each target starts its servers once
// and sends every input through real loopback sockets, so that what is
// fuzzed is the code raft runs, net/http's parsing included. Beyond "no
// panic", each input is checked against what must hold whatever the bytes,
// judged by an independent reading of them (http.ReadRequest,
// http.ReadResponse, raftmembership.CheckID and CheckAddress) rather than
// by the code under test. Run as tests, on the seed corpus, the targets
// also check that they left no goroutine or file descriptor behind.
//
// The seed corpus is in testdata/fuzz; RELIABILITY.md says how to fuzz
// for longer.

// checkNoLeaks counts the process's goroutines and file descriptors, and
// when tb's cleanups have run (it must be called before anything else
// registers one, so that its own runs last) waits, bounded by testWait,
// for both to be back to at most those counts. Descriptors are counted
// where /proc/self/fd lists them. It checks the runs of the seed corpus
// (go test), which run every input in this process: under -fuzz the
// inputs run in worker processes, and this one starts goroutines of the
// fuzzing engine's own.
func checkNoLeaks(tb testing.TB) {
	tb.Helper()
	if fuzzing := flag.Lookup("test.fuzz"); fuzzing != nil && fuzzing.Value.String() != "" {
		return
	}
	// The first use of the network opens the poller's descriptors, which
	// live as long as the process: open them before counting.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	listener.Close()
	goroutines := runtime.NumGoroutine()
	descriptors, countable := openDescriptors()
	tb.Cleanup(func() {
		deadline := time.Now().Add(testWait)
		for {
			nowGoroutines := runtime.NumGoroutine()
			nowDescriptors, _ := openDescriptors()
			if nowGoroutines <= goroutines && (!countable || nowDescriptors <= descriptors) {
				return
			}
			if time.Now().After(deadline) {
				stacks := make([]byte, 1<<20)
				stacks = stacks[:runtime.Stack(stacks, true)]
				tb.Errorf("left behind after %v: %d goroutines (%d before), %d file descriptors (%d before); goroutines:\n%s",
					testWait, nowGoroutines, goroutines, nowDescriptors, descriptors, stacks)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// openDescriptors counts the process's open file descriptors, if the
// system says.
func openDescriptors() (int, bool) {
	entries, err := os.ReadDir("/proc/self/fd")
	return len(entries), err == nil
}

// fuzzLogger is the logger of everything the targets build: the inputs
// are many and mostly refused, and their logs would only fill memory.
var fuzzLogger = hclog.NewNullLogger()

// lineLog collects what a server logs, for each input to find empty: with
// no panic to recover, no superfluous WriteHeader and no write on a
// hijacked connection, net/http has nothing to say about a Handler.
type lineLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// take returns what was logged since the last call.
func (l *lineLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	logged := l.buf.String()
	l.buf.Reset()
	return logged
}

// The serving side.

// fuzzServer is a loopback HTTP server with a Handler mounted at raftPath
// and its Layer, shared by the inputs of a target (see fuzzServers). A
// consumer of Requests records each change that reaches it and answers it
// with the outcome the input chose (success unless told otherwise), and
// every connection the Layer accepts waits on accepted for the input that
// asked for it.
type fuzzServer struct {
	*httptest.Server
	layer    *rafthttp.Layer
	accepted chan net.Conn
	// errors is what net/http logged.
	errors *lineLog

	// outcome answers the changes that reach Requests.
	outcome atomic.Pointer[error]
	// barrier takes a channel that the consumer closes once it has
	// recorded every change it received before.
	barrier chan chan struct{}

	mu      sync.Mutex
	changes []fuzzChange

	// stopAccepting, closed, ends the goroutine that takes connections
	// from Accept, which closes accepting when it returns; consumed is
	// closed when the consumer of Requests returns.
	stopAccepting, accepting, consumed chan struct{}
}

// fuzzChange is a join or leave as it reached Requests, or as an input
// asks for it.
type fuzzChange struct {
	kind    raftmembership.ChangeRequestKind
	id      raft.ServerID
	address raft.ServerAddress
}

// startFuzzServer starts a fuzzServer, which stop stops.
func startFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{Logger: fuzzLogger})
	mux := http.NewServeMux()
	mux.Handle(raftPath, handler)
	s := &fuzzServer{
		Server: httptest.NewUnstartedServer(mux), accepted: make(chan net.Conn, 1), errors: &lineLog{}, barrier: make(chan chan struct{}),
		stopAccepting: make(chan struct{}), accepting: make(chan struct{}), consumed: make(chan struct{}),
	}
	s.Config.ErrorLog = log.New(s.errors, "", 0)
	s.Start()
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: s.Listener.Addr(), Handler: handler, Logger: fuzzLogger,
	})
	if err != nil {
		s.Close()
		require.NoError(tb, err)
	}
	s.layer = layer

	go func() {
		defer close(s.consumed)
		for {
			select {
			case request, ok := <-handler.Requests():
				if !ok {
					return
				}
				if request.Kind() == raftmembership.MembersRequest {
					// A view changes nothing: it is no change to check.
					request.DoneMembers(&raftmembership.Membership{Servers: []raftmembership.Server{}})
					continue
				}
				s.mu.Lock()
				s.changes = append(s.changes, fuzzChange{request.Kind(), request.ID(), request.Address()})
				s.mu.Unlock()
				var outcome error
				if chosen := s.outcome.Load(); chosen != nil {
					outcome = *chosen
				}
				request.Done(outcome)
			case done := <-s.barrier:
				close(done)
			}
		}
	}()
	go func() {
		defer close(s.accepting)
		for {
			conn, err := layer.Accept()
			if err != nil {
				return
			}
			select {
			case s.accepted <- conn:
			case <-s.stopAccepting:
				conn.Close()
				return
			}
		}
	}()
	return s
}

// stop stops the server: the Layer (and with it the Handler) first, so
// that no request is left waiting, then the HTTP server, whose Close
// waits for the requests it is serving. Unless quiet, a connection Accept
// returned that no input took fails tb.
func (s *fuzzServer) stop(tb testing.TB, quiet bool) {
	tb.Helper()
	close(s.stopAccepting)
	assert.NoError(tb, s.layer.Close())
	<-s.accepting
	<-s.consumed
	s.Close()
	select {
	case conn := <-s.accepted:
		conn.Close()
		if !quiet {
			tb.Errorf("Accept returned a connection from %s that no input took", conn.RemoteAddr())
		}
	default:
	}
}

// fuzzServers gives the inputs of a target one fuzzServer, and a new one
// after an input that failed: the fuzzer goes on running inputs after a
// failure, to minimize the failing one, and the old server may still be
// serving the requests of the input that failed, which would fail one of
// those.
type fuzzServers struct {
	current *fuzzServer
	// failed is whether the last input failed, and last is that input.
	failed bool
	last   []byte
}

// startFuzzServers starts the target's first fuzzServer; the last one
// stops when f ends.
func startFuzzServers(f *testing.F) *fuzzServers {
	servers := &fuzzServers{current: startFuzzServer(f)}
	f.Cleanup(func() { servers.current.stop(f, false) })
	return servers
}

// takeChanges returns the changes that reached Requests since the last
// call. Call it once the server has ended every request that may have
// sent one: a join refused with 503 because its client went away may have
// reached Requests without waiting for the consumer to record it, which
// the barrier waits for.
func (s *fuzzServer) takeChanges(t *testing.T) []fuzzChange {
	t.Helper()
	recorded := make(chan struct{})
	select {
	case s.barrier <- recorded:
	case <-time.After(testWait):
		t.Fatalf("the consumer of Requests took no barrier in %v", testWait)
	}
	receive(t, (<-chan struct{})(recorded), "the consumer of Requests to pass the barrier")
	s.mu.Lock()
	defer s.mu.Unlock()
	changes := s.changes
	s.changes = nil
	return changes
}

// begin returns the server for input: after an input that passed, the
// same one, which that input must have left clean (no change in
// Requests, no connection waiting to be taken from Accept, which would be
// one the Handler delivered without its client seeing a 101, nothing
// logged); after one that failed, a new one.
func (s *fuzzServers) begin(t *testing.T, input []byte) *fuzzServer {
	t.Helper()
	failed, last := s.failed, s.last
	s.failed, s.last = true, input
	t.Cleanup(func() { s.failed = t.Failed() })
	server := s.current
	if failed {
		server.stop(t, true)
		s.current = startFuzzServer(t)
		return s.current
	}
	require.Empty(t, server.takeChanges(t), "changes that reached Requests after the last input, %q, ended", last)
	select {
	case stray := <-server.accepted:
		stray.Close()
		t.Fatalf("Accept returned a connection from %s, whose client was sent no 101, after the last input, %q", stray.RemoteAddr(), last)
	default:
	}
	require.Empty(t, server.errors.take(), "what the server logged after the last input, %q, ended", last)
	return server
}

// requireQuiet fails the input if net/http logged anything while serving
// it.
func (s *fuzzServer) requireQuiet(t *testing.T, input []byte) {
	t.Helper()
	if logged := s.errors.take(); logged != "" {
		t.Fatalf("the server logged, serving %q:\n%s", input, logged)
	}
}

// handlerRefusal reports whether an answer is the Handler's refusal rather
// than net/http's or the ServeMux's: the Handler explains itself in a
// plain-text body that starts with the package name.
func handlerRefusal(status int, body []byte) bool {
	return status >= 400 && bytes.HasPrefix(body, []byte("rafthttp: "))
}

// FuzzHandlerRequest writes arbitrary bytes to a live Handler, as the
// requests of one connection: upgrades with and without early data, joins
// and leaves, and anything else, pipelined as a client may. The client
// writes them all and closes its side, then reads every answer. Whatever
// the bytes:
//
//   - a WebSocket 101 answers only a request that offered the raft
//     subprotocol, selects it, and carries the accept value of the
//     request's key; a plainly valid WebSocket upgrade
//     (checkWebSocketRequest) is not refused;
//   - a raw 101 answers only a request that is a valid upgrade (GET of
//     raftPath, HTTP/1.1 or later, one Host, an Upgrade naming raft, and
//     a body only if Rafthttp-Body announces it with its exact length, at
//     most MaxEarlyData bytes, and it all arrived); the 101 says
//     Rafthttp-Body-Max if and only if the request said Rafthttp-Body; the
//     connection Accept returns is that client's and yields exactly the
//     bytes it sent behind the request head, body first; and the client
//     reads nothing after the 101 but the end of the stream;
//   - the Handler refuses (but for 503, which only says it is busy) only
//     a request that is not valid: an upgrade, or a join or leave whose
//     query is not, as checked by membershipChange;
//   - a join or leave answered 200 is valid, and every change that
//     reaches Requests is one of the valid ones the input sent; a GET
//     answered 200 had no Upgrade header and gets the membership view,
//     JSON;
//   - the server answers or closes within testWait, and net/http logs
//     nothing.
func FuzzHandlerRequest(f *testing.F) {
	checkNoLeaks(f)
	servers := startFuzzServers(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		server := servers.begin(t, input)
		server.serveRaw(t, input)
		server.requireQuiet(t, input)
	})
}

// serveRaw sends input on a new connection, half-closes it, and checks
// each answer against the request it answers, as FuzzHandlerRequest says.
func (s *fuzzServer) serveRaw(t *testing.T, input []byte) {
	conn, err := net.DialTimeout("tcp", s.Listener.Addr().String(), testWait)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(testWait)))
	// Written while the answers are read: a server that stops reading to
	// answer would otherwise block a long input's write for good.
	written := make(chan struct{})
	go func() {
		defer close(written)
		if _, err := conn.Write(input); err == nil {
			conn.(*net.TCPConn).CloseWrite()
		}
	}()
	defer func() {
		conn.Close()
		<-written
	}()

	answers := bufio.NewReader(conn)
	var valid []fuzzChange // the joins and leaves of the input that are valid
	answeredOK := 0        // how many of those were answered 200
	lastMethod := ""
	for unread := input; ; {
		if lastMethod == http.MethodPost {
			// As net/http's server does after a POST, for old clients
			// (RFC 9112 section 2.2): it skips up to four CR or LF bytes
			// before the next request line.
			for i := 0; i < 4 && len(unread) > 0 && (unread[0] == '\r' || unread[0] == '\n'); i++ {
				unread = unread[1:]
			}
		}
		var sent inputRequest
		sent, unread = readInputRequest(unread)
		request, parseErr, body, bodyErr := sent.request, sent.parseErr, sent.body, sent.bodyErr
		response, err := readFinalResponse(answers, request)
		if err != nil {
			// The server closed the connection (or reset it, having left
			// some of the input unread): it may, whatever it was sent.
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the server neither answered nor closed the connection within %v", testWait)
			break
		}
		answerBody, err := io.ReadAll(response.Body)
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the server did not finish its answer within %v", testWait)
		if parseErr != nil {
			require.NotEqual(t, http.StatusSwitchingProtocols, response.StatusCode, "101 to a request net/http cannot parse (%v): %q", parseErr, input)
			break
		}
		lastMethod = request.Method
		upgradeProblem := checkUpgradeRequest(sent)
		change, changeProblem := membershipChange(request)
		if changeProblem == "" {
			valid = append(valid, change)
		}
		webSocketProblem := checkWebSocketRequest(sent, unread)
		switch {
		case response.StatusCode == http.StatusSwitchingProtocols && hasToken(response.Header.Values("Upgrade"), "websocket"):
			s.checkWebSocketUpgraded(t, conn, answers, sent, response)
			s.checkChanges(t, valid, answeredOK)
			return
		case response.StatusCode == http.StatusSwitchingProtocols:
			require.Empty(t, upgradeProblem, "101 to an invalid upgrade request: %q", input)
			s.checkUpgraded(t, conn, answers, request, response, append(body, unread...))
			s.checkChanges(t, valid, answeredOK)
			return
		case response.StatusCode == http.StatusOK && request.Method == http.MethodGet:
			// The membership view: only for a GET with no Upgrade header.
			_, upgrade := request.Header["Upgrade"]
			require.False(t, upgrade, "200 to a GET with an Upgrade header: %q", input)
			require.True(t, json.Valid(answerBody), "a membership view that is not JSON: %q", answerBody)
		case response.StatusCode == http.StatusOK:
			require.Empty(t, changeProblem, "200 to an invalid %s request: %q", request.Method, input)
			answeredOK++
		case response.StatusCode == http.StatusServiceUnavailable:
			// Busy, or a join that met the client's closing: valid or not.
		case handlerRefusal(response.StatusCode, answerBody) && request.Method == http.MethodGet:
			require.NotEmpty(t, upgradeProblem, "the Handler refused a valid upgrade request with %d %q: %q", response.StatusCode, answerBody, input)
			require.NotEmpty(t, webSocketProblem, "the Handler refused a valid WebSocket upgrade request with %d %q: %q", response.StatusCode, answerBody, input)
		case handlerRefusal(response.StatusCode, answerBody) && (request.Method == http.MethodPost || request.Method == http.MethodDelete):
			require.NotEmpty(t, changeProblem, "the Handler refused a valid %s request with %d %q: %q", request.Method, response.StatusCode, answerBody, input)
			require.Equal(t, http.StatusBadRequest, response.StatusCode, "an invalid %s request (%s): %q", request.Method, changeProblem, input)
		}
		if response.Close || bodyErr != nil {
			break
		}
	}
	// Whatever the server did not answer, it must end the connection on.
	_, err = io.Copy(io.Discard, answers)
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the server did not close the connection within %v", testWait)
	s.checkChanges(t, valid, answeredOK)
}

// checkUpgraded checks what follows a 101: the 101 itself, the connection
// Accept returns, which must be this client's and yield exactly rest, and
// that the client then reads only the end of the stream.
func (s *fuzzServer) checkUpgraded(t *testing.T, conn net.Conn, answers *bufio.Reader, request *http.Request, response *http.Response, rest []byte) {
	t.Helper()
	assert.Equal(t, "raft", response.Header.Get("Upgrade"))
	assert.Equal(t, "Upgrade", response.Header.Get("Connection"))
	_, announced := request.Header["Rafthttp-Body"]
	if announced {
		assert.Equal(t, []string{strconv.Itoa(maxEarlyData)}, response.Header["Rafthttp-Body-Max"], "the 101 to a request with Rafthttp-Body")
	} else {
		assert.NotContains(t, response.Header, "Rafthttp-Body-Max", "the 101 to a request without Rafthttp-Body")
	}
	accepted := receive(t, s.accepted, "Accept to return the upgraded connection")
	defer accepted.Close()
	require.Equal(t, conn.LocalAddr().String(), accepted.RemoteAddr().String(), "Accept returned another client's connection")
	require.NoError(t, accepted.SetDeadline(time.Now().Add(testWait)))
	got, err := io.ReadAll(accepted)
	require.NoError(t, err, "reading the upgraded connection to the client's close")
	requireSameBytes(t, string(rest), string(got), "what the upgraded connection yields")
	accepted.Close()
	tail, err := io.ReadAll(answers)
	require.NoError(t, err, "reading the client's end to the close")
	require.Empty(t, tail, "bytes the client read after the 101")
}

// checkWebSocketUpgraded checks what follows a WebSocket 101: the request
// offered the raft subprotocol and the 101 selects it, with the accept
// value RFC 6455 derives from the request's key; the connection Accept
// returns is this client's; and once the server closes it, the client
// reads the end of the stream within testWait.
func (s *fuzzServer) checkWebSocketUpgraded(t *testing.T, conn net.Conn, answers *bufio.Reader, sent inputRequest, response *http.Response) {
	t.Helper()
	request := sent.request
	require.True(t, hasToken(request.Header.Values("Upgrade"), "websocket"), "a WebSocket 101 to a request without Upgrade: websocket")
	require.Contains(t, strings.Split(request.Header.Get("Sec-WebSocket-Protocol"), ","), "raft", "a WebSocket 101 to a request that did not offer raft")
	assert.Equal(t, "raft", response.Header.Get("Sec-WebSocket-Protocol"), "the subprotocol the 101 selects")
	assert.Equal(t, acceptKey(request.Header.Get("Sec-WebSocket-Key")), response.Header.Get("Sec-WebSocket-Accept"))
	assert.Empty(t, response.Header.Values("Sec-WebSocket-Extensions"))
	accepted := receive(t, s.accepted, "Accept to return the upgraded connection")
	require.Equal(t, conn.LocalAddr().String(), accepted.RemoteAddr().String(), "Accept returned another client's connection")
	accepted.Close()
	_, err := io.Copy(io.Discard, answers)
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the client's end did not close within %v", testWait)
}

// checkWebSocketRequest says why a request is not plainly a valid
// WebSocket upgrade that a Handler must serve, or returns "": RFC 6455's
// handshake with the raft subprotocol and nothing behind it (rest), in
// its plainest form. A request it finds a problem with may still be
// served; one it finds none with must be.
func checkWebSocketRequest(sent inputRequest, rest []byte) string {
	if problem := checkUpgradeTarget(sent); problem != "" {
		return problem
	}
	header := sent.request.Header
	switch {
	case len(header["Upgrade"]) != 1 || !strings.EqualFold(header.Get("Upgrade"), "websocket"):
		return "not Upgrade: websocket alone"
	case !plainTokenList(header["Connection"], "upgrade"):
		return "no plain Connection: upgrade"
	case len(header["Sec-Websocket-Version"]) != 1 || header.Get("Sec-Websocket-Version") != "13":
		return "not Sec-WebSocket-Version: 13 alone"
	case len(header["Sec-Websocket-Key"]) != 1 || !validWebSocketKey(header.Get("Sec-Websocket-Key")):
		return "not one key of 16 bytes in base64"
	case len(header["Sec-Websocket-Protocol"]) != 1 || !plainTokenList(header["Sec-Websocket-Protocol"], "raft"):
		return "raft not plainly offered"
	case len(header["Origin"]) != 0:
		return "an Origin"
	case sent.request.ContentLength != 0 || len(sent.request.TransferEncoding) > 0 || sent.bodyErr != nil:
		return "a body"
	case len(rest) > 0:
		return "bytes behind the request"
	}
	return ""
}

// plainTokenList reports whether values are comma-separated lists of
// tokens, with spaces or tabs around them and nothing else, of which one
// is want (compared without regard to case).
func plainTokenList(values []string, want string) bool {
	found := false
	for _, value := range values {
		for element := range strings.SplitSeq(value, ",") {
			element = strings.Trim(element, " \t")
			if element == "" || strings.IndexFunc(element, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
				return false
			}
			found = found || strings.EqualFold(element, want)
		}
	}
	return found
}

func isTokenChar(r rune) bool {
	return r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// validWebSocketKey reports whether key is the base64 of 16 bytes.
func validWebSocketKey(key string) bool {
	decoded, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(decoded) == 16
}

// checkChanges checks the changes that reached Requests during an input:
// each is one of the valid ones the input sent, and there is one at least
// for each answered 200.
func (s *fuzzServer) checkChanges(t *testing.T, valid []fuzzChange, answeredOK int) {
	t.Helper()
	changes := s.takeChanges(t)
	require.GreaterOrEqual(t, len(changes), answeredOK, "changes that reached Requests, for %d answered 200", answeredOK)
	left := append([]fuzzChange(nil), valid...)
	for _, change := range changes {
		i := slices.Index(left, change)
		require.GreaterOrEqual(t, i, 0, "%+v reached Requests, but the input's valid changes are %+v", change, valid)
		left = append(left[:i], left[i+1:]...)
	}
}

// readFinalResponse reads the answer to request (nil: a GET), passing
// over informational answers other than 101, as a client does.
func readFinalResponse(reader *bufio.Reader, request *http.Request) (*http.Response, error) {
	for {
		response, err := http.ReadResponse(reader, request)
		if err != nil {
			return nil, err
		}
		if response.StatusCode/100 != 1 || response.StatusCode == http.StatusSwitchingProtocols {
			return response, nil
		}
	}
}

// inputRequest is one request of an input as http.ReadRequest reads it,
// with its body read whole, and how many Host lines its head has, which
// ReadRequest does not keep.
type inputRequest struct {
	request  *http.Request
	parseErr error
	body     []byte
	bodyErr  error
	hosts    int
}

// readInputRequest reads the first request of input and returns it and
// the bytes after it (after its body, if it has one that it all holds).
func readInputRequest(input []byte) (inputRequest, []byte) {
	source := bytes.NewReader(input)
	reader := bufio.NewReader(source)
	var sent inputRequest
	sent.request, sent.parseErr = http.ReadRequest(reader)
	if sent.parseErr != nil {
		return sent, nil
	}
	sent.body, sent.bodyErr = io.ReadAll(sent.request.Body)
	// The head again, for its Host lines: it parsed once, so it does again.
	head := textproto.NewReader(bufio.NewReader(bytes.NewReader(input)))
	head.ReadLine()
	header, _ := head.ReadMIMEHeader()
	sent.hosts = len(header["Host"])
	return sent, input[len(input)-source.Len()-reader.Buffered():]
}

// checkUpgradeTarget says why a request cannot be an upgrade of either
// form, whatever its Upgrade header, or returns "".
func checkUpgradeTarget(sent inputRequest) string {
	request := sent.request
	switch {
	case request.Method != http.MethodGet:
		return "not a GET"
	case request.ProtoMajor != 1 || request.ProtoMinor < 1:
		return "not HTTP/1.1"
	case request.URL.Path != raftPath:
		return "not the Handler's path"
	case sent.hosts != 1:
		return "not one Host"
	}
	return ""
}

// checkUpgradeRequest says why a request is not a valid upgrade to raft,
// or returns "": it is the protocol of DESIGN.md, read without the
// Handler's code.
func checkUpgradeRequest(sent inputRequest) string {
	if problem := checkUpgradeTarget(sent); problem != "" {
		return problem
	}
	request := sent.request
	switch {
	case !hasToken(request.Header.Values("Upgrade"), "raft"):
		return "no Upgrade: raft"
	case sent.bodyErr != nil:
		return "the body is cut short"
	}
	announced, ok := request.Header["Rafthttp-Body"]
	if !ok {
		if request.ContentLength != 0 {
			return "a body without Rafthttp-Body"
		}
		return ""
	}
	if len(announced) != 1 {
		return "more than one Rafthttp-Body"
	}
	length, ok := byteCount(announced[0])
	switch {
	case !ok:
		return "Rafthttp-Body is not a byte count"
	case int64(length) != request.ContentLength:
		return "Rafthttp-Body is not the body's length"
	case length > maxEarlyData:
		return "more early data than a Handler takes"
	}
	return ""
}

// hasToken reports whether the comma-separated lists in values name
// protocol, with or without a version, as RFC 9110 section 7.8 has it:
// elements separated by commas and optional white space (spaces and tabs,
// section 5.6.1), protocol names compared without regard to ASCII case.
func hasToken(values []string, protocol string) bool {
	for _, value := range values {
		for _, element := range strings.Split(value, ",") {
			name, _, _ := strings.Cut(strings.Trim(element, " \t"), "/")
			if len(name) == len(protocol) && asciiLower(name) == protocol {
				return true
			}
		}
	}
	return false
}

func asciiLower(s string) string {
	lower := []byte(s)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	return string(lower)
}

// byteCount parses the value of Rafthttp-Body or Rafthttp-Body-Max: one
// to nine decimal digits, between optional spaces and tabs.
func byteCount(value string) (int, bool) {
	value = strings.Trim(value, " \t")
	if len(value) == 0 || len(value) > 9 || strings.Trim(value, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(value)
	return n, err == nil
}

// membershipChange reads request as a join (POST) or leave (DELETE) of
// the Handler's path and returns the change it asks for, or why it is not
// a valid one: the query of DESIGN.md, whose values raftmembership.CheckID
// and CheckAddress judge.
func membershipChange(request *http.Request) (fuzzChange, string) {
	var change fuzzChange
	switch request.Method {
	case http.MethodPost:
		change.kind = raftmembership.JoinRequest
	case http.MethodDelete:
		change.kind = raftmembership.LeaveRequest
	default:
		return change, "not a POST or DELETE"
	}
	if request.URL.Path != raftPath {
		return change, "not the Handler's path"
	}
	query, err := url.ParseQuery(request.URL.RawQuery)
	if err != nil {
		return change, "the query does not parse: " + err.Error()
	}
	id, problem := onlyValue(query, "id")
	if problem != "" {
		return change, problem
	}
	change.id = raft.ServerID(id)
	if err := raftmembership.CheckID(change.id); err != nil {
		return change, err.Error()
	}
	if change.kind == raftmembership.LeaveRequest {
		return change, ""
	}
	address, problem := onlyValue(query, "address")
	if problem != "" {
		return change, problem
	}
	change.address = raft.ServerAddress(address)
	if err := raftmembership.CheckAddress(change.address); err != nil {
		return change, err.Error()
	}
	if voter, given := query["voter"]; given {
		if len(voter) != 1 {
			return change, "more than one voter"
		}
		isVoter, err := strconv.ParseBool(voter[0])
		if err != nil {
			return change, "voter is not true or false"
		}
		if !isVoter {
			change.kind = raftmembership.JoinNonvoterRequest
		}
	}
	return change, ""
}

// onlyValue returns the one non-empty value of name in query, or why
// there is none.
func onlyValue(query url.Values, name string) (string, string) {
	values := query[name]
	switch {
	case len(values) != 1:
		return "", fmt.Sprintf("%d values of %s", len(values), name)
	case values[0] == "":
		return "", "an empty " + name
	}
	return values[0], ""
}

// fuzzLeader is the leader the consumer names when an input chooses
// ErrDifferentLeader.
const fuzzLeader = "10.0.0.1:8080"

// fuzzOutcomes are what the consumer of Requests may answer a valid join
// or leave with, and the status the Handler must turn each into.
var fuzzOutcomes = []struct {
	err    error
	status int
}{
	{nil, http.StatusOK},
	{raftmembership.NewErrDifferentLeader(fuzzLeader), http.StatusTemporaryRedirect},
	{&raftmembership.ErrUnknownLeader{}, http.StatusServiceUnavailable},
	{&raftmembership.ErrAddressInUse{Address: "10.0.0.9:8080", Member: "other"}, http.StatusConflict},
	{&raftmembership.ErrUnreachable{Address: "10.0.0.9:8080", Err: &rafthttp.StatusError{StatusCode: http.StatusForbidden}}, http.StatusForbidden},
	{errors.New("fuzz: the consumer failed"), http.StatusInternalServerError},
}

// maxFuzzQuery bounds the queries FuzzMembershipQuery sends: far above
// what the query's values may be (MaxIDLength, MaxAddressLength), far
// below the request head net/http reads (http.DefaultMaxHeaderBytes),
// which answers a longer one itself.
const maxFuzzQuery = 64 << 10

// FuzzMembershipQuery sends a join (POST) or leave (DELETE) with an
// arbitrary query to a live Handler, whose consumer of Requests answers
// with the outcome the input chooses. Whatever the query:
//
//   - a query that membershipChange finds invalid is answered 400 and
//     nothing reaches Requests;
//   - a valid one reaches Requests exactly once, as the change it asks
//     for, and is answered with the status for the outcome; a redirect
//     names the leader, the same path and the same query values;
//   - the change a valid query asks for, sent by a Layer (JoinContext,
//     JoinNonvoterContext or LeaveContext), reaches Requests the same.
//
// Bytes that would end the request line (space, CR, LF) are left to
// FuzzHandlerRequest: here the request stays one request line and one
// Host header, so that only the query decides the answer. So are queries
// longer than maxFuzzQuery.
func FuzzMembershipQuery(f *testing.F) {
	checkNoLeaks(f)
	servers := startFuzzServers(f)
	f.Fuzz(func(t *testing.T, leave bool, query string, outcome uint8) {
		if strings.ContainsAny(query, " \r\n") || len(query) > maxFuzzQuery {
			return
		}
		server := servers.begin(t, []byte(query))
		method := http.MethodPost
		if leave {
			method = http.MethodDelete
		}
		chosen := fuzzOutcomes[int(outcome)%len(fuzzOutcomes)]
		server.outcome.Store(&chosen.err)
		defer server.outcome.Store(nil)
		server.sendQuery(t, method, query, chosen.status)
		server.requireQuiet(t, []byte(query))
	})
}

// sendQuery sends the join or leave with query and checks its answer, as
// FuzzMembershipQuery says, given the status of the chosen outcome.
func (s *fuzzServer) sendQuery(t *testing.T, method, query string, status int) {
	head := requestHead(method, raftPath+"?"+query, "raft.test")
	request, parseErr := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	conn, err := net.DialTimeout("tcp", s.Listener.Addr().String(), testWait)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testWait)))
	write(t, conn, head)
	response, err := readFinalResponse(bufio.NewReader(conn), request)
	var answerBody []byte
	if err == nil {
		answerBody, err = io.ReadAll(response.Body)
	}
	changes := s.takeChanges(t)
	if parseErr != nil {
		// net/http refuses a request line it cannot parse itself, and
		// closes the connection with the rest of the head unread, which
		// may reset it before its answer is read.
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "waiting for the answer to %s %q", method, query)
		if response != nil {
			assert.Equal(t, http.StatusBadRequest, response.StatusCode, "net/http's answer to a query it cannot parse (%v)", parseErr)
		}
		require.Empty(t, changes, "changes that reached Requests for a query net/http cannot parse")
		return
	}
	require.NoError(t, err, "reading the answer to %s %q", method, query)
	change, problem := membershipChange(request)
	if problem != "" {
		require.Equal(t, http.StatusBadRequest, response.StatusCode, "the answer to %s %q (%s): %q", method, query, problem, answerBody)
		require.Empty(t, changes, "changes that reached Requests for an invalid query (%s)", problem)
		return
	}
	require.Equal(t, status, response.StatusCode, "the answer to %s %q: %q", method, query, answerBody)
	require.Equal(t, []fuzzChange{change}, changes, "the changes that reached Requests")
	if status == http.StatusTemporaryRedirect {
		location, err := request.URL.Parse(response.Header.Get("Location"))
		require.NoError(t, err, "the redirect's Location")
		assert.Equal(t, fuzzLeader, location.Host, "the redirect's host")
		assert.Equal(t, raftPath, location.Path, "the redirect's path")
		want, _ := url.ParseQuery(request.URL.RawQuery)
		got, err := url.ParseQuery(location.RawQuery)
		assert.NoError(t, err, "the redirect's query %q", location.RawQuery)
		assert.Equal(t, want, got, "the redirect's query values, from Location %q", response.Header.Get("Location"))
	}

	s.outcome.Store(nil)
	s.sendChange(t, change)
	require.Equal(t, []fuzzChange{change}, s.takeChanges(t), "the change sent by a Layer, as it reached Requests")
}

// sendChange sends change as a Layer advertising change.address does.
func (s *fuzzServer) sendChange(t *testing.T, change fuzzChange) {
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: fuzzAddr(change.address), Handler: rafthttp.NewHandlerWithLogger(fuzzLogger), Logger: fuzzLogger,
	})
	require.NoError(t, err)
	defer layer.Close()
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	defer cancel()
	target := raft.ServerAddress(s.Listener.Addr().String())
	switch change.kind {
	case raftmembership.JoinRequest:
		err = layer.JoinContext(ctx, change.id, target)
	case raftmembership.JoinNonvoterRequest:
		err = layer.JoinNonvoterContext(ctx, change.id, target)
	default:
		err = layer.LeaveContext(ctx, change.id, target)
	}
	require.NoError(t, err, "%s %q by a Layer", change.kind, change.id)
}

// fuzzAddr is an advertised address as a net.Addr; a Layer joins with
// its String.
type fuzzAddr raft.ServerAddress

func (a fuzzAddr) Network() string { return "tcp" }
func (a fuzzAddr) String() string  { return string(a) }

// The dialing side.

// answeringPeer is a raw TCP peer that answers each connection's upgrade
// request with the bytes an input gives it, closes its side, and reports
// what the client sent: the request, and everything after it until the
// client closed.
type answeringPeer struct {
	addr    string
	answers chan []byte
	seen    chan peerExchange
}

// peerExchange is what one connection to an answeringPeer carried.
type peerExchange struct {
	request peerRequest
	// after is what the client sent after the request's body; err is nil
	// once the client has closed, or why the peer stopped waiting for it.
	after string
	err   error
}

// startAnsweringPeer starts an answeringPeer that stops when tb ends.
func startAnsweringPeer(tb testing.TB) *answeringPeer {
	tb.Helper()
	p := &answeringPeer{answers: make(chan []byte, 1), seen: make(chan peerExchange, 16)}
	p.addr = rawPeer(tb, func(conn net.Conn) {
		// Never blocks: an input that failed leaves its report unread,
		// and the next drops it.
		select {
		case p.seen <- p.serve(conn):
		default:
		}
	})
	return p
}

// serve answers one connection.
func (p *answeringPeer) serve(conn net.Conn) peerExchange {
	conn.SetDeadline(time.Now().Add(2 * testWait))
	var answer []byte
	select {
	case answer = <-p.answers:
	case <-time.After(testWait):
		return peerExchange{err: errors.New("no answer to give")}
	}
	reader, line, header, err := readHead(conn)
	if err != nil {
		return peerExchange{err: fmt.Errorf("reading the request: %w", err)}
	}
	request := peerRequest{line: line, header: header, announced: header.Get("Rafthttp-Body"), length: header.Get("Content-Length")}
	if n, err := strconv.Atoi(request.length); err == nil {
		body := make([]byte, n)
		if _, err := io.ReadFull(reader, body); err != nil {
			return peerExchange{request: request, err: fmt.Errorf("reading the body: %w", err)}
		}
		request.body = string(body)
	}
	if _, err := conn.Write(answer); err == nil {
		conn.(*net.TCPConn).CloseWrite()
	}
	after := readToClose(reader)
	return peerExchange{request: request, after: after.data, err: after.err}
}

// FuzzDialAnswer answers the upgrade dials of a Layer with arbitrary bytes:
// an eager dial (LayerConfig.EagerHandshake), and an early-data dial of a
// Layer that has learned that the peer takes early data, whose first Write
// sends size bytes of raft data (1 to 3,000: the body of the request, or
// more than fits it). Whatever the bytes:
//
//   - if they start with a 101 that names raft (and, for early data, says
//     Rafthttp-Body-Max: a count above 0) as http.ReadResponse reads it,
//     the connection works: it yields exactly the bytes behind the 101
//     and carries writes to the peer, the early data first, in order;
//   - otherwise the dial fails with an *UpgradeError: Dial for an eager
//     dial; for early data, the first Write or Read, and every later one
//     too. The Layer closes the connection, and the peer gets nothing
//     after the request and its body.
func FuzzDialAnswer(f *testing.F) {
	checkNoLeaks(f)
	peer := startAnsweringPeer(f)
	eager, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: advertised, Handler: rafthttp.NewHandlerWithLogger(fuzzLogger), Logger: fuzzLogger, EagerHandshake: true,
	})
	require.NoError(f, err)
	f.Cleanup(func() { eager.Close() })
	f.Fuzz(func(t *testing.T, answer []byte, size uint16) {
		drain(peer.answers)
		drain(peer.seen)
		peer.dialEager(t, eager, answer)
		peer.dialEarly(t, answer, 1+int(size)%3000)
	})
}

// dialEager checks an eager dial answered with answer.
func (p *answeringPeer) dialEager(t *testing.T, layer *rafthttp.Layer, answer []byte) {
	p.answers <- answer
	conn, err := layer.Dial(raft.ServerAddress(p.addr), testWait)
	rest, switched := switchAnswer(answer, false)
	if !switched {
		assert.Nil(t, conn, "the connection of a failed dial")
		requireUpgradeError(t, err, p.addr)
		exchange := receive(t, p.seen, "the peer's report")
		require.NoError(t, exchange.err, "the peer, waiting for the failed dial's connection to close")
		require.Empty(t, exchange.after, "what the client sent after a failed upgrade")
		return
	}
	require.NoError(t, err, "dialing a peer that answers %q", answer)
	requireSwitched(t, conn, rest)
	exchange := receive(t, p.seen, "the peer's report")
	require.NoError(t, exchange.err)
	require.Equal(t, "ping", exchange.after, "what the client sent after the 101")
}

// dialEarly checks an early-data dial answered with answer, whose first
// Write is size bytes.
func (p *answeringPeer) dialEarly(t *testing.T, answer []byte, size int) {
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: advertised, Handler: rafthttp.NewHandlerWithLogger(fuzzLogger), Logger: fuzzLogger,
	})
	require.NoError(t, err)
	defer layer.Close()
	rafthttp.LearnEarlyData(layer, p.addr, maxEarlyData)
	p.answers <- answer
	conn, err := layer.Dial(raft.ServerAddress(p.addr), testWait)
	require.NoError(t, err, "an early-data dial connects only")
	defer conn.Close()
	data := []byte(randomBytes(size, byte(size)))
	written, writeErr := conn.Write(data)
	rest, switched := switchAnswer(answer, true)
	if !switched {
		if writeErr == nil {
			require.Equal(t, size, written)
			_, err := conn.Read(make([]byte, 1))
			requireUpgradeError(t, err, p.addr)
		} else {
			requireUpgradeError(t, writeErr, p.addr)
		}
		_, err = conn.Write([]byte("ping"))
		requireUpgradeError(t, err, p.addr)
		_, err = conn.Read(make([]byte, 1))
		requireUpgradeError(t, err, p.addr)
		// Before conn.Close: the failure must have closed it.
		exchange := receive(t, p.seen, "the peer's report")
		require.NoError(t, exchange.err, "the peer, waiting for the failed dial's connection to close")
		assert.Equal(t, string(data[:written]), exchange.request.body, "the request's body")
		require.Empty(t, exchange.after, "what the client sent after a failed upgrade")
		return
	}
	require.NoError(t, writeErr, "writing to a peer that answers %q", answer)
	require.Equal(t, size, written)
	requireSwitched(t, conn, rest)
	exchange := receive(t, p.seen, "the peer's report")
	require.NoError(t, exchange.err)
	require.NotEmpty(t, exchange.request.body, "the early data")
	requireSameBytes(t, string(data)+"ping", exchange.request.body+exchange.after, "what the peer read as raft data")
}

// requireSwitched reads conn, whose peer has closed its side after the
// 101, to the end, requires exactly rest, and writes "ping" before
// closing it.
func requireSwitched(t *testing.T, conn net.Conn, rest []byte) {
	t.Helper()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testWait)))
	got, err := io.ReadAll(conn)
	require.NoError(t, err, "reading the upgraded connection to the peer's close")
	requireSameBytes(t, string(rest), string(got), "what the upgraded connection yields")
	write(t, conn, "ping")
	require.NoError(t, conn.Close())
}

// switchAnswer reports whether answer starts with a 101 that switches to
// raft, as http.ReadResponse reads it, and returns the bytes behind it.
// With early data the 101 must also confirm the body: Rafthttp-Body-Max
// a byte count above 0.
func switchAnswer(answer []byte, early bool) ([]byte, bool) {
	reader := bufio.NewReader(bytes.NewReader(answer))
	response, err := http.ReadResponse(reader, &http.Request{Method: http.MethodGet})
	if err != nil || response.StatusCode != http.StatusSwitchingProtocols || !hasToken(response.Header.Values("Upgrade"), "raft") {
		return nil, false
	}
	if early {
		if bodyMax, ok := byteCount(response.Header.Get("Rafthttp-Body-Max")); !ok || bodyMax == 0 {
			return nil, false
		}
	}
	rest, _ := io.ReadAll(reader)
	return rest, true
}

// The membership client.

// scriptedPeer is a raw TCP peer that answers every request of every
// connection with the same bytes, those of the input being tried, closes
// its side, and reports, by the client's address, whether the client then
// closed the connection.
type scriptedPeer struct {
	addr   string
	answer atomic.Pointer[[]byte]
	closed sync.Map // client address → chan error
	// served has a value once a connection has ended.
	served chan struct{}
}

// startScriptedPeer starts a scriptedPeer that stops when tb ends.
func startScriptedPeer(tb testing.TB) *scriptedPeer {
	tb.Helper()
	p := &scriptedPeer{served: make(chan struct{}, 1)}
	p.addr = rawPeer(tb, func(conn net.Conn) {
		p.closedChan(conn.RemoteAddr().String()) <- p.serve(conn)
		select {
		case p.served <- struct{}{}:
		default:
		}
	})
	return p
}

// closedChan returns the channel that reports the end of the connection
// from client.
func (p *scriptedPeer) closedChan(client string) chan error {
	ch, _ := p.closed.LoadOrStore(client, make(chan error, 1))
	return ch.(chan error)
}

// serve answers one connection and returns nil once the client closed it.
func (p *scriptedPeer) serve(conn net.Conn) error {
	conn.SetDeadline(time.Now().Add(2 * testWait))
	reader, _, _, err := readHead(conn)
	if err != nil {
		// A join whose time ran out just as it connected closes the
		// connection before its request is whole.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil
		}
		return fmt.Errorf("reading the request: %w", err)
	}
	if answer := p.answer.Load(); answer != nil {
		conn.Write(*answer)
	}
	conn.(*net.TCPConn).CloseWrite()
	return readToClose(reader).err
}

// dialLogKey is the context key under which a Join of FuzzJoinAnswer
// carries the dialLog its dials belong to.
type dialLogKey struct{}

// retryWindow bounds a Join of FuzzJoinAnswer that the answer makes the
// client retry (a 503, a redirect, an answer that is not HTTP) until its
// time runs out. Such a Join is canceled sooner, once the client has read
// the first answer and closed its connection: its retries would get the
// same. A Join that must settle at once has testWait.
const retryWindow = 20 * time.Millisecond

// FuzzJoinAnswer answers Layer.JoinContext with arbitrary bytes, every
// request of it. The Layer's Dial reaches only the scripted peer, wherever
// a redirect points. Whatever the bytes, Join returns within testWait of
// its deadline, closes every connection it opened, and, reading the final
// answer as http.ReadResponse does (past informational answers other than
// 101):
//
//   - succeeds after one request if it is a 2xx;
//   - fails if it is a 503 or a redirect (307, 308), which it follows or
//     retries until its time runs out (see retryWindow), or if it is not
//     HTTP;
//   - fails after one request with the *StatusError of that status
//     otherwise, and for a 412 with ErrClusterIDMismatch.
func FuzzJoinAnswer(f *testing.F) {
	checkNoLeaks(f)
	peer := startScriptedPeer(f)
	var dials atomic.Pointer[dialLog]
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: advertised, Handler: rafthttp.NewHandlerWithLogger(fuzzLogger), Logger: fuzzLogger,
		DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
			// The Join's own record, which its context carries: a dial
			// net/http starts for an earlier input's Join may run late,
			// after the next input stored its record.
			record, ok := ctx.Value(dialLogKey{}).(*dialLog)
			if !ok {
				record = dials.Load()
			}
			if addr != peer.addr {
				record.add("")
				return nil, fmt.Errorf("fuzz: %s is not the scripted peer", addr)
			}
			var dialer net.Dialer
			conn, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			record.add(conn.LocalAddr().String())
			return conn, nil
		},
	})
	require.NoError(f, err)
	f.Cleanup(func() { layer.Close() })
	f.Fuzz(func(t *testing.T, answer []byte) {
		peer.answer.Store(&answer)
		record := &dialLog{}
		dials.Store(record)
		status, ok := finalStatus(answer)
		retried := !ok || status == http.StatusServiceUnavailable ||
			status == http.StatusTemporaryRedirect || status == http.StatusPermanentRedirect
		deadline := testWait
		if retried {
			deadline = retryWindow
		}
		ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), dialLogKey{}, record), deadline)
		defer cancel()
		drain(peer.served)
		if retried {
			go func() {
				select {
				case <-peer.served:
					cancel()
				case <-ctx.Done():
				}
			}()
		}
		start := time.Now()
		err := layer.JoinContext(ctx, "fuzz-node", raft.ServerAddress(peer.addr))
		require.Less(t, time.Since(start), deadline+testWait, "Join's wait past its deadline")
		conns := record.conns()
		switch {
		case retried:
			require.Error(t, err, "joining with the answer %q", answer)
		case status >= 200 && status < 300:
			require.NoError(t, err, "joining with the answer %q", answer)
			require.Len(t, conns, 1, "connections for a join answered %d", status)
		default:
			var statusErr *rafthttp.StatusError
			require.ErrorAs(t, err, &statusErr, "joining with the answer %q", answer)
			require.Equal(t, status, statusErr.StatusCode)
			require.Len(t, conns, 1, "connections for a join answered %d, which is not retried", status)
			if status == http.StatusPreconditionFailed {
				require.ErrorIs(t, err, rafthttp.ErrClusterIDMismatch)
			}
		}
		for _, client := range conns {
			if client == "" {
				continue // a dial the Layer's Dial refused
			}
			closed := peer.closedChan(client)
			require.NoError(t, receive(t, closed, "the peer's report on "+client), "the connection from %s, which Join opened", client)
			peer.closed.Delete(client)
		}
	})
}

// dialLog records the client addresses of the connections a Dial made,
// "" for a dial it refused.
type dialLog struct {
	mu    sync.Mutex
	addrs []string
}

func (l *dialLog) add(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs = append(l.addrs, addr)
}

func (l *dialLog) conns() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.addrs...)
}

// finalStatus reads answer as the answer to a join (a POST) and returns
// the status of the final answer, past informational ones other than
// 101, or false if answer holds none.
func finalStatus(answer []byte) (int, bool) {
	response, err := readFinalResponse(bufio.NewReader(bytes.NewReader(answer)), &http.Request{Method: http.MethodPost})
	if err != nil {
		return 0, false
	}
	return response.StatusCode, true
}
