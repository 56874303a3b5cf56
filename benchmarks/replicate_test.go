package benchmarks

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// window is how many applies the pipelined mode keeps in flight.
const window = 256

// BenchmarkReplicate measures replication through a 3-node cluster in this
// process: the leader applies b.N commands of the given size, and the
// benchmark waits until each is committed and applied on the leader.
//
//   - mode=sync waits for each command before applying the next: commit
//     latency, one round trip to a quorum per op.
//   - mode=pipelined keeps 256 applies in flight: throughput.
//   - config=tuned takes raft's batching timer out of the way
//     (MaxAppendEntries 1024, CommitTimeout 1 ms) so the transport is what
//     is measured; config=default keeps raft.DefaultConfig timings, where
//     raft's own timer bounds pipelined throughput on both transports.
//
// The cluster is built once per sub-benchmark, outside the timer, and
// reused across the runs the framework makes to find b.N.
func BenchmarkReplicate(b *testing.B) {
	type variant struct {
		mode  string
		tuned bool
	}
	variants := []variant{{"sync", true}, {"pipelined", true}, {"pipelined", false}}
	for _, store := range []string{"mem", "bolt"} {
		for _, size := range []int{256, 16384} {
			for _, v := range variants {
				// Transport innermost: the tcp and http runs of one
				// configuration follow each other, under the same load.
				for _, transport := range transports {
					config := "default"
					if v.tuned {
						config = "tuned"
					}
					name := fmt.Sprintf("transport=%s/store=%s/size=%d/mode=%s/config=%s",
						transport, store, size, v.mode, config)
					options := clusterOptions{transport: transport, bolt: store == "bolt",
						tuned: v.tuned, tempDir: b.TempDir}
					benchmarkReplicate(b, name, options, size, v.mode == "pipelined")
				}
			}
		}
	}
}

func benchmarkReplicate(b *testing.B, name string, options clusterOptions, size int, pipelined bool) {
	var c *cluster
	b.Run(name, func(b *testing.B) {
		if c == nil {
			c = startCluster(b, 3, options)
		}
		leader, err := c.leader()
		if err != nil {
			b.Fatal(err)
		}
		command := make([]byte, size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		if pipelined {
			err = applyPipelined(leader.raft, command, b.N)
		} else {
			err = applySync(leader.raft, command, b.N)
		}
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	if c != nil {
		c.stop(b)
	}
}

func applySync(r *raft.Raft, command []byte, n int) error {
	for range n {
		if err := r.Apply(command, ioTimeout).Error(); err != nil {
			return err
		}
	}
	return nil
}

// applyPipelined applies n commands, keeping up to window of them in
// flight, and returns the first error.
func applyPipelined(r *raft.Raft, command []byte, n int) error {
	futures := make(chan raft.ApplyFuture, window)
	done := make(chan error, 1)
	go func() {
		var first error
		for future := range futures {
			if err := future.Error(); err != nil && first == nil {
				first = err
			}
		}
		done <- first
	}()
	for range n {
		futures <- r.Apply(command, ioTimeout)
	}
	close(futures)
	return <-done
}

// BenchmarkFailover measures how long a 3-node cluster takes, from the
// moment its leader stops (raft, transport and server, as a crashed
// process would), to commit a write through a new leader. Each iteration
// builds a fresh cluster outside the timer; an iteration takes about a
// second of election time, so keep -benchtime small (e.g. 5x).
func BenchmarkFailover(b *testing.B) {
	for _, transport := range transports {
		b.Run("transport="+transport, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				c := startCluster(b, 3, clusterOptions{transport: transport, tuned: true})
				leader, err := c.leader()
				if err != nil {
					c.stop(b)
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				c.stopNode(b, leader)
				err = c.write(make([]byte, 8))
				elapsed := time.Since(start)
				b.StopTimer()
				c.stop(b)
				if err != nil {
					b.Fatal(errors.Join(errors.New("write after failover"), err))
				}
				total += elapsed
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "failover-ms")
		})
	}
}
