package rafthttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLayerForgetsConnsClosedByUser checks that a connection the user
// closes before Layer.Close is no longer tracked, on the dialing and on the
// accepting side, so the set does not grow with every connection raft ever
// opened and Close does not close them again.
func TestLayerForgetsConnsClosedByUser(t *testing.T) {
	t.Parallel()
	handler := NewHandlerWithLogger(hclog.NewNullLogger())
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	server := httptest.NewUnstartedServer(mux)
	layer, err := NewLayerWithConfig(LayerConfig{Path: "/raft", Addr: server.Listener.Addr(), Handler: handler})
	require.NoError(t, err)
	server.Start()
	t.Cleanup(server.Close)
	t.Cleanup(func() { layer.Close() })

	// The layer dials its own server, so it holds both ends.
	dialed, err := layer.Dial(raft.ServerAddress(server.Listener.Addr().String()), 5*time.Second)
	require.NoError(t, err)
	accepted := make(chan error, 1)
	var acceptedConn io.Closer
	go func() {
		conn, err := layer.Accept()
		acceptedConn = conn
		accepted <- err
	}()
	select {
	case err := <-accepted:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for Accept")
	}
	assert.Equal(t, 2, layer.conns.len(), "both ends are tracked")

	require.NoError(t, dialed.Close())
	assert.Equal(t, 1, layer.conns.len(), "the dialed conn is forgotten once closed")
	require.NoError(t, acceptedConn.Close())
	assert.Equal(t, 0, layer.conns.len(), "the accepted conn is forgotten once closed")

	require.NoError(t, layer.Close())
	assert.Equal(t, 0, layer.conns.len())
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
