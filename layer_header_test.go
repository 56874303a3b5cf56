package rafthttp_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// The tests of LayerConfig.Header and LayerConfig.ClusterID on the
// requests a Layer sends. Refusals of a Layer's requests are tested with
// Authorize (authorize_test.go) and the cluster ID (cluster_id_test.go).

// TestLayerHeadersOnEveryRequest makes every kind of request a Layer
// sends, to a Handler with the same cluster ID: an eager upgrade, the
// first upgrade to a peer (which learns about early data), one with early
// data, a join and a leave. Each carries the Layer's headers and cluster
// ID; a Layer with neither sends neither, as the original package does.
func TestLayerHeadersOnEveryRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		header    http.Header
		clusterID string
	}{
		{
			name:      "headers and cluster ID",
			header:    http.Header{"Authorization": {"Bearer " + testToken}, "X-Multi": {"one", "two"}},
			clusterID: "prod-eu-1",
		},
		{name: "cluster ID only", clusterID: "prod-eu-1"},
		{name: "headers only", header: http.Header{"Authorization": {"Bearer " + testToken}}},
		{name: "nothing configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			recorder := &requestRecorder{}
			server := startServer(t, serverOptions{config: rafthttp.HandlerConfig{ClusterID: tt.clusterID}, wrap: recorder.wrap})
			answerRequests(t, server.handler, answerWith(nil))

			eager := newLayer(t, rafthttp.LayerConfig{Header: tt.header, ClusterID: tt.clusterID, EagerHandshake: true})
			dialed, accepted := server.connect(t, eager)
			exchange(t, dialed, accepted)
			layer := newLayer(t, rafthttp.LayerConfig{Header: tt.header, ClusterID: tt.clusterID})
			for range 2 { // learns, then sends early data
				server.connectWriting(t, layer)
			}
			require.NoError(t, layer.Join("node2", server.raftAddr(), testWait))
			require.NoError(t, layer.Leave("node2", server.raftAddr(), testWait))

			seen := recorder.seen()
			var kinds []string
			for _, request := range seen {
				kind := request.Method
				switch {
				case request.upgrade() && request.ContentLength > 0:
					kind = "upgrade with early data"
				case request.upgrade() && request.Header.Get("Rafthttp-Body") == "0":
					kind = "upgrade that learns"
				case request.upgrade():
					kind = "eager upgrade"
				}
				kinds = append(kinds, kind)
				for name, values := range tt.header {
					assert.Equal(t, values, request.Header.Values(name), "%s: %s", kind, name)
				}
				if tt.header == nil {
					assert.Empty(t, request.Header.Values("Authorization"), "%s", kind)
				}
				if tt.clusterID != "" {
					assert.Equal(t, []string{tt.clusterID}, request.Header.Values("Rafthttp-Cluster-Id"), "%s", kind)
				} else {
					assert.Empty(t, request.Header.Values("Rafthttp-Cluster-Id"), "%s", kind)
				}
			}
			assert.Equal(t, []string{"eager upgrade", "upgrade that learns", "upgrade with early data", http.MethodPost, http.MethodDelete}, kinds)
		})
	}
}

// TestNewLayerWithConfigRefusesHeader checks that NewLayerWithConfig
// refuses, with an error naming the header, what would break the request
// head or override the protocol's own headers, and takes the rest.
func TestNewLayerWithConfigRefusesHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
		valid  bool
		// names is what the error must name, if not the header's name.
		names string
	}{
		{name: "authorization", header: http.Header{"Authorization": {"Bearer " + testToken}}, valid: true},
		{name: "lower case name", header: http.Header{"authorization": {"Bearer x"}}, valid: true},
		{name: "several values", header: http.Header{"X-Multi": {"one", "two"}}, valid: true},
		{name: "tab in a value", header: http.Header{"X-Tab": {"a\tb"}}, valid: true},
		{name: "empty value", header: http.Header{"X-Empty": {""}}, valid: true},
		{name: "token characters", header: http.Header{"X-!#$%&'*+-.^_`|~09az": {"v"}}, valid: true},
		{name: "empty map", header: http.Header{}, valid: true},

		{name: "empty name", header: http.Header{"": {"v"}}, names: `""`},
		{name: "space in the name", header: http.Header{"X Evil": {"v"}}},
		{name: "colon in the name", header: http.Header{"X-Evil:": {"v"}}},
		{name: "CRLF in the name", header: http.Header{"X-Evil\r\nHost": {"v"}}, names: "X-Evil"},
		{name: "non-ASCII name", header: http.Header{"X-Ünï": {"v"}}},
		{name: "CRLF in a value", header: http.Header{"X-Evil": {"v\r\nHost: evil"}}},
		{name: "LF in a value", header: http.Header{"X-Evil": {"v\nHost: evil"}}},
		{name: "CR in a value", header: http.Header{"X-Evil": {"v\r"}}},
		{name: "NUL in a value", header: http.Header{"X-Evil": {"v\x00"}}},
		{name: "DEL in a value", header: http.Header{"X-Evil": {"v\x7f"}}},
		{name: "control character in a later value", header: http.Header{"X-Evil": {"fine", "\x1b[31m"}}},

		{name: "Host", header: http.Header{"Host": {"evil"}}},
		{name: "host", header: http.Header{"host": {"evil"}}},
		{name: "Upgrade", header: http.Header{"Upgrade": {"websocket"}}},
		{name: "Connection", header: http.Header{"CONNECTION": {"close"}}},
		{name: "Content-Length", header: http.Header{"Content-Length": {"0"}}},
		{name: "Transfer-Encoding", header: http.Header{"transfer-encoding": {"chunked"}}},
		{name: "Rafthttp-Body", header: http.Header{"Rafthttp-Body": {"0"}}},
		{name: "Rafthttp-Body-Max", header: http.Header{"Rafthttp-Body-Max": {"4096"}}},
		{name: "Rafthttp-Cluster-Id", header: http.Header{"Rafthttp-Cluster-Id": {"other"}}},
		{name: "rafthttp- in lower case", header: http.Header{"rafthttp-cluster-id": {"other"}}},
		{name: "any Rafthttp- header", header: http.Header{"RAFTHTTP-Future": {"1"}}},
		{name: "one bad among good ones", header: http.Header{"Authorization": {"Bearer x"}, "Upgrade": {"h2c"}}, names: "Upgrade"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			handler := rafthttp.NewHandler()
			t.Cleanup(handler.Close)
			layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
				Path: raftPath, Addr: advertised, Handler: handler, Header: tt.header,
			})
			if tt.valid {
				require.NoError(t, err)
				assert.NoError(t, layer.Close())
				return
			}
			require.Error(t, err)
			assert.Nil(t, layer)
			names := tt.names
			if names == "" {
				for name := range tt.header {
					names = name
				}
			}
			assert.Contains(t, strings.ToLower(err.Error()), strings.ToLower(names), "the error names the header")
			assert.Contains(t, err.Error(), "Header", "the error names the config field")
		})
	}
}

// TestLayerHeaderIsCopied changes the map given as LayerConfig.Header,
// and a value in it, after NewLayerWithConfig: the Layer's requests still
// carry what the map held when the Layer was made.
func TestLayerHeaderIsCopied(t *testing.T) {
	t.Parallel()
	recorder := &requestRecorder{}
	server := startServer(t, serverOptions{wrap: recorder.wrap})
	answerRequests(t, server.handler, answerWith(nil))
	header := http.Header{"Authorization": {"Bearer " + testToken}}
	layer := newLayer(t, rafthttp.LayerConfig{Header: header, EagerHandshake: true})
	header["Authorization"][0] = "Bearer changed"
	header.Add("Authorization", "Bearer added")
	header.Set("X-Added", "later")

	server.connect(t, layer)
	require.NoError(t, layer.Join("node2", server.raftAddr(), testWait))
	seen := recorder.seen()
	require.Len(t, seen, 2)
	for _, request := range seen {
		assert.Equal(t, []string{"Bearer " + testToken}, request.Header.Values("Authorization"), request.Method)
		assert.Empty(t, request.Header.Values("X-Added"), request.Method)
	}
}

// TestEarlyDataRoomWithHeaders measures what a Layer's headers leave of
// the room for early data: with a typical bearer token and a cluster ID,
// over TCP and TLS, the upgrade request with early data still fits one
// segment (1,200 bytes on the wire, as a TLS record over TLS), still
// carries early data, and raft's bytes arrive whole. It logs the figures.
func TestEarlyDataRoomWithHeaders(t *testing.T) {
	t.Parallel()
	const uuid = "5f0c6a3e-7d2b-4c1e-9a8f-2b7e4d6c1a90"
	variants := []struct {
		name      string
		token     bool
		clusterID string
	}{
		{name: "no headers"},
		{name: "token", token: true},
		{name: "token and a short cluster ID", token: true, clusterID: "prod-eu-1"},
		{name: "token and a UUID cluster ID", token: true, clusterID: uuid},
	}
	for _, useTLS := range []bool{false, true} {
		for _, variant := range variants {
			name := transportName(useTLS) + "/" + variant.name
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				config := rafthttp.LayerConfig{ClusterID: variant.clusterID}
				handlerConfig := rafthttp.HandlerConfig{ClusterID: variant.clusterID}
				if variant.token {
					config.Header = tokenHeader(testToken)
					handlerConfig.Authorize = authorizeToken(nil)
				}
				recorder := &requestRecorder{}
				server := startServer(t, serverOptions{tls: useTLS, config: handlerConfig, wrap: recorder.wrap})
				conns := make(chan *recordingConn, 4)
				config.Dial = countingDial(t, server, useTLS, conns)
				layer := newLayer(t, config)

				// The first dial learns that the peer takes early data.
				dialed, accepted := server.connect(t, layer)
				exchange(t, dialed, accepted)
				receive(t, conns, "the first connection")

				conn := dialConn(t, layer, server.addr(), testWait)
				counted := receive(t, conns, "the second connection")
				payload := randomBytes(4000, 7)
				write(t, conn, payload)
				writes := counted.takeWrites()
				require.NotEmpty(t, writes)
				accepted = server.accept(t)
				requireSameBytes(t, payload, readFull(t, accepted, len(payload)), "raft's bytes")

				seen := recorder.seen()
				early := seen[len(seen)-1]
				require.Positive(t, early.ContentLength, "no early data")
				onWire := writes[0]
				t.Logf("%s: the upgrade request with early data is %d bytes on the wire: %d of early data, %d of head (and TLS record)",
					name, onWire, early.ContentLength, onWire-int(early.ContentLength))
				assert.LessOrEqual(t, onWire, 1200, "the request with early data, on the wire")
				// A heartbeat or a vote is a few hundred bytes.
				assert.Greater(t, early.ContentLength, int64(900), "the room left for early data")
			})
		}
	}
}

// countingDial returns a Dial to server, over TLS if useTLS, that
// delivers on conns the TCP connection under each connection it makes,
// with the writes of the TLS handshake forgotten: what it records are the
// writes on the wire of the connection's user.
func countingDial(t *testing.T, server *testServer, useTLS bool, conns chan<- *recordingConn) rafthttp.Dial {
	roots := x509.NewCertPool()
	if useTLS {
		roots.AddCert(server.Certificate())
	}
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		raw, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		counted := newRecordingConn(raw)
		var conn net.Conn = counted
		if useTLS {
			tlsConn := tls.Client(counted, &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"http/1.1"}})
			if err := tlsConn.Handshake(); err != nil {
				raw.Close()
				return nil, err
			}
			counted.takeWrites()
			conn = tlsConn
		}
		conns <- counted
		return conn, nil
	}
}
