package rafthttp_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
)

// This example reaches a node through a proxy that, like Envoy with
// upgrade_configs naming only websocket, answers any other upgrade with a
// bare 403. A raw-mode Layer's dial is refused; one with
// LayerConfig.WebSocket gets through, and the node's Layer accepts the
// connection as raft would, with nothing set on its side.
func ExampleLayerConfig_webSocket() {
	quiet := hclog.NewNullLogger()
	handler := rafthttp.NewHandlerWithLogger(quiet)
	mux := http.NewServeMux()
	mux.Handle("/raft", handler)
	nodeListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	node := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go node.Serve(nodeListener)
	defer node.Close()
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: nodeListener.Addr(), Handler: handler, Logger: quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Close()

	// The proxy in front of the node: WebSocket upgrades and plain
	// requests pass, other upgrades do not.
	target := &url.URL{Scheme: "http", Host: nodeListener.Addr().String()}
	forward := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	proxyListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	proxy := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if upgrade := r.Header.Get("Upgrade"); upgrade != "" && !strings.EqualFold(upgrade, "websocket") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		forward.ServeHTTP(w, r)
	})}
	go proxy.Serve(proxyListener)
	defer proxy.Close()
	nodeThroughProxy := raft.ServerAddress(proxyListener.Addr().String())

	peer := func(webSocket bool) *rafthttp.Layer {
		peer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
			Path: "/raft", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, Logger: quiet,
			Handler: rafthttp.NewHandlerWithLogger(quiet), WebSocket: webSocket,
		})
		if err != nil {
			log.Fatal(err)
		}
		return peer
	}
	raw := peer(false)
	defer raw.Close()
	_, err = raw.Dial(nodeThroughProxy, 5*time.Second)
	var status *rafthttp.StatusError
	if errors.As(err, &status) {
		fmt.Println("raw dial refused:", status.StatusCode)
	}

	webSocket := peer(true)
	defer webSocket.Close()
	conn, err := webSocket.Dial(nodeThroughProxy, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("raft's first request")); err != nil {
		log.Fatal(err)
	}
	accepted, err := layer.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer accepted.Close()
	buf := make([]byte, len("raft's first request"))
	if _, err := io.ReadFull(accepted, buf); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("the node accepted a WebSocket connection and read %q\n", buf)
	// Output:
	// raw dial refused: 403
	// the node accepted a WebSocket connection and read "raft's first request"
}
