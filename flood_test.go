package rafthttp_test

import (
	"bufio"
	"fmt"
	"io"
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

// flood opens n connections to addr and writes head on each, all held at
// once, as an attacker would, and then reads each answer within wait. A
// connection answered 101, or not answered at all, is kept open until
// closeAll; one refused is closed.
func flood(addr string, n int, head string, wait time.Duration) *floodResult {
	result := &floodResult{}
	conns := make(chan net.Conn, n)
	var opened sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		opened.Go(func() {
			for next.Add(1) <= int64(n) {
				conn, err := net.DialTimeout("tcp", addr, wait)
				if err == nil {
					_, err = conn.Write([]byte(head))
					if err != nil {
						conn.Close()
					}
				}
				if err != nil {
					result.add(0, err, nil)
					continue
				}
				conns <- conn
			}
		})
	}
	opened.Wait()
	close(conns)
	var answered sync.WaitGroup
	for conn := range conns {
		answered.Go(func() {
			conn.SetReadDeadline(time.Now().Add(wait))
			response, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
			switch {
			case err != nil:
				// No answer in time: held, as the request meant to be.
				result.add(-1, nil, conn)
			case response.StatusCode == http.StatusSwitchingProtocols:
				conn.SetReadDeadline(time.Time{})
				result.add(response.StatusCode, nil, conn)
			default:
				conn.Close()
				result.add(response.StatusCode, nil, nil)
			}
		})
	}
	answered.Wait()
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
		// Long enough for the idle flood to be over before the first of its
		// connections is closed for sending nothing.
		timeout = 5 * time.Second
		// Each well past its bound (512, 128, 16), yet small enough that
		// the race detector on two shared cores starves no raft timer.
		idle         = 1000
		withoutBody  = 1000
		pendingJoins = 200
	)
	cluster := clustertest.Start(t, 3, clustertest.Options{
		Handler: func(config *rafthttp.HandlerConfig) { config.Timeout = timeout },
		// raft's own timings, not the test-speed ones: the floods share
		// two cores with the cluster (and, in CI, with other packages'
		// tests), and the claim is about what a production node keeps.
		Raft: func(config *raft.Config) {
			defaults := raft.DefaultConfig()
			config.HeartbeatTimeout = defaults.HeartbeatTimeout
			config.ElectionTimeout = defaults.ElectionTimeout
			config.LeaderLeaseTimeout = defaults.LeaderLeaseTimeout
		},
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
	noBody := requestHead(http.MethodGet, clustertest.Path, addr, append([]string{"Upgrade: raft", "Connection: Upgrade"}, announceBody(100)...)...)
	var floods sync.WaitGroup
	var idleResult, noBodyResult, joinResult *floodResult
	var atLimit atomic.Int64 // joins refused at once: MaxPendingChanges wait
	// Idle upgrades to a follower, to meet its MaxConns (upgrades to the
	// leader would meet the other floods' bounds first); upgrades without
	// their body to the leader, to meet MaxPendingUpgrades.
	follower := cluster.Followers()[0]
	floods.Go(func() {
		head := requestHead(http.MethodGet, clustertest.Path, follower.Addr, "Upgrade: raft", "Connection: Upgrade")
		idleResult = flood(follower.Addr, idle, head, 3*timeout)
	})
	floods.Go(func() { noBodyResult = flood(addr, withoutBody, noBody, 3*timeout) })
	floods.Go(func() {
		// Joins from the start: the writes and joins share the leader's
		// goroutines with both floods.
		joinResult = &floodResult{}
		transport := &http.Transport{DisableKeepAlives: true}
		defer transport.CloseIdleConnections()
		client := &http.Client{Timeout: 3 * timeout, Transport: transport}
		var wg sync.WaitGroup
		for i := range pendingJoins {
			wg.Go(func() {
				target := fmt.Sprintf("http://%s%s?id=flood-%d&address=%s", addr, clustertest.Path, i, silent)
				response, err := client.Post(target, "", nil)
				if err != nil {
					joinResult.add(0, err, nil)
					return
				}
				body, _ := io.ReadAll(response.Body)
				response.Body.Close()
				if strings.Contains(string(body), "already waiting") {
					atLimit.Add(1)
				}
				joinResult.add(response.StatusCode, nil, nil)
			})
		}
		wg.Wait()
	})
	// The peak of what the process holds while the floods are under way.
	sampled := make(chan processUsage)
	go func() {
		var peak processUsage
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case sampled <- peak:
				return
			}
			now := currentUsage(t)
			peak.fds = max(peak.fds, now.fds)
			peak.goroutines = max(peak.goroutines, now.goroutines)
			peak.rssKiB = max(peak.rssKiB, now.rssKiB)
		}
	}()
	floods.Wait()
	during := <-sampled

	// Idle upgrades: at most MaxConns got a 101, the rest a 503, and the
	// Handler closes those that sent nothing within its timeout.
	t.Logf("idle upgrades: %v, %d errors", idleResult.statuses, idleResult.errors)
	assert.LessOrEqual(t, idleResult.statuses[http.StatusSwitchingProtocols], rafthttp.DefaultMaxConns)
	assert.Greater(t, idleResult.statuses[http.StatusSwitchingProtocols], rafthttp.DefaultMaxConns/2, "the flood reached MaxConns")
	assert.Positive(t, idleResult.statuses[http.StatusServiceUnavailable], "upgrades past the bound are refused")
	// Upgrades without their body: at most MaxPendingUpgrades wait for it,
	// and are refused when the Handler's timeout ends the wait; the rest
	// are refused at once.
	t.Logf("upgrades without their body: %v, %d errors", noBodyResult.statuses, noBodyResult.errors)
	assert.Zero(t, noBodyResult.statuses[http.StatusSwitchingProtocols])
	assert.LessOrEqual(t, noBodyResult.statuses[http.StatusBadRequest], rafthttp.DefaultMaxPendingUpgrades, "waited for the body")
	assert.Positive(t, noBodyResult.statuses[http.StatusServiceUnavailable], "refused at once")
	// Joins: refused, none applied, most at once for the bound.
	t.Logf("joins: %v, %d errors", joinResult.statuses, joinResult.errors)
	assert.Zero(t, joinResult.statuses[http.StatusOK], "no join for an address that never answers is applied")
	assert.Equal(t, pendingJoins, joinResult.statuses[http.StatusServiceUnavailable], "every join is told to retry")
	assert.GreaterOrEqual(t, atLimit.Load(), int64(pendingJoins-2*rafthttp.DefaultMaxPendingChanges), "joins past MaxPendingChanges are refused at once")

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
	t.Logf("before the flood: %v; at its peak: %v; after: %v; %d writes committed during the flood", before, during, after, writes.Load())
}
