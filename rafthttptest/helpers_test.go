package rafthttptest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/rafthttptest"
)

// The helpers of network_test.go, whose tests check each behaviour doc.go
// and the doc comments promise on real loopback connections: plain TCP
// listeners for the connection faults, and rafthttp's own Handler and
// Layer for what the Handler middleware adds. Time is only ever checked
// from below: a delay must cost at least its latency, never at most some
// bound, as the machine is shared.

const (
	// quiet is how long a test watches for something that must not
	// happen.
	quiet = 100 * time.Millisecond
	// patience bounds every wait for something that must happen; it only
	// decides how long a failing test takes.
	patience = 10 * time.Second
)

// newNetwork returns a Network closed when the test ends.
func newNetwork(t *testing.T) *rafthttptest.Network {
	t.Helper()
	network := rafthttptest.NewNetwork(1)
	t.Cleanup(func() { network.Close() })
	return network
}

// listen starts a TCP listener on loopback for the node called name and
// records its address.
func listen(t *testing.T, network *rafthttptest.Network, name string) (*rafthttptest.Node, *net.TCPListener) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return network.Node(name, ln.Addr().String()), ln
}

// dial dials addr from node with its DialContext, within patience. A
// connection is closed when the test ends.
func dial(t *testing.T, node *rafthttptest.Node, addr string) (net.Conn, error) {
	t.Helper()
	return dialContext(t, context.Background(), node, nil, addr)
}

func dialContext(t *testing.T, ctx context.Context, node *rafthttptest.Node, next rafthttp.DialContext, addr string) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	conn, err := node.DialContext(next)(ctx, addr)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}

// accept returns the next connection ln receives within patience.
func accept(t *testing.T, ln *net.TCPListener) net.Conn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(patience))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// connect dials ln from node and returns both ends.
func connect(t *testing.T, node *rafthttptest.Node, ln *net.TCPListener) (client, server net.Conn) {
	t.Helper()
	client, err := dial(t, node, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), node.Name(), err)
	}
	return client, accept(t, ln)
}

// noConnection checks that ln receives no connection for quiet.
func noConnection(t *testing.T, ln *net.TCPListener) {
	t.Helper()
	ln.SetDeadline(time.Now().Add(quiet))
	conn, err := ln.Accept()
	if err == nil {
		conn.Close()
		t.Fatalf("%s received a connection", ln.Addr())
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("accept: %v", err)
	}
}

func mustWrite(t *testing.T, conn net.Conn, data string) {
	t.Helper()
	if n, err := conn.Write([]byte(data)); n != len(data) || err != nil {
		t.Fatalf("write %q: wrote %d bytes, %v", data, n, err)
	}
}

// expectRead reads len(want) bytes from conn within patience and checks
// them.
func expectRead(t *testing.T, conn net.Conn, want []byte) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(patience))
	defer conn.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if n, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("read %d of %d bytes: %v", n, len(want), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %s, want %s", abbreviate(got), abbreviate(want))
	}
}

func abbreviate(data []byte) string {
	if len(data) > 32 {
		return fmt.Sprintf("%d bytes starting %q", len(data), data[:32])
	}
	return fmt.Sprintf("%q", data)
}

// expectNothing checks that nothing arrives on conn for quiet: the read
// ends with its deadline.
func expectNothing(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(quiet))
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want nothing until the deadline", buf[:n], err)
	}
}

// readError reads conn, discarding what arrives, until it fails or
// patience runs out, and returns the error.
func readError(conn net.Conn) error {
	conn.SetReadDeadline(time.Now().Add(patience))
	buf := make([]byte, 32<<10)
	for {
		if _, err := conn.Read(buf); err != nil {
			return err
		}
	}
}

// expectResetOrEOF checks that conn's peer ended the connection: abruptly
// or, where a reset cannot be sent, in order.
func expectResetOrEOF(t *testing.T, conn net.Conn) {
	t.Helper()
	if err := readError(conn); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v; want a reset or EOF", err)
	}
}

// expectReset checks that conn's peer reset the connection.
func expectReset(t *testing.T, conn net.Conn) {
	t.Helper()
	if err := readError(conn); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v; want %v", err, syscall.ECONNRESET)
	}
}

// expectLocalReset checks that a read on conn, an end the Network reset,
// fails as on a reset socket.
func expectLocalReset(t *testing.T, conn net.Conn) {
	t.Helper()
	if r := await(t, readAsync(conn), "read on a reset connection"); !errors.Is(r.err, syscall.ECONNRESET) {
		t.Errorf("read on a reset connection: %d bytes, %v; want %v", r.n, r.err, syscall.ECONNRESET)
	}
}

// expectReadFails checks that a read on conn, an end the Network closed,
// fails.
func expectReadFails(t *testing.T, conn net.Conn) {
	t.Helper()
	if r := await(t, readAsync(conn), "read on a closed connection"); r.err == nil {
		t.Errorf("read on a closed connection: %d bytes, no error", r.n)
	}
}

// expectTimeout checks that err is a deadline's, as the net package
// reports them.
func expectTimeout(t *testing.T, err error) {
	t.Helper()
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v; want a net.Error whose Timeout is true, wrapping os.ErrDeadlineExceeded", err)
	}
}

// exchange checks that the connection carries bytes both ways.
func exchange(t *testing.T, client, server net.Conn) {
	t.Helper()
	mustWrite(t, client, "ping")
	expectRead(t, server, []byte("ping"))
	mustWrite(t, server, "pong")
	expectRead(t, client, []byte("pong"))
}

// randomBytes returns n bytes drawn from a source seeded with seed.
func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	data := make([]byte, n)
	rand.NewChaCha8(key).Read(data)
	return data
}

// writeInPieces writes data in pieces of random sizes up to 64 KiB.
func writeInPieces(conn net.Conn, data []byte, seed uint64) error {
	sizes := rand.New(rand.NewPCG(seed, 0))
	for len(data) > 0 {
		n := min(len(data), 1+sizes.IntN(64<<10))
		if _, err := conn.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// await returns the value ch yields within patience.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("%s: nothing after %v", what, patience)
		panic("unreachable")
	}
}

// notYet checks that ch yields nothing for quiet.
func notYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s: got %v; want it to wait", what, v)
	case <-time.After(quiet):
	}
}

// waitFor polls condition until it holds, for up to patience.
func waitFor(t *testing.T, what string, condition func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !condition(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, patience)
		}
	}
}

type ioResult struct {
	n   int
	err error
}

// readAsync reads conn once in a goroutine, so that a test can bound the
// wait for a read that should end on its own.
func readAsync(conn net.Conn) <-chan ioResult {
	done := make(chan ioResult, 1)
	go func() {
		n, err := conn.Read(make([]byte, 64))
		done <- ioResult{n, err}
	}()
	return done
}

// writeAsync is readAsync for a write of data.
func writeAsync(conn net.Conn, data []byte) <-chan ioResult {
	done := make(chan ioResult, 1)
	go func() {
		n, err := conn.Write(data)
		done <- ioResult{n, err}
	}()
	return done
}

type result struct {
	conn net.Conn
	err  error
}

// dialAsync dials addr from node in a goroutine under ctx.
func dialAsync(t *testing.T, ctx context.Context, node *rafthttptest.Node, addr string) <-chan result {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		conn, err := node.DialContext(nil)(ctx, addr)
		done <- result{conn, err}
	}()
	t.Cleanup(func() {
		select {
		case r := <-done:
			if r.conn != nil {
				r.conn.Close()
			}
		default:
		}
	})
	return done
}

// raftNode serves rafthttp's Handler behind its Node's middleware on a
// real HTTP server, and dials with a Layer through the Network. The server
// also answers GET /hello, through the middleware, with "hello".
type raftNode struct {
	node  *rafthttptest.Node
	layer *rafthttp.Layer
	addr  string
	url   string
}

// startRaftNode starts a raftNode called name, serving TLS with
// serverTLS and dialing with clientTLS if they are not nil.
func startRaftNode(t *testing.T, network *rafthttptest.Network, name string, serverTLS, clientTLS *tls.Config) *raftNode {
	t.Helper()
	logger := clustertest.Logger(t, name)
	handler := rafthttp.NewHandlerWithLogger(logger)
	mux := http.NewServeMux()
	server := httptest.NewUnstartedServer(mux)
	server.Config.ErrorLog = log.New(clustertest.LogWriter(t), name+": ", 0)
	addr := server.Listener.Addr().String()
	node := network.Node(name, addr)
	mux.Handle("/raft", node.Handler(handler))
	mux.Handle("/hello", node.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})))
	next := rafthttp.NewDialContextTCP()
	if serverTLS != nil {
		server.TLS = serverTLS
		server.StartTLS()
		next = rafthttp.NewDialContextTLS(clientTLS)
	} else {
		server.Start()
	}
	t.Cleanup(server.Close)
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: server.Listener.Addr(), Handler: handler,
		DialContext: node.DialContext(next), Logger: logger, EagerHandshake: true,
	})
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	t.Cleanup(func() { layer.Close() })
	return &raftNode{node: node, layer: layer, addr: addr, url: server.URL}
}

// outsideLayer returns a Layer that dials with next, outside the Network:
// a peer the Network does not know, whose connections only the Handler
// middleware of the node it dials sees.
func outsideLayer(t *testing.T, next rafthttp.DialContext) *rafthttp.Layer {
	t.Helper()
	logger := clustertest.Logger(t, "outside")
	layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: "/raft", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		Handler: rafthttp.NewHandlerWithLogger(logger), DialContext: next,
		Logger: logger, EagerHandshake: true,
	})
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	t.Cleanup(func() { layer.Close() })
	return layer
}

// dialRaft opens a raft connection from layer to addr.
func dialRaft(t *testing.T, layer *rafthttp.Layer, addr string) net.Conn {
	t.Helper()
	conn, err := layer.Dial(raft.ServerAddress(addr), patience)
	if err != nil {
		t.Fatalf("raft dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// acceptRaft returns the next connection layer accepts, within patience.
func acceptRaft(t *testing.T, layer *rafthttp.Layer) net.Conn {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		conn, err := layer.Accept()
		done <- result{conn, err}
	}()
	r := await(t, done, "accept")
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { r.conn.Close() })
	return r.conn
}

// connectFromOutside opens a raft connection to b from a Layer outside the
// Network, checks it carries bytes both ways, and returns that Layer and
// both ends.
func connectFromOutside(t *testing.T, b *raftNode) (outside *rafthttp.Layer, client, server net.Conn) {
	t.Helper()
	outside = outsideLayer(t, rafthttp.NewDialContextTCP())
	client = dialRaft(t, outside, b.addr)
	server = acceptRaft(t, b.layer)
	exchange(t, client, server)
	return outside, client, server
}
