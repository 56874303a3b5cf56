package rafthttp_test

import (
	"bufio"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// The tests of the cluster ID: HandlerConfig.ClusterID refuses requests
// meant for another cluster, LayerConfig.ClusterID names the cluster on
// every request, and a mismatch comes back to the caller as an error that
// names both IDs.

// TestHandlerClusterIDRefuses sends every kind of request to a Handler in
// cluster "blue", naming no cluster, another one, or more than one: each
// gets a complete 412 that names the Handler's cluster, before anything
// else happens. The Handler has Backlog 1 and a timeout no test waits
// out, so that an upgrade that took a slot, or a body it waited for,
// shows.
func TestHandlerClusterIDRefuses(t *testing.T) {
	t.Parallel()
	join := url.Values{"id": {"node2"}, "address": {"127.0.0.1:9002"}}.Encode()
	upgrade := []string{"Upgrade: raft", "Connection: Upgrade"}
	tests := []struct {
		name   string
		method string
		target string
		lines  []string
		body   string
		// named is the cluster the request names, for the reason to
		// quote; empty for none.
		named string
	}{
		{name: "original upgrade, no ID", method: http.MethodGet, target: raftPath, lines: []string{"Upgrade: raft"}},
		{name: "upgrade, another ID", method: http.MethodGet, target: raftPath, lines: append(upgrade, "Rafthttp-Cluster-Id: green"), named: "green"},
		{name: "upgrade, the ID in another case", method: http.MethodGet, target: raftPath, lines: append(upgrade, "Rafthttp-Cluster-Id: Blue"), named: "Blue"},
		{name: "upgrade, an empty ID", method: http.MethodGet, target: raftPath, lines: append(upgrade, "Rafthttp-Cluster-Id: ")},
		{
			name: "upgrade, two IDs", method: http.MethodGet, target: raftPath,
			lines: append(upgrade, "Rafthttp-Cluster-Id: blue", "Rafthttp-Cluster-Id: green"), named: "green",
		},
		{name: "upgrade, two IDs in one line", method: http.MethodGet, target: raftPath, lines: append(upgrade, "Rafthttp-Cluster-Id: blue, green"), named: "green"},
		{
			// Never sent: a Handler that waited for it would not answer
			// within the test.
			name: "upgrade with early data announced", method: http.MethodGet, target: raftPath,
			lines: append(append(upgrade, announceBody(100)...), "Rafthttp-Cluster-Id: green"), named: "green",
		},
		{
			name: "upgrade with its early data", method: http.MethodGet, target: raftPath,
			lines: append(append(upgrade, announceBody(100)...), "Rafthttp-Cluster-Id: green"), body: randomBytes(100, 2), named: "green",
		},
		{name: "join, no ID", method: http.MethodPost, target: raftPath + "?" + join, lines: []string{"Content-Length: 0"}},
		{name: "join, another ID", method: http.MethodPost, target: raftPath + "?" + join, lines: []string{"Content-Length: 0", "Rafthttp-Cluster-Id: green"}, named: "green"},
		{name: "leave, another ID", method: http.MethodDelete, target: raftPath + "?id=node2", lines: []string{"Rafthttp-Cluster-Id: green"}, named: "green"},
		{name: "other method, no ID", method: http.MethodPut, target: raftPath, lines: []string{"Content-Length: 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{
				config:        rafthttp.HandlerConfig{ClusterID: "blue", Backlog: 1, Timeout: longTimeout},
				clientHeaders: []string{"Rafthttp-Cluster-Id: blue"},
			})
			taken := answerRequests(t, server.handler, answerWith(nil))

			conn := server.dialRaw(t)
			write(t, conn, requestHead(tt.method, tt.target, server.addr(), tt.lines...)+tt.body)
			response := readResponse(t, bufio.NewReader(conn), tt.method)
			require.Equal(t, http.StatusPreconditionFailed, response.status, "body: %s", response.body)
			requirePlainText(t, response)
			assert.Equal(t, []string{"blue"}, response.header.Values("Rafthttp-Cluster-Id"), "the 412 names the Handler's cluster")
			assert.Contains(t, response.body, "cluster ID mismatch")
			assert.Contains(t, response.body, strconv.Quote("blue"))
			if tt.named != "" {
				assert.Contains(t, response.body, tt.named, "the reason quotes the cluster the request named")
			}

			assert.Empty(t, taken, "a refused request reached Requests")
			server.requireNextAccepted(t)
			// A request for the Handler's cluster gets through.
			require.Equal(t, http.StatusOK, server.do(t, http.MethodPost, join).status)
			receive(t, taken, "the join for the Handler's cluster")
		})
	}
}

// TestClusterIDMismatchErrors checks what a Layer in another cluster, or
// in none, gets from a Handler in cluster "blue": Dial, the first Write or
// Read of an early-data connection, Join and Leave each fail, after one
// request, with an error that matches ErrClusterIDMismatch, is a
// *ClusterIDError around the peer's *StatusError, and names both IDs.
func TestClusterIDMismatchErrors(t *testing.T) {
	t.Parallel()
	for _, local := range []string{"green", ""} {
		name := "layer in " + local
		if local == "" {
			name = "layer without an ID"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The node at the address starts in the Layer's cluster, so
			// that the Layer learns it takes early data, and is then
			// replaced by one in cluster blue, as when an address is
			// reused by another cluster.
			recorder := &requestRecorder{}
			var replaced atomic.Bool
			blue := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{ClusterID: "blue", Logger: clustertest.DebugLogger(t, "blue")})
			t.Cleanup(blue.Close)
			server := startServer(t, serverOptions{
				config: rafthttp.HandlerConfig{ClusterID: local},
				wrap: func(next http.Handler) http.Handler {
					return recorder.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if replaced.Load() {
							blue.ServeHTTP(w, r)
							return
						}
						next.ServeHTTP(w, r)
					}))
				},
			})
			learned := newLayer(t, rafthttp.LayerConfig{ClusterID: local})
			dialed, accepted := server.connect(t, learned)
			exchange(t, dialed, accepted)
			replaced.Store(true)
			layer := newLayer(t, rafthttp.LayerConfig{ClusterID: local})
			addr := server.raftAddr()

			calls := map[string]func() error{
				"Dial": func() error {
					conn, err := layer.Dial(addr, testWait)
					if err == nil {
						conn.Close()
					}
					return err
				},
				"Join":  func() error { return layer.Join("node2", addr, testWait) },
				"Leave": func() error { return layer.Leave("node2", addr, testWait) },
				"early data, first Write": func() error {
					conn := dialConn(t, learned, string(addr), testWait)
					// More than the request takes: the Write waits for
					// the answer to send the rest.
					_, err := conn.Write([]byte(randomBytes(4000, 3)))
					return err
				},
				"early data, first Read": func() error {
					conn := dialConn(t, learned, string(addr), testWait)
					write(t, conn, "fits the request")
					require.NoError(t, conn.SetReadDeadline(time.Now().Add(testWait)))
					_, err := conn.Read(make([]byte, 1))
					return err
				},
			}
			for name, call := range calls {
				before := len(recorder.seen())
				err := call()
				require.ErrorIs(t, err, rafthttp.ErrClusterIDMismatch, "%s", name)
				var mismatch *rafthttp.ClusterIDError
				require.ErrorAs(t, err, &mismatch, "%s", name)
				assert.Equal(t, local, mismatch.Local, "%s", name)
				assert.Equal(t, "blue", mismatch.Remote, "%s", name)
				var statusErr *rafthttp.StatusError
				require.ErrorAs(t, err, &statusErr, "%s", name)
				assert.Equal(t, http.StatusPreconditionFailed, statusErr.StatusCode, "%s", name)
				assert.Contains(t, err.Error(), "cluster ID mismatch", "%s", name)
				assert.Contains(t, err.Error(), strconv.Quote("blue"), "%s", name)
				if local != "" {
					assert.Contains(t, err.Error(), strconv.Quote(local), "%s", name)
				} else {
					assert.Contains(t, err.Error(), "none", "%s: the error says this node has no ID", name)
				}
				if strings.HasPrefix(name, "early data") || name == "Dial" {
					requireUpgradeError(t, err, string(addr))
				}
				assert.Len(t, recorder.seen()[before:], 1, "%s: requests the server saw", name)
			}
		})
	}
}

// TestClusterIDCheckedOnlyWhereConfigured checks that a Handler without a
// cluster ID checks none, so that original nodes and Layers without an ID
// get in, and that a Handler with one lets in its own cluster.
func TestClusterIDCheckedOnlyWhereConfigured(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		handlerID string
		layerID   string
	}{
		{name: "neither has one"},
		{name: "only the Layer has one", layerID: "green"},
		{name: "both have the same", handlerID: "blue", layerID: "blue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{ClusterID: tt.handlerID}})
			taken := answerRequests(t, server.handler, answerWith(nil))
			layer := newLayer(t, rafthttp.LayerConfig{ClusterID: tt.layerID})
			for range 2 { // learns, then sends early data
				dialed, accepted := server.connectWriting(t, layer)
				exchange(t, dialed, accepted)
			}
			require.NoError(t, layer.Join("node2", server.raftAddr(), testWait))
			assert.Equal(t, raftmembership.JoinRequest, receive(t, taken, "the join").Kind())
			require.NoError(t, layer.Leave("node2", server.raftAddr(), testWait))
			assert.Equal(t, raftmembership.LeaveRequest, receive(t, taken, "the leave").Kind())
			if tt.handlerID == "" {
				// An original node's request, with no ID, is upgraded.
				conn := server.dialRaw(t)
				write(t, conn, "GET /raft HTTP/1.1\r\nHost: "+server.addr()+"\r\nUser-Agent: Go-http-client/1.1\r\nUpgrade: raft\r\n\r\n")
				require101(t, conn)
				exchange(t, conn, server.accept(t))
			}
		})
	}
}

// TestLayerClusterIDValidated checks that NewLayerWithConfig refuses a
// cluster ID that cannot travel in a header.
func TestLayerClusterIDValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		id    string
		valid bool
	}{
		{name: "name", id: "prod-eu-1", valid: true},
		{name: "UUID", id: "5f0c6a3e-7d2b-4c1e-9a8f-2b7e4d6c1a90", valid: true},
		{name: "inner space", id: "prod eu", valid: true},
		{name: "CRLF", id: "blue\r\nX-Evil: 1"},
		{name: "NUL", id: "blue\x00"},
		{name: "leading space", id: " blue"},
		{name: "trailing tab", id: "blue\t"},
		{name: "too long", id: strings.Repeat("b", 257)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			handler := rafthttp.NewHandler()
			t.Cleanup(handler.Close)
			layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: raftPath, Addr: advertised, Handler: handler, ClusterID: tt.id})
			if tt.valid {
				require.NoError(t, err)
				assert.NoError(t, layer.Close())
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "ClusterID")
		})
	}
}
