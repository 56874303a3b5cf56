// Package clustertest starts real raft clusters whose nodes talk through
// rafthttp over loopback HTTP servers, for the project's tests.
package clustertest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
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
	// ServerTLS, if set, makes every node serve TLS with it.
	ServerTLS *tls.Config
	// ClientTLS, if set, makes every node dial with NewDialTLS(ClientTLS).
	ClientTLS *tls.Config
	// Bolt stores the raft log and stable store in raft-boltdb files under
	// a temporary directory instead of memory.
	Bolt bool
	// Wrap, if set, wraps each node's HTTP handler (for middleware tests).
	Wrap func(http.Handler) http.Handler
}

// Node is one member of a test cluster.
type Node struct {
	ID        raft.ServerID
	Addr      string
	Handler   *rafthttp.Handler
	Layer     *rafthttp.Layer
	Transport *raft.NetworkTransport
	Raft      *raft.Raft
	FSM       *FSM
	Server    *http.Server

	t           testing.TB
	listener    net.Listener
	serveDone   chan struct{}
	membersDone chan struct{}
	stores      []io.Closer
	stopOnce    sync.Once
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

// Logger returns an hclog logger that writes to t.Log.
func Logger(t testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: testWriter{t}, Level: hclog.Info})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// StartNode starts one node on a fresh loopback port without joining it to
// anything. Bootstrap it, or join it with its Layer. It is shut down when
// the test ends, if not before.
func StartNode(t testing.TB, id raft.ServerID, options Options) *Node {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if options.ServerTLS != nil {
		listener = tls.NewListener(listener, options.ServerTLS)
	}
	logger := Logger(t, string(id))
	node := &Node{ID: id, Addr: listener.Addr().String(), t: t, listener: listener,
		serveDone: make(chan struct{}), membersDone: make(chan struct{})}

	node.Handler = rafthttp.NewHandlerWithLogger(logger.Named("rafthttp"))
	var dial rafthttp.Dial
	if options.ClientTLS != nil {
		dial = rafthttp.NewDialTLS(options.ClientTLS)
	}
	node.Layer, err = rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: Path, Addr: listener.Addr(), Handler: node.Handler, Dial: dial,
	})
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, node.Handler)
	var handler http.Handler = mux
	if options.Wrap != nil {
		handler = options.Wrap(handler)
	}
	node.Server = &http.Server{Handler: handler, ErrorLog: nil, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(node.serveDone)
		node.Server.Serve(listener)
	}()

	node.Transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: node.Layer, MaxPool: 3, Timeout: 5 * time.Second, Logger: logger.Named("transport"),
	})

	var logs raft.LogStore
	var stable raft.StableStore
	if options.Bolt {
		store, err := raftboltdb.NewBoltStore(filepath.Join(t.TempDir(), "raft.db"))
		if err != nil {
			t.Fatalf("bolt store: %v", err)
		}
		node.stores = append(node.stores, store)
		logs, stable = store, store
	} else {
		logs, stable = raft.NewInmemStore(), raft.NewInmemStore()
	}
	node.FSM = &FSM{}
	node.Raft, err = raft.NewRaft(Config(id, logger.Named("raft")), node.FSM, logs, stable,
		raft.NewInmemSnapshotStore(), node.Transport)
	if err != nil {
		t.Fatalf("raft: %v", err)
	}
	go func() {
		defer close(node.membersDone)
		raftmembership.HandleChangeRequestsWithConfig(node.Raft, node.Handler.Requests(),
			raftmembership.Config{Logger: logger.Named("membership"), Timeout: 5 * time.Second})
	}()
	t.Cleanup(node.Stop)
	return node
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
// closes the Layer and its Handler), then the HTTP server. It waits for the
// node's goroutines and is idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		if err := n.Raft.Shutdown().Error(); err != nil {
			n.t.Errorf("raft shutdown %s: %v", n.ID, err)
		}
		n.Transport.Close()
		n.Server.Close()
		<-n.serveDone
		<-n.membersDone
		for _, store := range n.stores {
			store.Close()
		}
	})
}

// Start starts size nodes, bootstraps the first, joins the rest through the
// first node's address, and waits until every node has applied the
// configuration with all of them as voters.
func Start(t testing.TB, size int, options Options) *Cluster {
	t.Helper()
	cluster := &Cluster{t: t}
	for i := range size {
		cluster.Nodes = append(cluster.Nodes, StartNode(t, raft.ServerID(fmt.Sprintf("node%d", i)), options))
	}
	first := cluster.Nodes[0]
	first.Bootstrap()
	cluster.Leader()
	for _, node := range cluster.Nodes[1:] {
		if err := node.Layer.Join(node.ID, raft.ServerAddress(first.Addr), WaitTimeout); err != nil {
			t.Fatalf("join %s: %v", node.ID, err)
		}
	}
	cluster.WaitMembers(size)
	return cluster
}

// Leader waits until exactly one node is leader and every other node that
// is running knows it, and returns it.
func (c *Cluster) Leader() *Node {
	c.t.Helper()
	var leader *Node
	Eventually(c.t, func() error {
		leader = nil
		for _, node := range c.Nodes {
			if node.Raft.State() == raft.Leader {
				if leader != nil {
					return errors.New("two leaders")
				}
				leader = node
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		return nil
	})
	return leader
}

// Followers returns the nodes that are not the current leader.
func (c *Cluster) Followers() []*Node {
	leader := c.Leader()
	var followers []*Node
	for _, node := range c.Nodes {
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
		servers, err := c.Leader().Servers()
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

// Apply applies command on the leader and waits until every running node
// has applied it.
func (c *Cluster) Apply(command string) {
	c.t.Helper()
	leader := c.Leader()
	future := leader.Raft.Apply([]byte(command), WaitTimeout)
	if err := future.Error(); err != nil {
		c.t.Fatalf("apply %q: %v", command, err)
	}
	index := future.Index()
	Eventually(c.t, func() error {
		for _, node := range c.Nodes {
			if applied := node.Raft.AppliedIndex(); applied < index {
				return fmt.Errorf("%s applied %d, want %d", node.ID, applied, index)
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
}

// Apply records the command.
func (f *FSM) Apply(entry *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, string(entry.Data))
	return len(f.commands)
}

// Commands returns the commands applied so far.
func (f *FSM) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

// Snapshot captures the commands.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot(f.Commands()), nil
}

// Restore replaces the commands with a snapshot's.
func (f *FSM) Restore(reader io.ReadCloser) error {
	defer reader.Close()
	data, err := io.ReadAll(reader)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = nil
	if len(data) > 0 {
		f.commands = strings.Split(string(data), "\n")
	}
	return nil
}

type snapshot []string

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := io.WriteString(sink, strings.Join(s, "\n")); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
