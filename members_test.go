package rafthttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// The tests of the membership view: GET <path> without Upgrade, and
// Layer.Members, its client.

// getMembers sends a plain GET for the membership view to addr, with
// header lines, following no redirect.
func getMembers(t *testing.T, client *http.Client, url string, header ...string) httpResponse {
	t.Helper()
	request, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	for _, line := range header {
		name, value, _ := strings.Cut(line, ":")
		request.Header.Add(name, strings.TrimSpace(value))
	}
	response, err := client.Do(request)
	require.NoError(t, err)
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	require.NoError(t, err)
	return httpResponse{status: response.StatusCode, header: response.Header, body: string(body)}
}

// plainClient follows no redirect and keeps no connection.
func plainClient(t *testing.T) *http.Client {
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		Timeout:       testWait,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// requireMembershipJSON checks that body is exactly the documented format
// and returns it decoded.
func requireMembershipJSON(t *testing.T, body string) *rafthttp.Membership {
	t.Helper()
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(body), &raw), body)
	assert.Equal(t, []string{"leader", "servers"}, sortedMapKeys(raw), body)
	if string(raw["leader"]) != "null" {
		var leader map[string]any
		require.NoError(t, json.Unmarshal(raw["leader"], &leader), body)
		assert.Equal(t, []string{"address", "id"}, sortedMapKeys(leader), body)
	}
	var servers []map[string]any
	require.NoError(t, json.Unmarshal(raw["servers"], &servers), body)
	require.NotNil(t, servers, "servers is a list, never null: %s", body)
	for _, server := range servers {
		assert.Equal(t, []string{"address", "id", "suffrage"}, sortedMapKeys(server), body)
	}
	var membership rafthttp.Membership
	require.NoError(t, json.Unmarshal([]byte(body), &membership))
	return &membership
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// TestHandlerMembers asks every node of a three-node cluster, one of them
// a non-voter, for its view, with curl's plain GET and with Layer.Members:
// leader and followers alike answer with the leader and every server with
// its suffrage.
func TestHandlerMembers(t *testing.T) {
	t.Parallel()
	cluster := clustertest.StartNodes(t, 3, clustertest.Options{})
	first, voter, nonvoter := cluster.Nodes[0], cluster.Nodes[1], cluster.Nodes[2]
	first.Bootstrap()
	cluster.Leader()
	ctx, cancel := context.WithTimeout(t.Context(), clustertest.WaitTimeout)
	defer cancel()
	require.NoError(t, voter.Layer.JoinContext(ctx, voter.ID, raft.ServerAddress(first.Addr)))
	require.NoError(t, nonvoter.Layer.JoinNonvoterContext(ctx, nonvoter.ID, raft.ServerAddress(first.Addr)))
	cluster.WaitMembers(3)
	leader := cluster.WaitLeaderKnown()

	want := &rafthttp.Membership{
		Leader: &raftmembership.Leader{ID: leader.ID, Address: raft.ServerAddress(leader.Addr)},
		Servers: []raftmembership.Server{
			{ID: first.ID, Address: raft.ServerAddress(first.Addr), Suffrage: "Voter"},
			{ID: voter.ID, Address: raft.ServerAddress(voter.Addr), Suffrage: "Voter"},
			{ID: nonvoter.ID, Address: raft.ServerAddress(nonvoter.Addr), Suffrage: "Nonvoter"},
		},
	}
	client := plainClient(t)
	for _, node := range cluster.Nodes {
		// A follower may not have the last configuration entry yet.
		clustertest.Eventually(t, func() error {
			response := getMembers(t, client, "http://"+node.Addr+clustertest.Path)
			if response.status != http.StatusOK {
				return fmt.Errorf("%s: got %d: %s", node.ID, response.status, response.body)
			}
			var got rafthttp.Membership
			if err := json.Unmarshal([]byte(response.body), &got); err != nil || len(got.Servers) != 3 {
				return fmt.Errorf("%s: %s", node.ID, response.body)
			}
			return nil
		})
		response := getMembers(t, client, "http://"+node.Addr+clustertest.Path)
		require.Equal(t, http.StatusOK, response.status, response.body)
		assert.Equal(t, "application/json", response.header.Get("Content-Type"))
		assert.Equal(t, "no-store", response.header.Get("Cache-Control"))
		assert.Equal(t, want, requireMembershipJSON(t, response.body), "%s's view", node.ID)

		// Layer.Members, from another node, reads the same.
		other := cluster.Nodes[(slices.Index(cluster.Nodes, node)+1)%3]
		got, err := other.Layer.Members(ctx, raft.ServerAddress(node.Addr))
		require.NoError(t, err)
		assert.Equal(t, want, got, "%s's view through Layer.Members", node.ID)
	}
}

// TestHandlerMembersNoLeader: a node that knows of no leader, and has no
// configuration yet, answers "leader": null and an empty list.
func TestHandlerMembersNoLeader(t *testing.T) {
	t.Parallel()
	node := clustertest.StartNode(t, "lonely", clustertest.Options{})
	response := getMembers(t, plainClient(t), "http://"+node.Addr+clustertest.Path)
	require.Equal(t, http.StatusOK, response.status, response.body)
	assert.JSONEq(t, `{"leader": null, "servers": []}`, response.body)
	requireMembershipJSON(t, response.body)
}

// answerMembers is an outcome for answerRequests that answers membership
// requests with view and every other request with nil.
func answerMembers(view *rafthttp.Membership) func(*raftmembership.ChangeRequest) error {
	return func(request *raftmembership.ChangeRequest) error {
		if request.Kind() == raftmembership.MembersRequest {
			request.DoneMembers(view)
		}
		return nil
	}
}

var exampleView = &rafthttp.Membership{
	Leader:  &raftmembership.Leader{ID: "node1", Address: "10.0.0.1:8080"},
	Servers: []raftmembership.Server{{ID: "node1", Address: "10.0.0.1:8080", Suffrage: "Voter"}},
}

// TestHandlerMembersUnanswered: with nobody consuming Requests, the view
// is a 503 with Retry-After after the Handler's timeout; with
// MaxPendingChanges views waiting, the next is a 503 at once; and a
// consumer that answers without a view is a 500, not an empty 200.
func TestHandlerMembersUnanswered(t *testing.T) {
	t.Parallel()
	t.Run("nobody consumes", func(t *testing.T) {
		t.Parallel()
		server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Timeout: shortTimeout}})
		start := time.Now()
		response := server.do(t, http.MethodGet, "")
		require.Equal(t, http.StatusServiceUnavailable, response.status, response.body)
		requireRetryAfter(t, response)
		requirePlainText(t, response)
		assert.GreaterOrEqual(t, time.Since(start), shortTimeout)
	})
	t.Run("bounded with joins and leaves", func(t *testing.T) {
		t.Parallel()
		server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{Timeout: longTimeout, MaxPendingChanges: 1}})
		taken := answerRequests(t, server.handler, nil) // takes, never answers
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		first := make(chan error, 1)
		go func() {
			_, err := server.tryDo(ctx, http.MethodGet, "")
			first <- err
		}()
		request := receive(t, taken, "the first view to reach Requests")
		assert.Equal(t, raftmembership.MembersRequest, request.Kind())
		var response httpResponse
		elapsed := within(t, "the second view's refusal", testWait, func() {
			response = server.do(t, http.MethodGet, "")
		})
		require.Equal(t, http.StatusServiceUnavailable, response.status, response.body)
		requireRetryAfter(t, response)
		assert.Less(t, elapsed, longTimeout)
		// A join waits in the same bound.
		response = server.do(t, http.MethodPost, "id=node2&address=127.0.0.1:9002")
		require.Equal(t, http.StatusServiceUnavailable, response.status, response.body)
		cancel()
		<-first
	})
	t.Run("consumer without a view", func(t *testing.T) {
		t.Parallel()
		server := startServer(t, serverOptions{})
		answerRequests(t, server.handler, answerWith(nil))
		response := server.do(t, http.MethodGet, "")
		require.Equal(t, http.StatusInternalServerError, response.status, response.body)
		assert.Contains(t, response.body, "MembersRequest")
	})
}

// TestHandlerMembersChecks: the view passes through Authorize and the
// cluster ID check like every other request, and nothing reaches Requests
// before both let it through.
func TestHandlerMembersChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header []string
		want   int
	}{
		{name: "no credentials", header: []string{"Rafthttp-Cluster-Id: blue"}, want: http.StatusUnauthorized},
		{name: "forbidden token", header: []string{"Authorization: Bearer " + forbiddenToken, "Rafthttp-Cluster-Id: blue"}, want: http.StatusForbidden},
		{name: "no cluster ID", header: []string{"Authorization: Bearer " + testToken}, want: http.StatusPreconditionFailed},
		{name: "other cluster", header: []string{"Authorization: Bearer " + testToken, "Rafthttp-Cluster-Id: green"}, want: http.StatusPreconditionFailed},
		{name: "allowed", header: []string{"Authorization: Bearer " + testToken, "Rafthttp-Cluster-Id: blue"}, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{
				Authorize: authorizeToken(nil), ClusterID: "blue", Timeout: longTimeout,
			}})
			taken := answerRequests(t, server.handler, answerMembers(exampleView))
			response := getMembers(t, server.httpClient(), server.URL+raftPath, tt.header...)
			require.Equal(t, tt.want, response.status, response.body)
			if tt.want != http.StatusOK {
				requirePlainText(t, response)
				assert.Empty(t, taken, "a refused view reached Requests")
				return
			}
			assert.Equal(t, exampleView, requireMembershipJSON(t, response.body))
		})
	}
}

// TestLayerMembersTLS: Members dials with the Layer's Dial, so a TLS
// cluster's view is read over TLS, with the Layer's Header and cluster
// ID; the wrong credentials or cluster are errors that say so.
func TestLayerMembersTLS(t *testing.T) {
	t.Parallel()
	server := startServer(t, serverOptions{tls: true, config: rafthttp.HandlerConfig{
		Authorize: authorizeToken(nil), ClusterID: "blue", Timeout: longTimeout,
	}})
	taken := answerRequests(t, server.handler, answerMembers(exampleView))
	dial := rafthttp.NewDialTLS(trust(server.Server))

	layer := newLayer(t, rafthttp.LayerConfig{Dial: dial, Header: tokenHeader(testToken), ClusterID: "blue"})
	got, err := layer.Members(t.Context(), server.raftAddr())
	require.NoError(t, err)
	assert.Equal(t, exampleView, got)
	request := receive(t, taken, "the view to reach Requests")
	assert.Equal(t, raftmembership.MembersRequest, request.Kind())

	var status *rafthttp.StatusError
	_, err = newLayer(t, rafthttp.LayerConfig{Dial: dial, ClusterID: "blue"}).Members(t.Context(), server.raftAddr())
	require.ErrorAs(t, err, &status)
	assert.Equal(t, http.StatusUnauthorized, status.StatusCode)

	_, err = newLayer(t, rafthttp.LayerConfig{Dial: dial, Header: tokenHeader(testToken), ClusterID: "green"}).Members(t.Context(), server.raftAddr())
	require.ErrorIs(t, err, rafthttp.ErrClusterIDMismatch)

	// Plain TCP to a TLS server is no view.
	_, err = newLayer(t, rafthttp.LayerConfig{Header: tokenHeader(testToken), ClusterID: "blue"}).Members(t.Context(), server.raftAddr())
	require.Error(t, err)
}

// TestLayerMembersFollowsNothing: a redirect or a 503 is the answer, not a
// reason to ask again or elsewhere.
func TestLayerMembersFollowsNothing(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			elsewhere := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(exampleView)
			})
			target := newScriptedServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if status == http.StatusServiceUnavailable {
					w.Header().Set("Retry-After", "0")
					http.Error(w, "try later", status)
					return
				}
				redirectTo("", elsewhere.addr, status)(w, r, n)
			})
			layer := newLayer(t, rafthttp.LayerConfig{})
			_, err := layer.Members(t.Context(), raft.ServerAddress(target.addr))
			var statusErr *rafthttp.StatusError
			require.ErrorAs(t, err, &statusErr)
			assert.Equal(t, status, statusErr.StatusCode)
			assert.Equal(t, 1, target.count(), "requests to the target")
			assert.Equal(t, 0, elsewhere.count(), "requests to the redirect's Location")
			seen := target.seen()
			assert.Equal(t, http.MethodGet, seen[0].Method)
			assert.Empty(t, seen[0].Header.Get("Upgrade"))
			target.requireConnsClosed(t)
		})
	}
}

// TestLayerMembersBadAnswer: a 200 whose body is not the membership view
// is an error saying so, not an empty or partial view.
func TestLayerMembersBadAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, contentType, body string }{
		{name: "HTML", contentType: "text/html", body: "<html><body>It works!</body></html>"},
		{name: "empty", contentType: "application/json", body: ""},
		{name: "null", contentType: "application/json", body: "null"},
		{name: "array", contentType: "application/json", body: `[{"id": "node1"}]`},
		{name: "no servers", contentType: "application/json", body: `{"leader": null}`},
		{name: "servers not a list", contentType: "application/json", body: `{"leader": null, "servers": {}}`},
		{name: "server without address", contentType: "application/json", body: `{"leader": null, "servers": [{"id": "node1", "suffrage": "Voter"}]}`},
		{name: "cut short", contentType: "application/json", body: `{"leader": null, "servers": [`},
		{name: "two objects", contentType: "application/json", body: `{"leader": null, "servers": []} {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Content-Type", tt.contentType)
				io.WriteString(w, tt.body)
			})
			layer := newLayer(t, rafthttp.LayerConfig{})
			got, err := layer.Members(t.Context(), raft.ServerAddress(server.addr))
			require.Error(t, err)
			assert.Nil(t, got)
			assert.Contains(t, err.Error(), "not a membership view")
			assert.Contains(t, err.Error(), server.addr)
			var status *rafthttp.StatusError
			assert.False(t, errors.As(err, &status), "a 200 is no refusal: %v", err)
			assert.Equal(t, 1, server.count())
		})
	}
}

// TestLayerMembersBounded: Members ends with its context, and with Close.
func TestLayerMembersBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	server := newScriptedServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	layer := newLayer(t, rafthttp.LayerConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), shortTimeout)
	defer cancel()
	var err error
	within(t, "Members bounded by its context", testWait, func() {
		_, err = layer.Members(ctx, raft.ServerAddress(server.addr))
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	closed := make(chan error, 1)
	go func() {
		_, err := layer.Members(t.Context(), raft.ServerAddress(server.addr))
		closed <- err
	}()
	require.Eventually(t, func() bool { return server.count() == 2 }, testWait, 5*time.Millisecond)
	require.NoError(t, layer.Close())
	require.ErrorIs(t, receive(t, closed, "Members to end on Close"), rafthttp.ErrClosed)
	_, err = layer.Members(t.Context(), raft.ServerAddress(server.addr))
	require.ErrorIs(t, err, rafthttp.ErrClosed)
}

// This example asks a node of a three-node cluster, over the Layer's own
// Dial, which servers it knows and which one leads. curl gets the same
// JSON: curl http://node/raft.
func ExampleLayer_Members() {
	var nodes []*exampleNode
	for _, id := range []string{"node1", "node2", "node3"} {
		node, err := startExampleNode(raft.ServerID(id))
		if err != nil {
			log.Fatal(err)
		}
		defer node.stop()
		nodes = append(nodes, node)
	}
	first := nodes[0]
	err := first.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: first.id, Address: first.transport.LocalAddr()},
	}}).Error()
	if err != nil {
		log.Fatal(err)
	}
	for _, node := range nodes[1:] {
		if err := node.layer.Join(node.id, first.transport.LocalAddr(), 10*time.Second); err != nil {
			log.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	membership, err := nodes[2].layer.Members(ctx, first.transport.LocalAddr())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", membership.Leader.ID)
	for _, server := range membership.Servers {
		fmt.Println(server.ID, server.Suffrage)
	}
	// Output:
	// leader: node1
	// node1 Voter
	// node2 Voter
	// node3 Voter
}
