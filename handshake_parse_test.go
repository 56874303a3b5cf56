package rafthttp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scanCases are response heads for the dial's fast path, with what it must
// make of them. Whatever it leaves to net/http (headOther) keeps net/http's
// behaviour; what it takes (headUpgraded) net/http must also take.
var scanCases = []struct {
	name    string
	head    string
	want    headScan
	bodyMax int
}{
	{name: "original package", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\n\r\n", want: headUpgraded},
	{name: "rafthttp", head: switchingProtocols, want: headUpgraded},
	{name: "upper case token", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: RAFT\r\n\r\n", want: headUpgraded},
	{name: "lower case name", head: "HTTP/1.1 101 Switching Protocols\r\nupgrade: raft\r\n\r\n", want: headUpgraded},
	{name: "token in a list", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c, Raft\r\nConnection: upgrade\r\n\r\n", want: headUpgraded},
	{name: "token with a version", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft/1\r\n\r\n", want: headUpgraded},
	{name: "token in a second Upgrade", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nUpgrade: raft\r\n\r\n", want: headUpgraded},
	{name: "no reason phrase", head: "HTTP/1.1 101\r\nUpgrade: raft\r\n\r\n", want: headUpgraded},
	{name: "tabs and empty values", head: "HTTP/1.1 101 Switching Protocols\r\nVia: \r\nUpgrade:\t raft \t\r\n\r\n", want: headUpgraded},
	{name: "rafthttp taking early data", head: string(switchingProtocolsBody), want: headUpgraded, bodyMax: maxEarlyData},
	{name: "early data limit, lower case, spaced", head: "HTTP/1.1 101 Switching Protocols\r\nrafthttp-body-max: \t 100 \r\nUpgrade: raft\r\n\r\n", want: headUpgraded, bodyMax: 100},
	{name: "early data limit zero", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nRafthttp-Body-Max: 0\r\n\r\n", want: headUpgraded},
	{name: "proxy headers", head: "HTTP/1.1 101 Switching Protocols\r\nDate: Sun, 22 Nov 2026 03:00:00 GMT\r\nServer: nginx\r\nUpgrade: raft\r\nConnection: upgrade\r\n\r\n", want: headUpgraded},

	{name: "nothing yet", head: "", want: headIncomplete},
	{name: "part of the status line", head: "HTTP/1.1 1", want: headIncomplete},
	{name: "status line only", head: "HTTP/1.1 101 Switching Protocols\r\n", want: headIncomplete},
	{name: "cut in a header", head: "HTTP/1.1 101 Switching Protocols\r\nUpgr", want: headIncomplete},
	{name: "no blank line yet", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\n", want: headIncomplete},
	{name: "cut before the final LF", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\n\r", want: headIncomplete},

	{name: "refusal", head: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", want: headOther},
	{name: "refusal cut in the status line", head: "HTTP/1.1 40", want: headOther},
	{name: "not HTTP", head: "SSH-2.0-OpenSSH_9.6\r\n", want: headOther},
	{name: "not HTTP, no line end", head: "SSH-2.0", want: headOther},
	{name: "HTTP/1.0", head: "HTTP/1.0 101 Switching Protocols\r\nUpgrade: raft\r\n\r\n", want: headOther},
	{name: "four digit status", head: "HTTP/1.1 1010 Switching Protocols\r\nUpgrade: raft\r\n\r\n", want: headOther},
	{name: "no Upgrade", head: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", want: headOther},
	{name: "another protocol", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", want: headOther},
	{name: "token inside another", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: rafts, xraft\r\n\r\n", want: headOther},
	{name: "bare LF", head: "HTTP/1.1 101 Switching Protocols\nUpgrade: raft\n\n", want: headOther},
	{name: "bare LF in a header", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\n\r\n", want: headOther},
	{name: "folded line", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c,\r\n raft\r\n\r\n", want: headOther},
	{name: "space before colon", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade : raft\r\n\r\n", want: headOther},
	{name: "no colon", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade raft\r\n\r\n", want: headOther},
	{name: "empty name", head: "HTTP/1.1 101 Switching Protocols\r\n: raft\r\nUpgrade: raft\r\n\r\n", want: headOther},
	{name: "control character in a value", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\x00\r\n\r\n", want: headOther},
	{name: "non-ASCII space around the token", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: \u00a0raft\r\n\r\n", want: headOther},
	{name: "early data limit not a number", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nRafthttp-Body-Max: 1k\r\n\r\n", want: headOther},
	{name: "early data limit negative", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nRafthttp-Body-Max: -1\r\n\r\n", want: headOther},
	{name: "early data limit too long", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nRafthttp-Body-Max: 1234567890\r\n\r\n", want: headOther},
	{name: "early data limit twice", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nRafthttp-Body-Max: 1\r\nRafthttp-Body-Max: 2\r\n\r\n", want: headOther},
	{name: "Content-Length", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nContent-Length: 1, 2\r\n\r\n", want: headOther},
	{name: "Transfer-Encoding", head: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nTransfer-Encoding: gzip\r\n\r\n", want: headOther},
}

func TestScanUpgraded(t *testing.T) {
	t.Parallel()
	for _, tt := range scanCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const early = "raft bytes"
			scan, n, bodyMax := scanUpgraded([]byte(tt.head + early))
			if tt.want == headIncomplete {
				// Early bytes cannot follow an unfinished head.
				scan, n, bodyMax = scanUpgraded([]byte(tt.head))
			}
			assert.Equal(t, tt.want, scan)
			assert.Equal(t, tt.bodyMax, bodyMax)
			if scan == headUpgraded {
				assert.Equal(t, len(tt.head), n, "the head ends at the blank line, before the early bytes")
			} else {
				assert.Zero(t, n)
			}
			checkAgreesWithNetHTTP(t, []byte(tt.head+early))
		})
	}
}

// TestReadUpgraded feeds the heads a byte at a time, so the fast path must
// wait for each piece, and checks it consumes exactly the head or nothing.
func TestReadUpgraded(t *testing.T) {
	t.Parallel()
	for _, tt := range scanCases {
		if tt.want == headIncomplete {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const early = "raft bytes"
			reader := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tt.head+early)), handshakeReadSize)
			upgraded, bodyMax := readUpgraded(reader)
			assert.Equal(t, tt.want == headUpgraded, upgraded)
			assert.Equal(t, tt.bodyMax, bodyMax)
			rest, err := io.ReadAll(reader)
			require.NoError(t, err)
			if upgraded {
				assert.Equal(t, early, string(rest))
			} else {
				assert.Equal(t, tt.head+early, string(rest), "nothing consumed: net/http reads from the start")
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		t.Parallel()
		head := "HTTP/1.1 101 Switching Protocols\r\nUpgr"
		reader := bufio.NewReader(io.MultiReader(strings.NewReader(head), iotest.ErrReader(io.ErrUnexpectedEOF)))
		upgraded, _ := readUpgraded(reader)
		assert.False(t, upgraded)
		rest, _ := io.ReadAll(reader)
		assert.Equal(t, head, string(rest), "nothing consumed: net/http reads from the start")
	})
	t.Run("head larger than the buffer", func(t *testing.T) {
		t.Parallel()
		head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raft\r\nX-Padding: " + strings.Repeat("x", handshakeReadSize) + "\r\n\r\n"
		reader := bufio.NewReaderSize(strings.NewReader(head), handshakeReadSize)
		upgraded, _ := readUpgraded(reader)
		assert.False(t, upgraded, "left to net/http, which reads long lines")
		_, step, err := readResponse(reader)
		require.NoError(t, err)
		assert.Empty(t, step)
	})
}

// TestScanUpgradedAllocs checks the fast path allocates nothing.
func TestScanUpgradedAllocs(t *testing.T) {
	head := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c, raft\r\nConnection: Upgrade\r\nRafthttp-Body-Max: 65536\r\n\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if scan, _, _ := scanUpgraded(head); scan != headUpgraded {
			t.Fatal("not upgraded")
		}
	})
	assert.Zero(t, allocs)
}

// FuzzScanUpgraded checks that whatever the fast path takes, net/http also
// takes as a 101 to raft with a head of the same length and the same
// early data limit.
func FuzzScanUpgraded(f *testing.F) {
	for _, tt := range scanCases {
		f.Add([]byte(tt.head))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		checkAgreesWithNetHTTP(t, buf)
	})
}

func checkAgreesWithNetHTTP(t *testing.T, buf []byte) {
	t.Helper()
	scan, n, bodyMax := scanUpgraded(buf)
	if scan != headUpgraded {
		return
	}
	reader := bufio.NewReader(bytes.NewReader(buf))
	slowBodyMax, step, err := readResponse(reader)
	if err != nil {
		t.Fatalf("the fast path takes %q, net/http fails at %s: %v", buf, step, err)
	}
	if bodyMax != slowBodyMax {
		t.Fatalf("the fast path reads an early data limit of %d from %q, net/http %d", bodyMax, buf, slowBodyMax)
	}
	if consumed := len(buf) - reader.Buffered(); consumed != n {
		t.Fatalf("the fast path reads a head of %d bytes from %q, net/http %d", n, buf, consumed)
	}
}

// BenchmarkReadUpgradeResponse compares the dial's reading of a 101, on the
// fast path and through net/http as before, without the network.
func BenchmarkReadUpgradeResponse(b *testing.B) {
	head := strings.NewReader(switchingProtocols)
	reader := bufio.NewReaderSize(head, handshakeReadSize)
	b.Run("path=fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			head.Reset(switchingProtocols)
			reader.Reset(head)
			if ok, _ := readUpgraded(reader); !ok {
				b.Fatal("not upgraded")
			}
		}
	})
	b.Run("path=net-http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			head.Reset(switchingProtocols)
			reader.Reset(head)
			if _, step, err := readResponse(reader); err != nil {
				b.Fatal(step, err)
			}
		}
	})
}
