package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// faultKind is one kind of fault the nemesis injects.
type faultKind string

const (
	// faultPartition splits the cluster into a majority and a minority.
	faultPartition faultKind = "partition"
	// faultBridge splits it into two pairs and a node that reaches both.
	faultBridge faultKind = "bridge"
	// faultIsolateLeader cuts whoever leads when the fault starts off
	// from every other node.
	faultIsolateLeader faultKind = "isolate-leader"
	// faultCutOneWay stops one direction of a few links.
	faultCutOneWay faultKind = "cut-one-way"
	// faultCrash stops a node without leaving the cluster, and restarts
	// it from its data directory when the fault ends.
	faultCrash faultKind = "crash"
	// faultResets resets a node's connections again and again.
	faultResets faultKind = "resets"
	// faultLatency delays every link of some nodes, with jitter.
	faultLatency faultKind = "latency"
	// faultPause holds all of one node's raft traffic.
	faultPause faultKind = "pause"
)

// faultKinds is every kind, in the order a schedule cycles through them
// before it shuffles them.
var faultKinds = []faultKind{faultPartition, faultBridge, faultIsolateLeader, faultCutOneWay,
	faultCrash, faultResets, faultLatency, faultPause}

// fault is one step of a schedule: a fault held for a while, then healed,
// then a quiet time. Which nodes it hits is drawn with the schedule, except
// for the leader, which is known only when the fault starts.
type fault struct {
	Kind    faultKind
	Groups  [][]string // partition, bridge: the sides
	Links   [][2]string
	Node    string
	Latency time.Duration
	Jitter  time.Duration
	Hold    time.Duration
	Rest    time.Duration
}

func (f fault) String() string {
	var b strings.Builder
	b.WriteString(string(f.Kind))
	switch f.Kind {
	case faultPartition, faultBridge:
		fmt.Fprintf(&b, " %v", f.Groups)
	case faultCutOneWay:
		for _, l := range f.Links {
			fmt.Fprintf(&b, " %s→%s", l[0], l[1])
		}
	case faultLatency:
		fmt.Fprintf(&b, " %v latency %v jitter %v", f.Groups, f.Latency, f.Jitter)
	case faultCrash, faultResets, faultPause:
		fmt.Fprintf(&b, " %s", f.Node)
	}
	fmt.Fprintf(&b, " for %v, then rest %v", f.Hold, f.Rest)
	return b.String()
}

// newSchedule draws rounds of faults from seed until they fill length.
// Each round takes every kind once, in a random order, and is never cut
// short, so the shortest schedule still injects every kind.
func newSchedule(seed uint64, names []string, length time.Duration) []fault {
	random := rand.New(rand.NewPCG(seed, 0x6e656d65736973))
	var schedule []fault
	var total time.Duration
	for total < length {
		kinds := slices.Clone(faultKinds)
		random.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for _, kind := range kinds {
			f := drawFault(random, kind, names)
			schedule = append(schedule, f)
			total += f.Hold + f.Rest
		}
	}
	return schedule
}

func drawFault(random *rand.Rand, kind faultKind, names []string) fault {
	shuffled := slices.Clone(names)
	random.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	f := fault{
		Kind: kind,
		Hold: time.Second + time.Duration(random.Int64N(int64(2*time.Second))),
		Rest: 300*time.Millisecond + time.Duration(random.Int64N(int64(700*time.Millisecond))),
	}
	half := len(names) / 2
	switch kind {
	case faultPartition:
		f.Groups = [][]string{shuffled[:half], shuffled[half:]}
	case faultBridge:
		f.Groups = [][]string{shuffled[:half], shuffled[half+1:]}
		f.Node = shuffled[half]
	case faultCutOneWay:
		for range 1 + random.IntN(3) {
			pair := random.Perm(len(names))
			f.Links = append(f.Links, [2]string{names[pair[0]], names[pair[1]]})
		}
	case faultCrash, faultResets, faultPause:
		f.Node = shuffled[0]
	case faultLatency:
		f.Groups = [][]string{shuffled[:1+random.IntN(len(names))]}
		f.Latency = 20*time.Millisecond + time.Duration(random.Int64N(int64(180*time.Millisecond)))
		f.Jitter = time.Duration(random.Int64N(int64(100 * time.Millisecond)))
	}
	return f
}

// faultRecord is what happened when a fault ran: when it started and
// healed (nanoseconds into the history), whom it hit, and how long after
// healing the cluster committed a write again.
type faultRecord struct {
	Fault  fault
	Target string // the leader isolated, when the fault chose it
	// Skipped says the fault found nothing to hit: no leader to isolate.
	Skipped  bool
	Start    int64
	Healed   int64
	Recovery time.Duration
	Err      error
}

// runNemesis runs the schedule against cluster, measuring after each heal
// how long the cluster takes to commit a write; probe commits one write
// and reports whether it succeeded. It stops early when ctx ends.
func runNemesis(ctx context.Context, c *linearizabilityCluster, schedule []fault, probe func(context.Context) bool) []faultRecord {
	var records []faultRecord
	for _, f := range schedule {
		if ctx.Err() != nil {
			break
		}
		record := faultRecord{Fault: f, Start: c.history.now()}
		record.Target = c.inject(f)
		record.Skipped = f.Kind == faultIsolateLeader && record.Target == ""
		sleep(ctx, f.Hold)
		record.Err = c.heal(f)
		record.Healed = c.history.now()
		healed := time.Now()
		for ctx.Err() == nil && !probe(ctx) && time.Since(healed) < recoveryBound {
			sleep(ctx, 50*time.Millisecond)
		}
		record.Recovery = time.Since(healed)
		records = append(records, record)
		c.logf("fault %s (target %q): healed, a write committed %v later", f, record.Target, record.Recovery.Round(time.Millisecond))
		sleep(ctx, f.Rest)
	}
	return records
}

// sleep waits for d or ctx, whichever ends first: the nemesis's schedule,
// not a wait for a condition.
func sleep(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}
