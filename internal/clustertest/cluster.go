// Package clustertest starts real raft clusters whose nodes talk through
// rafthttp over loopback HTTP servers, for the project's tests.
package clustertest

import (
	"cmp"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// Path is where every node mounts its Handler.
const Path = "/raft"

// WaitTimeout bounds every wait in this package. It is generous because
// the race detector on a shared two-core machine slows elections down.
const WaitTimeout = 30 * time.Second

// Options configures a cluster. The zero value means plain HTTP, in-memory
// raft stores and test-speed raft timeouts.
type Options struct {
	// ServerTLS, if set, makes every node serve TLS with a copy of it,
	// through http.Server.ServeTLS, which also enables HTTP/2. CA.Options
	// sets it and ClientTLS.
	ServerTLS *tls.Config
	// ClientTLS, if set, makes every node dial with NewDialTLS(ClientTLS).
	ClientTLS *tls.Config
	// Bolt stores the raft log and stable store in a raft-boltdb file, and
	// snapshots in files, in a t.TempDir() per node (Node.DataDir) instead
	// of memory.
	Bolt bool
	// Wrap, if set, wraps each node's HTTP handler (for middleware tests;
	// see Recorder).
	Wrap func(http.Handler) http.Handler
	// Raft, if set, adjusts each node's raft configuration (Config's)
	// before the node starts.
	Raft func(*raft.Config)
	// Handler and Layer, if set, adjust each node's Handler and Layer
	// configurations before they are built (Authorize, ClusterID, Header,
	// bounds).
	Handler func(*rafthttp.HandlerConfig)
	Layer   func(*rafthttp.LayerConfig)
	// Front, if set, puts something in front of each node's HTTP server,
	// such as a proxy (StartNginx, StartWebSocketProxy): it is called
	// once per node with the address the node listens on, and returns the
	// address its peers reach it at. The node advertises that address, to
	// raft and in its joins, and Node.Addr is it, so that every node
	// reaches every other only through the front.
	Front func(t testing.TB, backend string) string
	// MembershipTimeout is each node's raftmembership.Config.Timeout,
	// which bounds each change and the check that a joiner can be
	// reached. Zero means 5 seconds.
	MembershipTimeout time.Duration
}

// Node is one member of a test cluster.
type Node struct {
	ID raft.ServerID
	// Addr is the node's advertised address: where its server listens,
	// or what Options.Front put in front of it.
	Addr string
	// Listen is where the node's server listens.
	Listen    string
	Handler   *rafthttp.Handler
	Layer     *rafthttp.Layer
	Transport *raft.NetworkTransport
	Raft      *raft.Raft
	FSM       *FSM
	Server    *http.Server
	// DataDir holds the node's raft-boltdb file and snapshots when
	// Options.Bolt is set; a restarted node opens them again.
	DataDir string

	t           testing.TB
	options     Options
	serveDone   chan struct{}
	membersDone chan struct{}
	// The stores outlive a stop in memory, so that a restarted node without
	// Bolt keeps its state too.
	logs      raft.LogStore
	stable    raft.StableStore
	snapshots raft.SnapshotStore
	closers   []io.Closer
	stopOnce  sync.Once
	stopped   atomic.Bool
}

// Cluster is a set of nodes started by Start.
type Cluster struct {
	Nodes []*Node
	t     testing.TB
}

// Config returns the raft configuration tests use: timeouts short enough
// for fast tests yet long enough not to flap under the race detector.
func Config(id raft.ServerID, logger hclog.Logger) *raft.Config {
	config := raft.DefaultConfig()
	config.LocalID = id
	config.HeartbeatTimeout = 300 * time.Millisecond
	config.ElectionTimeout = 300 * time.Millisecond
	config.LeaderLeaseTimeout = 150 * time.Millisecond
	config.CommitTimeout = 5 * time.Millisecond
	config.Logger = logger
	return config
}

// Logger returns an hclog logger that writes to t.Log until the test's
// cleanup runs, and drops lines after that.
func Logger(t testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: newTestWriter(t), Level: hclog.Info})
}

// DebugLogger is Logger at debug level, for tests of rafthttp's own
// components, whose per-connection lines are logged at debug level.
func DebugLogger(t testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: newTestWriter(t), Level: hclog.Debug})
}

// LogWriter returns a writer to t.Log that goes quiet when the test's
// cleanup runs (see testWriter), for loggers a test builds itself.
func LogWriter(t testing.TB) io.Writer { return newTestWriter(t) }

// testWriter writes to t.Log. A goroutine that outlives the test by a
// moment (a connection handler logging its own end) must not call t.Log
// once the test has finished, which panics, so the writer goes quiet when
// the test's cleanup runs.
type testWriter struct {
	t    testing.TB
	mu   sync.RWMutex
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.done {
		w.t.Helper()
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// StartNode starts one node on a loopback port reserved for the test (see
// ReservedAddr) without joining it to anything. Bootstrap it, or join it
// with its Layer. It is shut down when the test ends, if not before.
func StartNode(t testing.TB, id raft.ServerID, options Options) *Node {
	t.Helper()
	listener, err := net.Listen("tcp", ReservedAddr(t))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	node := &Node{ID: id, t: t, options: options}
	if options.Bolt {
		node.DataDir = t.TempDir()
	} else {
		node.logs, node.stable = raft.NewInmemStore(), raft.NewInmemStore()
		node.snapshots = raft.NewInmemSnapshotStore()
	}
	node.start(listener)
	return node
}

// Restart stops the node, if it is running, and starts it again with the
// same ID, address, options and stores (the same raft-boltdb file with
// Bolt, the same in-memory stores without), as a process restarted on the
// same machine would be. The new node has a fresh FSM, which raft fills
// again from the log. Restart returns the new node; the old one stays
// stopped.
func (n *Node) Restart() *Node {
	n.t.Helper()
	n.Stop()
	node := &Node{ID: n.ID, Addr: n.Addr, t: n.t, options: n.options, DataDir: n.DataDir,
		logs: n.logs, stable: n.stable, snapshots: n.snapshots}
	// The port has stayed reserved since StartNode, so nobody else can
	// have taken it while the node was down. The old server's connections
	// still open or in TIME_WAIT do not stop the bind: Go's listeners set
	// SO_REUSEADDR.
	listener, err := net.Listen("tcp", n.Listen)
	if err != nil {
		n.t.Fatalf("restart %s: listen: %v", n.ID, err)
	}
	node.start(listener)
	return node
}

// start builds the node around listener: HTTP server, Layer, transport,
// stores, raft and the membership handler. A node started for the first
// time gets its advertised address here; a restarted one keeps its own.
func (node *Node) start(listener net.Listener) {
	t, options := node.t, node.options
	t.Helper()
	node.Listen = listener.Addr().String()
	if node.Addr == "" {
		node.Addr = node.Listen
		if options.Front != nil {
			node.Addr = options.Front(t, node.Listen)
		}
	}
	advertised, err := net.ResolveTCPAddr("tcp", node.Addr)
	if err != nil {
		listener.Close()
		t.Fatalf("advertised address %q: %v", node.Addr, err)
	}
	node.serveDone = make(chan struct{})
	node.membersDone = make(chan struct{})
	logger := Logger(t, string(node.ID))

	handlerConfig := rafthttp.HandlerConfig{Logger: logger.Named("rafthttp")}
	if options.Handler != nil {
		options.Handler(&handlerConfig)
	}
	node.Handler = rafthttp.NewHandlerWithConfig(handlerConfig)
	var dial rafthttp.Dial
	if options.ClientTLS != nil {
		dial = rafthttp.NewDialTLS(options.ClientTLS)
	}
	layerConfig := rafthttp.LayerConfig{Path: Path, Addr: advertised, Handler: node.Handler, Dial: dial}
	if options.Layer != nil {
		options.Layer(&layerConfig)
	}
	node.Layer, err = rafthttp.NewLayerWithConfig(layerConfig)
	if err != nil {
		listener.Close()
		t.Fatalf("layer: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, node.Handler)
	var handler http.Handler = mux
	if options.Wrap != nil {
		handler = options.Wrap(handler)
	}
	node.Server = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(newTestWriter(t), "http: ", 0)}
	if options.ServerTLS != nil {
		// ServeTLS, unlike a tls.Listener passed to Serve, sets up HTTP/2
		// as a production server would, so upgrades are tested against a
		// server that would pick h2 for a client that offers it. It edits
		// the config in place to do so: each server needs its own copy.
		node.Server.TLSConfig = options.ServerTLS.Clone()
	}
	go func() {
		defer close(node.serveDone)
		if options.ServerTLS != nil {
			node.Server.ServeTLS(listener, "", "")
		} else {
			node.Server.Serve(listener)
		}
	}()

	node.Transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: node.Layer, MaxPool: 3, Timeout: 5 * time.Second, Logger: logger.Named("transport"),
	})

	if options.Bolt {
		store, err := raftboltdb.NewBoltStore(filepath.Join(node.DataDir, "raft.db"))
		if err != nil {
			node.stopServing()
			t.Fatalf("bolt store: %v", err)
		}
		node.closers = append(node.closers, store)
		node.logs, node.stable = store, store
		node.snapshots, err = raft.NewFileSnapshotStoreWithLogger(node.DataDir, 2, logger.Named("snapshots"))
		if err != nil {
			node.stopServing()
			t.Fatalf("snapshot store: %v", err)
		}
	}
	node.FSM = &FSM{}
	config := Config(node.ID, logger.Named("raft"))
	if node.options.Raft != nil {
		node.options.Raft(config)
	}
	node.Raft, err = raft.NewRaft(config, node.FSM, node.logs, node.stable,
		node.snapshots, node.Transport)
	if err != nil {
		node.stopServing()
		t.Fatalf("raft: %v", err)
	}
	go func() {
		defer close(node.membersDone)
		raftmembership.HandleChangeRequestsWithConfig(node.Raft, node.Handler.Requests(),
			raftmembership.Config{Logger: logger.Named("membership"), Timeout: cmp.Or(options.MembershipTimeout, 5*time.Second)})
	}()
	t.Cleanup(node.Stop)
}

// stopServing undoes a start that failed before raft was running.
func (n *Node) stopServing() {
	n.Transport.Close()
	n.Server.Close()
	<-n.serveDone
	for _, closer := range n.closers {
		closer.Close()
	}
}

// Bootstrap makes the node a single-voter cluster.
func (n *Node) Bootstrap() {
	n.t.Helper()
	err := n.Raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: n.ID, Address: raft.ServerAddress(n.Addr), Suffrage: raft.Voter},
	}}).Error()
	if err != nil {
		n.t.Fatalf("bootstrap %s: %v", n.ID, err)
	}
}

// Stop shuts the node down in the documented order: raft, transport (which
// closes the Layer and its Handler), then the HTTP server. It does not call
// Transport.CloseStreams: closing the Layer must be enough to end every
// connection. It waits for the node's goroutines and is idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		if err := n.Raft.Shutdown().Error(); err != nil {
			n.t.Errorf("raft shutdown %s: %v", n.ID, err)
		}
		n.Transport.Close()
		n.Server.Close()
		<-n.serveDone
		<-n.membersDone
		for _, closer := range n.closers {
			if err := closer.Close(); err != nil {
				n.t.Errorf("close store of %s: %v", n.ID, err)
			}
		}
	})
}

// Stopped reports whether Stop has been called.
func (n *Node) Stopped() bool { return n.stopped.Load() }

// StartNodes starts size nodes, named node0, node1, ..., without
// bootstrapping or joining any of them.
func StartNodes(t testing.TB, size int, options Options) *Cluster {
	t.Helper()
	cluster := &Cluster{t: t}
	for i := range size {
		cluster.Nodes = append(cluster.Nodes, StartNode(t, raft.ServerID(fmt.Sprintf("node%d", i)), options))
	}
	return cluster
}

// Start starts size nodes, bootstraps the first, joins the rest through the
// first node's address, and waits until every node has applied the
// configuration with all of them as voters.
func Start(t testing.TB, size int, options Options) *Cluster {
	t.Helper()
	cluster := StartNodes(t, size, options)
	first := cluster.Nodes[0]
	first.Bootstrap()
	cluster.Leader()
	for _, node := range cluster.Nodes[1:] {
		if err := node.Layer.Join(node.ID, raft.ServerAddress(first.Addr), WaitTimeout); err != nil {
			t.Fatalf("join %s: %v", node.ID, err)
		}
	}
	cluster.WaitMembers(size)
	cluster.WaitLeaderKnown()
	return cluster
}

// WaitLeaderKnown waits until one node is leader and each of nodes (every
// running node if none are given) knows it, as a follower does once it has
// heard from the leader, and returns the leader. Until then a follower
// answers membership requests with 503 rather than a redirect.
func (c *Cluster) WaitLeaderKnown(nodes ...*Node) *Node {
	c.t.Helper()
	if len(nodes) == 0 {
		nodes = c.Running()
	}
	var leader *Node
	Eventually(c.t, func() (err error) {
		leader, err = c.currentLeader()
		if err != nil {
			return err
		}
		for _, node := range nodes {
			if address, _ := node.Raft.LeaderWithID(); string(address) != leader.Addr {
				return fmt.Errorf("%s knows leader %q, want %s", node.ID, address, leader.Addr)
			}
		}
		return nil
	})
	return leader
}

// Running returns the nodes that have not been stopped.
func (c *Cluster) Running() []*Node {
	var running []*Node
	for _, node := range c.Nodes {
		if !node.Stopped() {
			running = append(running, node)
		}
	}
	return running
}

// Restart restarts node (see Node.Restart) and puts the new node in its
// place in c.Nodes.
func (c *Cluster) Restart(node *Node) *Node {
	c.t.Helper()
	restarted := node.Restart()
	for i, n := range c.Nodes {
		if n == node {
			c.Nodes[i] = restarted
		}
	}
	return restarted
}

// Leader waits until exactly one running node is leader, and returns it.
func (c *Cluster) Leader() *Node {
	c.t.Helper()
	var leader *Node
	Eventually(c.t, func() (err error) {
		leader, err = c.currentLeader()
		return err
	})
	return leader
}

// currentLeader returns the one running node that is leader.
func (c *Cluster) currentLeader() (*Node, error) {
	var leader *Node
	for _, node := range c.Running() {
		if node.Raft.State() == raft.Leader {
			if leader != nil {
				return nil, fmt.Errorf("two leaders: %s and %s", leader.ID, node.ID)
			}
			leader = node
		}
	}
	if leader == nil {
		return nil, errors.New("no leader")
	}
	return leader, nil
}

// Followers returns the running nodes that are not the current leader.
func (c *Cluster) Followers() []*Node {
	leader := c.Leader()
	var followers []*Node
	for _, node := range c.Running() {
		if node != leader {
			followers = append(followers, node)
		}
	}
	return followers
}

// WaitMembers waits until the leader's configuration has size servers.
func (c *Cluster) WaitMembers(size int) {
	c.t.Helper()
	Eventually(c.t, func() error {
		leader, err := c.currentLeader()
		if err != nil {
			return err
		}
		servers, err := leader.Servers()
		if err != nil {
			return err
		}
		if len(servers) != size {
			return fmt.Errorf("%d servers, want %d: %v", len(servers), size, servers)
		}
		return nil
	})
}

// Servers returns the node's latest configuration.
func (n *Node) Servers() ([]raft.Server, error) {
	future := n.Raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return nil, err
	}
	return future.Configuration().Servers, nil
}

// Apply applies command on the leader and waits until every running node's
// FSM has applied it. Stop nodes that have left the cluster first: they never
// will.
func (c *Cluster) Apply(command string) {
	c.t.Helper()
	var index uint64
	Eventually(c.t, func() error {
		leader, err := c.currentLeader()
		if err != nil {
			return err
		}
		future := leader.Raft.Apply([]byte(command), WaitTimeout)
		err = future.Error()
		if errors.Is(err, raft.ErrNotLeader) {
			// Deposed before taking the command: it was not applied, so
			// trying at the next leader cannot apply it twice.
			return err
		}
		if err != nil {
			c.t.Fatalf("apply %q on %s: %v", command, leader.ID, err)
		}
		index = future.Index()
		return nil
	})
	Eventually(c.t, func() error {
		for _, node := range c.Running() {
			if applied := node.FSM.Index(); applied < index {
				return fmt.Errorf("%s's FSM applied up to %d, want %d", node.ID, applied, index)
			}
		}
		return nil
	})
}

// Eventually polls condition every few milliseconds until it returns nil,
// failing the test with its last error after WaitTimeout.
func Eventually(t testing.TB, condition func() error) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	interval := time.Millisecond
	for {
		err := condition()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", WaitTimeout, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 50*time.Millisecond)
	}
}

// FSM records the commands applied to it.
type FSM struct {
	mu       sync.Mutex
	commands []string
	index    uint64
}

// Apply records the command.
func (f *FSM) Apply(entry *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, string(entry.Data))
	f.index = entry.Index
	return len(f.commands)
}

// Commands returns the commands applied so far.
func (f *FSM) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

// Index returns the log index of the last command applied. Unlike
// raft.AppliedIndex, which raft advances when it hands entries to the FSM
// goroutine, it says the command has reached Commands.
func (f *FSM) Index() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// Snapshot captures the commands and the index of the last one.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return snapshot{Index: f.index, Commands: append([]string(nil), f.commands...)}, nil
}

// Restore replaces the commands with a snapshot's.
func (f *FSM) Restore(reader io.ReadCloser) error {
	defer reader.Close()
	var state snapshot
	if err := json.NewDecoder(reader).Decode(&state); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands, f.index = state.Commands, state.Index
	return nil
}

// snapshot is the FSM's state, persisted as JSON.
type snapshot struct {
	Index    uint64   `json:"index"`
	Commands []string `json:"commands"`
}

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
