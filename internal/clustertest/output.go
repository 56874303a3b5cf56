package clustertest

import (
	"bytes"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Output collects what a child process writes, for a test to read while
// the process runs: set it as the command's Stdout and Stderr. exec's
// copying goroutine writes it; the test reads it.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Await waits until the output matches pattern and returns the match's
// first group: how a test learns what a child reports about itself, such
// as the address it got for port 0. It fails the test, with the output,
// if exited is closed first (a nil exited never is) or after WaitTimeout.
// Close exited once the command's Wait has returned, which is after the
// last output is copied.
func (o *Output) Await(t testing.TB, pattern *regexp.Regexp, exited <-chan struct{}) string {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	interval := time.Millisecond
	for {
		if match := pattern.FindStringSubmatch(o.String()); match != nil {
			return match[1]
		}
		select {
		case <-exited:
			if match := pattern.FindStringSubmatch(o.String()); match != nil {
				return match[1]
			}
			t.Fatalf("the process exited without printing a match of %q; its output:\n%s", pattern, o)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no match of %q in the process's output within %v; its output:\n%s", pattern, WaitTimeout, o)
		}
		time.Sleep(interval)
		interval = min(2*interval, 50*time.Millisecond)
	}
}
