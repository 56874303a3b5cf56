package benchmarks

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// Directions of BenchmarkStream, the value of its dir= key. In WebSocket
// mode the dialing end is the client, whose frames are masked (RFC 6455
// section 5.3), and the accepting end the server, whose frames are not.
const (
	dirDialedToAccepted = "dialed-to-accepted"
	dirAcceptedToDialed = "accepted-to-dialed"
)

// streamTransports are the transports of BenchmarkStream: http-eager
// carries its bytes exactly as http does once the connection is made.
var streamTransports = []string{transportTCP, transportHTTP, transportWS}

// BenchmarkStream measures an established connection on its own, without
// raft: one op is one Write of a size-byte message on one end, read in
// full (io.ReadFull into a reused buffer) by a goroutine on the other end.
// The writer does not wait for each message to be read, so this is
// throughput, as raft's pipelined AppendEntries are; the timer stops once
// the reader has every byte. allocs/op counts both ends, the reader's
// goroutine being in this process: allocations per message. For ws,
// dir=dialed-to-accepted minus dir=accepted-to-dialed is what masking
// costs the client that writes and the server that reads.
func BenchmarkStream(b *testing.B) {
	for _, size := range []int{256, 16384} {
		for _, dir := range []string{dirDialedToAccepted, dirAcceptedToDialed} {
			// Transport innermost, as in BenchmarkReplicate.
			for _, transport := range streamTransports {
				name := fmt.Sprintf("transport=%s/size=%d/dir=%s", transport, size, dir)
				b.Run(name, func(b *testing.B) {
					dialed, accepted, closePair := connectPair(b, transport)
					defer closePair()
					from, to := dialed, accepted
					if dir == dirAcceptedToDialed {
						from, to = accepted, dialed
					}
					benchmarkStream(b, from, to, size)
				})
			}
		}
	}
}

func benchmarkStream(b *testing.B, from, to net.Conn, size int) {
	message := make([]byte, size)
	read := make(chan error, 1)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		buf := make([]byte, size)
		for range b.N {
			if _, err := io.ReadFull(to, buf); err != nil {
				// Unblocks the writer, should it wait for room.
				from.Close()
				read <- err
				return
			}
		}
		read <- nil
	}()
	var writeErr error
	for range b.N {
		if _, writeErr = from.Write(message); writeErr != nil {
			// Unblocks the reader, which waits for what will not come.
			to.Close()
			break
		}
	}
	readErr := <-read
	b.StopTimer()
	if err := errors.Join(writeErr, readErr); err != nil {
		b.Fatal(err)
	}
}

// connectPair returns both ends of one connection of the given transport:
// a TCP dial and the listener's Accept for tcp, a Layer's Dial and the
// serving Layer's Accept for the rafthttp transports. The connection has
// carried one byte each way, so a dial with early data is upgraded.
// closePair closes both ends and everything behind them.
func connectPair(tb testing.TB, transport string) (dialed, accepted net.Conn, closePair func()) {
	tb.Helper()
	acceptedCh := make(chan net.Conn, 1)
	addr, stopServer := startAcceptor(tb, transport, func(conn net.Conn) {
		if pong(conn) == nil {
			acceptedCh <- conn
		} else {
			conn.Close()
		}
	})
	d := newDialer(tb, transport)
	closeAll := func() {
		d.close()
		stopServer()
	}
	d.warmUp(tb, addr)
	dialed, err := d.dial(addr)
	if err == nil {
		if err = ping(dialed); err != nil {
			dialed.Close()
		}
	}
	if err != nil {
		closeAll()
		tb.Fatalf("connect: %v", err)
	}
	select {
	case accepted = <-acceptedCh:
	case <-time.After(ioTimeout):
		dialed.Close()
		closeAll()
		tb.Fatal("connection not accepted")
	}
	return dialed, accepted, func() {
		dialed.Close()
		accepted.Close()
		closeAll()
	}
}
