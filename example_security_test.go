package rafthttp_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
)

// This example locks a node's raft endpoint down: the Handler takes only
// requests that carry the cluster's bearer token and cluster ID, which the
// cluster's own Layers send with every request. A Layer without the token
// is refused with 401, one from another cluster with 412, before the
// Handler takes anything over.
func ExampleHandlerConfig_authorize() {
	const token = "s3cr3t-shared-by-the-cluster"
	quiet := hclog.NewNullLogger()
	handler := rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{
		Logger:    quiet,
		ClusterID: "prod-eu-1",
		Authorize: func(r *http.Request) error {
			want := "Bearer " + token
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
				return rafthttp.ErrUnauthorized
			}
			return nil
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go server.Serve(listener)
	defer server.Close()
	member, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: listener.Addr(), Handler: handler, Logger: quiet,
		ClusterID: "prod-eu-1",
		Header:    http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer member.Close()

	// dial upgrades a connection to the node with a Layer configured by
	// config and reports how it went.
	dial := func(who string, config rafthttp.LayerConfig) {
		config.Path, config.Addr, config.Handler, config.Logger = "/raft", listener.Addr(), rafthttp.NewHandlerWithLogger(quiet), quiet
		config.EagerHandshake = true // so that Dial reads the answer
		layer, err := rafthttp.NewLayerWithConfig(config)
		if err != nil {
			log.Fatal(err)
		}
		defer layer.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := layer.DialContext(ctx, raft.ServerAddress(listener.Addr().String()))
		var status *rafthttp.StatusError
		switch {
		case err == nil:
			fmt.Printf("%s: upgraded\n", who)
			conn.Close()
			accepted, err := member.Accept()
			if err == nil {
				accepted.Close()
			}
		case errors.Is(err, rafthttp.ErrClusterIDMismatch):
			fmt.Printf("%s: refused, cluster ID mismatch\n", who)
		case errors.As(err, &status):
			fmt.Printf("%s: refused, %d\n", who, status.StatusCode)
		default:
			fmt.Printf("%s: %v\n", who, err)
		}
	}
	dial("a member", rafthttp.LayerConfig{ClusterID: "prod-eu-1", Header: http.Header{"Authorization": {"Bearer " + token}}})
	dial("no token", rafthttp.LayerConfig{ClusterID: "prod-eu-1"})
	dial("another cluster", rafthttp.LayerConfig{ClusterID: "staging", Header: http.Header{"Authorization": {"Bearer " + token}}})
	// Output:
	// a member: upgraded
	// no token: refused, 401
	// another cluster: refused, cluster ID mismatch
}
