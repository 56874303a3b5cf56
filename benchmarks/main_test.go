// Package benchmarks compares rafthttp with raft's own TCP transport. Every
// benchmark has a transport=tcp, a transport=http and a transport=ws
// (WebSocket mode) variant under the same name, so benchstat can put them
// side by side:
//
//	go test -run '^$' -bench . -benchtime=2s -count=6 ./benchmarks/ > bench.txt
//	benchstat -col /transport bench.txt
//
// CI runs the suite as a smoke test with -benchtime=1x.
package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a benchmark leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
