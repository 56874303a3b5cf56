package rafthttptest

import (
	"slices"
	"testing"
	"time"
)

// LostBytes reports whether a connection the Network tracks has dropped
// bytes sent from from to to. The external tests wait for it before
// mending a link, since bytes the peer wrote are dropped only once the
// dialing end has read them from its socket.
func (n *Network) LostBytes(from, to string) bool {
	for _, conn := range n.tracked() {
		if conn.lost(link{from, to}) {
			return true
		}
	}
	return false
}

// TestJitterIsSeeded checks that the jitter is drawn from the Network's
// seeded source: the same seed gives the same sequence of delays, another
// seed another sequence, each within [latency, latency+jitter).
func TestJitterIsSeeded(t *testing.T) {
	t.Parallel()
	d := delay{latency: 5 * time.Millisecond, jitter: time.Second}
	now := time.Now()
	waits := func(seed uint64) []time.Duration {
		n := NewNetwork(seed)
		var waits []time.Duration
		for range 100 {
			waits = append(waits, n.due(now, d).Sub(now))
		}
		return waits
	}
	first, again, other := waits(7), waits(7), waits(8)
	if !slices.Equal(first, again) {
		t.Errorf("seed 7 gave two different sequences:\n%v\n%v", first, again)
	}
	if slices.Equal(first, other) {
		t.Errorf("seeds 7 and 8 gave the same sequence: %v", first)
	}
	for _, wait := range append(first, other...) {
		if wait < d.latency || wait >= d.latency+d.jitter {
			t.Errorf("wait %v outside [%v, %v)", wait, d.latency, d.latency+d.jitter)
		}
	}
	// Without jitter, the source is not drawn from: the latency alone.
	if wait := NewNetwork(7).due(now, delay{latency: d.latency}).Sub(now); wait != d.latency {
		t.Errorf("wait without jitter %v; want %v", wait, d.latency)
	}
}
