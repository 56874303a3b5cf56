package benchmarks

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// dialer opens a connection to a serving node the way raft's stream layer
// of the given transport does: a bare TCP dial for tcp (what
// raft.TCPStreamLayer.Dial does), an upgrade dial through a client Layer for
// http, http-eager and ws.
type dialer struct {
	dial  func(addr raft.ServerAddress) (net.Conn, error)
	close func()
}

func newDialer(tb testing.TB, transport string) *dialer {
	tb.Helper()
	if transport == transportTCP {
		return &dialer{
			dial: func(addr raft.ServerAddress) (net.Conn, error) {
				return net.DialTimeout("tcp", string(addr), ioTimeout)
			},
			close: func() {},
		}
	}
	client := startHTTPNode(tb, transport)
	return &dialer{
		dial: func(addr raft.ServerAddress) (net.Conn, error) {
			return client.layer.Dial(addr, ioTimeout)
		},
		close: client.close,
	}
}

// warmUp makes one dial and closes it, so that the timed dials are the
// steady state: an http client has learned from its first dial to the
// node that it takes early data.
func (d *dialer) warmUp(tb testing.TB, addr raft.ServerAddress) {
	tb.Helper()
	conn, err := d.dial(addr)
	if err != nil {
		tb.Fatalf("warm-up dial: %v", err)
	}
	conn.Close()
}

// BenchmarkDial measures connection setup and close against a node served
// by a raft NetworkTransport: a bare TCP dial to raft's TCP transport, or an
// upgrade dial to a Handler whose Layer a NetworkTransport is accepting
// from. For http, that is the connect alone, the upgrade going with the
// first write (BenchmarkFirstRPC); for http-eager and ws, the full
// handshake (connect, request, 101). p50-µs is the median dial.
func BenchmarkDial(b *testing.B) {
	for _, transport := range connTransports {
		b.Run("transport="+transport, func(b *testing.B) {
			server := startEndpoint(b, transport, 0)
			defer server.close()
			d := newDialer(b, transport)
			defer d.close()
			d.warmUp(b, server.addr)
			durations := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				conn, err := d.dial(server.addr)
				durations = append(durations, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			b.StopTimer()
			reportP50(b, durations)
		})
	}
}

// BenchmarkFirstRPC measures what raft sees after a reconnect: a dial plus
// the first AppendEntries round trip on the new connection. The client is a
// NetworkTransport with MaxPool 0, which dials for every RPC and closes the
// connection after it; the server is a NetworkTransport whose RPCs are
// answered at once. p50-µs is the median RPC.
func BenchmarkFirstRPC(b *testing.B) {
	for _, transport := range connTransports {
		b.Run("transport="+transport, func(b *testing.B) {
			server := startEndpoint(b, transport, 0)
			defer server.close()
			client := startEndpoint(b, transport, 0)
			defer client.close()
			stop := make(chan struct{})
			answered := make(chan struct{})
			go func() {
				defer close(answered)
				for {
					select {
					case rpc := <-server.trans.Consumer():
						rpc.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: 1, Success: true}, nil)
					case <-stop:
						return
					}
				}
			}()
			defer func() { close(stop); <-answered }()

			request := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax,
					ID: []byte("client"), Addr: []byte(client.addr)},
				Term: 1, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1,
			}
			// The steady state: the client has dialed the server before.
			var warmUp raft.AppendEntriesResponse
			if err := client.trans.AppendEntries("server", server.addr, request, &warmUp); err != nil {
				b.Fatal(err)
			}
			durations := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				var response raft.AppendEntriesResponse
				start := time.Now()
				err := client.trans.AppendEntries("server", server.addr, request, &response)
				durations = append(durations, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if !response.Success {
					b.Fatal("AppendEntries not successful")
				}
			}
			b.StopTimer()
			reportP50(b, durations)
		})
	}
}

// stormSize is how many dials BenchmarkUpgradeStorm makes at once.
const stormSize = 1000

// BenchmarkUpgradeStorm makes 1,000 concurrent dials against one node per
// iteration and fails unless every one succeeds: bare TCP connects to a
// listener, or upgrade dials to a Handler whose Layer is accepting. Each
// connection carries one byte each way (so that an http dial, which sends
// its request with its first write, is upgraded) and is closed. One op is
// the whole storm; handshakes/s is connections per second.
func BenchmarkUpgradeStorm(b *testing.B) {
	for _, transport := range connTransports {
		b.Run("transport="+transport, func(b *testing.B) {
			addr, stopServer := startAcceptor(b, transport, func(conn net.Conn) {
				go func() {
					pong(conn)
					conn.Close()
				}()
			})
			defer stopServer()
			d := newDialer(b, transport)
			defer d.close()
			d.warmUp(b, addr)
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				var failed atomic.Int64
				var firstErr atomic.Pointer[error]
				for range stormSize {
					wg.Go(func() {
						conn, err := d.dial(addr)
						if err == nil {
							err = ping(conn)
							conn.Close()
						}
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, &err)
						}
					})
				}
				wg.Wait()
				if n := failed.Load(); n > 0 {
					b.Fatalf("%d of %d dials failed, first: %v", n, stormSize, *firstErr.Load())
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(stormSize*b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// startAcceptor serves connections and hands each accepted one to handle:
// from a plain TCP listener for tcp, from a Layer's Accept for the
// rafthttp transports.
func startAcceptor(tb testing.TB, transport string, handle func(net.Conn)) (raft.ServerAddress, func()) {
	tb.Helper()
	var accept func() (net.Conn, error)
	var addr raft.ServerAddress
	var closeServer func()
	if transport == transportTCP {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("listen: %v", err)
		}
		accept, addr, closeServer = listener.Accept, raft.ServerAddress(listener.Addr().String()), func() { listener.Close() }
	} else {
		node := startHTTPNode(tb, transport)
		accept, addr, closeServer = node.layer.Accept, raft.ServerAddress(node.layer.Addr().String()), node.close
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := accept()
			if err != nil {
				return
			}
			handle(conn)
		}
	}()
	return addr, func() {
		closeServer()
		<-done
	}
}

// idleConns is how many idle connections BenchmarkIdleConnMemory holds.
const idleConns = 500

// The buffers raft's NetworkTransport (v1.7.3, net_transport.go) gives every
// connection it uses, whichever stream layer carries it: a pooled dialed
// connection reads through a default bufio.Reader and writes through a
// connSendBufferSize bufio.Writer (getConn), an accepted one reads through
// a connReceiveBufferSize bufio.Reader and writes through a default
// bufio.Writer (handleConn). raft does not export the sizes.
const (
	raftConnReceiveBufferSize = 256 * 1024
	raftConnSendBufferSize    = 256 * 1024
)

// raftBuffers holds what a NetworkTransport allocates for one connection
// on one side.
type raftBuffers struct {
	r *bufio.Reader
	w *bufio.Writer
}

// dialedBuffers are a dialed connection's buffers, as raft's getConn
// makes them.
func dialedBuffers(conn net.Conn) raftBuffers {
	return raftBuffers{r: bufio.NewReader(conn), w: bufio.NewWriterSize(conn, raftConnSendBufferSize)}
}

// acceptedBuffers are an accepted connection's buffers, as raft's
// handleConn makes them.
func acceptedBuffers(conn net.Conn) raftBuffers {
	return raftBuffers{r: bufio.NewReaderSize(conn, raftConnReceiveBufferSize), w: bufio.NewWriter(conn)}
}

// BenchmarkIdleConnMemory measures the heap held per idle raft connection,
// both ends in this process: 500 connections are opened (bare TCP, or
// upgraded through a Layer and taken from the other Layer's Accept), carry
// one byte each way, as a pooled raft connection has carried an RPC, and
// are held, each end with the buffers raft's NetworkTransport gives it
// (dialedBuffers, acceptedBuffers). B/conn is the HeapAlloc difference
// after a GC, divided by 500: what a connection costs a raft node on
// either transport. stream-B/conn is the same without raft's buffers: what
// the stream layer (TCP, or rafthttp's upgrade) holds, where the
// transports differ. goroutines/conn is the goroutines the connections
// keep alive. raft's msgpack encoder and decoder per connection are not
// counted.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, transport := range connTransports {
		b.Run("transport="+transport, func(b *testing.B) {
			accepted := make(chan net.Conn, idleConns)
			addr, stopServer := startAcceptor(b, transport, func(conn net.Conn) {
				if pong(conn) == nil {
					accepted <- conn
				} else {
					conn.Close()
				}
			})
			defer stopServer()
			d := newDialer(b, transport)
			defer d.close()
			d.warmUp(b, addr)
			var heap, stream, goroutines int64
			b.ResetTimer()
			for range b.N {
				dialed := make([]net.Conn, 0, idleConns)
				held := make([]net.Conn, 0, idleConns)
				buffers := make([]raftBuffers, 0, 2*idleConns)
				before, beforeG := memStats(), runtime.NumGoroutine()
				var err error
				for range idleConns {
					var conn net.Conn
					conn, err = d.dial(addr)
					if err != nil {
						break
					}
					dialed = append(dialed, conn)
					if err = ping(conn); err != nil {
						break
					}
					select {
					case conn = <-accepted:
						held = append(held, conn)
					case <-time.After(ioTimeout):
						err = errors.New("connection not accepted")
					}
					if err != nil {
						break
					}
				}
				// buffers' backing array is allocated before before, so
				// it counts in neither figure.
				streamOnly := memStats()
				for i := range held {
					buffers = append(buffers, dialedBuffers(dialed[i]), acceptedBuffers(held[i]))
				}
				after, afterG := memStats(), runtime.NumGoroutine()
				runtime.KeepAlive(buffers)
				for _, conn := range append(dialed, held...) {
					conn.Close()
				}
				if err != nil {
					b.Fatal(err)
				}
				heap += int64(after.HeapAlloc) - int64(before.HeapAlloc)
				stream += int64(streamOnly.HeapAlloc) - int64(before.HeapAlloc)
				goroutines += int64(afterG - beforeG)
			}
			b.StopTimer()
			b.ReportMetric(float64(heap)/float64(b.N*idleConns), "B/conn")
			b.ReportMetric(float64(stream)/float64(b.N*idleConns), "stream-B/conn")
			b.ReportMetric(float64(goroutines)/float64(b.N*idleConns), "goroutines/conn")
		})
	}
}

// ping sends one byte on a dialed connection and waits for the answer.
func ping(conn net.Conn) error {
	if _, err := conn.Write([]byte{'p'}); err != nil {
		return err
	}
	_, err := io.ReadFull(conn, make([]byte, 1))
	return err
}

// pong answers a ping on an accepted connection.
func pong(conn net.Conn) error {
	buf := make([]byte, 1)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	_, err := conn.Write(buf)
	return err
}

func memStats() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	return stats
}
