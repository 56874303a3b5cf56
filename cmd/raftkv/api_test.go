package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// waitTimeout bounds every wait for the cluster: an election, a join,
	// replication.
	waitTimeout = 20 * time.Second
	pollEvery   = 20 * time.Millisecond
)

func newTestLogger(logs io.Writer, id string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raftkv", Output: logs, Level: hclog.Info}).Named(id)
}

// testNode is a node started by a test and stopped at its end, or earlier
// by the test itself.
type testNode struct {
	*node
	stopOnce sync.Once
}

func (n *testNode) addr() string { return n.layer.Addr().String() }

func (n *testNode) url(path string) string { return "http://" + n.addr() + path }

func (n *testNode) stopNow() { n.stopOnce.Do(n.stop) }

// startTestNode starts a node with config's gaps filled in: a loopback port
// reserved for the test, a temporary data directory and a logger writing
// to t.Log. The reserved port refuses connections once the node stops, as
// its peers, still dialing it, expect, and no other test can take it
// before a restart listens there again.
func startTestNode(t testing.TB, logs io.Writer, config nodeConfig) *testNode {
	t.Helper()
	if config.Listen == "" {
		config.Listen = clustertest.ReservedAddr(t)
	}
	if config.DataDir == "" {
		config.DataDir = t.TempDir()
	}
	if config.Logger == nil {
		config.Logger = newTestLogger(logs, config.ID)
	}
	n, err := startNode(context.Background(), config)
	require.NoError(t, err, "start %s", config.ID)
	tn := &testNode{node: n}
	t.Cleanup(tn.stopNow)
	return tn
}

// startCluster starts count voters: node1 bootstraps, the others join it.
// configure, if not nil, adjusts each node's configuration.
func startCluster(t testing.TB, count int, configure func(*nodeConfig)) []*testNode {
	t.Helper()
	logs := clustertest.LogWriter(t)
	var nodes []*testNode
	for i := 1; i <= count; i++ {
		config := nodeConfig{ID: fmt.Sprintf("node%d", i)}
		if i == 1 {
			config.Bootstrap = true
		} else {
			config.Join = []string{nodes[0].addr()}
		}
		if configure != nil {
			configure(&config)
		}
		nodes = append(nodes, startTestNode(t, logs, config))
		waitLeader(t, nodes)
	}
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			status, err := n.status()
			if err != nil || len(status.Servers) != count {
				return false
			}
		}
		return true
	}, waitTimeout, pollEvery, "the nodes do not agree on %d servers", count)
	return nodes
}

// waitLeader waits until one of nodes leads and every one of them knows it.
func waitLeader(t testing.TB, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	require.Eventually(t, func() bool {
		leader = nil
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range nodes {
			if address, _ := n.leader(); address != leader.addr() {
				return false
			}
		}
		return true
	}, waitTimeout, pollEvery, "no leader known to every node")
	return leader
}

func nodeFollowers(nodes []*testNode, leader *testNode) []*testNode {
	var result []*testNode
	for _, n := range nodes {
		if n != leader {
			result = append(result, n)
		}
	}
	return result
}

// newClient returns a client that keeps no idle connections, so no
// goroutine outlives a test; follow says whether it follows redirects.
func newAPIClient(t testing.TB, follow bool) *http.Client {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout}
	if !follow {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

type reply struct {
	status int
	header http.Header
	body   string
}

// do sends one request; a body of nil sends none, and a body that is not a
// *bytes.Reader or *strings.Reader is sent chunked, without Content-Length.
func do(t testing.TB, client *http.Client, method, url string, body io.Reader) reply {
	t.Helper()
	got, err := send(client, method, url, body)
	require.NoError(t, err, "%s %s", method, url)
	return got
}

// send is do for a condition polled by require.Eventually, which runs it on
// another goroutine where a test must not fail: any error is returned.
func send(client *http.Client, method, url string, body io.Reader) (reply, error) {
	request, err := http.NewRequest(method, url, body)
	if err != nil {
		return reply{}, err
	}
	response, err := client.Do(request)
	if err != nil {
		return reply{}, err
	}
	defer response.Body.Close()
	data, err := io.ReadAll(response.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: response.StatusCode, header: response.Header, body: string(data)}, nil
}

// sendGet is send for a GET that wants status and, for 200, value.
func sendGet(client *http.Client, url string, status int, value string) bool {
	got, err := send(client, http.MethodGet, url, nil)
	return err == nil && got.status == status && (status != http.StatusOK || got.body == value)
}

// chunked hides a reader's length from net/http, so the request goes out
// with Transfer-Encoding: chunked.
type chunked struct{ io.Reader }

func TestAPI(t *testing.T) {
	const maxValue = 1024
	nodes := startCluster(t, 3, func(config *nodeConfig) { config.MaxValue = maxValue })
	leader := waitLeader(t, nodes)
	follower := nodeFollowers(nodes, leader)[0]
	direct := newAPIClient(t, false)
	following := newAPIClient(t, true)

	// eventuallyEverywhere waits until GET key answers status (and value
	// for 200) on every node.
	eventuallyEverywhere := func(t *testing.T, key string, status int, value string) {
		t.Helper()
		for _, n := range nodes {
			require.Eventually(t, func() bool {
				return sendGet(direct, n.url("/kv/"+key), status, value)
			}, waitTimeout, pollEvery, "GET %s on %s: want %d %q", key, n.config.ID, status, value)
		}
	}

	t.Run("put get delete replicate", func(t *testing.T) {
		got := do(t, direct, http.MethodPut, leader.url("/kv/greeting"), strings.NewReader("hello"))
		require.Equal(t, http.StatusNoContent, got.status, got.body)
		assert.Empty(t, got.body)

		// The leader has applied the write when it answers.
		got = do(t, direct, http.MethodGet, leader.url("/kv/greeting"), nil)
		require.Equal(t, http.StatusOK, got.status)
		assert.Equal(t, "hello", got.body)
		assert.Equal(t, "application/octet-stream", got.header.Get("Content-Type"))
		eventuallyEverywhere(t, "greeting", http.StatusOK, "hello")

		got = do(t, direct, http.MethodPut, leader.url("/kv/greeting"), strings.NewReader("bonjour"))
		require.Equal(t, http.StatusNoContent, got.status, got.body)
		eventuallyEverywhere(t, "greeting", http.StatusOK, "bonjour")

		for _, n := range nodes {
			got = do(t, direct, http.MethodGet, n.url("/kv/never-written"), nil)
			assert.Equal(t, http.StatusNotFound, got.status, n.config.ID)
		}

		got = do(t, direct, http.MethodDelete, leader.url("/kv/greeting"), nil)
		require.Equal(t, http.StatusNoContent, got.status, got.body)
		got = do(t, direct, http.MethodGet, leader.url("/kv/greeting"), nil)
		assert.Equal(t, http.StatusNotFound, got.status)
		eventuallyEverywhere(t, "greeting", http.StatusNotFound, "")

		// Deleting a missing key is not an error.
		got = do(t, direct, http.MethodDelete, leader.url("/kv/greeting"), nil)
		assert.Equal(t, http.StatusNoContent, got.status, got.body)
	})

	t.Run("keys", func(t *testing.T) {
		// Keys that are fine, as a path segment and as the key they name.
		tests := []struct {
			name, segment, value string
		}{
			{name: "unicode", segment: "%D0%BA%D0%BB%D1%8E%D1%87", value: "ключ"},
			{name: "space", segment: "a%20b", value: "space"},
			{name: "punctuation", segment: "a.b-c_d~e:f@g", value: "punctuation"},
			{name: "longest", segment: strings.Repeat("k", maxKeyLength), value: "longest"},
			{name: "binary value", segment: "binary", value: "\x00\xff\x01\n"},
			{name: "empty value", segment: "empty", value: ""},
		}
		for _, test := range tests {
			t.Run(test.name, func(t *testing.T) {
				got := do(t, direct, http.MethodPut, leader.url("/kv/"+test.segment), strings.NewReader(test.value))
				require.Equal(t, http.StatusNoContent, got.status, got.body)
				eventuallyEverywhere(t, test.segment, http.StatusOK, test.value)
			})
		}
	})

	t.Run("writes to a follower redirect to the leader", func(t *testing.T) {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			t.Run(method, func(t *testing.T) {
				for _, n := range nodeFollowers(nodes, leader) {
					got := do(t, direct, method, n.url("/kv/redirected"), strings.NewReader("via follower"))
					require.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
					assert.Equal(t, leader.url("/kv/redirected"), got.header.Get("Location"))
				}
				// A key that needs escaping keeps its escaping.
				got := do(t, direct, method, follower.url("/kv/a%20b%25c"), strings.NewReader("x"))
				require.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
				assert.Equal(t, leader.url("/kv/a%20b%25c"), got.header.Get("Location"))
			})
		}

		got := do(t, following, http.MethodPut, follower.url("/kv/redirected"), strings.NewReader("via follower"))
		require.Equal(t, http.StatusNoContent, got.status, got.body)
		got = do(t, direct, http.MethodGet, leader.url("/kv/redirected"), nil)
		require.Equal(t, http.StatusOK, got.status)
		assert.Equal(t, "via follower", got.body)
		eventuallyEverywhere(t, "redirected", http.StatusOK, "via follower")

		got = do(t, following, http.MethodPut, follower.url("/kv/a%20b%25c"), strings.NewReader("escaped"))
		require.Equal(t, http.StatusNoContent, got.status, got.body)
		value, ok := leader.fsm.Get("a b%c")
		require.True(t, ok, "the redirected write reached the key the client named")
		assert.Equal(t, "escaped", string(value))

		got = do(t, following, http.MethodDelete, follower.url("/kv/redirected"), nil)
		require.Equal(t, http.StatusNoContent, got.status, got.body)
		eventuallyEverywhere(t, "redirected", http.StatusNotFound, "")
	})

	t.Run("consistent read", func(t *testing.T) {
		got := do(t, direct, http.MethodPut, leader.url("/kv/linear"), strings.NewReader("izable"))
		require.Equal(t, http.StatusNoContent, got.status, got.body)

		got = do(t, direct, http.MethodGet, leader.url("/kv/linear?consistent=true"), nil)
		require.Equal(t, http.StatusOK, got.status, got.body)
		assert.Equal(t, "izable", got.body)
		got = do(t, direct, http.MethodGet, leader.url("/kv/missing?consistent=true"), nil)
		assert.Equal(t, http.StatusNotFound, got.status, got.body)

		for _, n := range nodeFollowers(nodes, leader) {
			got = do(t, direct, http.MethodGet, n.url("/kv/linear?consistent=true"), nil)
			require.Equal(t, http.StatusTemporaryRedirect, got.status, got.body)
			assert.Equal(t, leader.url("/kv/linear?consistent=true"), got.header.Get("Location"))

			got = do(t, following, http.MethodGet, n.url("/kv/linear?consistent=true"), nil)
			require.Equal(t, http.StatusOK, got.status, got.body)
			assert.Equal(t, "izable", got.body)
		}

		// consistent=false and an absent consistent read locally.
		for _, query := range []string{"", "?consistent=false", "?consistent=0"} {
			eventuallyEverywhere(t, "linear"+query, http.StatusOK, "izable")
			got = do(t, direct, http.MethodGet, follower.url("/kv/linear"+query), nil)
			assert.Equal(t, http.StatusOK, got.status, query)
		}

		for _, query := range []string{"bogus", "yes", "2"} {
			for _, n := range nodes {
				got = do(t, direct, http.MethodGet, n.url("/kv/linear?consistent="+query), nil)
				assert.Equal(t, http.StatusBadRequest, got.status, "consistent=%s on %s", query, n.config.ID)
				assert.Contains(t, got.body, "consistent")
			}
		}
	})

	t.Run("bad keys", func(t *testing.T) {
		tests := []struct {
			name, path, want string
		}{
			{name: "control character", path: "/kv/a%07b", want: "control"},
			{name: "newline", path: "/kv/a%0Ab", want: "control"},
			{name: "DEL", path: "/kv/a%7Fb", want: "control"},
			{name: "longer than 512 bytes", path: "/kv/" + strings.Repeat("k", maxKeyLength+1), want: "longer than 512"},
			{name: "512 bytes of multibyte runes plus one", path: "/kv/" + strings.Repeat("%C3%A9", maxKeyLength/2) + "k", want: "longer than 512"},
			{name: "invalid UTF-8", path: "/kv/%FF", want: "UTF-8"},
			{name: "truncated UTF-8", path: "/kv/a%C3", want: "UTF-8"},
			{name: "no key", path: "/kv/", want: "missing key"},
			{name: "slash", path: "/kv/a/b", want: "/"},
			{name: "trailing slash", path: "/kv/a/", want: "/"},
			// The rule is the key's, not the URL's: a slash sent escaped is
			// still a slash in the key.
			{name: "escaped slash", path: "/kv/a%2Fb", want: "/"},
			{name: "leading escaped slash", path: "/kv/%2Fa", want: "/"},
			{name: "escaped slash alone", path: "/kv/%2F", want: "/"},
		}
		for _, test := range tests {
			t.Run(test.name, func(t *testing.T) {
				// Checked on every node before any redirect.
				for _, n := range nodes {
					for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
						got := do(t, direct, method, n.url(test.path), strings.NewReader("v"))
						assert.Equal(t, http.StatusBadRequest, got.status, "%s %s on %s: %s", method, test.path, n.config.ID, got.body)
						assert.Contains(t, got.body, test.want)
					}
					got := do(t, direct, http.MethodGet, n.url(test.path+"?consistent=true"), nil)
					assert.Equal(t, http.StatusBadRequest, got.status, "consistent GET %s on %s", test.path, n.config.ID)
				}
			})
		}
		assert.Equal(t, 0, countKeys(leader, func(key string) bool {
			return strings.ContainsFunc(key, func(r rune) bool { return r < ' ' || r == '/' })
		}), "a bad key was stored")
	})

	t.Run("other methods", func(t *testing.T) {
		for _, method := range []string{http.MethodPost, http.MethodPatch, "PROPFIND"} {
			for _, n := range nodes {
				got := do(t, direct, method, n.url("/kv/x"), strings.NewReader("v"))
				assert.Equal(t, http.StatusMethodNotAllowed, got.status, "%s on %s", method, n.config.ID)
				allow := strings.Split(got.header.Get("Allow"), ",")
				for i := range allow {
					allow[i] = strings.TrimSpace(allow[i])
				}
				assert.Subset(t, allow, []string{"GET", "PUT", "DELETE"}, "Allow: %q", got.header.Get("Allow"))
				assert.NotContains(t, allow, method)
			}
		}
		got := do(t, direct, http.MethodHead, leader.url("/kv/x"), nil)
		assert.Equal(t, http.StatusNotFound, got.status, "HEAD is GET without a body")
	})

	t.Run("value size", func(t *testing.T) {
		atLimit := bytes.Repeat([]byte{'v'}, maxValue)
		overLimit := bytes.Repeat([]byte{'v'}, maxValue+1)
		tests := []struct {
			name   string
			target *testNode
			body   io.Reader
			want   int
		}{
			{name: "at the limit", target: leader, body: bytes.NewReader(atLimit), want: http.StatusNoContent},
			{name: "at the limit chunked", target: leader, body: chunked{bytes.NewReader(atLimit)}, want: http.StatusNoContent},
			{name: "over the limit", target: leader, body: bytes.NewReader(overLimit), want: http.StatusRequestEntityTooLarge},
			{name: "over the limit chunked", target: leader, body: chunked{bytes.NewReader(overLimit)}, want: http.StatusRequestEntityTooLarge},
			{name: "far over the limit chunked", target: leader, body: chunked{bytes.NewReader(bytes.Repeat(overLimit, 64))}, want: http.StatusRequestEntityTooLarge},
			// Content-Length is checked before the redirect, so the client
			// does not send a value the leader would refuse.
			{name: "over the limit on a follower", target: follower, body: bytes.NewReader(overLimit), want: http.StatusRequestEntityTooLarge},
		}
		for _, test := range tests {
			t.Run(test.name, func(t *testing.T) {
				got := do(t, direct, http.MethodPut, test.target.url("/kv/sized"), test.body)
				require.Equal(t, test.want, got.status, got.body)
				if test.want == http.StatusRequestEntityTooLarge {
					assert.Contains(t, got.body, "larger than 1024 bytes")
				}
			})
		}
		got := do(t, direct, http.MethodGet, leader.url("/kv/sized"), nil)
		require.Equal(t, http.StatusOK, got.status)
		assert.Equal(t, string(atLimit), got.body, "a refused value leaves the stored one")
	})

	t.Run("status", func(t *testing.T) {
		// Let the followers apply everything so applied_index is comparable.
		require.Eventually(t, func() bool {
			for _, n := range nodes {
				if n.raft.AppliedIndex() != leader.raft.AppliedIndex() {
					return false
				}
			}
			return true
		}, waitTimeout, pollEvery)
		for _, n := range nodes {
			got := do(t, direct, http.MethodGet, n.url("/status"), nil)
			require.Equal(t, http.StatusOK, got.status, got.body)
			assert.Equal(t, "application/json", got.header.Get("Content-Type"))
			var status map[string]any
			require.NoError(t, json.Unmarshal([]byte(got.body), &status), got.body)
			assert.Equal(t, []string{"applied_index", "id", "leader", "servers", "state", "term"}, sortedKeys(status), got.body)

			assert.Equal(t, n.config.ID, status["id"])
			wantState := "Follower"
			if n == leader {
				wantState = "Leader"
			}
			assert.Equal(t, wantState, status["state"])
			assert.Greater(t, status["term"], float64(0))
			assert.Greater(t, status["applied_index"], float64(0))

			leaderJSON, ok := status["leader"].(map[string]any)
			require.True(t, ok, "leader is %T", status["leader"])
			assert.Equal(t, []string{"address", "id"}, sortedKeys(leaderJSON))
			assert.Equal(t, leader.config.ID, leaderJSON["id"])
			assert.Equal(t, leader.addr(), leaderJSON["address"])

			servers, ok := status["servers"].([]any)
			require.True(t, ok, "servers is %T", status["servers"])
			require.Len(t, servers, len(nodes))
			wantServers := map[string]string{}
			for _, n := range nodes {
				wantServers[n.config.ID] = n.addr()
			}
			gotServers := map[string]string{}
			for _, server := range servers {
				server, ok := server.(map[string]any)
				require.True(t, ok)
				assert.Equal(t, []string{"address", "id", "suffrage"}, sortedKeys(server))
				assert.Equal(t, "Voter", server["suffrage"])
				gotServers[server["id"].(string)] = server["address"].(string)
			}
			assert.Equal(t, wantServers, gotServers)
		}

		got := do(t, direct, http.MethodPost, leader.url("/status"), nil)
		assert.Equal(t, http.StatusMethodNotAllowed, got.status)
	})
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func countKeys(n *testNode, match func(string) bool) int {
	n.fsm.mu.RLock()
	defer n.fsm.mu.RUnlock()
	count := 0
	for key := range n.fsm.data {
		if match(key) {
			count++
		}
	}
	return count
}

// TestAPINoLeader stops the leader of a two-node cluster: the survivor
// cannot elect itself, so it knows no leader.
func TestAPINoLeader(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	leader := waitLeader(t, nodes)
	survivor := nodeFollowers(nodes, leader)[0]
	direct := newAPIClient(t, false)

	got := do(t, direct, http.MethodPut, leader.url("/kv/before"), strings.NewReader("the outage"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	require.Eventually(t, func() bool {
		_, ok := survivor.fsm.Get("before")
		return ok
	}, waitTimeout, pollEvery)

	leader.stopNow()

	var status map[string]any
	require.Eventually(t, func() bool {
		got, err := send(direct, http.MethodGet, survivor.url("/status"), nil)
		if err != nil || got.status != http.StatusOK {
			return false
		}
		status = nil
		if json.Unmarshal([]byte(got.body), &status) != nil {
			return false
		}
		leader, present := status["leader"]
		return present && leader == nil
	}, waitTimeout, pollEvery, "the survivor still reports a leader")
	assert.Equal(t, []string{"applied_index", "id", "leader", "servers", "state", "term"}, sortedKeys(status))
	assert.NotEqual(t, "Leader", status["state"])
	assert.Len(t, status["servers"], 2)

	tests := []struct {
		name, method, path string
	}{
		{name: "put", method: http.MethodPut, path: "/kv/during"},
		{name: "delete", method: http.MethodDelete, path: "/kv/before"},
		{name: "consistent get", method: http.MethodGet, path: "/kv/before?consistent=true"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := do(t, direct, test.method, survivor.url(test.path), strings.NewReader("v"))
			assert.Equal(t, http.StatusServiceUnavailable, got.status, got.body)
			assert.NotEmpty(t, got.header.Get("Retry-After"))
			assert.Empty(t, got.header.Get("Location"))
		})
	}

	t.Run("local read still works", func(t *testing.T) {
		got := do(t, direct, http.MethodGet, survivor.url("/kv/before"), nil)
		require.Equal(t, http.StatusOK, got.status)
		assert.Equal(t, "the outage", got.body)
	})
}

// TestNodeRestart restarts a single-node cluster from its data directory,
// with neither Bootstrap nor Join.
func TestNodeRestart(t *testing.T) {
	logs := clustertest.LogWriter(t)
	dir := t.TempDir()
	config := nodeConfig{ID: "node1", DataDir: dir, Bootstrap: true, SnapshotThreshold: 16, SnapshotInterval: 50 * time.Millisecond}
	first := startTestNode(t, logs, config)
	waitLeader(t, []*testNode{first})
	direct := newAPIClient(t, false)
	for i := range 40 {
		got := do(t, direct, http.MethodPut, first.url(fmt.Sprintf("/kv/k%d", i)), strings.NewReader(fmt.Sprint(i)))
		require.Equal(t, http.StatusNoContent, got.status, got.body)
	}
	require.Eventually(t, func() bool {
		snapshots, err := first.snapshots.List()
		return err == nil && len(snapshots) > 0
	}, waitTimeout, pollEvery, "no snapshot taken")
	got := do(t, direct, http.MethodPut, first.url("/kv/after-snapshot"), strings.NewReader("in the log"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	first.stopNow()

	// The restart listens where the cluster's configuration says it is:
	// on the port startTestNode reserved.
	config.Listen = first.addr()
	config.Bootstrap = false
	second := startTestNode(t, logs, config)
	assert.True(t, second.existing)
	waitLeader(t, []*testNode{second})
	assert.NotEqual(t, "0", second.raft.Stats()["last_snapshot_index"], "restored from a snapshot")
	for i := range 40 {
		got := do(t, direct, http.MethodGet, second.url(fmt.Sprintf("/kv/k%d?consistent=true", i)), nil)
		require.Equal(t, http.StatusOK, got.status)
		assert.Equal(t, fmt.Sprint(i), got.body)
	}
	got = do(t, direct, http.MethodGet, second.url("/kv/after-snapshot?consistent=true"), nil)
	require.Equal(t, http.StatusOK, got.status)
	assert.Equal(t, "in the log", got.body)
}
