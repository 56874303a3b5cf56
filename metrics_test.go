package rafthttp_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metrics "github.com/hashicorp/go-metrics/compat"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// metricsSink makes an in-memory sink the global one, as an application
// does for raft's metrics, for the rest of the test.
func metricsSink(t *testing.T) *metrics.InmemSink {
	t.Helper()
	sink := metrics.NewInmemSink(time.Hour, time.Hour)
	config := metrics.DefaultConfig("")
	config.EnableHostname = false
	config.EnableRuntimeMetrics = false
	_, err := metrics.NewGlobal(config, sink)
	require.NoError(t, err)
	t.Cleanup(func() { metrics.NewGlobal(config, &metrics.BlackholeSink{}) })
	return sink
}

// counter returns the count of the counter name with labels (given as
// "name=value" pairs, in the order emitted), 0 if it was never emitted.
func counter(sink *metrics.InmemSink, name string, labels ...string) int {
	key := name
	for _, label := range labels {
		key += ";" + label
	}
	total := 0
	for _, interval := range sink.Data() {
		interval.RLock()
		if c, ok := interval.Counters[key]; ok {
			total += c.Count
		}
		interval.RUnlock()
	}
	return total
}

// gauge returns the last value of the gauge name.
func gauge(sink *metrics.InmemSink, name string) (float32, bool) {
	data := sink.Data()
	for i := len(data) - 1; i >= 0; i-- {
		data[i].RLock()
		g, ok := data[i].Gauges[name]
		data[i].RUnlock()
		if ok {
			return g.Value, true
		}
	}
	return 0, false
}

// TestMetrics drives each kind of request through a Handler and a Layer
// and checks what reached the sink. Not parallel: the sink is global.
func TestMetrics(t *testing.T) {
	sink := metricsSink(t)
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{
		ClusterID: "prod",
		Authorize: func(r *http.Request) error {
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				return rafthttp.ErrUnauthorized
			}
			return nil
		},
	})
	mux := http.NewServeMux()
	mux.Handle(raftPath, handler)
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	addr := server.Listener.Addr().String()
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: server.Listener.Addr(), Handler: handler, ClusterID: "prod",
		Header: http.Header{"Authorization": {"Bearer s3cret"}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { layer.Close() })

	// An upgrade, eager (the first to this peer), then one with early
	// data; both connections are open, then closed. The gauge counts every
	// Handler of the process, so it is read relative to where it stood.
	before := float32(rafthttp.OpenConns())
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			conn, err := layer.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	first, err := layer.Dial(raft.ServerAddress(addr), testWait)
	require.NoError(t, err)
	firstServer := <-accepted
	second, err := layer.Dial(raft.ServerAddress(addr), testWait)
	require.NoError(t, err)
	_, err = second.Write([]byte("raft's first bytes"))
	require.NoError(t, err)
	secondServer := <-accepted
	open, ok := gauge(sink, "rafthttp.conns.open")
	assert.True(t, ok)
	assert.Equal(t, before+2, open)
	for _, conn := range []net.Conn{first, second, firstServer, secondServer} {
		conn.Close()
	}
	assert.Equal(t, 2, counter(sink, "rafthttp.upgrade", "status=101"))
	assert.Equal(t, 1, counter(sink, "rafthttp.dial", "mode=eager", "outcome=ok"))
	assert.Equal(t, 1, counter(sink, "rafthttp.dial", "mode=early_data", "outcome=ok"))
	open, _ = gauge(sink, "rafthttp.conns.open")
	assert.Equal(t, before, open)

	// Refusals by Authorize and by the cluster-ID check.
	for _, tt := range []struct {
		header http.Header
		status int
	}{
		{http.Header{"Upgrade": {"raft"}, "Connection": {"Upgrade"}}, http.StatusUnauthorized},
		{http.Header{"Upgrade": {"raft"}, "Connection": {"Upgrade"}, "Authorization": {"Bearer s3cret"}, "Rafthttp-Cluster-Id": {"staging"}}, http.StatusPreconditionFailed},
	} {
		request, err := http.NewRequest(http.MethodGet, server.URL+raftPath, nil)
		require.NoError(t, err)
		request.Header = tt.header
		response, err := server.Client().Do(request)
		require.NoError(t, err)
		response.Body.Close()
		require.Equal(t, tt.status, response.StatusCode)
	}
	assert.Equal(t, 1, counter(sink, "rafthttp.refused", "reason=authorize"))
	assert.Equal(t, 1, counter(sink, "rafthttp.refused", "reason=cluster_id"))
	assert.Equal(t, 1, counter(sink, "rafthttp.upgrade", "status=401"))
	assert.Equal(t, 1, counter(sink, "rafthttp.upgrade", "status=412"))

	// A join, a leave and a membership view, answered by a consumer of
	// Requests.
	go func() {
		for request := range handler.Requests() {
			if request.Kind() == raftmembership.MembersRequest {
				request.DoneMembers(&raftmembership.Membership{Servers: []raftmembership.Server{}})
				continue
			}
			request.Done(nil)
		}
	}()
	require.NoError(t, layer.Join("node9", raft.ServerAddress(addr), testWait))
	require.NoError(t, layer.Leave("node9", raft.ServerAddress(addr), testWait))
	_, err = layer.Members(t.Context(), raft.ServerAddress(addr))
	require.NoError(t, err)
	assert.Equal(t, 1, counter(sink, "rafthttp.membership", "status=200", "kind=join"))
	assert.Equal(t, 1, counter(sink, "rafthttp.membership", "status=200", "kind=leave"))
	assert.Equal(t, 1, counter(sink, "rafthttp.membership", "status=200", "kind=members"))

	// A dial that cannot connect.
	_, err = layer.Dial(raft.ServerAddress(clustertest.RefusingAddr(t)), testWait)
	require.Error(t, err)
	assert.Equal(t, 1, counter(sink, "rafthttp.dial", "mode=eager", "outcome=dial"))
}

// TestMetricsEarlyDataFallback: a peer that took early data and then
// refuses a request carrying it makes the Layer fall back, once counted.
func TestMetricsEarlyDataFallback(t *testing.T) {
	sink := metricsSink(t)
	addr, requests := upgradePeer(t, func(i int, conn net.Conn, reader *bufio.Reader) {
		if i == 0 {
			echoEarly(i, conn, reader)
			return
		}
		io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	layer := learnedLayer(t, addr, requests, rafthttp.LayerConfig{})
	conn := dialConn(t, layer, addr, testWait)
	conn.Write([]byte("x"))
	_, err := conn.Read(make([]byte, 1))
	var upgradeErr *rafthttp.UpgradeError
	require.True(t, errors.As(err, &upgradeErr), "read after a refused early-data upgrade: %v", err)
	assert.Equal(t, 1, counter(sink, "rafthttp.dial.early_data_fallback"))
	assert.Equal(t, 1, counter(sink, "rafthttp.dial", "mode=early_data", "outcome=ok"))
}
