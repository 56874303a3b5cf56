package rafthttp_test

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
)

// BenchmarkUpgradeHandshake measures one full upgrade dial through
// Layer.Dial against a real http.Server with the Handler mounted, both sides
// in this process: connect, request, 101, and close. The Layer is eager, so
// that every Dial performs the whole handshake (with early data, Dial only
// connects). A goroutine accepts and closes the upgraded connections on the
// serving side.
func BenchmarkUpgradeHandshake(b *testing.B) {
	benchmarkHandshake(b, rafthttp.LayerConfig{EagerHandshake: true})
}

// BenchmarkWebSocketHandshake is BenchmarkUpgradeHandshake in WebSocket
// mode (LayerConfig.WebSocket), whose dials always wait for the 101.
func BenchmarkWebSocketHandshake(b *testing.B) {
	benchmarkHandshake(b, rafthttp.LayerConfig{WebSocket: true})
}

// benchmarkHandshake runs BenchmarkUpgradeHandshake with a Layer that
// config, given its path, address and Handler, makes.
func benchmarkHandshake(b *testing.B, config rafthttp.LayerConfig) {
	// The default logger's level: Debug is disabled, as in production.
	logger := hclog.New(&hclog.LoggerOptions{Name: "rafthttp", Output: io.Discard})
	handler := rafthttp.NewHandlerWithLogger(logger)
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		server.Serve(listener)
	}()
	config.Path, config.Addr, config.Handler = "/raft", listener.Addr(), handler
	layer, err := rafthttp.NewLayerWithConfig(config)
	if err != nil {
		b.Fatal(err)
	}
	accepted := closeEachAccepted(layer.Accept)
	b.Cleanup(func() {
		layer.Close()
		<-accepted
		server.Close()
		<-served
	})
	addr := raft.ServerAddress(listener.Addr().String())

	b.ReportAllocs()
	for b.Loop() {
		conn, err := layer.Dial(addr, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

// BenchmarkTCPConnect is the reference for BenchmarkUpgradeHandshake: a
// bare TCP connect and close to a listener that accepts and closes.
func BenchmarkTCPConnect(b *testing.B) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	accepted := closeEachAccepted(listener.Accept)
	b.Cleanup(func() {
		listener.Close()
		<-accepted
	})
	addr := listener.Addr().String()
	dial := rafthttp.NewDialTCP()

	b.ReportAllocs()
	for b.Loop() {
		conn, err := dial(addr, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}
