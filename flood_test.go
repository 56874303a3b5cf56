package rafthttp_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
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
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// processUsage is what the test process holds: descriptors, goroutines and
// resident memory.
type processUsage struct {
	fds, goroutines int
	rssKiB          int
}

func (u processUsage) String() string {
	return fmt.Sprintf("%d descriptors, %d goroutines, %d MiB RSS", u.fds, u.goroutines, u.rssKiB/1024)
}

func currentUsage(t *testing.T) processUsage {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	usage := processUsage{fds: len(fds), goroutines: runtime.NumGoroutine()}
	for line := range strings.Lines(string(status)) {
		if value, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			usage.rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(value), " kB"))
		}
	}
	return usage
}

// floodResult counts how a flood's requests were answered.
type floodResult struct {
	mu       sync.Mutex
	statuses map[int]int
	errors   int
	conns    []net.Conn // kept open until the flood ends
}

func (r *floodResult) add(status int, err error, conn net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		return
	}
	if r.statuses == nil {
		r.statuses = map[int]int{}
	}
	r.statuses[status]++
	if conn != nil {
		r.conns = append(r.conns, conn)
	}
}

func (r *floodResult) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, conn := range r.conns {
		conn.Close()
	}
	r.conns = nil
}

// flood sends n requests to addr, head written by each, from a bounded
// number of workers. A connection answered 101, or not answered at all
// within wait, is kept open, as an attacker would keep it; one refused is
// closed.
func flood(addr string, n int, head string, wait time.Duration) *floodResult {
	result := &floodResult{}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				conn, err := net.DialTimeout("tcp", addr, wait)
				if err != nil {
					result.add(0, err, nil)
					continue
				}
				conn.SetDeadline(time.Now().Add(wait))
				if _, err := conn.Write([]byte(head)); err != nil {
					conn.Close()
					result.add(0, err, nil)
					continue
				}
				response, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
				if err != nil {
					// No answer in time: held, as the request meant to be.
					result.add(-1, nil, conn)
					continue
				}
				if response.StatusCode == http.StatusSwitchingProtocols {
					conn.SetDeadline(time.Time{})
					result.add(response.StatusCode, nil, conn)
					continue
				}
				conn.Close()
				result.add(response.StatusCode, nil, nil)
			}
		})
	}
	wg.Wait()
	return result
}

// TestFloodKeepsTheClusterServing floods a healthy 3-node cluster's
// leader with what an unauthenticated client can send to the public port
// (idle upgrades, upgrades that never send their announced body, and
// joins that pile up) and checks that every bound holds, that the cluster
// keeps its leader and commits writes throughout, and that descriptors and
// goroutines return to where they were.
func TestFloodKeepsTheClusterServing(t *testing.T) {
	const (
		timeout      = 2 * time.Second
		idle         = 2000
		withoutBody  = 2000
		pendingJoins = 500
	)
	cluster := clustertest.Start(t, 3, clustertest.Options{
		Handler: func(config *rafthttp.HandlerConfig) { config.Timeout = timeout },
	})
	leader := cluster.Leader()
	cluster.Apply("before the flood")
	// A joiner that takes the leader's reachability check and never
	// answers it, so that joins pile up behind it.
	silent := rawPeer(t, func(conn net.Conn) { awaitClosed(conn) })
	before := currentUsage(t)

	// Writes go on throughout, each within a bound, from the same leader.
	stop := make(chan struct{})
	var writes, failed atomic.Int64
	var writerDone sync.WaitGroup
	writerDone.Go(func() {
		// A steady trickle, not a benchmark.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := leader.Raft.Apply([]byte(fmt.Sprintf("write %d", i)), clustertest.WaitTimeout).Error(); err != nil {
				failed.Add(1)
				t.Errorf("write %d during the flood: %v", i, err)
				return
			}
			writes.Add(1)
		}
	})

	addr := leader.Addr
	upgrade := requestHead(http.MethodGet, clustertest.Path, addr, "Upgrade: raft", "Connection: Upgrade")
	noBody := requestHead(http.MethodGet, clustertest.Path, addr, append([]string{"Upgrade: raft", "Connection: Upgrade"}, announceBody(100)...)...)
	var floods sync.WaitGroup
	var idleResult, noBodyResult, joinResult *floodResult
	floods.Go(func() { idleResult = flood(addr, idle, upgrade, 3*timeout) })
	floods.Go(func() { noBodyResult = flood(addr, withoutBody, noBody, 3*timeout) })
	floods.Go(func() {
		joinResult = &floodResult{}
		transport := &http.Transport{DisableKeepAlives: true}
		defer transport.CloseIdleConnections()
		client := &http.Client{Timeout: 3 * timeout, Transport: transport}
		var wg sync.WaitGroup
		for i := range pendingJoins {
			wg.Go(func() {
				target := fmt.Sprintf("http://%s%s?id=flood-%d&address=%s", addr, clustertest.Path, i, silent)
				response, err := client.Post(target, "", nil)
				if err == nil {
					response.Body.Close()
					joinResult.add(response.StatusCode, nil, nil)
					return
				}
				joinResult.add(0, err, nil)
			})
		}
		wg.Wait()
	})
	floods.Wait()
	during := currentUsage(t)

	// Idle upgrades: at most MaxConns got a 101, the rest a 503, and the
	// Handler closes those that sent nothing within its timeout.
	t.Logf("idle upgrades: %v, %d errors", idleResult.statuses, idleResult.errors)
	assert.LessOrEqual(t, idleResult.statuses[http.StatusSwitchingProtocols], rafthttp.DefaultMaxConns)
	assert.Positive(t, idleResult.statuses[http.StatusServiceUnavailable], "upgrades past the bound are refused")
	// Upgrades without their body: at most MaxPendingUpgrades wait for it.
	t.Logf("upgrades without their body: %v, %d errors", noBodyResult.statuses, noBodyResult.errors)
	assert.Zero(t, noBodyResult.statuses[http.StatusSwitchingProtocols])
	assert.Positive(t, noBodyResult.statuses[http.StatusServiceUnavailable])
	// Joins: refused, none applied, most at once for the bound.
	t.Logf("joins: %v, %d errors", joinResult.statuses, joinResult.errors)
	assert.Zero(t, joinResult.statuses[http.StatusOK], "no join for an address that never answers is applied")
	assert.Equal(t, pendingJoins, joinResult.statuses[http.StatusServiceUnavailable], "every join is told to retry")

	idleResult.closeAll()
	noBodyResult.closeAll()
	close(stop)
	writerDone.Wait()
	assert.Zero(t, failed.Load())
	assert.Positive(t, writes.Load())
	assert.Equal(t, raft.Leader, leader.Raft.State(), "the leader kept its leadership")
	cluster.Apply("after the flood")
	servers, err := leader.Servers()
	require.NoError(t, err)
	assert.Len(t, servers, 3, "no flood join changed the configuration")

	var after processUsage
	clustertest.Eventually(t, func() error {
		after = currentUsage(t)
		if after.fds > before.fds+5 || after.goroutines > before.goroutines+5 {
			return fmt.Errorf("%v, against %v before the flood", after, before)
		}
		return nil
	})
	t.Logf("before the flood: %v; during: %v; after: %v; %d writes committed during the flood", before, during, after, writes.Load())
}
