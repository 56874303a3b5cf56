package rafthttp

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// TestHandlerWrapsConnOnlyWithEarlyBytes checks that raft gets the hijacked
// connection itself unless the peer's early bytes must be replayed, so the
// common case pays nothing for the wrapper.
func TestHandlerWrapsConnOnlyWithEarlyBytes(t *testing.T) {
	t.Parallel()
	const wait = 5 * time.Second
	tests := []struct {
		name   string
		tls    bool
		early  string
		isWrap bool
	}{
		{name: "tcp without early bytes"},
		{name: "tls without early bytes", tls: true},
		{name: "tcp with early bytes", early: "early raft bytes", isWrap: true},
		{name: "tls with early bytes", tls: true, early: "early raft bytes", isWrap: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			handler := NewHandlerWithConfig(HandlerConfig{Logger: hclog.NewNullLogger()})
			server := httptest.NewUnstartedServer(handler)
			if tt.tls {
				server.StartTLS()
			} else {
				server.Start()
			}
			t.Cleanup(server.Close)
			t.Cleanup(handler.Close)

			dialer := &net.Dialer{Timeout: wait}
			var client net.Conn
			var err error
			if tt.tls {
				roots := x509.NewCertPool()
				roots.AddCert(server.Certificate())
				client, err = tls.DialWithDialer(dialer, "tcp", server.Listener.Addr().String(), &tls.Config{RootCAs: roots})
			} else {
				client, err = dialer.Dial("tcp", server.Listener.Addr().String())
			}
			require.NoError(t, err)
			t.Cleanup(func() { client.Close() })
			require.NoError(t, client.SetDeadline(time.Now().Add(wait)))
			_, err = io.WriteString(client, "GET /raft HTTP/1.1\r\nHost: raft\r\nUpgrade: raft\r\n\r\n"+tt.early)
			require.NoError(t, err)
			answer := make([]byte, len(switchingProtocols))
			_, err = io.ReadFull(client, answer)
			require.NoError(t, err)
			require.Equal(t, switchingProtocols, string(answer))

			accepted := make(chan net.Conn, 1)
			go func() {
				conn, err := handler.accept()
				if err == nil {
					accepted <- conn
				}
				close(accepted)
			}()
			var conn net.Conn
			select {
			case conn = <-accepted:
			case <-time.After(wait):
				t.Fatal("no upgraded connection queued")
			}
			require.NotNil(t, conn)
			t.Cleanup(func() { conn.Close() })

			if !tt.isWrap {
				if tt.tls {
					require.IsType(t, &tls.Conn{}, conn)
				} else {
					require.IsType(t, &net.TCPConn{}, conn)
				}
				return
			}
			require.IsType(t, &prefixConn{}, conn)
			got := make([]byte, len(tt.early))
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
			_, err = io.ReadFull(conn, got)
			require.NoError(t, err)
			require.Equal(t, tt.early, string(got))
		})
	}
}
