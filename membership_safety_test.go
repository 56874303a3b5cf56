package rafthttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
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

// The tests of what a membership request may ask for: the input the
// Handler takes, joins that would take a member's address, and the
// leader's check that a joiner can be reached.

// TestHandlerMembershipRefusesUnsafeInput sends joins and leaves whose ID
// or address could break a log line, a terminal, a request head or raft's
// configuration: each is refused with a short 400 that names the field,
// and nothing reaches Requests. Input at the limits gets through.
func TestHandlerMembershipRefusesUnsafeInput(t *testing.T) {
	t.Parallel()
	const address = "127.0.0.1:9002"
	longAddress := func(n int) string { return strings.Repeat("h", n-len(":9000")) + ":9000" }
	join := func(id, address string) string { return url.Values{"id": {id}, "address": {address}}.Encode() }
	leave := func(id string) string { return url.Values{"id": {id}}.Encode() }
	tests := []struct {
		name   string
		method string
		query  string
		// field is what the 400 must name; empty means the request is
		// valid and must reach Requests.
		field string
	}{
		{name: "address with a new line", method: http.MethodPost, query: join("node2", "127.0.0.1:9\nevil"), field: "address"},
		{name: "address with CRLF", method: http.MethodPost, query: join("node2", "127.0.0.1:9\r\nX-Evil: 1"), field: "address"},
		{name: "address with spaces", method: http.MethodPost, query: join("node2", "a b:c d"), field: "address"},
		{name: "address with a tab", method: http.MethodPost, query: join("node2", "127.0.0.1:\t9"), field: "address"},
		{name: "address with NUL", method: http.MethodPost, query: join("node2", "127.0.0.1:9\x00"), field: "address"},
		{name: "port far too large", method: http.MethodPost, query: join("node2", "127.0.0.1:99999999"), field: "address"},
		{name: "port 65536", method: http.MethodPost, query: join("node2", "127.0.0.1:65536"), field: "address"},
		{name: "port 0", method: http.MethodPost, query: join("node2", "127.0.0.1:0"), field: "address"},
		{name: "port by name", method: http.MethodPost, query: join("node2", "127.0.0.1:http"), field: "address"},
		{name: "empty IPv6 host", method: http.MethodPost, query: join("node2", "[]:9"), field: "address"},
		{name: "no host", method: http.MethodPost, query: join("node2", ":9"), field: "address"},
		{name: "no port", method: http.MethodPost, query: join("node2", "127.0.0.1"), field: "address"},
		{name: "address of 257 bytes", method: http.MethodPost, query: join("node2", longAddress(257)), field: "address"},
		{name: "ID of 300 KB", method: http.MethodPost, query: join(strings.Repeat("i", 300<<10), address), field: "id"},
		{name: "ID of 257 bytes", method: http.MethodPost, query: join(strings.Repeat("i", 257), address), field: "id"},
		{name: "ID with a control character", method: http.MethodPost, query: join("node\x01", address), field: "id"},
		{name: "ID with a new line", method: http.MethodPost, query: join("node2\nlevel=ERROR forged", address), field: "id"},
		{name: "ID with an ANSI escape", method: http.MethodPost, query: join("\x1b[31mnode2\x1b[0m", address), field: "id"},
		{name: "ID with a C1 control", method: http.MethodPost, query: join("node\u0085", address), field: "id"},
		{name: "ID of invalid UTF-8", method: http.MethodPost, query: join("node\xff\xfe", address), field: "id"},
		{name: "empty ID", method: http.MethodPost, query: join("", address), field: "id"},
		{name: "leave with an ID of 300 KB", method: http.MethodDelete, query: leave(strings.Repeat("i", 300<<10)), field: "id"},
		{name: "leave with an ANSI escape", method: http.MethodDelete, query: leave("\x1b[2J"), field: "id"},
		{name: "leave with invalid UTF-8", method: http.MethodDelete, query: leave("\xc3"), field: "id"},
		{name: "leave with an empty ID", method: http.MethodDelete, query: leave(""), field: "id"},

		{name: "ID of 256 bytes", method: http.MethodPost, query: join(strings.Repeat("i", 256), address)},
		{name: "leave with an ID of 256 bytes", method: http.MethodDelete, query: leave(strings.Repeat("i", 256))},
		{name: "unicode ID", method: http.MethodPost, query: join("nœud-三 ✓", address)},
		{name: "address of 256 bytes", method: http.MethodPost, query: join("node2", longAddress(256))},
		{name: "port 1", method: http.MethodPost, query: join("node2", "127.0.0.1:1")},
		{name: "port 65535", method: http.MethodPost, query: join("node2", "127.0.0.1:65535")},
		{name: "IPv6 address", method: http.MethodPost, query: join("node2", "[::1]:9002")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{})
			taken := answerRequests(t, server.handler, answerWith(nil))
			response := server.do(t, tt.method, tt.query)
			if tt.field == "" {
				require.Equal(t, http.StatusOK, response.status, "body: %s", response.body)
				receive(t, taken, "the request on Requests")
				return
			}
			require.Equal(t, http.StatusBadRequest, response.status, "body: %.300s", response.body)
			requirePlainText(t, response)
			assert.Regexp(t, `\b`+tt.field+`\b`, response.body, "the reason names the field")
			other := map[string]string{"id": "address", "address": "id"}[tt.field]
			assert.NotRegexp(t, `\b`+other+`\b`, response.body, "the reason names the wrong field")
			assert.Less(t, len(response.body), 2048, "the reason echoes the input")
			assert.NotContains(t, response.body, "\x1b", "the reason holds a raw escape")
			assert.Empty(t, taken, "a bad request reached Requests")
		})
	}
}

// postJoin sends a join for id at address to the node at target with a
// plain HTTP client that follows redirects, as curl -L would.
func postJoin(t *testing.T, target, id, address string) httpResponse {
	t.Helper()
	response, err := tryPostJoin(t.Context(), target, id, address)
	require.NoError(t, err)
	return response
}

// tryPostJoin is postJoin for any goroutine.
func tryPostJoin(ctx context.Context, target, id, address string) (httpResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, clustertest.WaitTimeout)
	defer cancel()
	query := url.Values{"id": {id}, "address": {address}}.Encode()
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+target+clustertest.Path+"?"+query, nil)
	if err != nil {
		return httpResponse{}, err
	}
	transport := &http.Transport{DisableKeepAlives: true}
	defer transport.CloseIdleConnections()
	response, err := (&http.Client{Transport: transport}).Do(request)
	if err != nil {
		return httpResponse{}, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return httpResponse{status: response.StatusCode, header: response.Header, body: string(body)}, err
}

// clusterState is what a join that changes nothing must leave as it was.
type clusterState struct {
	leader  *clustertest.Node
	servers []raft.Server
}

func stateOf(t *testing.T, cluster *clustertest.Cluster) clusterState {
	t.Helper()
	leader := cluster.Leader()
	servers, err := leader.Servers()
	require.NoError(t, err)
	return clusterState{leader: leader, servers: servers}
}

// requireUnchanged requires that the cluster has the same configuration
// and the same leader as before, and still commits writes.
func requireUnchanged(t *testing.T, cluster *clustertest.Cluster, before clusterState) {
	t.Helper()
	after := stateOf(t, cluster)
	assert.Equal(t, before.servers, after.servers, "the configuration changed")
	assert.Equal(t, before.leader.ID, after.leader.ID, "the leader changed")
	assert.Equal(t, raft.Leader, before.leader.Raft.State())
	cluster.Apply(fmt.Sprintf("still serving after %s", t.Name()))
}

// TestClusterJoinAddressInUse asks a three-node cluster to add "evil" at
// the address of one of its members, the leader's included, sent to the
// leader and to a follower: each is refused with 409 naming the member, the
// configuration does not change, and the leader still leads. A Layer
// advertising a member's address gets the same 409 from Join, at once.
func TestClusterJoinAddressInUse(t *testing.T) {
	recorder := &clustertest.Recorder{}
	cluster := clustertest.Start(t, 3, clustertest.Options{Wrap: recorder.Wrap})
	before := stateOf(t, cluster)
	leader := before.leader
	followers := cluster.Followers()

	for _, victim := range []*clustertest.Node{followers[0], leader} {
		for _, target := range []*clustertest.Node{leader, followers[1]} {
			response := postJoin(t, target.Addr, "evil", victim.Addr)
			require.Equal(t, http.StatusConflict, response.status, "join at %s's address sent to %s: %s", victim.ID, target.ID, response.body)
			requirePlainText(t, response)
			assert.Contains(t, response.body, string(victim.ID), "the 409 names the member")
			assert.Contains(t, response.body, victim.Addr, "the 409 names the address")
		}
	}

	misconfigured, err := net.ResolveTCPAddr("tcp", followers[0].Addr)
	require.NoError(t, err)
	layer := newLayer(t, rafthttp.LayerConfig{Addr: misconfigured})
	sent := len(recorder.Find(isJoinOf("evil")))
	start := time.Now()
	err = layer.Join("evil", raft.ServerAddress(leader.Addr), clustertest.WaitTimeout)
	requireStatus(t, http.StatusConflict, err)
	assert.Contains(t, err.Error(), string(followers[0].ID))
	assert.Less(t, time.Since(start), testWait, "a 409 is not retried")
	assert.Len(t, recorder.Find(isJoinOf("evil")), sent+1, "a 409 is not retried")

	requireUnchanged(t, cluster, before)
}

// isJoinOf matches the recorded joins of id.
func isJoinOf(id raft.ServerID) func(clustertest.Exchange) bool {
	return func(e clustertest.Exchange) bool {
		values, _ := url.ParseQuery(e.Query)
		return e.Method == http.MethodPost && values.Get("id") == string(id)
	}
}

// TestClusterJoinUnreachable asks a cluster to add a server at an address
// nobody answers at: the leader's check fails, the join gets 503 with
// Retry-After and a reason that names the address, and the configuration
// does not change. Layer.JoinContext retries it until its deadline and
// then returns the leader's reason.
func TestClusterJoinUnreachable(t *testing.T) {
	cluster := clustertest.Start(t, 3, clustertest.Options{})
	before := stateOf(t, cluster)
	refusing := clustertest.RefusingAddr(t)

	for _, target := range []*clustertest.Node{before.leader, cluster.Followers()[0]} {
		response := postJoin(t, target.Addr, "node9", refusing)
		require.Equal(t, http.StatusServiceUnavailable, response.status, "sent to %s: %s", target.ID, response.body)
		requireRetryAfter(t, response)
		requirePlainText(t, response)
		assert.Contains(t, response.body, refusing, "the reason names the address")
	}

	addr, err := net.ResolveTCPAddr("tcp", refusing)
	require.NoError(t, err)
	layer := newLayer(t, rafthttp.LayerConfig{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = layer.JoinContext(ctx, "node9", raft.ServerAddress(before.leader.Addr))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var statusErr *rafthttp.StatusError
	require.ErrorAs(t, err, &statusErr, "the error says what the leader answered")
	assert.Equal(t, http.StatusServiceUnavailable, statusErr.StatusCode)
	assert.Contains(t, statusErr.Body, refusing, "the leader's reason names the address")
	var unreachable *raftmembership.ErrUnreachable
	assert.False(t, errors.As(err, &unreachable), "the reason travels as text, not as the leader's error value")

	requireUnchanged(t, cluster, before)
}

// TestClusterDeadVoterJoins sends 20 joins at once, as voters, for
// addresses that refuse connections: none is added, so the three-node
// cluster keeps its quorum, its leader, and its three voters. Without the
// check it would have 23 voters, 20 of them dead, and no quorum.
func TestClusterDeadVoterJoins(t *testing.T) {
	cluster := clustertest.Start(t, 3, clustertest.Options{})
	before := stateOf(t, cluster)

	const joins = 20
	var wg sync.WaitGroup
	responses := make([]httpResponse, joins)
	errs := make([]error, joins)
	for i := range joins {
		dead := clustertest.RefusingAddr(t)
		wg.Go(func() {
			responses[i], errs[i] = tryPostJoin(t.Context(), before.leader.Addr, fmt.Sprintf("dead%d", i), dead)
		})
	}
	wg.Wait()
	for i, response := range responses {
		require.NoError(t, errs[i])
		// Refused by the check, or for waiting behind too many others
		// (MaxPendingChanges): either way, retry later.
		assert.Equal(t, http.StatusServiceUnavailable, response.status, "join %d: %s", i, response.body)
	}
	for _, node := range cluster.Nodes {
		servers, err := node.Servers()
		require.NoError(t, err)
		assert.Len(t, servers, 3, "configuration of %s", node.ID)
	}
	requireUnchanged(t, cluster, before)
}

// TestClusterJoinCheckUsesTheClusterDial runs a cluster whose nodes take
// only requests with its token and cluster ID, which their Layers send:
// the leader's check of a joiner goes through the same Layer, so a joiner
// whose Handler takes them is reachable, and one whose Handler wants
// another token, or belongs to another cluster, refuses the check. That
// join fails at once with 403, since no retry mends it, and changes
// nothing.
func TestClusterJoinCheckUsesTheClusterDial(t *testing.T) {
	options := func(token, clusterID string) clustertest.Options {
		return clustertest.Options{
			Handler: func(config *rafthttp.HandlerConfig) {
				config.ClusterID = clusterID
				config.Authorize = func(r *http.Request) error {
					if r.Header.Get("Authorization") != "Bearer "+token {
						return rafthttp.ErrUnauthorized
					}
					return nil
				}
			},
			Layer: func(config *rafthttp.LayerConfig) {
				// The cluster's own: what the joiner sends to join.
				config.ClusterID = "blue"
				config.Header = tokenHeader(testToken)
			},
		}
	}
	recorder := &clustertest.Recorder{}
	clusterOptions := options(testToken, "blue")
	clusterOptions.Wrap = recorder.Wrap
	cluster := clustertest.Start(t, 3, clusterOptions)
	leader := cluster.Leader()

	for _, tt := range []struct {
		name      string
		id        raft.ServerID
		token     string
		clusterID string
		reason    string
	}{
		{name: "joiner wants another token", id: "other-token", token: "another", clusterID: "blue", reason: "401"},
		{name: "joiner in another cluster", id: "other-cluster", token: testToken, clusterID: "green", reason: "cluster ID mismatch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := stateOf(t, cluster)
			joiner := clustertest.StartNode(t, tt.id, options(tt.token, tt.clusterID))
			start := time.Now()
			err := joiner.Layer.JoinNonvoterContext(t.Context(), joiner.ID, raft.ServerAddress(leader.Addr))
			var statusErr *rafthttp.StatusError
			require.ErrorAs(t, err, &statusErr)
			assert.Equal(t, http.StatusForbidden, statusErr.StatusCode, "%v", err)
			assert.Contains(t, statusErr.Body, joiner.Addr, "the reason names the joiner's address")
			assert.Contains(t, statusErr.Body, tt.reason, "the reason says what the joiner answered")
			assert.Less(t, time.Since(start), testWait, "a refused check is not retried")
			assert.Len(t, recorder.Find(isJoinOf(joiner.ID)), 1, "a refused check is not retried")
			requireUnchanged(t, cluster, before)
		})
	}
	t.Run("joiner takes the cluster's token and ID", func(t *testing.T) {
		joiner := clustertest.StartNode(t, "joiner", options(testToken, "blue"))
		require.NoError(t, joiner.Layer.JoinNonvoterContext(t.Context(), joiner.ID, raft.ServerAddress(leader.Addr)))
		cluster.WaitMembers(4)
	})
}

// TestOwnConsumerOfRequests serves the Handler's Requests with code of the
// application's own, as before the reachability check existed: it sees
// the join as sent, and the check it carries runs only if the consumer
// runs it, so a join for an address nobody serves at is the consumer's to
// decide.
func TestOwnConsumerOfRequests(t *testing.T) {
	t.Parallel()
	var connections atomic.Int64
	joiner := rawPeer(t, func(net.Conn) { connections.Add(1) })
	server := startServer(t, serverOptions{})
	taken := answerRequests(t, server.handler, answerWith(nil))

	response := server.do(t, http.MethodPost, url.Values{"id": {"node2"}, "address": {joiner}}.Encode())
	require.Equal(t, http.StatusOK, response.status, "body: %s", response.body)
	request := receive(t, taken, "the join")
	assert.Equal(t, raftmembership.JoinRequest, request.Kind())
	assert.Equal(t, raft.ServerID("node2"), request.ID())
	assert.Equal(t, raft.ServerAddress(joiner), request.Address())
	assert.Zero(t, connections.Load(), "something dialed the joiner")
}
