// Command quickstart runs one node of a raft cluster whose raft traffic,
// membership requests and application routes share one HTTP port.
//
//	go run ./examples/quickstart -id node1 -addr 127.0.0.1:8001
//	go run ./examples/quickstart -id node2 -addr 127.0.0.1:8002 -join 127.0.0.1:8001
//	go run ./examples/quickstart -id node3 -addr 127.0.0.1:8003 -join 127.0.0.1:8001
//	curl 127.0.0.1:8002/
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

func main() {
	id := flag.String("id", "", "this node's ID (required)")
	addr := flag.String("addr", "127.0.0.1:8001", "host:port to listen on; peers reach this node here, so not 0.0.0.0")
	join := flag.String("join", "", "address of any member of an existing cluster; empty starts a new cluster")
	flag.Parse()
	if *id == "" {
		log.Fatal("-id is required")
	}

	// One HTTP server for everything: raft at /raft, the application at /.
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	handler := rafthttp.NewHandler()
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	// Bound what a client can make the server hold before a handler runs:
	// a slowly sent request head, and headers far larger than raft's.
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go server.Serve(listener)

	// raft talks to its peers through the Layer. MaxRPCsInFlight 1 turns
	// off raft's pipelined replication, which can wedge (see the README).
	layer := rafthttp.NewLayer("/raft", listener.Addr(), handler, rafthttp.NewDialTCP())
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, MaxRPCsInFlight: 1,
	})
	config := raft.DefaultConfig()
	config.LocalID = raft.ServerID(*id)
	r, err := raft.NewRaft(config, fsm{}, raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), transport)
	if err != nil {
		log.Fatal(err)
	}
	// Apply join and leave requests on the leader; redirect them elsewhere.
	go raftmembership.HandleChangeRequests(r, handler.Requests())

	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		leader, _ := r.LeaderWithID()
		servers := r.GetConfiguration().Configuration().Servers
		fmt.Fprintf(w, "%s: state=%s leader=%s servers=%d\n", *id, r.State(), leader, len(servers))
	})

	if *join == "" {
		err = r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{ID: config.LocalID, Address: transport.LocalAddr()},
		}}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			log.Fatal(err)
		}
	} else if err := layer.Join(config.LocalID, raft.ServerAddress(*join), time.Minute); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s serving raft and the application on %s", *id, listener.Addr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	<-signals

	// Shut down in this order: raft, the transport (and with it the Layer
	// and the Handler), then the HTTP server.
	r.Shutdown().Error()
	transport.Close()
	server.Close()
}

// fsm is the application's state machine; this one keeps nothing.
type fsm struct{}

func (fsm) Apply(*raft.Log) any                 { return nil }
func (fsm) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (fsm) Restore(io.ReadCloser) error         { return nil }
