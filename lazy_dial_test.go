package rafthttp_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestLazyDialRefusals checks that a lazy dial's refusal comes out of the
// first Read, and every later one, as the *UpgradeError an eager dial
// returns, never as data, and that the conn is then closed; and that a 101
// with bytes behind it yields them.
func TestLazyDialRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer, step string
		timeout            bool
	}{
		{name: "EOF", answer: "close", step: "read response"},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH_9.6\r\n", step: "read response"},
		{name: "503", answer: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 25\r\n\r\nrafthttp: handler closed\n", step: "status"},
		{name: "101 websocket", answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", step: "upgrade header"},
		{name: "silent", answer: "wait", step: "read response", timeout: true},
		{name: "101 and data", answer: dlOriginal101 + "raft bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan string, 1)
			addr := dlRawPeer(t, func(conn net.Conn) {
				reader, _, _, err := dlReadHead(conn)
				if err != nil {
					return
				}
				// Bytes written before the 101 arrive behind the head.
				early := make([]byte, 5)
				io.ReadFull(reader, early)
				got <- string(early)
				if tt.answer == "close" {
					return
				}
				if tt.answer == "wait" {
					dlAwaitClosed(reader)
					return
				}
				io.WriteString(conn, tt.answer)
				dlAwaitClosed(reader)
			})
			logger := clustertest.DebugLogger(t, "layer")
			layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
				Path: "/raft", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
				Handler: rafthttp.NewHandlerWithLogger(logger), Logger: logger, LazyHandshake: true,
			})
			require.NoError(t, err)
			t.Cleanup(func() { layer.Close() })
			conn, err := layer.Dial(raft.ServerAddress(addr), 300*time.Millisecond)
			require.NoError(t, err, "a lazy dial returns once the request is written")
			defer conn.Close()
			_, err = conn.Write([]byte("early"))
			require.NoError(t, err)
			assert.Equal(t, "early", receive(t, got, "early bytes"))

			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if tt.step == "" {
				require.NoError(t, err)
				assert.Equal(t, "raft bytes", string(buf[:n]))
				return
			}
			assert.Zero(t, n)
			upgradeErr := dlUpgradeError(t, err, addr)
			assert.Equal(t, tt.step, upgradeErr.Step, "error: %v", err)
			assert.Equal(t, tt.timeout, upgradeErr.Timeout(), "error: %v", err)
			n, again := conn.Read(buf)
			assert.Zero(t, n)
			assert.Same(t, err, again, "every Read returns the refusal")
			_, err = conn.Write([]byte("x"))
			assert.True(t, errors.Is(err, net.ErrClosed), "the conn is closed: %v", err)
		})
	}
}
