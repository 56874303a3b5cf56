package main

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Headers on every local read (GET /kv/{key} without consistent=true),
// whatever its status: how stale the answer may be. Consul's
// X-Consul-KnownLeader and X-Consul-LastContact are the model.
const (
	// appliedIndexHeader is the index of a log entry the answer reflects
	// every entry up to: a lower bound, compare it with the leader's
	// applied_index in /status.
	appliedIndexHeader = "Raftkv-Applied-Index"
	// knownLeaderHeader is "true" if the node knows a leader (itself
	// included), "false" if not.
	knownLeaderHeader = "Raftkv-Known-Leader"
	// lastContactHeader is the time since the node last heard from a
	// leader, in whole milliseconds: 0 on the leader, "never" on a node
	// that has not heard from one since it started.
	lastContactHeader = "Raftkv-Last-Contact"
)

// neverContacted is lastContactHeader's value on a node that has not heard
// from a leader since it started.
const neverContacted = "never"

// staleness is what a node can say about how stale its local reads are.
type staleness struct {
	applied     uint64
	leader      bool // this node leads
	knownLeader bool
	// lastContact is the time since this node last heard from a leader;
	// zero on the leader. Meaningless if never.
	lastContact time.Duration
	never       bool
}

// staleness returns the node's staleness now. Call it before reading the
// FSM: the applied index only grows, so the read reflects at least it.
func (n *node) staleness() staleness {
	s := staleness{applied: n.fsm.appliedIndex()}
	if s.applied == 0 {
		// After a Restore the FSM claims no index until the next entry;
		// raft's applied index is then the snapshot's.
		s.applied = n.raft.AppliedIndex()
	}
	if n.raft.State() == raft.Leader {
		// raft's LastContact on a leader is from before it led.
		s.leader, s.knownLeader = true, true
		return s
	}
	address, _ := n.raft.LeaderWithID()
	s.knownLeader = address != ""
	// raft also counts a vote it granted, and its own step-down as a
	// leader, as contact: close enough, since both mean a leader was
	// current a moment before.
	last := n.raft.LastContact()
	if last.IsZero() {
		s.never = true
	} else {
		s.lastContact = max(time.Since(last), 0)
	}
	return s
}

// setHeaders writes the staleness headers.
func (s staleness) setHeaders(h http.Header) {
	h.Set(appliedIndexHeader, strconv.FormatUint(s.applied, 10))
	h.Set(knownLeaderHeader, strconv.FormatBool(s.knownLeader))
	if s.never {
		h.Set(lastContactHeader, neverContacted)
	} else {
		h.Set(lastContactHeader, strconv.FormatInt(s.lastContact.Milliseconds(), 10))
	}
}

// within returns "" if the node heard from a leader within maxStale (a
// leader always has), or why not.
func (s staleness) within(maxStale time.Duration) string {
	switch {
	case s.leader:
		return ""
	case s.never:
		return fmt.Sprintf("no contact with a leader since this node started; max_stale is %s", maxStale)
	case s.lastContact > maxStale:
		return fmt.Sprintf("last contact with a leader %s ago, more than max_stale %s",
			s.lastContact.Round(time.Millisecond), maxStale)
	}
	return ""
}

// readMode is how GET /kv/{key} reads: locally, optionally bounded by
// max_stale, or consistently through the leader.
type readMode struct {
	consistent bool
	// maxStale, if positive, bounds the time since the node last heard
	// from a leader for a local read.
	maxStale time.Duration
}

// parseReadMode reads consistent and max_stale from a GET's query, or
// returns why they are not acceptable. The two exclude each other: a
// consistent read is never stale, and a bound on its staleness would
// either mean nothing or silently turn it into a local read.
func parseReadMode(r *http.Request) (readMode, string) {
	var mode readMode
	query := r.URL.Query()
	if value := query.Get("consistent"); value != "" {
		var err error
		if mode.consistent, err = strconv.ParseBool(value); err != nil {
			return mode, "consistent must be true or false"
		}
	}
	if !query.Has("max_stale") {
		return mode, ""
	}
	if mode.consistent {
		return mode, "max_stale and consistent=true exclude each other: a consistent read is never stale"
	}
	maxStale, err := time.ParseDuration(query.Get("max_stale"))
	if err != nil || maxStale <= 0 {
		return mode, fmt.Sprintf("max_stale must be a positive duration such as 500ms or 5s, not %q", query.Get("max_stale"))
	}
	mode.maxStale = maxStale
	return mode, ""
}
