package rafthttp_test

import (
	"bufio"
	"crypto/subtle"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// installSnapshotFreeze is what froze every write of a cluster without
// Authorize: raft's InstallSnapshot request type byte and a msgpack header
// announcing a snapshot of 2^62 bytes, which raft's main loop then waits
// to read. Only its start matters here: the upgrade it rides on must be
// refused before raft sees a byte.
var installSnapshotFreeze = []byte{
	2,    // rpcInstallSnapshot
	0x81, // a map of one entry
	0xa4, 'S', 'i', 'z', 'e',
	0xcf, 0x40, 0, 0, 0, 0, 0, 0, 0, // 2^62
}

// TestFindingSnapshotFreezeIsRefused replays the finding that one
// unauthenticated connection could freeze a cluster's writes, against a
// cluster whose Handlers authorize by token: the upgrade is refused with
// 401 before any 101, so raft never reads the header, and writes go on.
func TestFindingSnapshotFreezeIsRefused(t *testing.T) {
	const token = "cluster-token"
	cluster := clustertest.Start(t, 3, clustertest.Options{
		Handler: func(config *rafthttp.HandlerConfig) {
			config.Authorize = func(r *http.Request) error {
				if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
					return rafthttp.ErrUnauthorized
				}
				return nil
			}
		},
		Layer: func(config *rafthttp.LayerConfig) {
			config.Header = http.Header{"Authorization": {"Bearer " + token}}
		},
	})
	leader := cluster.Leader()
	cluster.Apply("before")

	conn, err := net.DialTimeout("tcp", leader.Addr, testWait)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testWait)))
	head := requestHead(http.MethodGet, clustertest.Path, leader.Addr, "Upgrade: raft", "Connection: Upgrade")
	_, err = conn.Write(append([]byte(head), installSnapshotFreeze...))
	require.NoError(t, err)
	response := readResponse(t, bufio.NewReader(conn), http.MethodGet)
	assert.Equal(t, http.StatusUnauthorized, response.status)

	for i := range 20 {
		require.NoError(t, leader.Raft.Apply([]byte{byte(i)}, clustertest.WaitTimeout).Error(), "write %d", i)
	}
	assert.Equal(t, raft.Leader, leader.Raft.State())
}
