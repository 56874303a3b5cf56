package main

import (
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// history records every operation's call and return, in nanoseconds since
// the history began (monotonic).
type history struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
	// clients counts the client IDs handed out: a client that saw an
	// unknown outcome takes a new ID, as a crashed Jepsen process would,
	// since its unknown write stays open until the history ends.
	clients int
	// acked holds the writes to unique keys acknowledged with a 2xx: each
	// must be on every node once the cluster has healed.
	acked map[string]string
	// counts of outcomes, for the report; notRecorded counts failed reads
	// and writes refused before raft saw them.
	ok, unknown, notRecorded int
}

func newHistory() *history {
	return &history{start: time.Now(), acked: make(map[string]string)}
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) newClient() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

// add records one operation; an unknown outcome stays open until the end.
func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.Output.(kvOutput).Unknown {
		h.unknown++
	} else {
		h.ok++
	}
	h.ops = append(h.ops, op)
}

// operations returns the history for the checker. An unknown write's
// return is set after every other event, so it may be placed anywhere
// after its call, including after everything, where it changes nothing
// anyone saw.
//
// An unknown put whose value no read returned is left out: placing it
// last is always possible, so it cannot make a history unlinearizable,
// while every such open write multiplies porcupine's search. (Values are
// unique. Unknown deletes stay: a read that found nothing may need one.)
// It returns how many it left out.
func (h *history) operations() ([]porcupine.Operation, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	observed := make(map[string]bool)
	for _, op := range h.ops {
		if out := op.Output.(kvOutput); op.Input.(kvInput).Op == "get" && out.Found {
			observed[out.Value] = true
		}
	}
	end := h.now() + 1
	ops := make([]porcupine.Operation, 0, len(h.ops))
	pruned := 0
	for _, op := range h.ops {
		in := op.Input.(kvInput)
		if op.Output.(kvOutput).Unknown {
			if in.Op == "put" && !observed[in.Value] {
				pruned++
				continue
			}
			op.Return = end
		}
		ops = append(ops, op)
	}
	return ops, pruned
}
