package benchmarks

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/rafthttp/rafthttp"
)

// Transport kinds, used as the value of every benchmark's transport= key.
const (
	transportTCP  = "tcp"
	transportHTTP = "http"
	// transportHTTPEager is rafthttp with LayerConfig.EagerHandshake: every
	// dial waits for the 101, as the original package does. Only the
	// connection benchmarks, which it changes, run it.
	transportHTTPEager = "http-eager"
	// transportWS is rafthttp with LayerConfig.WebSocket: every dial is an
	// RFC 6455 handshake, and raft's stream travels in binary messages.
	transportWS = "ws"
)

var transports = []string{transportTCP, transportHTTP, transportWS}

// connTransports are the transports of the connection benchmarks.
var connTransports = []string{transportTCP, transportHTTP, transportHTTPEager, transportWS}

const (
	// raftPath is where every HTTP node mounts its Handler.
	raftPath = "/raft"
	// ioTimeout is the NetworkTransport I/O timeout and every dial timeout.
	ioTimeout = 10 * time.Second
	// waitTimeout bounds every wait for a leader or a commit.
	waitTimeout = 30 * time.Second
	// maxPool is the NetworkTransport connection pool size of cluster nodes.
	maxPool = 3
)

// quiet is the logger of every raft, transport and rafthttp component here.
var quiet = hclog.NewNullLogger()

// httpNode is an http.Server on a loopback port serving a rafthttp Handler,
// with the Layer that belongs to it.
type httpNode struct {
	layer     *rafthttp.Layer
	server    *http.Server
	serveDone chan struct{}
}

// startHTTPNode starts a node whose Layer dials as the given transport
// does: http, http-eager or ws. Its Handler serves every form.
func startHTTPNode(tb testing.TB, transport string) *httpNode {
	tb.Helper()
	config := rafthttp.LayerConfig{Path: raftPath, Logger: quiet}
	switch transport {
	case transportHTTP:
	case transportHTTPEager:
		config.EagerHandshake = true
	case transportWS:
		config.WebSocket = true
	default:
		tb.Fatalf("not a rafthttp transport: %q", transport)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	// UpgradeStorm opens 1,000 connections to one node at once, more than
	// the default MaxConns and MaxPendingUpgrades allow; raft's TCP
	// transport, the reference, has no such bounds.
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{
		Logger: quiet, MaxConns: 4 * stormSize, MaxPendingUpgrades: 4 * stormSize,
	})
	config.Addr, config.Handler = listener.Addr(), handler
	layer, err := rafthttp.NewLayerWithConfig(config)
	if err != nil {
		listener.Close()
		tb.Fatalf("layer: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(raftPath, handler)
	node := &httpNode{
		layer: layer,
		server: &http.Server{Handler: mux, ReadHeaderTimeout: ioTimeout,
			ErrorLog: log.New(io.Discard, "", 0)},
		serveDone: make(chan struct{}),
	}
	go func() {
		defer close(node.serveDone)
		node.server.Serve(listener)
	}()
	return node
}

// close closes the Layer (and its Handler and connections) and the server.
func (n *httpNode) close() {
	n.layer.Close()
	n.server.Close()
	<-n.serveDone
}

// endpoint is a raft.NetworkTransport on a loopback port: raft's TCP
// transport, or a NetworkTransport over an httpNode's Layer.
type endpoint struct {
	trans *raft.NetworkTransport
	addr  raft.ServerAddress
	http  *httpNode // nil for tcp
}

func startEndpoint(tb testing.TB, transport string, pool int) *endpoint {
	tb.Helper()
	config := &raft.NetworkTransportConfig{MaxPool: pool, Timeout: ioTimeout, Logger: quiet}
	switch transport {
	case transportTCP:
		trans, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, config)
		if err != nil {
			tb.Fatalf("tcp transport: %v", err)
		}
		return &endpoint{trans: trans, addr: trans.LocalAddr()}
	case transportHTTP, transportHTTPEager, transportWS:
		node := startHTTPNode(tb, transport)
		config.Stream = node.layer
		trans := raft.NewNetworkTransportWithConfig(config)
		return &endpoint{trans: trans, addr: trans.LocalAddr(), http: node}
	}
	tb.Fatalf("unknown transport %q", transport)
	return nil
}

// close closes the transport's pooled connections and the transport, and
// the HTTP server behind it. CloseStreams is called for both kinds: raft's
// TCP transport needs it for the accepting side of its pooled connections
// to end.
func (e *endpoint) close() {
	e.trans.CloseStreams()
	e.trans.Close()
	if e.http != nil {
		e.http.close()
	}
}

// raftConfig returns the raft configuration of a cluster node. tuned
// takes raft's batching timer out of the way (MaxAppendEntries 1024,
// CommitTimeout 1 ms) and uses loopback-speed timeouts; otherwise raft's
// DefaultConfig timings are kept. Both bound the log with frequent
// snapshots, so long runs of large commands do not grow memory without end.
func raftConfig(id raft.ServerID, tuned bool) *raft.Config {
	config := raft.DefaultConfig()
	config.LocalID = id
	config.Logger = quiet
	if tuned {
		config.HeartbeatTimeout = 500 * time.Millisecond
		config.ElectionTimeout = 500 * time.Millisecond
		config.LeaderLeaseTimeout = 250 * time.Millisecond
		config.CommitTimeout = time.Millisecond
		config.MaxAppendEntries = 1024
	}
	config.SnapshotInterval = 500 * time.Millisecond
	config.SnapshotThreshold = 4096
	config.TrailingLogs = 1024
	return config
}

// clusterOptions selects the transport, store and raft config of a cluster.
type clusterOptions struct {
	transport string
	bolt      bool
	tuned     bool
	// tempDir makes a directory for a node's bolt store; nil means the
	// TempDir of the testing.TB given to startCluster.
	tempDir func() string
}

// node is one member of a benchmark cluster.
type node struct {
	id       raft.ServerID
	endpoint *endpoint
	raft     *raft.Raft
	store    *raftboltdb.BoltStore // nil with in-memory stores
	stopped  bool
}

// cluster is a set of raft nodes in this process.
type cluster struct {
	nodes []*node
}

// startCluster starts size voters, all bootstrapped with the same
// configuration, and waits for a leader that has committed an entry.
func startCluster(tb testing.TB, size int, options clusterOptions) *cluster {
	tb.Helper()
	c := &cluster{}
	tempDir := options.tempDir
	if tempDir == nil {
		tempDir = tb.TempDir
	}
	var servers []raft.Server
	for i := range size {
		id := raft.ServerID(fmt.Sprintf("node%d", i))
		e := startEndpoint(tb, options.transport, maxPool)
		c.nodes = append(c.nodes, &node{id: id, endpoint: e})
		servers = append(servers, raft.Server{ID: id, Address: e.addr, Suffrage: raft.Voter})
	}
	for _, n := range c.nodes {
		var logs raft.LogStore
		var stable raft.StableStore
		var snapshots raft.SnapshotStore
		if options.bolt {
			dir := tempDir()
			store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
			if err != nil {
				c.stop(tb)
				tb.Fatalf("bolt store: %v", err)
			}
			n.store = store
			logs, stable = store, store
			snapshots, err = raft.NewFileSnapshotStoreWithLogger(dir, 1, quiet)
			if err != nil {
				c.stop(tb)
				tb.Fatalf("snapshot store: %v", err)
			}
		} else {
			store := raft.NewInmemStore()
			logs, stable = store, store
			snapshots = raft.NewInmemSnapshotStore()
		}
		r, err := raft.NewRaft(raftConfig(n.id, options.tuned), &countFSM{}, logs, stable, snapshots, n.endpoint.trans)
		if err != nil {
			c.stop(tb)
			tb.Fatalf("raft %s: %v", n.id, err)
		}
		n.raft = r
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			c.stop(tb)
			tb.Fatalf("bootstrap %s: %v", n.id, err)
		}
	}
	if err := c.write(make([]byte, 8)); err != nil {
		c.stop(tb)
		tb.Fatalf("first write: %v", err)
	}
	return c
}

// leader waits for a running node to be leader and returns it.
func (c *cluster) leader() (*node, error) {
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if !n.stopped && n.raft != nil && n.raft.State() == raft.Leader {
				return n, nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return nil, errors.New("no leader")
}

// write commits command through whichever node is leader, retrying while
// leadership moves, and returns once it is committed and applied.
func (c *cluster) write(command []byte) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		leader, err := c.leader()
		if err != nil {
			return err
		}
		err = leader.raft.Apply(command, ioTimeout).Error()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) &&
			!errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return err
		}
	}
}

// stopNode shuts the node down as a process would on exit: raft, then the
// transport with its connections, then the HTTP server and the store.
func (c *cluster) stopNode(tb testing.TB, n *node) {
	if n.stopped {
		return
	}
	n.stopped = true
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			tb.Errorf("raft shutdown %s: %v", n.id, err)
		}
	}
	n.endpoint.close()
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			tb.Errorf("close store %s: %v", n.id, err)
		}
	}
}

// stop shuts every node down, reporting errors to tb.
func (c *cluster) stop(tb testing.TB) {
	for _, n := range c.nodes {
		c.stopNode(tb, n)
	}
}

// countFSM counts the commands it applies and snapshots nothing else.
type countFSM struct{ applied atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { f.applied.Add(1); return nil }

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }

func (f *countFSM) Restore(reader io.ReadCloser) error { return reader.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }

func (emptySnapshot) Release() {}

// reportP50 reports the median of durations in microseconds.
func reportP50(b *testing.B, durations []time.Duration) {
	if len(durations) == 0 {
		return
	}
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds())/1e3, "p50-µs")
}
