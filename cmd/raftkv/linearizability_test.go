package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/rafthttptest"
)

// The linearizability test runs one round of faults by default, as CI
// does. RAFTKV_NEMESIS=long runs 20 schedules of 60 s; the flags replay or
// reshape a run, and a failure prints the command that replays it:
//
//	go test -race ./cmd/raftkv -run '^TestLinearizability$' -seed 1234
//	RAFTKV_NEMESIS=long go test -race ./cmd/raftkv -run '^TestLinearizability$' -timeout 80m
var (
	nemesisSeed      = flag.Uint64("seed", 0, "seed of the linearizability test's first schedule (0: drawn from the clock)")
	nemesisSchedules = flag.Int("schedules", 0, "number of schedules the linearizability test runs (0: 1, or 20 with RAFTKV_NEMESIS=long)")
	nemesisLength    = flag.Duration("schedule-length", 0, "length of each schedule, in whole rounds of every fault (0: one round, or 60s with RAFTKV_NEMESIS=long)")
	nemesisClients   = flag.Int("clients", 0, "concurrent clients of the linearizability test (0: 5, or 8 with RAFTKV_NEMESIS=long)")
)

// sharedKeys are the keys every client writes and reads: few enough that
// operations collide, enough that porcupine's search stays small when
// faults leave many writes undecided.
var sharedKeys = []string{"k1", "k2", "k3", "k4", "k5"}

const (
	// recoveryBound is how soon after a fault heals the cluster must
	// commit a write again.
	recoveryBound = 30 * time.Second
)

// nemesisSettings is what a run of the linearizability test does.
type nemesisSettings struct {
	seeds   []uint64
	length  time.Duration
	clients int
	// checkTimeout bounds porcupine's search: a short run's history is
	// decided in well under a second, and CI must not wait minutes.
	checkTimeout time.Duration
}

func newNemesisSettings() nemesisSettings {
	count := 1
	settings := nemesisSettings{length: time.Second, clients: 5, checkTimeout: 30 * time.Second}
	if os.Getenv("RAFTKV_NEMESIS") == "long" {
		count = 20
		settings = nemesisSettings{length: 60 * time.Second, clients: 8, checkTimeout: 5 * time.Minute}
	}
	if *nemesisSchedules > 0 {
		count = *nemesisSchedules
	}
	if *nemesisLength > 0 {
		settings.length = *nemesisLength
	}
	if *nemesisClients > 0 {
		settings.clients = *nemesisClients
	}
	first := *nemesisSeed
	if first == 0 {
		first = uint64(time.Now().UnixNano())
	}
	for i := range count {
		settings.seeds = append(settings.seeds, first+uint64(i))
	}
	return settings
}

// TestLinearizability runs a 5-node raftkv cluster under clients doing
// puts, consistent gets and deletes on a few keys while a nemesis injects
// partitions, crashes, resets, latency and pauses, and checks that the
// history is linearizable, that every acknowledged write is on every node
// once the faults heal, and that the cluster commits within recoveryBound
// of each heal.
func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("the linearizability test runs a schedule of faults")
	}
	settings := newNemesisSettings()
	for _, seed := range settings.seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runLinearizability(t, "TestLinearizability", seed, settings, linksDirect)
		})
	}
}

// TestLinearizabilityThroughNginx runs the same with every link, raft's and
// the clients', going through nginx: one round by default, and whatever
// the flags ask for.
func TestLinearizabilityThroughNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("the linearizability test runs a schedule of faults")
	}
	if _, ok := clustertest.NginxPath(); !ok && os.Getenv("CI") == "" {
		t.Skip("nginx not installed")
	}
	settings := newNemesisSettings()
	if os.Getenv("RAFTKV_NEMESIS") == "long" && *nemesisSchedules == 0 {
		// The long run's budget goes to the direct test.
		settings.seeds = settings.seeds[:1]
	}
	for _, seed := range settings.seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runLinearizability(t, "TestLinearizabilityThroughNginx", seed, settings, linksNginx)
		})
	}
}

// TestLinearizabilityWebSocket runs the same with every node in WebSocket
// mode (-websocket) and every link going through a strict WebSocket-only
// proxy, which refuses raw upgrades and checks every frame it relays: the
// test fails on any frame that breaks RFC 6455, under the faults too. One
// round by default, and whatever the flags ask for.
func TestLinearizabilityWebSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("the linearizability test runs a schedule of faults")
	}
	settings := newNemesisSettings()
	if os.Getenv("RAFTKV_NEMESIS") == "long" && *nemesisSchedules == 0 {
		settings.seeds = settings.seeds[:1]
	}
	for _, seed := range settings.seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runLinearizability(t, "TestLinearizabilityWebSocket", seed, settings, linksWebSocket)
		})
	}
}

// links says what stands between the nodes, and between the clients and
// the nodes, in a linearizability test.
type links int

const (
	// linksDirect: nothing; the faults alone.
	linksDirect links = iota
	// linksNginx: an nginx in front of each node (clustertest.StartNginx).
	linksNginx
	// linksWebSocket: a strict WebSocket-only proxy in front of each node
	// (clustertest.StartWebSocketProxy), and nodes in WebSocket mode.
	linksWebSocket
)

func runLinearizability(t *testing.T, test string, seed uint64, settings nemesisSettings, links links) {
	out, err := os.MkdirTemp("", fmt.Sprintf("raftkv-nemesis-%d-", seed))
	if err != nil {
		t.Fatal(err)
	}
	replay := fmt.Sprintf("go test -race ./cmd/raftkv -run '^%s$/^seed=%d$' -seed %d -schedules 1 -schedule-length %v -clients %d",
		test, seed, seed, settings.length, settings.clients)
	logFile, err := os.Create(filepath.Join(out, "nodes.log"))
	if err != nil {
		t.Fatal(err)
	}
	var c *linearizabilityCluster
	var schedule []fault
	// Registered first, so it runs last, once the nodes have stopped
	// (which can fail the test too): on any failure, a panic and a
	// startup failure included, it saves what there is and says how to
	// replay it; on success it removes it all.
	t.Cleanup(func() {
		logFile.Close()
		if !t.Failed() {
			os.RemoveAll(out)
			return
		}
		if c != nil {
			writeSchedule(t, out, seed, schedule, c)
			ops, _ := c.history.operations()
			_, info := porcupine.CheckOperationsVerbose(kvModel, ops, settings.checkTimeout)
			annotate(&info, c.records)
			if err := porcupine.VisualizePath(kvModel, info, filepath.Join(out, "history.html")); err != nil {
				t.Logf("visualize: %v", err)
			}
		}
		t.Logf("seed %d failed; replay: %s\nschedule.txt, history.html and nodes.log are in %s", seed, replay, out)
	})

	c = startLinearizabilityCluster(t, seed, out, logFile, links)
	schedule = newSchedule(seed, c.names(), settings.length)
	writeSchedule(t, out, seed, schedule, c)
	// The clients and the nemesis run together; the clients stop once
	// the schedule is over.
	w := workload{keys: sharedKeys}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range settings.clients {
		wg.Go(func() { runClient(ctx, c.history, w, seed, i, c.randomBase) })
	}
	prober := newKVClient(c.history, 2*time.Second)
	probeRandom := rand.New(rand.NewPCG(seed, 0x70726f6265))
	probeSeq := 0
	probe := func(ctx context.Context) bool {
		probeSeq++
		in := kvInput{Op: "put", Key: "probe", Value: fmt.Sprintf("probe-%d", probeSeq)}
		return !prober.do(ctx, c.randomBase(probeRandom), in).Unknown
	}
	started := time.Now()
	c.records = runNemesis(context.Background(), c, schedule, probe)
	stop()
	wg.Wait()
	elapsed := time.Since(started)

	for _, record := range c.records {
		if record.Err != nil {
			t.Errorf("healing %s: %v", record.Fault, record.Err)
			return
		}
		if record.Recovery >= recoveryBound {
			t.Errorf("no write committed within %v of healing %s", recoveryBound, record.Fault)
			return
		}
	}
	// Every node must converge on the same state, holding every write
	// acknowledged with a 2xx.
	if why := c.checkConverged(prober); why != "" {
		t.Errorf("after healing: %s", why)
		return
	}

	ops, pruned := c.history.operations()
	checking := time.Now()
	result, _ := porcupine.CheckOperationsVerbose(kvModel, ops, settings.checkTimeout)
	c.logf("porcupine: %s for %d operations (%d unobserved unknown puts left out) in %v",
		result, len(ops), pruned, time.Since(checking).Round(time.Millisecond))
	if result != porcupine.Ok {
		t.Errorf("history of %d operations is %s (porcupine: Illegal means not linearizable, Unknown that the check took over %v)",
			len(ops), result, settings.checkTimeout)
		return
	}
	c.summarize(t, time.Since(started), elapsed, len(ops), pruned)
}

// linearizabilityCluster is five raftkv nodes, the real node code on
// raft-boltdb, whose raft links run through a rafthttptest Network.
type linearizabilityCluster struct {
	t       *testing.T
	out     string
	network *rafthttptest.Network
	history *history
	logs    *os.File
	logMu   sync.Mutex
	records []faultRecord
	// storm, while a reset storm runs, stops it.
	storm     chan struct{}
	stormDone sync.WaitGroup

	mu      sync.Mutex
	configs map[string]nodeConfig
	running map[string]*testNode
	// bases are the URLs clients use for each node: its own address, or
	// the proxy in front of it.
	bases map[string]string
}

func startLinearizabilityCluster(t *testing.T, seed uint64, out string, logs *os.File, links links) *linearizabilityCluster {
	network := rafthttptest.NewNetwork(seed)
	c := &linearizabilityCluster{
		t: t, out: out, network: network, history: newHistory(), logs: logs,
		configs: make(map[string]nodeConfig), running: make(map[string]*testNode), bases: make(map[string]string),
	}
	// Registered first, so it runs after every node has stopped.
	// Made before the cleanup that stops the nodes is registered, so it
	// is removed after they have stopped: a node still writing a
	// snapshot would make the removal fail.
	dataRoot := t.TempDir()
	t.Cleanup(func() { network.Close() })
	t.Cleanup(func() {
		for _, n := range c.nodes() {
			stopWithin(t, n, out, time.Minute)
		}
	})
	logger := hclog.New(&hclog.LoggerOptions{Name: "raftkv", Output: logs, Level: hclog.Info})
	var first string
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("node%d", i)
		listen := clustertest.ReservedAddr(t)
		advertise := listen
		switch links {
		case linksNginx:
			advertise = clustertest.StartNginx(t, listen)
		case linksWebSocket:
			advertise = clustertest.StartWebSocketProxy(t, listen).Addr()
		}
		faults := network.Node(name, listen, advertise)
		config := nodeConfig{
			ID: name, Listen: listen, Advertise: advertise, DataDir: filepath.Join(dataRoot, name),
			Logger: logger.Named(name),
			// Snapshots often, and little log kept behind them, so that
			// a node back from a crash or a partition is sent a
			// snapshot.
			SnapshotThreshold: 64, SnapshotInterval: 200 * time.Millisecond,
			WebSocket: links == linksWebSocket,
			hooks: nodeHooks{
				dial:    faults.DialContext,
				handler: faults.Handler,
				raft: func(config *raft.Config) {
					config.TrailingLogs = 32
					config.HeartbeatTimeout = 500 * time.Millisecond
					config.ElectionTimeout = 500 * time.Millisecond
					config.LeaderLeaseTimeout = 250 * time.Millisecond
				},
			},
		}
		if i == 1 {
			config.Bootstrap = true
			first = advertise
		} else {
			config.Join = []string{first}
		}
		n, err := startNode(context.Background(), config)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		config.Bootstrap, config.Join = false, nil
		c.mu.Lock()
		c.configs[name], c.running[name], c.bases[name] = config, &testNode{node: n}, "http://"+advertise
		c.mu.Unlock()
	}
	clustertest.Eventually(t, func() error {
		for _, n := range c.nodes() {
			status, err := n.status()
			if err != nil {
				return err
			}
			if len(status.Servers) != 5 || status.Leader == nil {
				return fmt.Errorf("%s sees %d servers, leader %v", n.config.ID, len(status.Servers), status.Leader)
			}
		}
		return nil
	})
	return c
}

func (c *linearizabilityCluster) logf(format string, args ...any) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	fmt.Fprintf(c.logs, "%s [NEMESIS] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (c *linearizabilityCluster) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.configs))
	for name := range c.configs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func (c *linearizabilityCluster) nodes() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	nodes := make([]*testNode, 0, len(c.running))
	for _, name := range slices.Sorted(maps.Keys(c.running)) {
		nodes = append(nodes, c.running[name])
	}
	return nodes
}

// randomBase picks a running node for a client's next operation.
func (c *linearizabilityCluster) randomBase(random *rand.Rand) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := slices.Sorted(maps.Keys(c.running))
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(c.bases))
	}
	return c.bases[names[random.IntN(len(names))]]
}

func (c *linearizabilityCluster) leaderName() string {
	for _, n := range c.nodes() {
		if n.raft.State() == raft.Leader {
			return n.config.ID
		}
	}
	return ""
}

// inject starts f and returns the node it chose at run time, if any.
func (c *linearizabilityCluster) inject(f fault) string {
	c.logf("fault %s: starting", f)
	switch f.Kind {
	case faultPartition, faultBridge:
		c.network.Partition(f.Groups...)
	case faultIsolateLeader:
		// The last fault's recovery elected one; it may be stepping
		// down again under load, so wait a moment for it.
		var leader string
		for deadline := time.Now().Add(5 * time.Second); leader == "" && time.Now().Before(deadline); {
			if leader = c.leaderName(); leader == "" {
				sleep(context.Background(), 20*time.Millisecond)
			}
		}
		if leader != "" {
			c.network.Isolate(leader)
		}
		return leader
	case faultCutOneWay:
		for _, l := range f.Links {
			c.network.CutOneWay(l[0], l[1])
		}
	case faultCrash:
		c.crash(f.Node)
	case faultResets:
		c.storm = make(chan struct{})
		c.stormDone.Go(func() { c.resetStorm(f, c.storm) })
	case faultLatency:
		for _, a := range f.Groups[0] {
			for _, b := range c.names() {
				if a != b {
					c.network.Delay(a, b, f.Latency, f.Jitter)
				}
			}
		}
	case faultPause:
		c.network.Pause(f.Node)
	}
	return ""
}

// resetStorm resets f.Node's connections every 100-300 ms until stop.
func (c *linearizabilityCluster) resetStorm(f fault, stop <-chan struct{}) {
	random := rand.New(rand.NewPCG(uint64(f.Hold), 0))
	for {
		c.network.ResetNode(f.Node)
		timer := time.NewTimer(100*time.Millisecond + time.Duration(random.Int64N(int64(200*time.Millisecond))))
		select {
		case <-timer.C:
		case <-stop:
			timer.Stop()
			return
		}
	}
}

// heal ends f: the network heals, and a crashed node restarts from its
// data directory.
func (c *linearizabilityCluster) heal(f fault) error {
	if c.storm != nil {
		close(c.storm)
		c.stormDone.Wait()
		c.storm = nil
	}
	c.network.Heal()
	if f.Kind == faultCrash {
		return c.restart(f.Node)
	}
	return nil
}

// crash stops a node without leaving the cluster, and without grace: its
// HTTP server closes every connection at once, requests in flight
// included, and its raft connections are reset before raft stops.
func (c *linearizabilityCluster) crash(name string) {
	c.mu.Lock()
	n := c.running[name]
	delete(c.running, name)
	c.mu.Unlock()
	if n != nil {
		n.server.Close()
		c.network.ResetNode(name)
		stopWithin(c.t, n, c.out, time.Minute)
	}
}

// restart starts a crashed node again on its address and data directory.
func (c *linearizabilityCluster) restart(name string) error {
	c.mu.Lock()
	config := c.configs[name]
	c.mu.Unlock()
	n, err := startNode(context.Background(), config)
	if err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	c.mu.Lock()
	c.running[name] = &testNode{node: n}
	c.mu.Unlock()
	return nil
}

// checkConverged waits until every node has applied what the leader has
// and then reads every key locally on every node: they must agree with one
// another and with a consistent read, and hold every acknowledged unique
// write. The reads join the history. It returns what is wrong, or "".
func (c *linearizabilityCluster) checkConverged(client *kvClient) string {
	var problem string
	deadline := time.Now().Add(recoveryBound)
	for {
		problem = c.converged()
		if problem == "" || time.Now().After(deadline) {
			break
		}
		sleep(context.Background(), 50*time.Millisecond)
	}
	if problem != "" {
		return problem
	}
	c.history.mu.Lock()
	acked := maps.Clone(c.history.acked)
	c.history.mu.Unlock()
	nodes := c.nodes()

	// The keys every client shares: a consistent read, then a local read
	// on each node, all of which join the history.
	local := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, key := range append([]string{"probe"}, sharedKeys...) {
		// A consistent read may fail while the cluster settles: retried,
		// since an unknown answer says nothing of what the nodes hold.
		var want kvOutput
		for deadline := time.Now().Add(recoveryBound); ; {
			if want = client.do(context.Background(), c.baseOf(nodes[0]), kvInput{Op: "get", Key: key}); !want.Unknown {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Sprintf("no consistent read of %q succeeded within %v", key, recoveryBound)
			}
			sleep(context.Background(), 50*time.Millisecond)
		}
		for _, n := range nodes {
			call := c.history.now()
			got, err := send(local, http.MethodGet, c.baseOf(n)+"/kv/"+key, nil)
			if err != nil {
				return fmt.Sprintf("local read of %q on %s: %v", key, n.config.ID, err)
			}
			out := kvOutput{Value: got.body, Found: got.status == http.StatusOK}
			if got.status != http.StatusOK {
				out.Value = ""
			}
			c.history.add(porcupine.Operation{ClientId: client.id, Input: kvInput{Op: "get", Key: key}, Call: call, Output: out, Return: c.history.now()})
			if out != want {
				return fmt.Sprintf("%s holds %q for %q (found %v), a consistent read gave %q (found %v)",
					n.config.ID, out.Value, key, out.Found, want.Value, want.Found)
			}
		}
	}

	// The unique keys, thousands of them, straight from each node's state
	// machine: every node holds the same map, and in it every
	// acknowledged write.
	first := nodeState(nodes[0])
	for _, n := range nodes {
		state := nodeState(n)
		if !maps.Equal(state, first) {
			return fmt.Sprintf("%s holds %d keys, %s %d, and they differ", n.config.ID, len(state), nodes[0].config.ID, len(first))
		}
		for key, value := range acked {
			if got, ok := state[key]; !ok || got != value {
				return fmt.Sprintf("%s lost the acknowledged write %q = %q", n.config.ID, key, value)
			}
		}
	}
	return ""
}

// nodeState copies what n's state machine holds: a local read of every
// key at once.
func nodeState(n *testNode) map[string]string {
	n.fsm.mu.RLock()
	defer n.fsm.mu.RUnlock()
	state := make(map[string]string, len(n.fsm.data))
	for key, value := range n.fsm.data {
		state[key] = string(value)
	}
	return state
}

// converged reports why the nodes do not yet agree, or "".
func (c *linearizabilityCluster) converged() string {
	nodes := c.nodes()
	if len(nodes) != 5 {
		return fmt.Sprintf("%d nodes running", len(nodes))
	}
	var leader *testNode
	for _, n := range nodes {
		if n.raft.State() == raft.Leader {
			leader = n
		}
	}
	if leader == nil {
		return "no leader"
	}
	want := leader.raft.LastIndex()
	for _, n := range nodes {
		if applied := n.raft.AppliedIndex(); applied < want {
			return fmt.Sprintf("%s applied %d of %d", n.config.ID, applied, want)
		}
	}
	return ""
}

func (c *linearizabilityCluster) baseOf(n *testNode) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[n.config.ID]
}

// stopWithin stops n, and fails the test with every goroutine's stack
// saved to out if that takes longer than limit. The stop still has to end
// before the test does.
func stopWithin(t *testing.T, n *testNode, out string, limit time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.stopNow()
	}()
	select {
	case <-done:
		return
	case <-time.After(limit):
	}
	path := filepath.Join(out, "goroutines-"+n.config.ID+".txt")
	if file, err := os.Create(path); err == nil {
		pprof.Lookup("goroutine").WriteTo(file, 2)
		file.Close()
	}
	t.Errorf("stopping %s took more than %v; goroutines saved in %s", n.config.ID, limit, path)
	<-done
}

// annotate marks each fault on the visualization's timeline.
func annotate(info *porcupine.LinearizationInfo, records []faultRecord) {
	annotations := make([]porcupine.Annotation, 0, len(records))
	for _, r := range records {
		description := string(r.Fault.Kind)
		if r.Target != "" {
			description += " " + r.Target
		}
		annotations = append(annotations, porcupine.Annotation{
			Tag: "nemesis", Start: r.Start, End: r.Healed, Description: description,
			Details: fmt.Sprintf("%s; write committed %v after healing", r.Fault, r.Recovery.Round(time.Millisecond)),
		})
	}
	info.AddAnnotations(annotations)
}

// writeSchedule saves the schedule and what each fault did to out.
func writeSchedule(t *testing.T, out string, seed uint64, schedule []fault, c *linearizabilityCluster) {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d\n\nschedule:\n", seed)
	for _, f := range schedule {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	fmt.Fprintf(&b, "\nrun:\n")
	for _, r := range c.records {
		fmt.Fprintf(&b, "  %8.3fs-%8.3fs %s target=%q recovery=%v err=%v\n",
			time.Duration(r.Start).Seconds(), time.Duration(r.Healed).Seconds(), r.Fault.Kind, r.Target,
			r.Recovery.Round(time.Millisecond), r.Err)
	}
	if err := os.WriteFile(filepath.Join(out, "schedule.txt"), []byte(b.String()), 0o644); err != nil {
		t.Logf("write schedule: %v", err)
	}
}

// summarize logs the figures RELIABILITY.md reports.
func (c *linearizabilityCluster) summarize(t *testing.T, total, faulted time.Duration, checked, pruned int) {
	byKind := make(map[faultKind]int)
	var worst time.Duration
	var worstFault fault
	skipped := 0
	for _, r := range c.records {
		if r.Skipped {
			skipped++
			continue
		}
		byKind[r.Fault.Kind]++
		if r.Recovery > worst {
			worst, worstFault = r.Recovery, r.Fault
		}
	}
	var kinds []string
	for _, kind := range faultKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", kind, byKind[kind]))
	}
	c.history.mu.Lock()
	defer c.history.mu.Unlock()
	t.Logf("linearizable: %d operations checked (%d ok, %d unknown of which %d unobserved puts left out, %d failed reads and refused writes not recorded); faults for %v, %v in all; faults %s (%d skipped: no leader to isolate); worst recovery %v after %s",
		checked, c.history.ok, c.history.unknown, pruned, c.history.notRecorded,
		faulted.Round(time.Millisecond), total.Round(time.Millisecond),
		strings.Join(kinds, " "), skipped, worst.Round(time.Millisecond), worstFault.Kind)
}
