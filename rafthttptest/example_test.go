package rafthttptest_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/rafthttptest"
)

// This example isolates the leader of a three-node cluster: it loses its
// leadership, the other two elect a new leader and commit without it, and
// once the link is mended it follows the new leader and catches up.
func Example() {
	network := rafthttptest.NewNetwork(1)
	defer network.Close()

	var nodes []*node
	var servers []raft.Server
	for _, name := range []string{"a", "b", "c"} {
		n, err := startNode(network, name)
		if err != nil {
			log.Fatal(err)
		}
		defer n.stop()
		nodes = append(nodes, n)
		servers = append(servers, raft.Server{ID: raft.ServerID(name), Address: n.transport.LocalAddr()})
	}
	for _, n := range nodes {
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			log.Fatal(err)
		}
	}
	old := waitForLeader(nodes, nil)
	if old == nil {
		log.Fatal("no leader elected")
	}
	fmt.Println("a leader is elected")

	// Isolating the leader stops its connections at once: its heartbeats
	// no longer arrive, and it hears from no follower.
	network.Isolate(old.name)
	fresh := waitForLeader(nodes, old)
	if fresh == nil {
		log.Fatal("the majority elected no leader")
	}
	fmt.Println("the majority elects a new leader")
	fmt.Println("the isolated node stepped down:", waitUntil(func() bool { return old.raft.State() != raft.Leader }))
	future := fresh.raft.Apply([]byte("written while partitioned"), 10*time.Second)
	fmt.Println("the majority commits:", future.Error() == nil)

	for _, n := range nodes {
		if n != old {
			network.Mend(old.name, n.name)
		}
	}
	caughtUp := waitUntil(func() bool {
		_, leader := old.raft.LeaderWithID()
		return old.raft.State() == raft.Follower && leader == raft.ServerID(fresh.name) &&
			old.raft.AppliedIndex() >= future.Index()
	})
	fmt.Println("after Mend the old leader follows and catches up:", caughtUp)
	// Output:
	// a leader is elected
	// the majority elects a new leader
	// the isolated node stepped down: true
	// the majority commits: true
	// after Mend the old leader follows and catches up: true
}

// node is one raft node whose Layer dials through the Network and whose
// Handler is wrapped by it.
type node struct {
	name      string
	server    *http.Server
	transport *raft.NetworkTransport
	raft      *raft.Raft
}

func startNode(network *rafthttptest.Network, name string) (*node, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: name, Output: io.Discard})
	faults := network.Node(name, listener.Addr().String())

	handler := rafthttp.NewHandlerWithLogger(logger)
	mux := http.NewServeMux()
	mux.Handle("/raft", faults.Handler(handler))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go server.Serve(listener)

	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: listener.Addr(), Handler: handler,
		DialContext: faults.DialContext(nil), Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	transport := raft.NewNetworkTransportWithLogger(layer, 3, 2*time.Second, logger)
	config := raft.DefaultConfig()
	config.LocalID = raft.ServerID(name)
	config.Logger = logger
	config.HeartbeatTimeout = 500 * time.Millisecond
	config.ElectionTimeout = 500 * time.Millisecond
	config.LeaderLeaseTimeout = 250 * time.Millisecond
	r, err := raft.NewRaft(config, &raft.MockFSM{}, raft.NewInmemStore(), raft.NewInmemStore(),
		raft.NewInmemSnapshotStore(), transport)
	if err != nil {
		return nil, err
	}
	return &node{name: name, server: server, transport: transport, raft: r}, nil
}

func (n *node) stop() {
	n.raft.Shutdown().Error()
	n.transport.Close()
	n.server.Close()
}

// waitForLeader returns the node that leads, other than not, once one does.
func waitForLeader(nodes []*node, not *node) *node {
	var leader *node
	waitUntil(func() bool {
		for _, n := range nodes {
			if n != not && n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// waitUntil reports whether condition held within thirty seconds.
func waitUntil(condition func() bool) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if condition() {
			return true
		}
	}
	return false
}
