package raftmembership_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// An ID from the network is logged, displayed and stored: it must be
// short, valid UTF-8 and free of anything a terminal or a log parser would
// act on.
func TestCheckID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		id    string
		valid bool
	}{
		{name: "one byte", id: "a", valid: true},
		{name: "with a space", id: "node 2", valid: true},
		{name: "unicode", id: "nœud-三 ✓", valid: true},
		{name: "the longest", id: strings.Repeat("i", raftmembership.MaxIDLength), valid: true},
		{name: "empty", id: ""},
		{name: "one byte too long", id: strings.Repeat("i", raftmembership.MaxIDLength+1)},
		{name: "300 KB", id: strings.Repeat("i", 300<<10)},
		{name: "NUL", id: "node\x00"},
		{name: "new line", id: "node\nforged log line"},
		{name: "carriage return", id: "node\r"},
		{name: "tab", id: "node\t2"},
		{name: "DEL", id: "node\x7f"},
		{name: "ANSI escape", id: "\x1b[31mred\x1b[0m"},
		{name: "C1 control", id: "node\u0085"},
		{name: "invalid UTF-8", id: "node\xff\xfe"},
		{name: "truncated UTF-8", id: "nœ"[:2]},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			err := raftmembership.CheckID(raft.ServerID(test.id))
			if test.valid {
				assert.NoError(t, err)
				return
			}
			assert.Error(t, err)
			// The reason quotes the ID, never the raw bytes, and is
			// short whatever the ID's length.
			if err != nil {
				assert.NotContains(t, err.Error(), "\x1b")
				assert.NotContains(t, err.Error(), "\n")
				assert.Less(t, len(err.Error()), 2*raftmembership.MaxIDLength+200, "the reason quotes a whole long ID")
			}
		})
	}
}

// An address from the network is dialed by the leader and by raft, and
// logged: host:port with a usable port and nothing else.
func TestCheckAddress(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("h", n-len(":9000")) + ":9000" }
	tests := []struct {
		name    string
		address string
		valid   bool
	}{
		{name: "IPv4", address: "127.0.0.1:9002", valid: true},
		{name: "IPv6", address: "[::1]:9002", valid: true},
		{name: "name", address: "node2.example:9002", valid: true},
		{name: "lowest port", address: "127.0.0.1:1", valid: true},
		{name: "highest port", address: "127.0.0.1:65535", valid: true},
		{name: "the longest", address: long(raftmembership.MaxAddressLength), valid: true},
		{name: "empty", address: ""},
		{name: "no port", address: "127.0.0.1"},
		{name: "empty port", address: "127.0.0.1:"},
		{name: "no host", address: ":9"},
		{name: "empty IPv6 host", address: "[]:9"},
		{name: "port 0", address: "127.0.0.1:0"},
		{name: "port past 65535", address: "127.0.0.1:65536"},
		{name: "port far past 65535", address: "127.0.0.1:99999999"},
		{name: "negative port", address: "127.0.0.1:-1"},
		{name: "signed port", address: "127.0.0.1:+9"},
		{name: "port name", address: "127.0.0.1:http"},
		{name: "white space", address: "a b:c d"},
		{name: "new line", address: "127.0.0.1:9\nevil"},
		{name: "header injection", address: "127.0.0.1:9\r\nX-Evil: 1"},
		{name: "tab", address: "127.0.0.1:\t9"},
		{name: "NUL", address: "127.0.0.1:9\x00"},
		{name: "non-breaking space", address: "127.0.0.1\u00a0:9"},
		{name: "one byte too long", address: long(raftmembership.MaxAddressLength + 1)},
		{name: "too many colons", address: "1:2:3"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			err := raftmembership.CheckAddress(raft.ServerAddress(test.address))
			if test.valid {
				assert.NoError(t, err)
				return
			}
			assert.Error(t, err)
			if err != nil {
				assert.NotContains(t, err.Error(), "\n", "the reason quotes the address")
			}
		})
	}
}
