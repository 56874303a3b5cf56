package rafthttp_test

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// The tests of HandlerConfig.Authorize: it sees every request first, and a
// request it refuses gets a plain HTTP answer and nothing else.

const (
	// testToken is the bearer token the tests' Authorize functions take:
	// 32 random bytes in base64 without padding, as a typical one is.
	testToken = "c2VjcmV0LXRva2VuLW9mLTQzLWNoYXJhY3RlcnMtMDA"

	// forbiddenToken is a token Authorize knows but refuses (403).
	forbiddenToken = "read-only-token"
)

// errNotAllowed is what the tests' Authorize returns for forbiddenToken:
// a reason meant for the log, which the client must not see.
var errNotAllowed = errors.New("the read-only token may not talk to raft")

// authorizeToken is an Authorize function that takes the bearer token
// testToken: it refuses a request without it with 401, and one with
// forbiddenToken with 403. Each request it sees is sent on seen, if not
// full.
func authorizeToken(seen chan<- *http.Request) func(*http.Request) error {
	return func(r *http.Request) error {
		if seen != nil {
			select {
			case seen <- r:
			default:
			}
		}
		got := r.Header.Get("Authorization")
		switch {
		case subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+testToken)) == 1:
			return nil
		case got == "Bearer "+forbiddenToken:
			return errNotAllowed
		case got == "":
			return fmt.Errorf("no credentials: %w", rafthttp.ErrUnauthorized)
		default:
			return fmt.Errorf("unknown token: %w", rafthttp.ErrUnauthorized)
		}
	}
}

// tokenHeader is what a Layer sends to be let in by authorizeToken.
func tokenHeader(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// TestAuthorizeRefusesFirst sends every kind of request the Handler serves,
// some of them requests it would refuse for other reasons, with
// credentials Authorize refuses: each gets a complete 401 or 403 from
// Authorize, before anything else happens. The Handler has a cluster ID,
// Backlog 1 and a timeout no test waits out, so that an upgrade that took
// a slot, a body the Handler waited for, or any check made before
// Authorize shows.
func TestAuthorizeRefusesFirst(t *testing.T) {
	t.Parallel()
	join := url.Values{"id": {"node2"}, "address": {"127.0.0.1:9002"}}.Encode()
	kinds := []struct {
		name   string
		method string
		// head is the request, less the credentials, for a server at
		// addr; lines are its header lines.
		target string
		lines  []string
		// body is sent behind the head, if any.
		body string
		// announced: the request announces a body, which the Handler
		// leaves unread, so the answer ends the connection.
		announced bool
	}{
		{name: "upgrade", method: http.MethodGet, target: raftPath, lines: []string{"Upgrade: raft", "Connection: Upgrade"}},
		{name: "original upgrade", method: http.MethodGet, target: raftPath, lines: []string{"Upgrade: raft"}},
		{
			// The body is announced and never sent: a Handler that
			// waited for it would not answer within the test.
			name: "upgrade with early data", method: http.MethodGet, target: raftPath,
			lines: append([]string{"Upgrade: raft", "Connection: Upgrade"}, announceBody(100)...), announced: true,
		},
		{
			name: "upgrade with its early data", method: http.MethodGet, target: raftPath,
			lines: append([]string{"Upgrade: raft", "Connection: Upgrade"}, announceBody(100)...),
			body:  randomBytes(100, 1), announced: true,
		},
		{name: "join", method: http.MethodPost, target: raftPath + "?" + join, lines: []string{"Content-Length: 0"}},
		{name: "non-voter join", method: http.MethodPost, target: raftPath + "?" + join + "&voter=false", lines: []string{"Content-Length: 0"}},
		{name: "leave", method: http.MethodDelete, target: raftPath + "?id=node2"},
		{name: "other method", method: http.MethodPut, target: raftPath, lines: []string{"Content-Length: 0"}},
		{name: "GET without Upgrade", method: http.MethodGet, target: raftPath},
		// Requests the Handler would otherwise refuse with 400, 412 and 413.
		{name: "join with a bad id", method: http.MethodPost, target: raftPath + "?id=%1B%5B31m&address=127.0.0.1:9002", lines: []string{"Content-Length: 0"}},
		{name: "upgrade with a bad body header", method: http.MethodGet, target: raftPath, lines: []string{"Upgrade: raft", "Rafthttp-Body: many"}},
		{
			name: "upgrade with too much early data", method: http.MethodGet, target: raftPath,
			lines: append([]string{"Upgrade: raft"}, announceBody(1<<20)...), announced: true,
		},
		{name: "upgrade for another cluster", method: http.MethodGet, target: raftPath, lines: []string{"Upgrade: raft", "Rafthttp-Cluster-Id: green"}},
	}
	refusals := []struct {
		name       string
		credential string // an Authorization header line, or none
		status     int
		logged     string // what the log must say of Authorize's error
	}{
		{name: "no credentials", status: http.StatusUnauthorized, logged: "no credentials"},
		{name: "unknown token", credential: "Authorization: Bearer guessed", status: http.StatusUnauthorized, logged: "unknown token"},
		{name: "forbidden token", credential: "Authorization: Bearer " + forbiddenToken, status: http.StatusForbidden, logged: errNotAllowed.Error()},
	}
	for _, kind := range kinds {
		for _, refusal := range refusals {
			t.Run(kind.name+"/"+refusal.name, func(t *testing.T) {
				t.Parallel()
				seen := make(chan *http.Request, 8)
				server := startServer(t, serverOptions{
					config: rafthttp.HandlerConfig{
						Authorize: authorizeToken(seen), ClusterID: "blue", Backlog: 1, Timeout: longTimeout,
					},
					jsonLogs:      true,
					clientHeaders: []string{"Authorization: Bearer " + testToken, "Rafthttp-Cluster-Id: blue"},
				})
				taken := answerRequests(t, server.handler, answerWith(nil))
				lines := slices.Clone(kind.lines)
				if !slices.ContainsFunc(lines, func(line string) bool { return strings.HasPrefix(line, "Rafthttp-Cluster-Id:") }) {
					lines = append(lines, "Rafthttp-Cluster-Id: blue")
				}
				if refusal.credential != "" {
					lines = append(lines, refusal.credential)
				}

				conn := server.dialRaw(t)
				write(t, conn, requestHead(kind.method, kind.target, server.addr(), lines...)+kind.body)
				reader := bufio.NewReader(conn)
				response := readResponse(t, reader, kind.method)

				// A whole HTTP answer from Authorize, not a 101 or
				// another check's refusal, and no more than the status.
				require.Equal(t, refusal.status, response.status, "body: %s", response.body)
				requirePlainText(t, response)
				assert.NotContains(t, response.body, refusal.logged, "the client learns Authorize's reason")
				assert.Empty(t, response.header.Get("Rafthttp-Cluster-Id"), "a refusal by Authorize names the cluster")
				request := receive(t, seen, "Authorize to see the request")
				assert.Equal(t, kind.method, request.Method)
				if !kind.announced {
					// net/http still owns the connection, which the
					// Handler never took over: it serves the next request
					// on it.
					require.False(t, response.close, "the refusal ends the connection")
					write(t, conn, requestHead(http.MethodPut, raftPath, server.addr(), append(server.clientHeaders, "Content-Length: 0")...))
					assert.Equal(t, http.StatusMethodNotAllowed, readResponse(t, reader, http.MethodPut).status)
				}

				// Nothing was queued, taken or applied.
				assert.Empty(t, taken, "a refused request reached Requests")
				server.requireNextAccepted(t)

				// Logged with the remote address and Authorize's error.
				assert.True(t, slices.ContainsFunc(server.logs.jsonLines(), func(line map[string]any) bool {
					return line["remote-address"] == conn.LocalAddr().String() &&
						strings.Contains(fmt.Sprint(line["error"]), refusal.logged)
				}), "no log line names the remote address %s and the error %q:\n%s", conn.LocalAddr(), refusal.logged, server.logs)
			})
		}
	}
}

// TestAuthorizeByClientCertificate authorizes by the client certificate a
// mutual-TLS server verified (r.TLS): a Layer that presents one dials,
// joins and leaves; one that does not gets 401 from each, asked once.
func TestAuthorizeByClientCertificate(t *testing.T) {
	t.Parallel()
	ca := clustertest.NewCA(t)
	recorder := &requestRecorder{}
	server := startServer(t, serverOptions{
		tls: true,
		tlsConfig: &tls.Config{
			Certificates: []tls.Certificate{ca.Certificate},
			NextProtos:   []string{"http/1.1"},
			// Verified if given, so that a client without one reaches
			// Authorize, which decides.
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  ca.Pool,
		},
		config: rafthttp.HandlerConfig{Authorize: func(r *http.Request) error {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
				return fmt.Errorf("no client certificate: %w", rafthttp.ErrUnauthorized)
			}
			if name := r.TLS.PeerCertificates[0].Subject.CommonName; name != "rafthttp test node" {
				return fmt.Errorf("certificate of %q", name)
			}
			return nil
		}},
		wrap: recorder.wrap,
	})
	taken := answerRequests(t, server.handler, answerWith(nil))

	t.Run("with a certificate", func(t *testing.T) {
		layer := newLayer(t, rafthttp.LayerConfig{DialContext: rafthttp.NewDialContextTLS(ca.ClientConfig(true))})
		dialed, accepted := server.connect(t, layer)
		exchange(t, dialed, accepted)
		require.NoError(t, layer.Join("node2", server.raftAddr(), testWait))
		assert.Equal(t, raft.ServerID("node2"), receive(t, taken, "the join").ID())
		require.NoError(t, layer.Leave("node2", server.raftAddr(), testWait))
		assert.Equal(t, raftmembership.LeaveRequest, receive(t, taken, "the leave").Kind())
	})
	t.Run("without a certificate", func(t *testing.T) {
		layer := newLayer(t, rafthttp.LayerConfig{DialContext: rafthttp.NewDialContextTLS(ca.ClientConfig(false))})
		requireRefusedOnce(t, recorder, http.StatusUnauthorized, refusedCalls(layer, server.raftAddr())...)
		assert.Empty(t, taken, "a refused request reached Requests")
		server.requireNextAcceptedTLS(t, ca.ClientConfig(true))
	})
}

// requireNextAcceptedTLS is requireNextAccepted for a server that asks for
// client certificates: it upgrades a connection dialed with config.
func (s *testServer) requireNextAcceptedTLS(t *testing.T, config *tls.Config) {
	t.Helper()
	layer := newLayer(t, rafthttp.LayerConfig{DialContext: rafthttp.NewDialContextTLS(config), EagerHandshake: true})
	dialed, accepted := s.connect(t, layer)
	exchange(t, dialed, accepted)
}

// refusedCall is a Layer call that a refusing peer must fail, and the
// request it makes, for requireRefusedOnce.
type refusedCall struct {
	name string
	call func() error
}

// refusedCalls are the calls of layer that reach the Handler at addr:
// Dial, Join and Leave.
func refusedCalls(layer *rafthttp.Layer, addr raft.ServerAddress) []refusedCall {
	return []refusedCall{
		{name: "Dial", call: func() error {
			conn, err := layer.Dial(addr, testWait)
			if err == nil {
				conn.Close()
			}
			return err
		}},
		{name: "Join", call: func() error { return layer.Join("node2", addr, testWait) }},
		{name: "Leave", call: func() error { return layer.Leave("node2", addr, testWait) }},
	}
}

// requireRefusedOnce makes each call and requires that it fails with a
// *StatusError of status, after one request: the refusal is final.
func requireRefusedOnce(t *testing.T, recorder *requestRecorder, status int, calls ...refusedCall) {
	t.Helper()
	for _, c := range calls {
		before := len(recorder.seen())
		start := time.Now()
		err := c.call()
		var statusErr *rafthttp.StatusError
		if assert.ErrorAs(t, err, &statusErr, "%s", c.name) {
			assert.Equal(t, status, statusErr.StatusCode, "%s: %v", c.name, err)
		}
		assert.Less(t, time.Since(start), testWait/2, "%s: a final refusal is not retried until the timeout", c.name)
		assert.Len(t, recorder.seen()[before:], 1, "%s: requests the server saw", c.name)
	}
}

// TestAuthorizeByToken authorizes by a bearer token that
// LayerConfig.Header sends, over TCP and TLS: a Layer with the token dials
// (eagerly and with early data), joins and leaves; one without it, or with
// another token, gets 401, and one with a token Authorize refuses gets
// 403, each from Dial, from an early-data connection's first Read, and
// from Join and Leave, after one request.
func TestAuthorizeByToken(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(transportName(useTLS), func(t *testing.T) {
			t.Parallel()
			recorder := &requestRecorder{}
			server := startServer(t, serverOptions{
				tls:    useTLS,
				config: rafthttp.HandlerConfig{Authorize: authorizeToken(nil)},
				wrap:   recorder.wrap,
			})
			taken := answerRequests(t, server.handler, answerWith(nil))
			layerWith := func(header http.Header) *rafthttp.Layer {
				config := rafthttp.LayerConfig{Header: header}
				if useTLS {
					config.Dial = rafthttp.NewDialTLS(trust(server.Server))
				}
				return newLayer(t, config)
			}

			t.Run("allowed", func(t *testing.T) {
				layer := layerWith(tokenHeader(testToken))
				// The first dial learns that the peer takes early data,
				// the second sends some.
				for _, early := range []bool{false, true} {
					dialed, accepted := server.connectWriting(t, layer)
					exchange(t, dialed, accepted)
					last := recorder.seen()[len(recorder.seen())-1]
					assert.Equal(t, early, last.ContentLength > 0, "early data sent")
				}
				require.NoError(t, layer.Join("node2", server.raftAddr(), testWait))
				receive(t, taken, "the join")
				require.NoError(t, layer.Leave("node2", server.raftAddr(), testWait))
				receive(t, taken, "the leave")
			})
			for _, refused := range []struct {
				name   string
				header http.Header
				status int
			}{
				{name: "no token", status: http.StatusUnauthorized},
				{name: "another token", header: tokenHeader("guessed"), status: http.StatusUnauthorized},
				{name: "forbidden token", header: tokenHeader(forbiddenToken), status: http.StatusForbidden},
			} {
				t.Run(refused.name, func(t *testing.T) {
					layer := layerWith(refused.header)
					requireRefusedOnce(t, recorder, refused.status, refusedCalls(layer, server.raftAddr())...)
					assert.Empty(t, taken, "a refused request reached Requests")
				})
			}
		})
	}
}

// TestAuthorizeEarlyDataRefused refuses a Layer that has learned that the
// peer takes early data, as when its token is revoked: the connection's
// first Read returns the refusal, a *StatusError in an *UpgradeError, and
// the early data never reaches Accept.
func TestAuthorizeEarlyDataRefused(t *testing.T) {
	t.Parallel()
	for _, refused := range []struct {
		name   string
		err    error
		status int
	}{
		{name: "unauthorized", err: fmt.Errorf("revoked: %w", rafthttp.ErrUnauthorized), status: http.StatusUnauthorized},
		{name: "forbidden", err: errNotAllowed, status: http.StatusForbidden},
	} {
		t.Run(refused.name, func(t *testing.T) {
			t.Parallel()
			recorder := &requestRecorder{}
			var revoked atomic.Bool
			server := startServer(t, serverOptions{
				config: rafthttp.HandlerConfig{Backlog: 1, Authorize: func(*http.Request) error {
					if revoked.Load() {
						return refused.err
					}
					return nil
				}},
				wrap: recorder.wrap,
			})
			layer := newLayer(t, rafthttp.LayerConfig{})
			dialed, accepted := server.connect(t, layer)
			exchange(t, dialed, accepted)
			revoked.Store(true)

			before := len(recorder.seen())
			conn := dialConn(t, layer, server.addr(), testWait)
			write(t, conn, "raft bytes that must not arrive")
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(testWait)))
			_, err := conn.Read(make([]byte, 1))
			requireUpgradeError(t, err, server.addr())
			var statusErr *rafthttp.StatusError
			require.ErrorAs(t, err, &statusErr)
			assert.Equal(t, refused.status, statusErr.StatusCode)
			seen := recorder.seen()[before:]
			require.Len(t, seen, 1, "requests the server saw")
			assert.Positive(t, seen[0].ContentLength, "the refused request carried early data")

			revoked.Store(false)
			server.requireNextAccepted(t)
		})
	}
}

// TestClusterRefusesUnauthorizedPeer runs a three-node cluster whose nodes
// take only requests with the cluster's token, which their Layers send: the
// cluster forms, replicates, and its leader's reachability checks of the
// joiners pass. An outsider's Layer without the token can neither join,
// remove a member, nor open a raft connection to any node, and the
// cluster's configuration and leader do not change.
func TestClusterRefusesUnauthorizedPeer(t *testing.T) {
	cluster := clustertest.Start(t, 3, clustertest.Options{
		Handler: func(config *rafthttp.HandlerConfig) { config.Authorize = authorizeToken(nil) },
		Layer:   func(config *rafthttp.LayerConfig) { config.Header = tokenHeader(testToken) },
	})
	cluster.Apply("with the token")
	leader := cluster.Leader()
	before, err := leader.Servers()
	require.NoError(t, err)
	follower := cluster.Followers()[0]

	for _, outsider := range []struct {
		name   string
		header http.Header
		status int
	}{
		{name: "no token", status: http.StatusUnauthorized},
		{name: "forbidden token", header: tokenHeader(forbiddenToken), status: http.StatusForbidden},
	} {
		t.Run(outsider.name, func(t *testing.T) {
			// The outsider even serves a Handler of its own at an address
			// the leader could check.
			node := clustertest.StartNode(t, "outsider", clustertest.Options{
				Layer: func(config *rafthttp.LayerConfig) { config.Header = outsider.header },
			})
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			for _, target := range cluster.Nodes {
				requireStatus(t, outsider.status, node.Layer.JoinContext(ctx, node.ID, raft.ServerAddress(target.Addr)))
				requireStatus(t, outsider.status, node.Layer.LeaveContext(ctx, follower.ID, raft.ServerAddress(target.Addr)))
				requireStatus(t, outsider.status, node.Layer.LeaveContext(ctx, leader.ID, raft.ServerAddress(target.Addr)))
				conn, err := node.Layer.DialContext(ctx, raft.ServerAddress(target.Addr))
				if err == nil {
					conn.Close()
				}
				requireStatus(t, outsider.status, err)
			}
			// A plain HTTP client fares no better.
			request, err := http.NewRequestWithContext(ctx, http.MethodPost,
				"http://"+leader.Addr+clustertest.Path+"?id=evil&address="+url.QueryEscape(node.Addr), nil)
			require.NoError(t, err)
			for name, values := range outsider.header {
				request.Header[name] = values
			}
			response, err := http.DefaultClient.Do(request)
			require.NoError(t, err)
			response.Body.Close()
			assert.Equal(t, outsider.status, response.StatusCode)
		})
	}

	after, err := leader.Servers()
	require.NoError(t, err)
	assert.Equal(t, before, after, "the configuration changed")
	assert.Equal(t, leader, cluster.Leader(), "the leader changed")
	cluster.Apply("after the outsider")
}

// requireStatus requires that err carries a *StatusError of status.
func requireStatus(t *testing.T, status int, err error) {
	t.Helper()
	var statusErr *rafthttp.StatusError
	require.ErrorAs(t, err, &statusErr)
	assert.Equal(t, status, statusErr.StatusCode, "%v", err)
}
