package raftmembership

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/raft"
)

const (
	// MaxIDLength is the longest server ID a request may carry, in bytes.
	MaxIDLength = 256
	// MaxAddressLength is the longest server address a request may carry,
	// in bytes.
	MaxAddressLength = 256
)

// CheckID reports why id cannot be a server ID in a membership request, or
// nil: an ID is 1 to MaxIDLength bytes of valid UTF-8 with no control
// characters, so that it is safe to log, display and store.
func CheckID(id raft.ServerID) error {
	switch {
	case id == "":
		return errors.New("empty server ID")
	case len(id) > MaxIDLength:
		return fmt.Errorf("server ID of %d bytes: at most %d", len(id), MaxIDLength)
	case !utf8.ValidString(string(id)):
		return fmt.Errorf("server ID %q is not valid UTF-8", id)
	case strings.IndexFunc(string(id), unicode.IsControl) >= 0:
		return fmt.Errorf("server ID %q holds control characters", id)
	}
	return nil
}

// CheckAddress reports why address cannot be a server address in a
// membership request, or nil: an address is host:port with a non-empty
// host and a decimal port from 1 to 65535, at most MaxAddressLength bytes,
// with no white space or control characters.
func CheckAddress(address raft.ServerAddress) error {
	if len(address) > MaxAddressLength {
		return fmt.Errorf("address of %d bytes: at most %d", len(address), MaxAddressLength)
	}
	if strings.IndexFunc(string(address), func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("address %q holds white space or control characters", address)
	}
	host, port, err := net.SplitHostPort(string(address))
	if err != nil {
		return fmt.Errorf("address %q: want host:port", address)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", address)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("address %q: the port must be a number from 1 to 65535", address)
	}
	return nil
}
