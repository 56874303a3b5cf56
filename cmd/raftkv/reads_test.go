package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

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
