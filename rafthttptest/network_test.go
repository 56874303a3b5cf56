package rafthttptest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/rafthttp/rafthttp/rafthttptest"
)

func TestNodeNeedsName(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("Node(\"\") did not panic")
		}
	}()
	rafthttptest.NewNetwork(1).Node("")
}

func TestCutStopsLiveConnection(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	client, server := connect(t, a, ln)
	exchange(t, client, server)

	network.Cut("a", "b")
	// Writes across the cut succeed, as into a socket's buffer, and are
	// lost: the reader on either end waits for its deadline.
	for _, conn := range []net.Conn{client, server} {
		mustWrite(t, conn, "lost")
	}
	expectNothing(t, server)
	expectNothing(t, client)
}

// TestCutDropsHeldBytes checks that bytes a pause or a delay holds when the
// link is cut are lost, not delivered later.
func TestCutDropsHeldBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		hold, free func(*rafthttptest.Network)
	}{
		{"paused", func(n *rafthttptest.Network) { n.Pause("a") }, func(n *rafthttptest.Network) { n.Resume("a") }},
		{"delayed", func(n *rafthttptest.Network) { n.Delay("a", "b", time.Hour, 0) }, func(n *rafthttptest.Network) { n.Delay("a", "b", 0, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, server := connect(t, a, ln)
			tc.hold(network)
			mustWrite(t, client, "held")
			mustWrite(t, server, "held")
			// Give the server's bytes time to reach the dialing end, which
			// holds them there.
			expectNothing(t, client)
			network.Cut("a", "b")
			tc.free(network)
			expectNothing(t, server)
			expectNothing(t, client)
		})
	}
}

func TestDialAcrossCutFails(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a, lnA := listen(t, network, "a")
	b, lnB := listen(t, network, "b")
	_, lnC := listen(t, network, "c")
	network.Cut("a", "b")
	for _, d := range []struct {
		from *rafthttptest.Node
		to   *net.TCPListener
	}{{a, lnB}, {b, lnA}} {
		_, err := dial(t, d.from, d.to.Addr().String())
		if !errors.Is(err, rafthttptest.ErrLinkCut) {
			t.Errorf("dial %s from %s: %v; want ErrLinkCut", d.to.Addr(), d.from.Name(), err)
		}
	}
	// Not even a TCP connection was opened.
	noConnection(t, lnA)
	noConnection(t, lnB)
	// Other links still carry traffic.
	client, server := connect(t, a, lnC)
	exchange(t, client, server)
}

func TestMend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// lose writes across the cut, or does nothing.
		lose  func(t *testing.T, network *rafthttptest.Network, client, server net.Conn)
		reset bool
	}{
		{"nothing lost", func(*testing.T, *rafthttptest.Network, net.Conn, net.Conn) {}, false},
		{"dialer's bytes lost", func(t *testing.T, _ *rafthttptest.Network, client, _ net.Conn) {
			mustWrite(t, client, "lost")
		}, true},
		{"peer's bytes lost", func(t *testing.T, network *rafthttptest.Network, _, server net.Conn) {
			mustWrite(t, server, "lost")
			waitFor(t, "the dialing end drops the peer's bytes", func() bool { return network.LostBytes("b", "a") })
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, server := connect(t, a, ln)
			exchange(t, client, server)
			network.Cut("a", "b")
			tc.lose(t, network, client, server)
			network.Mend("a", "b")

			if tc.reset {
				// The stream has a hole: both ends see an error.
				expectLocalReset(t, client)
				expectResetOrEOF(t, server)
			} else {
				exchange(t, client, server)
			}
			// New dials cross the mended link.
			client, server = connect(t, a, ln)
			exchange(t, client, server)
		})
	}
}

func TestCutOneWay(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a, lnA := listen(t, network, "a")
	b, lnB := listen(t, network, "b")
	fromA, atB := connect(t, a, lnB)
	fromB, atA := connect(t, b, lnA)
	network.CutOneWay("a", "b")

	// What a sends to b is lost, whichever end dialed.
	mustWrite(t, fromA, "lost")
	expectNothing(t, atB)
	mustWrite(t, atA, "lost")
	expectNothing(t, fromB)

	// What b sends to a still arrives.
	mustWrite(t, atB, "kept")
	expectRead(t, fromA, []byte("kept"))
	mustWrite(t, fromB, "kept")
	expectRead(t, atA, []byte("kept"))

	// a cannot dial b; b can dial a, but a's answers never reach it.
	if _, err := dial(t, a, lnB.Addr().String()); !errors.Is(err, rafthttptest.ErrLinkCut) {
		t.Errorf("dial b from a: %v; want ErrLinkCut", err)
	}
	client, server := connect(t, b, lnA)
	mustWrite(t, client, "request")
	expectRead(t, server, []byte("request"))
	mustWrite(t, server, "answer")
	expectNothing(t, client)
}

func TestMendOneWay(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	lostOut, lostOutServer := connect(t, a, ln)
	lostIn, lostInServer := connect(t, a, ln)
	network.Cut("a", "b")
	mustWrite(t, lostOut, "lost a→b")
	mustWrite(t, lostInServer, "lost b→a")
	waitFor(t, "the dialing end drops b's bytes", func() bool { return network.LostBytes("b", "a") })

	network.MendOneWay("a", "b")
	// The connection that lost a→b bytes is reset.
	expectLocalReset(t, lostOut)
	expectResetOrEOF(t, lostOutServer)
	// The one that lost only b→a bytes is not: a→b carries again, b→a
	// is still cut.
	mustWrite(t, lostIn, "a→b again")
	expectRead(t, lostInServer, []byte("a→b again"))
	mustWrite(t, lostInServer, "still lost")
	expectNothing(t, lostIn)

	network.MendOneWay("b", "a")
	expectLocalReset(t, lostIn)
	expectResetOrEOF(t, lostInServer)
}

// TestMendNeverDeliversBytesPastTheHole checks that a connection that lost
// bytes to a cut never delivers what was written after them, not even in
// the moment between Mend restoring the link and resetting the connection:
// what the reader gets must be a prefix of what was written.
//
// Not parallel: the race it looks for is easier to hit on an idle machine.
func TestMendNeverDeliversBytesPastTheHole(t *testing.T) {
	for _, dialerWrites := range []bool{true, false} {
		name := "peer writes"
		if dialerWrites {
			name = "dialer writes"
		}
		t.Run(name, func(t *testing.T) {
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			lost := func() bool { return network.LostBytes("b", "a") }
			if dialerWrites {
				lost = func() bool { return network.LostBytes("a", "b") }
			}
			for trial := 0; trial < 20 && !t.Failed(); trial++ {
				client, server := connect(t, a, ln)
				writer, reader := server, client
				if dialerWrites {
					writer, reader = client, server
				}
				var written, received atomic.Uint64
				writerDone := make(chan struct{})
				go func() {
					defer close(writerDone)
					var value [8]byte
					for i := uint64(0); ; i++ {
						binary.BigEndian.PutUint64(value[:], i)
						if _, err := writer.Write(value[:]); err != nil {
							return
						}
						written.Store(i + 1)
					}
				}()
				// The reader reports a gap, or a stream that ended other
				// than by the reset.
				readerDone := make(chan error, 1)
				go func() {
					reader.SetReadDeadline(time.Now().Add(patience / 2))
					buffered := bufio.NewReaderSize(reader, 64<<10)
					var value [8]byte
					for want := uint64(0); ; want++ {
						if _, err := io.ReadFull(buffered, value[:]); err != nil {
							if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
								err = nil
							}
							readerDone <- err
							return
						}
						if got := binary.BigEndian.Uint64(value[:]); got != want {
							readerDone <- fmt.Errorf("value %d after %d: %d values past the hole delivered", got, want-1, got-want)
							return
						}
						received.Store(want + 1)
					}
				}()
				waitFor(t, "bytes flow", func() bool { return received.Load() >= 1000 })
				network.Cut("a", "b")
				waitFor(t, "bytes are lost", lost)
				before := written.Load()
				waitFor(t, "the writer goes on", func() bool { return written.Load() >= before+100 })
				network.Mend("a", "b")
				if err := await(t, readerDone, "the reader ends"); err != nil {
					t.Errorf("trial %d: %v", trial, err)
				}
				client.Close()
				server.Close()
				await(t, writerDone, "the writer ends")
			}
		})
	}
}

// dialMatrix checks which nodes can dial which: want(from, to) says
// whether from reaches to.
func dialMatrix(t *testing.T, nodes map[string]*rafthttptest.Node, listeners map[string]*net.TCPListener, want func(from, to string) bool) {
	t.Helper()
	for from, node := range nodes {
		for to, ln := range listeners {
			if from == to {
				continue
			}
			conn, err := dial(t, node, ln.Addr().String())
			switch {
			case want(from, to) && err != nil:
				t.Errorf("dial %s from %s: %v; want it to connect", to, from, err)
			case want(from, to):
				exchange(t, conn, accept(t, ln))
			case !errors.Is(err, rafthttptest.ErrLinkCut):
				t.Errorf("dial %s from %s: %v; want ErrLinkCut", to, from, err)
			}
		}
	}
}

func TestPartitionLeavesBridge(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	nodes := make(map[string]*rafthttptest.Node)
	listeners := make(map[string]*net.TCPListener)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		nodes[name], listeners[name] = listen(t, network, name)
	}
	across, acrossServer := connect(t, nodes["a"], listeners["d"])
	toBridge, atBridge := connect(t, nodes["a"], listeners["c"])

	network.Partition([]string{"a", "b"}, []string{"d", "e"})
	side := map[string]int{"a": 1, "b": 1, "d": 2, "e": 2}
	dialMatrix(t, nodes, listeners, func(from, to string) bool {
		return side[from] == 0 || side[to] == 0 || side[from] == side[to]
	})
	// A live connection across the partition stops; one to the bridge
	// does not.
	mustWrite(t, across, "lost")
	expectNothing(t, acrossServer)
	exchange(t, toBridge, atBridge)
}

func TestIsolate(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	nodes := make(map[string]*rafthttptest.Node)
	listeners := make(map[string]*net.TCPListener)
	for _, name := range []string{"a", "b", "c"} {
		nodes[name], listeners[name] = listen(t, network, name)
	}
	fromB, atA := connect(t, nodes["b"], listeners["a"])
	fromA, atC := connect(t, nodes["a"], listeners["c"])

	network.Isolate("b")
	dialMatrix(t, nodes, listeners, func(from, to string) bool { return from != "b" && to != "b" })
	mustWrite(t, fromB, "lost")
	expectNothing(t, atA)
	mustWrite(t, atA, "lost")
	expectNothing(t, fromB)
	exchange(t, fromA, atC)
}

func TestPauseHoldsBothDirections(t *testing.T) {
	t.Parallel()
	for _, paused := range []string{"a", "b"} {
		t.Run("pause "+paused, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, server := connect(t, a, ln)
			exchange(t, client, server)

			network.Pause(paused)
			out, in := randomBytes(512<<10, 1), randomBytes(512<<10, 2)
			written := make(chan error, 1)
			go func() { written <- writeInPieces(server, in, 3) }()
			if err := writeInPieces(client, out, 4); err != nil {
				t.Fatalf("write while paused: %v", err)
			}
			expectNothing(t, server)
			expectNothing(t, client)

			network.Resume(paused)
			expectRead(t, server, out)
			expectRead(t, client, in)
			if err := await(t, written, "the peer's write"); err != nil {
				t.Fatalf("peer's write: %v", err)
			}
		})
	}
}

func TestPauseHoldsDials(t *testing.T) {
	t.Parallel()
	for _, paused := range []string{"a", "b"} {
		t.Run("pause "+paused, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			network.Pause(paused)

			done := dialAsync(t, context.Background(), a, ln.Addr().String())
			noConnection(t, ln)
			notYet(t, done, "dial while paused")
			network.Resume(paused)
			r := await(t, done, "dial after Resume")
			if r.err != nil {
				t.Fatalf("dial after Resume: %v", r.err)
			}
			t.Cleanup(func() { r.conn.Close() })
			exchange(t, r.conn, accept(t, ln))

			// A dial whose context ends first fails with the context's
			// error.
			network.Pause(paused)
			ctx, cancel := context.WithTimeout(context.Background(), quiet)
			defer cancel()
			_, err := dialContext(t, ctx, a, nil, ln.Addr().String())
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("dial with a context ending while paused: %v; want context.DeadlineExceeded", err)
			}
			noConnection(t, ln)
		})
	}
}

func TestPauseHoldsHandlerRequests(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	b := startRaftNode(t, network, "b", nil, nil)
	network.Pause("b")
	done := make(chan string, 1)
	go func() { done <- get(b.url + "/hello") }()
	notYet(t, done, "request to a paused node")
	network.Resume("b")
	if got := await(t, done, "request after Resume"); got != "200 hello" {
		t.Fatalf("request after Resume: %s; want 200 hello", got)
	}
}

// get returns the status code and body of a GET of url, or the error.
func get(url string) string {
	client := &http.Client{Timeout: patience, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

func TestHandlerGivesUpWhenRequestEndsWhilePaused(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	node := network.Node("b")
	var called atomic.Bool
	handler := node.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) }))
	network.Pause("b")
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	recorder := httptest.NewRecorder()
	start := time.Now()
	handler.ServeHTTP(recorder, httptest.NewRequestWithContext(ctx, http.MethodGet, "/raft", nil))
	if elapsed := time.Since(start); elapsed < quiet {
		t.Errorf("returned after %v; want it to hold the request until its context ends (%v)", elapsed, quiet)
	}
	if recorder.Code != http.StatusServiceUnavailable || called.Load() {
		t.Errorf("status %d, next called %v; want 503 and next not called", recorder.Code, called.Load())
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	const latency, jitter = 30 * time.Millisecond, 20 * time.Millisecond
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	client, server := connect(t, a, ln)
	network.Delay("a", "b", latency, jitter)

	for _, dir := range []struct {
		name           string
		writer, reader net.Conn
	}{{"a→b", client, server}, {"b→a", server, client}} {
		// Each of many writes arrives no earlier than the latency after it
		// was written, and in order.
		const writes = 20
		sent := make([]time.Time, writes)
		for i := range writes {
			sent[i] = time.Now()
			if _, err := dir.writer.Write(binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
				t.Fatalf("%s: write: %v", dir.name, err)
			}
		}
		dir.reader.SetReadDeadline(time.Now().Add(patience))
		for i := range writes {
			var value [8]byte
			if _, err := io.ReadFull(dir.reader, value[:]); err != nil {
				t.Fatalf("%s: read: %v", dir.name, err)
			}
			if elapsed := time.Since(sent[i]); elapsed < latency {
				t.Errorf("%s: write %d arrived after %v; want at least %v", dir.name, i, elapsed, latency)
			}
			if got := binary.BigEndian.Uint64(value[:]); got != uint64(i) {
				t.Fatalf("%s: write %d arrived as %d", dir.name, i, got)
			}
		}
		dir.reader.SetReadDeadline(time.Time{})
	}
}

func TestDelayOneWay(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	client, server := connect(t, a, ln)
	network.DelayOneWay("a", "b", time.Hour, 0)
	mustWrite(t, client, "an hour away")
	expectNothing(t, server)
	mustWrite(t, server, "at once")
	expectRead(t, client, []byte("at once"))

	// Zero for both removes the delay, for later writes.
	network.DelayOneWay("b", "a", time.Hour, 0)
	network.DelayOneWay("b", "a", 0, 0)
	mustWrite(t, server, "again")
	expectRead(t, client, []byte("again"))
}

func TestDelayKeepsOrderUnderJitter(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	client, server := connect(t, a, ln)
	network.Delay("a", "b", time.Millisecond, 10*time.Millisecond)

	const size = 3 << 20 // more than the window a direction holds
	out, in := randomBytes(size, 5), randomBytes(size, 6)
	written := make(chan error, 2)
	go func() { written <- writeInPieces(client, out, 7) }()
	go func() { written <- writeInPieces(server, in, 8) }()
	received := make(chan error, 1)
	go func() {
		got := make([]byte, size)
		server.SetReadDeadline(time.Now().Add(patience))
		_, err := io.ReadFull(server, got)
		if err == nil && !bytes.Equal(got, out) {
			err = errors.New("a→b: the bytes arrived changed or out of order")
		}
		received <- err
	}()
	expectRead(t, client, in)
	for range 2 {
		if err := await(t, written, "write"); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if err := await(t, received, "a→b"); err != nil {
		t.Fatal(err)
	}
}

func TestDelayedDialCostsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		delay   func(*rafthttptest.Network)
		atLeast time.Duration
	}{
		{"both ways", func(n *rafthttptest.Network) { n.Delay("a", "b", 40*time.Millisecond, 0) }, 80 * time.Millisecond},
		{"there", func(n *rafthttptest.Network) { n.DelayOneWay("a", "b", 60*time.Millisecond, 0) }, 60 * time.Millisecond},
		{"back", func(n *rafthttptest.Network) { n.DelayOneWay("b", "a", 60*time.Millisecond, 0) }, 60 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			tc.delay(network)
			start := time.Now()
			if _, err := dial(t, a, ln.Addr().String()); err != nil {
				t.Fatalf("dial: %v", err)
			}
			if elapsed := time.Since(start); elapsed < tc.atLeast {
				t.Errorf("dial took %v; want at least %v", elapsed, tc.atLeast)
			}
		})
	}
}

func TestDelayRefusesNegative(t *testing.T) {
	t.Parallel()
	network := rafthttptest.NewNetwork(1)
	for _, d := range [][2]time.Duration{{-time.Millisecond, 0}, {0, -time.Millisecond}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Delay(%v, %v) did not panic", d[0], d[1])
				}
			}()
			network.Delay("a", "b", d[0], d[1])
		}()
	}
}

func TestReadDeadlineOnFaultedConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault func(*rafthttptest.Network)
	}{
		{"cut", func(n *rafthttptest.Network) { n.Cut("a", "b") }},
		{"paused", func(n *rafthttptest.Network) { n.Pause("b") }},
		{"delayed", func(n *rafthttptest.Network) { n.Delay("a", "b", time.Hour, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, server := connect(t, a, ln)
			tc.fault(network)
			mustWrite(t, server, "held back")

			start := time.Now()
			client.SetReadDeadline(start.Add(quiet))
			r := await(t, readAsync(client), "read with a deadline")
			if r.n != 0 {
				t.Fatalf("read %d bytes", r.n)
			}
			expectTimeout(t, r.err)
			if elapsed := time.Since(start); elapsed < quiet {
				t.Errorf("read returned after %v, before its deadline (%v)", elapsed, quiet)
			}
			// A deadline already past fails the same way.
			client.SetReadDeadline(time.Now().Add(-time.Second))
			expectTimeout(t, await(t, readAsync(client), "read past its deadline").err)
		})
	}
}

func TestWriteDeadlineWithFullWindow(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	client, server := connect(t, a, ln)
	network.Pause("b")

	held := randomBytes(1<<20, 9)
	if err := writeInPieces(client, held, 10); err != nil {
		t.Fatalf("write the window's worth: %v", err)
	}
	start := time.Now()
	client.SetWriteDeadline(start.Add(quiet))
	r := await(t, writeAsync(client, []byte("one byte too many")), "write past a full window")
	if r.n != 0 {
		t.Fatalf("wrote %d bytes past a full window", r.n)
	}
	expectTimeout(t, r.err)
	if elapsed := time.Since(start); elapsed < quiet {
		t.Errorf("write returned after %v, before its deadline (%v)", elapsed, quiet)
	}

	client.SetWriteDeadline(time.Time{})
	network.Resume("b")
	mustWrite(t, client, "after")
	expectRead(t, server, append(held, "after"...))
}

func TestMovingDeadlineWakesWaiter(t *testing.T) {
	t.Parallel()
	type move struct {
		name string
		set  func(net.Conn, time.Time) error
	}
	reads := []move{{"SetReadDeadline", net.Conn.SetReadDeadline}, {"SetDeadline", net.Conn.SetDeadline}}
	writes := []move{{"SetWriteDeadline", net.Conn.SetWriteDeadline}, {"SetDeadline", net.Conn.SetDeadline}}

	for _, m := range reads {
		t.Run("read/"+m.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, _ := connect(t, a, ln)
			network.Pause("b")
			client.SetReadDeadline(time.Now().Add(time.Hour))
			done := readAsync(client)
			notYet(t, done, "read")
			m.set(client, time.Now().Add(10*time.Millisecond))
			expectTimeout(t, await(t, done, "read after its deadline moved").err)
		})
	}
	for _, m := range writes {
		t.Run("write on a full window/"+m.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, _ := connect(t, a, ln)
			network.Pause("b")
			if _, err := client.Write(make([]byte, 1<<20)); err != nil {
				t.Fatalf("write the window's worth: %v", err)
			}
			done := writeAsync(client, make([]byte, 1))
			notYet(t, done, "write")
			m.set(client, time.Now())
			expectTimeout(t, await(t, done, "write after its deadline moved").err)
		})
		// A write that goes straight to the socket, on a link without a
		// fault, is blocked by the peer's full socket buffers instead.
		t.Run("write to the socket/"+m.name, func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, ln := listen(t, network, "b")
			client, _ := connect(t, a, ln)
			done := writeAsync(client, make([]byte, 64<<20))
			notYet(t, done, "write to a peer that does not read")
			m.set(client, time.Now())
			expectTimeout(t, await(t, done, "write after its deadline moved").err)
		})
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a, lnA := listen(t, network, "a")
	b, lnB := listen(t, network, "b")
	c, lnC := listen(t, network, "c")
	type pair struct{ client, server net.Conn }
	var between []pair
	for _, d := range []struct {
		from *rafthttptest.Node
		to   *net.TCPListener
	}{{a, lnB}, {a, lnB}, {b, lnA}} {
		client, server := connect(t, d.from, d.to)
		between = append(between, pair{client, server})
	}
	toC, atC := connect(t, a, lnC)

	if n := network.Reset("a", "b"); n != 3 {
		t.Errorf("Reset(a, b) = %d; want 3", n)
	}
	for _, p := range between {
		expectResetOrEOF(t, p.server)
		// Everything the dialing end does next fails, as on a reset socket.
		expectLocalReset(t, p.client)
		if _, err := p.client.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("write after reset: %v; want %v", err, syscall.ECONNRESET)
		}
		// Closing a reset socket succeeds once.
		if err := p.client.Close(); err != nil {
			t.Errorf("first Close after reset: %v; want nil", err)
		}
		if err := p.client.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second Close: %v; want net.ErrClosed", err)
		}
	}
	if n := network.Reset("a", "b"); n != 0 {
		t.Errorf("Reset(a, b) again = %d; want 0", n)
	}
	exchange(t, toC, atC)

	if n := network.ResetNode("c"); n != 1 {
		t.Errorf("ResetNode(c) = %d; want 1", n)
	}
	expectResetOrEOF(t, atC)

	connect(t, a, lnC)
	connect(t, b, lnC)
	connect(t, c, lnA)
	if n := network.ResetAll(); n != 3 {
		t.Errorf("ResetAll() = %d; want 3", n)
	}
	if n := network.ResetAll(); n != 0 {
		t.Errorf("ResetAll() again = %d; want 0", n)
	}
}

// TestCloseWhileWritingAfterReset closes a reset connection while another
// goroutine writes to it, as raft's sending goroutine may: the race
// detector must see nothing.
func TestCloseWhileWritingAfterReset(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	for range 5 {
		client, _ := connect(t, a, ln)
		network.ResetAll()
		started, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for i := range 1000 {
				client.Write([]byte("x"))
				if i == 0 {
					close(started)
				}
			}
		}()
		await(t, started, "the writer starts")
		client.Close()
		await(t, done, "the writer ends")
	}
}

// TestResetSendsRST checks that the peer of a reset connection sees
// "connection reset by peer", not an orderly end, over TLS too, whichever
// end the Network resets: the dialing end, or the end a Handler accepted.
func TestResetSendsRST(t *testing.T) {
	t.Parallel()
	ca := clustertest.NewCA(t)
	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		if useTLS {
			name = "tls"
		}
		t.Run(name+"/dialing end", func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			a := network.Node("a")
			_, tcp := listen(t, network, "b")
			var ln net.Listener = tcp
			var next rafthttp.DialContext
			if useTLS {
				ln = tls.NewListener(tcp, ca.ServerConfig(false))
				next = rafthttp.NewDialContextTLS(ca.ClientConfig(false))
			}
			accepted := make(chan result, 1)
			go func() {
				conn, err := ln.Accept()
				if err == nil && useTLS {
					err = conn.(*tls.Conn).Handshake()
				}
				accepted <- result{conn, err}
			}()
			tcp.SetDeadline(time.Now().Add(patience))
			client, err := dialContext(t, context.Background(), a, next, tcp.Addr().String())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			r := await(t, accepted, "accept")
			if r.err != nil {
				t.Fatalf("accept: %v", r.err)
			}
			server := r.conn
			t.Cleanup(func() { server.Close() })
			exchange(t, client, server)

			if n := network.ResetNode("a"); n != 1 {
				t.Errorf("ResetNode(a) = %d; want 1", n)
			}
			expectReset(t, server)
		})
		t.Run(name+"/handler end", func(t *testing.T) {
			t.Parallel()
			network := newNetwork(t)
			var serverTLS, clientTLS *tls.Config
			next := rafthttp.NewDialContextTCP()
			if useTLS {
				serverTLS, clientTLS = ca.ServerConfig(false), ca.ClientConfig(false)
				next = rafthttp.NewDialContextTLS(clientTLS)
			}
			b := startRaftNode(t, network, "b", serverTLS, clientTLS)
			client := dialRaft(t, outsideLayer(t, next), b.addr)
			server := acceptRaft(t, b.layer)
			exchange(t, client, server)

			if n := network.ResetAll(); n != 1 {
				t.Errorf("ResetAll() = %d; want 1", n)
			}
			expectReset(t, client)
		})
	}
}

// TestHandlerConnectionsAreTracked checks a raft connection between two
// nodes of the Network, dialed by a's Layer through a's DialContext and
// taken over by b's Handler behind b's middleware.
func TestHandlerConnectionsAreTracked(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := startRaftNode(t, network, "a", nil, nil)
	b := startRaftNode(t, network, "b", nil, nil)
	client := dialRaft(t, a.layer, b.addr)
	server := acceptRaft(t, b.layer)
	exchange(t, client, server)

	network.Pause("b")
	writing := writeAsync(server, []byte("pong"))
	mustWrite(t, client, "ping")
	expectNothing(t, server)
	expectNothing(t, client)
	network.Resume("b")
	expectRead(t, server, []byte("ping"))
	expectRead(t, client, []byte("pong"))
	if err := await(t, writing, "write after Resume").err; err != nil {
		t.Fatalf("write after Resume: %v", err)
	}

	// Both ends are tracked: the connection a dialed, and the one b's
	// Handler accepted.
	if n := network.ResetNode("b"); n != 2 {
		t.Errorf("ResetNode(b) = %d; want 2", n)
	}
	expectLocalReset(t, client)
	expectReadFails(t, server)
	for _, conn := range []net.Conn{client, server} {
		if err := conn.Close(); err != nil {
			t.Errorf("first Close after reset: %v; want nil", err)
		}
	}
	if n := network.ResetAll(); n != 0 {
		t.Errorf("ResetAll() after ResetNode(b) = %d; want 0", n)
	}
}

// TestHandlerHoldsConnectionWhilePaused checks what the middleware does
// alone, for a peer that dials from outside the Network.
func TestHandlerHoldsConnectionWhilePaused(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	b := startRaftNode(t, network, "b", nil, nil)
	outside, client, server := connectFromOutside(t, b)

	network.Pause("b")
	mustWrite(t, client, "ping")
	// The accepting end's read waits for its deadline, even though the
	// bytes reached its socket...
	server.SetReadDeadline(time.Now().Add(quiet))
	n, err := server.Read(make([]byte, 64))
	if n != 0 {
		t.Fatalf("read %d bytes while paused", n)
	}
	expectTimeout(t, err)
	// ... and its writes wait for Resume.
	writing := writeAsync(server, []byte("pong"))
	expectNothing(t, client)
	notYet(t, writing, "write while paused")
	// A new upgrade waits too.
	dialing := make(chan result, 1)
	go func() {
		conn, err := outside.Dial(raft.ServerAddress(b.addr), patience)
		dialing <- result{conn, err}
	}()
	notYet(t, dialing, "upgrade while paused")

	network.Resume("b")
	// Nothing was lost: the bytes held by the read that timed out come
	// next.
	expectRead(t, server, []byte("ping"))
	expectRead(t, client, []byte("pong"))
	if err := await(t, writing, "write after Resume").err; err != nil {
		t.Fatalf("write after Resume: %v", err)
	}
	r := await(t, dialing, "upgrade after Resume")
	if r.err != nil {
		t.Fatalf("upgrade after Resume: %v", r.err)
	}
	t.Cleanup(func() { r.conn.Close() })
	exchange(t, r.conn, acceptRaft(t, b.layer))

	// ResetNode reaches the connections b's Handler accepted.
	if n := network.ResetNode("b"); n != 2 {
		t.Errorf("ResetNode(b) = %d; want 2", n)
	}
	expectResetOrEOF(t, client)
	expectResetOrEOF(t, r.conn)
	expectReadFails(t, server)
	if _, err := server.Write([]byte("x")); err == nil {
		t.Error("write on the accepting end succeeded after ResetNode")
	}
	if err := server.Close(); err != nil {
		t.Errorf("first Close after reset: %v; want nil", err)
	}
}

func TestUnknownAddressIgnoresLinkFaults(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a, _ := listen(t, network, "a")
	listen(t, network, "b")
	stranger, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Close() })
	before, beforeServer := connect(t, a, stranger)

	network.Isolate("a")
	network.Partition([]string{"a"}, []string{"b"})
	network.Delay("a", "b", time.Hour, 0)
	after, afterServer := connect(t, a, stranger)
	exchange(t, before, beforeServer)
	exchange(t, after, afterServer)

	// The dialing node's pause does apply, to live connections and to
	// dials.
	network.Pause("a")
	mustWrite(t, after, "held")
	expectNothing(t, afterServer)
	done := dialAsync(t, context.Background(), a, stranger.Addr().String())
	noConnection(t, stranger)
	notYet(t, done, "dial from a paused node")
	network.Resume("a")
	expectRead(t, afterServer, []byte("held"))
	if r := await(t, done, "dial after Resume"); r.err != nil {
		t.Fatalf("dial after Resume: %v", r.err)
	}
	accept(t, stranger)

	// So do its resets.
	if n := network.ResetNode("a"); n != 3 {
		t.Errorf("ResetNode(a) = %d; want 3", n)
	}
	expectResetOrEOF(t, beforeServer)
}

func TestNodeAddresses(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	b, own := listen(t, network, "b")
	// A second address for b, such as a proxy's in front of it.
	proxy, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	if again := network.Node("b", proxy.Addr().String()); again != b || again.Name() != "b" {
		t.Fatalf("Node(b) again returned %p (%s); want %p", again, again.Name(), b)
	}
	network.Cut("a", "b")
	for _, ln := range []*net.TCPListener{own, proxy} {
		if _, err := dial(t, a, ln.Addr().String()); !errors.Is(err, rafthttptest.ErrLinkCut) {
			t.Errorf("dial b at %s across a cut: %v; want ErrLinkCut", ln.Addr(), err)
		}
	}

	// An address recorded for another node moves to it.
	network.Node("c", own.Addr().String())
	client, server := connect(t, a, own)
	exchange(t, client, server)
	network.Cut("a", "c")
	if _, err := dial(t, a, own.Addr().String()); !errors.Is(err, rafthttptest.ErrLinkCut) {
		t.Errorf("dial the address c took over across a cut a–c: %v; want ErrLinkCut", err)
	}
}

// TestHandlerKeepsResponseController checks that the middleware lets
// http.ResponseController reach the server's ResponseWriter, as rafthttp's
// Handler needs it to.
func TestHandlerKeepsResponseController(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	node := network.Node("b")
	errs := make(chan error, 1)
	server := httptest.NewServer(node.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		controller := http.NewResponseController(w)
		errs <- errors.Join(
			controller.SetReadDeadline(time.Now().Add(patience)),
			controller.SetWriteDeadline(time.Now().Add(patience)),
			controller.Flush(),
		)
	})))
	t.Cleanup(server.Close)
	if got := get(server.URL); !strings.HasPrefix(got, "200") {
		t.Fatalf("GET: %s", got)
	}
	if err := await(t, errs, "the handler"); err != nil {
		t.Errorf("ResponseController through the middleware: %v", err)
	}
}

func TestHeal(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, lnB := listen(t, network, "b")
	_, lnC := listen(t, network, "c")
	_, lnD := listen(t, network, "d")
	lost, lostServer := connect(t, a, lnB)
	kept, keptServer := connect(t, a, lnB)
	held, heldServer := connect(t, a, lnC)
	network.Cut("a", "b")
	mustWrite(t, lost, "lost")
	network.Pause("c")
	mustWrite(t, held, "held")
	network.Delay("a", "d", time.Hour, 0)

	network.Heal()
	// Cuts are mended: the connection that lost bytes is reset, the one
	// that did not carries on.
	expectLocalReset(t, lost)
	expectResetOrEOF(t, lostServer)
	exchange(t, kept, keptServer)
	// Paused nodes are resumed.
	expectRead(t, heldServer, []byte("held"))
	// Delays are gone: a dial across what was an hour's delay each way
	// connects within patience.
	for _, ln := range []*net.TCPListener{lnB, lnC, lnD} {
		client, server := connect(t, a, ln)
		exchange(t, client, server)
	}
}

func TestClose(t *testing.T) {
	// Not parallel: it checks that no connection goroutine is left when
	// Close returns, which other tests' connections would confuse.
	network := newNetwork(t)
	a := network.Node("a")
	_, lnC := listen(t, network, "c")
	b := startRaftNode(t, network, "b", nil, nil)
	outside := outsideLayer(t, rafthttp.NewDialContextTCP())
	dialed, dialedServer := connect(t, a, lnC)
	upgraded := dialRaft(t, outside, b.addr)
	accepted := acceptRaft(t, b.layer)
	exchange(t, upgraded, accepted)

	network.Pause("b")
	network.Pause("c")
	request := make(chan string, 1)
	go func() { request <- get(b.url + "/hello") }()
	waiting := dialAsync(t, context.Background(), a, lnC.Addr().String())
	notYet(t, request, "request to a paused node")
	notYet(t, waiting, "dial to a paused node")

	if err := network.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close waited for every connection's goroutines.
	stacks := make([]byte, 1<<20)
	stacks = stacks[:runtime.Stack(stacks, true)]
	if i := bytes.Index(stacks, []byte("rafthttptest.(*faultConn)")); i >= 0 {
		t.Errorf("a connection goroutine is left after Close:\n%s", stacks[max(0, i-200):min(len(stacks), i+200)])
	}
	// Held requests are let through, waiting dials fail.
	if got := await(t, request, "held request after Close"); got != "200 hello" {
		t.Errorf("held request after Close: %s; want 200 hello", got)
	}
	if r := await(t, waiting, "waiting dial after Close"); !errors.Is(r.err, rafthttptest.ErrNetworkClosed) {
		t.Errorf("waiting dial after Close: %v; want ErrNetworkClosed", r.err)
	}
	// Every connection is reset.
	expectLocalReset(t, dialed)
	expectResetOrEOF(t, dialedServer)
	expectResetOrEOF(t, upgraded)
	expectReadFails(t, accepted)
	// Later dials fail, to known addresses and unknown ones.
	for _, addr := range []string{lnC.Addr().String(), "127.0.0.1:1"} {
		if _, err := dial(t, a, addr); !errors.Is(err, rafthttptest.ErrNetworkClosed) {
			t.Errorf("dial %s after Close: %v; want ErrNetworkClosed", addr, err)
		}
	}
	// No upgrade can be handed over untracked.
	if conn, err := outside.Dial(raft.ServerAddress(b.addr), patience); err == nil {
		conn.Close()
		t.Error("an upgrade succeeded after Close")
	}
	if err := network.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestStressLosslessFaults toggles pauses and delays from several
// goroutines while connections stream framed random data both ways: with
// only faults that lose nothing, every byte must arrive, intact and in
// order.
func TestStressLosslessFaults(t *testing.T) {
	// Not parallel: it keeps both cores busy while it runs, which would
	// only slow the other tests down.
	network := newNetwork(t)
	names := []string{"a", "b", "c"}
	nodes := make(map[string]*rafthttptest.Node)
	listeners := make(map[string]*net.TCPListener)
	for _, name := range names {
		nodes[name], listeners[name] = listen(t, network, name)
	}
	type pair struct{ client, server net.Conn }
	var pairs []pair
	for _, d := range [][2]string{{"a", "b"}, {"b", "c"}, {"c", "a"}, {"a", "c"}} {
		client, server := connect(t, nodes[d[0]], listeners[d[1]])
		pairs = append(pairs, pair{client, server})
	}
	// And one through rafthttp, held by b's middleware as well.
	ra, rb := startRaftNode(t, network, "a", nil, nil), startRaftNode(t, network, "b", nil, nil)
	client := dialRaft(t, ra.layer, rb.addr)
	pairs = append(pairs, pair{client, acceptRaft(t, rb.layer)})

	stop := make(chan struct{})
	type outcome struct {
		stream int
		bytes  int
		err    error
	}
	written, read := make(chan outcome, 2*len(pairs)), make(chan outcome, 2*len(pairs))
	for i, p := range pairs {
		for j, ends := range [][2]net.Conn{{p.client, p.server}, {p.server, p.client}} {
			stream := 2*i + j
			go func() {
				n, err := writeStream(ends[0], uint64(stream), stop)
				written <- outcome{stream, n, err}
			}()
			go func() {
				n, err := readStream(ends[1], uint64(stream))
				read <- outcome{stream, n, err}
			}()
		}
	}

	const togglers, togglesEach, toggleTime = 3, 100, 2 * time.Second
	var toggles atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := range togglers {
		wg.Go(func() {
			random := rand.New(rand.NewPCG(uint64(g), 11))
			for i := 0; i < togglesEach && time.Since(start) < toggleTime; i++ {
				x, y := names[random.IntN(3)], names[random.IntN(3)]
				latency := time.Duration(random.IntN(2000)) * time.Microsecond
				jitter := time.Duration(random.IntN(2000)) * time.Microsecond
				switch random.IntN(6) {
				case 0, 1:
					network.Pause(x)
				case 2, 3:
					network.Resume(x)
				case 4:
					if x != y {
						network.Delay(x, y, latency, jitter)
					}
				case 5:
					if x != y {
						network.DelayOneWay(x, y, latency, 0)
					}
				}
				toggles.Add(1)
				// Spreads the toggles over the streams' lifetime.
				time.Sleep(time.Duration(random.IntN(15)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	network.Heal()
	close(stop)

	total := 0
	sent := make(map[int]int)
	for range 2 * len(pairs) {
		o := await(t, written, "a writer ends")
		if o.err != nil {
			t.Errorf("stream %d: write: %v", o.stream, o.err)
		}
		sent[o.stream] = o.bytes
	}
	for range 2 * len(pairs) {
		o := await(t, read, "a reader ends")
		if o.err != nil {
			t.Errorf("stream %d: read: %v", o.stream, o.err)
		} else if o.bytes != sent[o.stream] {
			t.Errorf("stream %d: read %d bytes; %d were written", o.stream, o.bytes, sent[o.stream])
		}
		total += o.bytes
	}
	t.Logf("%d toggles in %v; %d streams carried %d bytes", toggles.Load(), time.Since(start).Round(time.Millisecond), 2*len(pairs), total)
}

// TestOrderKeptWhileFaultsComeAndGo streams data without pause both ways
// while a delay and a pause come and go quickly, so that writes keep
// switching between the queue a fault needs and the socket directly: no
// write may overtake one still queued or being sent.
func TestOrderKeptWhileFaultsComeAndGo(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, ln := listen(t, network, "b")
	client, server := connect(t, a, ln)

	const size = 4 << 20
	out, in := randomBytes(size, 13), randomBytes(size, 14)
	small := func(conn net.Conn, data []byte, seed uint64) error {
		sizes := rand.New(rand.NewPCG(seed, 0))
		for len(data) > 0 {
			n := min(len(data), 1+sizes.IntN(4096))
			if _, err := conn.Write(data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
		return nil
	}
	written := make(chan error, 2)
	go func() { written <- small(client, out, 15) }()
	go func() { written <- small(server, in, 16) }()
	received := make(chan error, 2)
	for _, r := range []struct {
		conn net.Conn
		want []byte
	}{{server, out}, {client, in}} {
		go func() {
			got := make([]byte, size)
			r.conn.SetReadDeadline(time.Now().Add(patience))
			_, err := io.ReadFull(r.conn, got)
			if err == nil && !bytes.Equal(got, r.want) {
				err = errors.New("the bytes arrived changed or out of order")
			}
			received <- err
		}()
	}

	stop := make(chan struct{})
	toggled := make(chan int, 1)
	go func() {
		i := 0
		defer func() { toggled <- i }()
		for ; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 4 {
			case 0:
				network.Delay("a", "b", 200*time.Microsecond, 0)
			case 1:
				network.Delay("a", "b", 0, 0)
			case 2:
				network.Pause("b")
			case 3:
				network.Resume("b")
			}
			// Lets some writes through between the changes.
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for range 2 {
		if err := await(t, received, "a reader ends"); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	t.Logf("%d fault changes", await(t, toggled, "the toggles end"))
	network.Heal()
	for range 2 {
		if err := await(t, written, "a writer ends"); err != nil {
			t.Errorf("write: %v", err)
		}
	}
}

// writeStream writes frames of random data from a source seeded with seed,
// each a 4-byte length and that many bytes, until stop is closed, then a
// frame of length zero. It returns how many data bytes it wrote.
func writeStream(conn net.Conn, seed uint64, stop <-chan struct{}) (int, error) {
	data := streamSource(seed)
	random := rand.New(rand.NewPCG(seed, 12))
	frame := make([]byte, 4+2048)
	total := 0
	for {
		select {
		case <-stop:
			_, err := conn.Write(make([]byte, 4))
			return total, err
		default:
		}
		n := 1 + random.IntN(2048)
		binary.BigEndian.PutUint32(frame, uint32(n))
		data.Read(frame[4 : 4+n])
		// Sometimes the length and the data go in separate writes.
		var err error
		if random.IntN(2) == 0 {
			_, err = conn.Write(frame[:4+n])
		} else if _, err = conn.Write(frame[:4]); err == nil {
			_, err = conn.Write(frame[4 : 4+n])
		}
		if err != nil {
			return total, err
		}
		total += n
		// Paces the stream so that it lasts as long as the toggles.
		time.Sleep(time.Millisecond)
	}
}

// readStream reads what writeStream wrote with the same seed, checks it,
// and returns how many data bytes it read.
func readStream(conn net.Conn, seed uint64) (int, error) {
	conn.SetReadDeadline(time.Now().Add(3 * patience))
	data := streamSource(seed)
	buffered := bufio.NewReader(conn)
	var length [4]byte
	got, want := make([]byte, 2048), make([]byte, 2048)
	total := 0
	for {
		if _, err := io.ReadFull(buffered, length[:]); err != nil {
			return total, fmt.Errorf("after %d bytes: %w", total, err)
		}
		n := int(binary.BigEndian.Uint32(length[:]))
		if n == 0 {
			return total, nil
		}
		if n > len(got) {
			return total, fmt.Errorf("after %d bytes: a frame of %d bytes: the stream is corrupt", total, n)
		}
		if _, err := io.ReadFull(buffered, got[:n]); err != nil {
			return total, fmt.Errorf("after %d bytes: %w", total, err)
		}
		data.Read(want[:n])
		if !bytes.Equal(got[:n], want[:n]) {
			return total, fmt.Errorf("after %d bytes: the next %d differ from what was written", total, n)
		}
		total += n
	}
}

func streamSource(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	key[31] = 's'
	return rand.NewChaCha8(key)
}

// TestHealRetimesQueuedBytes: bytes written across an hour's delay arrive
// soon after Heal, and so do those written behind them.
func TestHealRetimesQueuedBytes(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, lnB := listen(t, network, "b")
	client, server := connect(t, a, lnB)
	network.Delay("a", "b", time.Hour, 0)
	mustWrite(t, client, "slow")
	mustWrite(t, server, "back")
	expectNothing(t, server)

	network.Heal()
	expectRead(t, server, []byte("slow"))
	expectRead(t, client, []byte("back"))
	exchange(t, client, server)
}

// TestCutHidesPeerClose: the peer's close does not cross a cut link any
// more than its bytes do; it arrives once the link is mended.
func TestCutHidesPeerClose(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	a := network.Node("a")
	_, lnB := listen(t, network, "b")
	client, server := connect(t, a, lnB)
	network.CutOneWay("b", "a")
	server.Close()
	client.SetReadDeadline(time.Now().Add(quiet))
	_, err := client.Read(make([]byte, 8))
	expectTimeout(t, err)

	network.MendOneWay("b", "a")
	client.SetReadDeadline(time.Time{})
	expectResetOrEOF(t, client)
}

// TestHandlerAfterNetworkClose: an upgrade that reaches a wrapped Handler
// after Network.Close is refused with an HTTP answer, not dropped.
func TestHandlerAfterNetworkClose(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	b := startRaftNode(t, network, "b", nil, nil)
	network.Close()
	outside := outsideLayer(t, rafthttp.NewDialContextTCP())
	_, err := outside.Dial(raft.ServerAddress(b.addr), patience)
	var status *rafthttp.StatusError
	if !errors.As(err, &status) {
		t.Fatalf("dial after Network.Close: %v; want an HTTP refusal (*rafthttp.StatusError)", err)
	}
}

// TestHandlerEndResetErrors: after a reset, the accepting end's Read and
// Write fail as on a reset socket, like the dialing end's.
func TestHandlerEndResetErrors(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	b := startRaftNode(t, network, "b", nil, nil)
	_, client, server := connectFromOutside(t, b)
	network.ResetNode("b")
	expectResetOrEOF(t, client)
	if _, err := server.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after reset: %v; want ECONNRESET", err)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("write after reset: %v; want ECONNRESET", err)
	}
}

// TestNodeDial: the Dial form applies the same faults as DialContext, and
// its timeout bounds a dial a pause holds.
func TestNodeDial(t *testing.T) {
	t.Parallel()
	network := newNetwork(t)
	dial := network.Node("a").Dial(nil)
	_, lnB := listen(t, network, "b")
	addr := lnB.Addr().String()

	client, err := dial(addr, patience)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	server := accept(t, lnB)
	exchange(t, client, server)

	network.Cut("a", "b")
	if _, err := dial(addr, patience); !errors.Is(err, rafthttptest.ErrLinkCut) {
		t.Errorf("dial across a cut: %v; want ErrLinkCut", err)
	}
	network.Heal()
	network.Pause("b")
	if _, err := dial(addr, quiet); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial to a paused node: %v; want its timeout", err)
	}
}
