package rafthttp_test

import (
	"bufio"
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/raftmembership"
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

// TestFindingRedirectKeepsHashInQuery replays what FuzzMembershipQuery
// found: a join whose query holds a bare '#' (net/http takes it as a plain
// byte of the query, and so does the Handler) was redirected to the leader
// with the '#' as it came, which in Location starts a fragment: the leader
// got the query cut short there, here without the address. The redirect
// must carry the same query values.
func TestFindingRedirectKeepsHashInQuery(t *testing.T) {
	t.Parallel()
	const leader = "10.0.0.9:8080"
	server := startServer(t, serverOptions{})
	taken := answerRequests(t, server.handler, answerWith(raftmembership.NewErrDifferentLeader(leader)))
	conn := server.dialRaw(t)
	write(t, conn, requestHead(http.MethodPost, "/raft?id=node#2&address=127.0.0.1:9002", server.addr(), "Content-Length: 0"))
	response := readResponse(t, bufio.NewReader(conn), http.MethodPost)
	require.Equal(t, http.StatusTemporaryRedirect, response.status, "body: %s", response.body)
	assert.Equal(t, raft.ServerID("node#2"), receive(t, taken, "the join on Requests").ID())

	location, err := url.Parse(response.header.Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, leader, location.Host)
	assert.Empty(t, location.Fragment, "Location %q", response.header.Get("Location"))
	assert.Equal(t, url.Values{"id": {"node#2"}, "address": {"127.0.0.1:9002"}}, location.Query())
}

// TestFindingUpgradeTokenBesideUnicodeSpace replays what FuzzHandlerRequest
// and FuzzDialAnswer found: the Upgrade header's list elements were
// trimmed of Unicode white space, so that "\u0085raft" or "raft\u00a0"
// counted as the token raft, which RFC 9110 separates from its neighbours
// by spaces and tabs only. A Handler answered such a request with 101,
// and a dial took such a 101 for a switch to raft.
func TestFindingUpgradeTokenBesideUnicodeSpace(t *testing.T) {
	t.Parallel()
	t.Run("Handler", func(t *testing.T) {
		t.Parallel()
		server := startServer(t, serverOptions{})
		conn := server.dialRaw(t)
		write(t, conn, requestHead(http.MethodGet, raftPath, server.addr(), "Upgrade: \u0085raft", "Connection: Upgrade"))
		response := readResponse(t, bufio.NewReader(conn), http.MethodGet)
		assert.Equal(t, http.StatusBadRequest, response.status, "body: %s", response.body)
		server.requireNextAccepted(t)
	})
	t.Run("dial", func(t *testing.T) {
		t.Parallel()
		addr, requests := upgradePeer(t, answerThenAwaitClose("HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\u00a0\r\n\r\n"))
		_, err := eagerLayer(t, nil).Dial(raft.ServerAddress(addr), testWait)
		assert.Equal(t, rafthttp.StepUpgradeHeader, requireUpgradeError(t, err, addr).Step)
		receive(t, requests, "the upgrade request")
	})
}

// TestFindingRedirectWithBadLocationIsNotRetried replays what
// FuzzJoinAnswer found: an answer of 301, 302 or 303, or of 307 or 308,
// whose Location does not parse was retried until the join's time ran
// out, and the error then named no status: net/http's Client parsed the
// Location before handing the answer back, and its error looked like a
// network one. A 3xx but 307 and 308 is a final refusal, and a redirect
// that cannot be followed is a final error.
func TestFindingRedirectWithBadLocationIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			server := newScriptedServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Location", "%")
				w.WriteHeader(status)
			})
			dial := recordDial(rafthttp.NewDialTCP())
			err := rafthttp.ChangeMembership(raftmembership.JoinRequest, raftPath, dial.Dial, "node1", "10.0.0.1:8080", server.addr, testWait)
			require.Error(t, err)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, 1, server.count(), "a final answer was retried")
			if status != http.StatusTemporaryRedirect && status != http.StatusPermanentRedirect {
				var statusErr *rafthttp.StatusError
				require.ErrorAs(t, err, &statusErr)
				assert.Equal(t, status, statusErr.StatusCode)
			}
			requireAllClosed(t, dial, server)
		})
	}
}
