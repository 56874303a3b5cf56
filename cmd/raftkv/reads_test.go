package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
)

// readGrowthLimit is how many log entries a run of consistent reads may
// append: one barrier per term, and room for one change of leader (its
// no-op entry and its barrier).
const readGrowthLimit = 3

// consistentGet reads key with ?consistent=true through n; a client that
// follows redirects reads through the leader.
func consistentGet(client *http.Client, n *testNode, key string) (reply, error) {
	return send(client, http.MethodGet, n.url("/kv/"+key+"?consistent=true"), nil)
}

// TestConsistentReadsDoNotWrite sends 200 consistent reads, to the leader
// and through followers' redirects, 8 at a time: they may append the
// term's barrier, no more.
func TestConsistentReadsDoNotWrite(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	following := newAPIClient(t, true)
	got := do(t, following, http.MethodPut, leader.url("/kv/key"), strings.NewReader("value"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)

	before := leader.raft.LastIndex()
	const reads, readers = 200, 8
	var next atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for i := next.Add(1); i <= reads; i = next.Add(1) {
				via := nodes[i%int64(len(nodes))]
				got, err := consistentGet(following, via, "key")
				if assert.NoError(t, err, "read %d via %s", i, via.config.ID) {
					assert.Equal(t, http.StatusOK, got.status, "read %d via %s: %s", i, via.config.ID, got.body)
					assert.Equal(t, "value", got.body, "read %d via %s", i, via.config.ID)
				}
			}
		})
	}
	wg.Wait()
	growth := leader.raft.LastIndex() - before
	t.Logf("%d consistent reads appended %d log entries", reads, growth)
	assert.LessOrEqual(t, growth, uint64(readGrowthLimit), "%d consistent reads appended %d log entries", reads, growth)
}

// TestConsistentReadsSeeAcknowledgedWrites writes a counter through every
// node in turn and reads it back at once through the next node; meanwhile
// readers check that no consistent read returns a value older than the
// last write acknowledged before it began. Only the writes grow the log.
func TestConsistentReadsSeeAcknowledgedWrites(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	following := newAPIClient(t, true)
	got := do(t, following, http.MethodPut, leader.url("/kv/counter"), strings.NewReader("0"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	before := leader.raft.LastIndex()

	const writes, readers = 60, 4
	var acknowledged atomic.Int64
	var reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				floor := acknowledged.Load()
				via := nodes[i%len(nodes)]
				got, err := consistentGet(following, via, "counter")
				if !assert.NoError(t, err) || !assert.Equal(t, http.StatusOK, got.status, got.body) {
					return
				}
				value, err := strconv.ParseInt(got.body, 10, 64)
				if !assert.NoError(t, err) {
					return
				}
				assert.GreaterOrEqual(t, value, floor, "a consistent read via %s missed an acknowledged write", via.config.ID)
				reads.Add(1)
			}
		})
	}
	for i := int64(1); i <= writes; i++ {
		writer, reader := nodes[i%3], nodes[(i+1)%3]
		got := do(t, following, http.MethodPut, writer.url("/kv/counter"), strings.NewReader(strconv.FormatInt(i, 10)))
		require.Equal(t, http.StatusNoContent, got.status, "write %d via %s: %s", i, writer.config.ID, got.body)
		acknowledged.Store(i)
		got, err := consistentGet(following, reader, "counter")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, got.status, got.body)
		require.Equal(t, strconv.FormatInt(i, 10), got.body, "read your write %d via %s, written via %s", i, reader.config.ID, writer.config.ID)
		reads.Add(1)
	}
	close(stop)
	wg.Wait()
	growth := leader.raft.LastIndex() - before
	t.Logf("%d writes and %d consistent reads appended %d log entries", writes, reads.Load(), growth)
	assert.LessOrEqual(t, growth, uint64(writes+readGrowthLimit), "%d writes and %d consistent reads appended %d log entries", writes, reads.Load(), growth)
}

// TestConsistentReadAfterLeaderChange hands leadership over right after a
// write: the new leader's first consistent reads, 16 at once, return that
// write and share one barrier, the only entry the reads append.
func TestConsistentReadAfterLeaderChange(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	old := waitLeader(t, nodes)
	direct := newAPIClient(t, false)
	got := do(t, direct, http.MethodGet, old.url("/kv/key?consistent=true"), nil)
	require.Equal(t, http.StatusNotFound, got.status, "a read in the old leader's term: %s", got.body)
	got = do(t, direct, http.MethodPut, old.url("/kv/key"), strings.NewReader("fresh"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)

	require.NoError(t, old.raft.LeadershipTransfer().Error())
	leader := waitLeader(t, nodes)
	require.NotSame(t, old, leader)
	// Wait for the new term's no-op entry to commit, so that what the
	// reads append is all that follows.
	term := leader.raft.CurrentTerm()
	require.Eventually(t, func() bool {
		last := leader.raft.LastIndex()
		var entry raft.Log
		return leader.raft.CommitIndex() == last && leader.store.GetLog(last, &entry) == nil && entry.Term == term
	}, waitTimeout, pollEvery, "the new leader's first entry does not commit")
	before := leader.raft.LastIndex()

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			got, err := consistentGet(direct, leader, "key")
			if assert.NoError(t, err) && assert.Equal(t, http.StatusOK, got.status, got.body) {
				assert.Equal(t, "fresh", got.body)
			}
		})
	}
	wg.Wait()
	require.Equal(t, term, leader.raft.CurrentTerm(), "leadership changed again")
	require.Equal(t, before+1, leader.raft.LastIndex(), "the first reads of a term append one barrier")
	var entry raft.Log
	require.NoError(t, leader.store.GetLog(before+1, &entry))
	assert.Equal(t, raft.LogBarrier, entry.Type, "entry %d", before+1)
	assert.Equal(t, term, entry.Term, "entry %d", before+1)

	following := newAPIClient(t, true)
	for _, n := range nodes {
		got, err := consistentGet(following, n, "key")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, got.status, got.body)
		assert.Equal(t, "fresh", got.body)
	}
	assert.Equal(t, before+1, leader.raft.LastIndex(), "later reads of the term append nothing")
}

// partition cuts a node off from its peers on demand. Once cut, every
// connection the node had accepted or dialed is closed and every new one
// fails at once, raft's and the API's alike.
type partition struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (p *partition) install(config *nodeConfig) {
	config.hooks.listener = func(l net.Listener) net.Listener { return &partitionListener{Listener: l, p: p} }
	config.hooks.dial = func(next rafthttp.DialContext) rafthttp.DialContext {
		return func(ctx context.Context, addr string) (net.Conn, error) {
			if p.isCut() {
				return nil, errPartitioned
			}
			conn, err := next(ctx, addr)
			if err != nil || !p.track(conn) {
				return nil, errors.Join(err, errPartitioned)
			}
			return conn, nil
		}
	}
}

var errPartitioned = errors.New("partitioned")

func (p *partition) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// track keeps conn for cutOff, or closes it and returns false if the node
// is already cut off.
func (p *partition) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		conn.Close()
		return false
	}
	p.conns = append(p.conns, conn)
	return true
}

func (p *partition) cutOff() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, conn := range p.conns {
		conn.Close()
	}
	p.conns = nil
}

type partitionListener struct {
	net.Listener
	p *partition
}

func (l *partitionListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil || l.p.track(conn) {
			return conn, err
		}
	}
}

// TestConsistentReadDeposedLeader cuts the leader off while its lease still
// has seconds to run; the others elect a leader and overwrite the key. The
// cut-off node still believes it leads and still holds the old value, but
// its consistent read answers 503 (it cannot confirm its leadership, and
// knows no other leader) rather than the old value, and appends nothing.
func TestConsistentReadDeposedLeader(t *testing.T) {
	// Long enough for the others to elect a leader and write while the
	// cut-off node still leads, even under the race detector.
	const lease = 8 * time.Second
	var cut partition
	nodes := startCluster(t, 3, func(config *nodeConfig) {
		if config.ID != "node3" {
			return
		}
		cut.install(config)
		config.hooks.raft = func(c *raft.Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = lease, lease, lease
		}
	})
	// node3's own timeouts would make it slow to win an election; the
	// transfer has it start one at once.
	deposed := nodes[2]
	if leader := waitLeader(t, nodes); leader != deposed {
		require.NoError(t, leader.raft.LeadershipTransferToServer(raft.ServerID(deposed.config.ID), raft.ServerAddress(deposed.addr())).Error())
	}
	require.Same(t, deposed, waitLeader(t, nodes))
	following := newAPIClient(t, true)
	got := do(t, following, http.MethodPut, deposed.url("/kv/key"), strings.NewReader("old"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	// This read issues the term's barrier, before the cut.
	got = do(t, following, http.MethodGet, deposed.url("/kv/key?consistent=true"), nil)
	require.Equal(t, http.StatusOK, got.status, got.body)
	require.Equal(t, "old", got.body)

	cut.cutOff()
	cutAt := time.Now()
	leader := waitLeader(t, nodes[:2])
	got = do(t, following, http.MethodPut, leader.url("/kv/key"), strings.NewReader("new"))
	require.Equal(t, http.StatusNoContent, got.status, got.body)
	require.Equal(t, raft.Leader, deposed.raft.State(), "the cut-off node's lease ran out %v after the cut, before the test could read", time.Since(cutAt))
	value, _ := deposed.fsm.Get("key")
	require.Equal(t, "old", string(value), "the cut-off node's state is stale")
	before := deposed.raft.LastIndex()

	// Through the API's handler, since the node's listener is cut off too.
	mux := http.NewServeMux()
	newAPI(deposed.node).register(mux)
	recorder := httptest.NewRecorder()
	mux.ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/kv/key?consistent=true", nil))
	t.Logf("the cut-off node answered %v after the cut: %d %q", time.Since(cutAt), recorder.Code, recorder.Body)
	assert.NotEqual(t, "old", recorder.Body.String())
	assert.Equal(t, http.StatusServiceUnavailable, recorder.Code)
	assert.NotEmpty(t, recorder.Header().Get("Retry-After"))
	assert.Equal(t, before, deposed.raft.LastIndex(), "the refused read appended to the cut-off node's log")
}

// BenchmarkConsistentRead measures GET ?consistent=true against the leader
// of a three-node cluster in one process, from one client and from 16 at
// once. It reports reads/s and the log entries the reads appended, per 200
// reads.
func BenchmarkConsistentRead(b *testing.B) {
	nodes := startCluster(b, 3, nil)
	leader := waitLeader(b, nodes)
	// Keep-alives on, unlike the tests' clients: a read, not a TCP
	// handshake, is what is measured.
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: transport, Timeout: waitTimeout}
	b.Cleanup(transport.CloseIdleConnections)
	got := do(b, client, http.MethodPut, leader.url("/kv/bench"), strings.NewReader("value"))
	require.Equal(b, http.StatusNoContent, got.status, got.body)
	url := leader.url("/kv/bench?consistent=true")

	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			before := leader.raft.LastIndex()
			var next atomic.Int64
			var failed atomic.Pointer[error]
			var wg sync.WaitGroup
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						got, err := send(client, http.MethodGet, url, nil)
						// A stalled machine can cost the leader its
						// lease: retry the 503s of the election, as
						// a client would.
						for retryUntil := time.Now().Add(waitTimeout); err == nil &&
							got.status == http.StatusServiceUnavailable && time.Now().Before(retryUntil); {
							time.Sleep(pollEvery)
							got, err = send(client, http.MethodGet, url, nil)
						}
						if err == nil && (got.status != http.StatusOK || got.body != "value") {
							err = fmt.Errorf("got %d %q", got.status, got.body)
						}
						if err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			b.ReportMetric(float64(leader.raft.LastIndex()-before)*200/float64(b.N), "entries/200reads")
		})
	}
}
