package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// readRetries bounds how many times one read starts over because the term
// changed under it, before it gives up with raft.ErrLeadershipLost.
const readRetries = 3

// consistentReads serves linearizable reads without writing to the log:
// the read-index pattern of the Raft thesis (section 6.4). A read
//
//  1. takes the leader's commit index,
//  2. confirms that this node still leads (VerifyLeader: a heartbeat round
//     to a quorum, started after step 1), and
//  3. waits until the FSM has applied that index,
//
// then reads the FSM. The index covers every write this leader
// acknowledged before the read began and, once the term's barrier has
// committed (below), every write an earlier leader did; confirming leadership after taking it rules out a newer leader
// that acknowledged writes the index lacks. Swap steps 1 and 2 and that
// confirmation no longer vouches for the index.
//
// A new leader's commit index can lag the cluster's until an entry of its
// own term commits, so once per term, before the first read, a leader
// commits a barrier; readers of that term share it. Nothing else a read
// does writes to the log, and nothing holds a lock across VerifyLeader:
// raft answers all the verifications waiting on one heartbeat round.
type consistentReads struct {
	raft *raft.Raft
	fsm  *kvFSM

	// barrierTerm is the latest term in which a barrier issued by this
	// node committed while it led.
	barrierTerm atomic.Uint64

	mu sync.Mutex
	// pending is the barrier in flight, if any; readers of its term wait
	// for it rather than issue their own.
	pending *termBarrier
	// barriers tracks the goroutines running barriers, for close.
	barriers sync.WaitGroup
}

// termBarrier is one barrier, shared by the readers of its term.
type termBarrier struct {
	term uint64
	done chan struct{}
	err  error // set before done is closed
}

func newConsistentReads(r *raft.Raft, fsm *kvFSM) *consistentReads {
	return &consistentReads{raft: r, fsm: fsm}
}

// wait returns once the FSM holds every write acknowledged before wait was
// called, and this node still led after that. It fails with one of raft's
// leadership errors if this node does not lead, with ctx's error if ctx
// ends first, or with the barrier's error.
func (c *consistentReads) wait(ctx context.Context) error {
	for range readRetries {
		term := c.raft.CurrentTerm()
		if c.barrierTerm.Load() != term {
			if err := c.barrier(ctx, term); err != nil {
				return err
			}
			// Whether or not the barrier counted for term, start over
			// with the term as it is now.
			continue
		}
		// The order of these two steps is the point: see the type's
		// comment.
		index := c.raft.CommitIndex()
		if err := c.raft.VerifyLeader().Error(); err != nil {
			return err
		}
		if c.raft.CurrentTerm() != term {
			// This node led in some term after the one whose barrier
			// covers index; that term needs its own.
			continue
		}
		return c.fsm.waitApplied(ctx, index)
	}
	return fmt.Errorf("term changed during %d consistent read attempts: %w", readRetries, raft.ErrLeadershipLost)
}

// barrier waits for a barrier issued in term to commit, issuing one unless
// another reader already has. It returns nil if the barrier committed,
// though barrierTerm says term only if this node still leads in term.
func (c *consistentReads) barrier(ctx context.Context, term uint64) error {
	c.mu.Lock()
	if c.barrierTerm.Load() == term {
		// Another reader's barrier committed since wait looked.
		c.mu.Unlock()
		return nil
	}
	b := c.pending
	if b == nil || b.term != term {
		b = &termBarrier{term: term, done: make(chan struct{})}
		c.pending = b
		// Not on the reader's goroutine: the readers that share it may
		// give up at any time, and a barrier cannot be cancelled.
		c.barriers.Go(func() { c.runBarrier(b) })
	}
	c.mu.Unlock()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *consistentReads) runBarrier(b *termBarrier) {
	future := c.raft.Barrier(applyTimeout)
	err := future.Error()
	if err == nil {
		// raft gives a barrier's future its log index, but returns it
		// as a plain Future.
		if indexed, ok := future.(raft.IndexFuture); ok {
			c.fsm.markApplied(indexed.Index())
		} else {
			err = errors.New("raft barrier has no log index")
		}
	}
	c.mu.Lock()
	// The term unchanged since before the barrier means it was appended
	// in term, by this node as leader.
	if err == nil && c.raft.CurrentTerm() == b.term && b.term > c.barrierTerm.Load() {
		c.barrierTerm.Store(b.term)
	}
	if c.pending == b {
		c.pending = nil
	}
	b.err = err
	c.mu.Unlock()
	close(b.done)
}

// close waits up to timeout for the barriers in flight, which end once raft
// has shut down, and reports whether they did. One that raft committed but
// had not handed to its FSM goroutine when it shut down is never answered.
func (c *consistentReads) close(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		c.barriers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
