package rafthttp_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

// This example runs a three-node raft cluster in one process. Each node has a
// single HTTP server that carries its raft traffic and its membership
// endpoint; the application's own routes could share that server too.
func Example() {
	var nodes []*exampleNode
	for _, id := range []string{"node1", "node2", "node3"} {
		node, err := startExampleNode(raft.ServerID(id))
		if err != nil {
			log.Fatal(err)
		}
		defer node.stop()
		nodes = append(nodes, node)
	}

	// The first node starts a cluster of one; the others ask it to join.
	// Join follows redirects to the leader and retries while it is elected.
	first := nodes[0]
	err := first.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: first.id, Address: first.transport.LocalAddr()},
	}}).Error()
	if err != nil {
		log.Fatal(err)
	}
	for _, node := range nodes[1:] {
		if err := node.layer.Join(node.id, first.transport.LocalAddr(), 10*time.Second); err != nil {
			log.Fatal(err)
		}
	}

	// Replicate a command and wait until every node has applied it.
	if err := first.raft.Apply([]byte("hello"), 10*time.Second).Error(); err != nil {
		log.Fatal(err)
	}
	for _, node := range nodes {
		fmt.Printf("%s applied %q\n", node.id, node.fsm.wait(1))
	}
	// Output:
	// node1 applied ["hello"]
	// node2 applied ["hello"]
	// node3 applied ["hello"]
}

type exampleNode struct {
	id        raft.ServerID
	server    *http.Server
	layer     *rafthttp.Layer
	transport *raft.NetworkTransport
	raft      *raft.Raft
	fsm       *exampleFSM
	done      chan struct{}
}

func startExampleNode(id raft.ServerID) (*exampleNode, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: string(id), Output: io.Discard})

	// Mount the Handler on the mux the application already serves.
	handler := rafthttp.NewHandlerWithLogger(logger)
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go server.Serve(listener)

	// The Layer is raft's StreamLayer: it dials peers at /raft and accepts
	// the connections the Handler upgrades.
	layer := rafthttp.NewLayerWithLogger("/raft", listener.Addr(), handler, rafthttp.NewDialTCP(), logger)
	transport := raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, logger)

	config := raft.DefaultConfig()
	config.LocalID = id
	config.Logger = logger
	fsm := &exampleFSM{}
	r, err := raft.NewRaft(config, fsm, raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), transport)
	if err != nil {
		return nil, err
	}

	// Every node applies join and leave requests while it leads and
	// redirects them to the leader otherwise.
	done := make(chan struct{})
	go func() {
		defer close(done)
		raftmembership.HandleChangeRequestsWithConfig(r, handler.Requests(), raftmembership.Config{Logger: logger})
	}()
	return &exampleNode{id: id, server: server, layer: layer, transport: transport, raft: r, fsm: fsm, done: done}, nil
}

// stop shuts the node down in the documented order: raft, then the
// transport (which closes the Layer and the Handler), then the HTTP server.
func (n *exampleNode) stop() {
	n.raft.Shutdown().Error()
	n.transport.Close()
	n.server.Close()
	<-n.done
}

// exampleFSM records the commands it applies.
type exampleFSM struct {
	mu       sync.Mutex
	commands []string
}

func (f *exampleFSM) Apply(entry *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, string(entry.Data))
	return nil
}

// wait returns the commands once at least n have been applied, or what has
// been applied after ten seconds.
func (f *exampleFSM) wait(n int) []string {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		f.mu.Lock()
		commands := append([]string(nil), f.commands...)
		f.mu.Unlock()
		if len(commands) >= n || time.Now().After(deadline) {
			return commands
		}
	}
}

func (f *exampleFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("not supported") }
func (f *exampleFSM) Restore(io.ReadCloser) error         { return errors.New("not supported") }

// This example configures the Layer of a node whose peers are reached
// through a proxy that mishandles request bodies on upgrade requests, so
// every dial waits for the 101 instead of sending raft's first request as
// early data. An invalid configuration is an error, not a panic.
func ExampleNewLayerWithConfig() {
	handler := rafthttp.NewHandler()
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	advertised := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}

	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path:           "/raft",
		Addr:           advertised,
		Handler:        handler,
		Dial:           rafthttp.NewDialTCP(),
		EagerHandshake: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer layer.Close()
	fmt.Println("raft address:", layer.Addr())

	_, err = rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: "raft", Addr: advertised, Handler: handler})
	fmt.Println(err)
	// Output:
	// raft address: 127.0.0.1:8080
	// rafthttp: path "raft" must start with /
}
