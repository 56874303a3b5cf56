package rafthttp

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// peerTable remembers, per peer address, whether the peer takes early data:
// a Layer learns it from the 101 of a dial without, and forgets it for a
// while when a dial with it fails. It is safe for concurrent use.
type peerTable struct {
	logger hclog.Logger
	peers  sync.Map // address → *peerState, replaced, never changed
}

type peerState struct {
	// bodyMax is the most early data the peer takes; 0 while unknown.
	bodyMax int
	// pausedUntil, if set, is when early data may be tried again.
	pausedUntil time.Time
}

func newPeerTable(logger hclog.Logger) *peerTable {
	return &peerTable{logger: logger}
}

// earlyData returns how many bytes of early data a dial to addr may send,
// or 0 if the dial must wait for the 101 before raft writes. A nil table
// (LayerConfig.EagerHandshake) never allows any.
func (t *peerTable) earlyData(addr string) int {
	if t == nil {
		return 0
	}
	value, ok := t.peers.Load(addr)
	if !ok {
		return 0
	}
	state := value.(*peerState)
	if !state.pausedUntil.IsZero() && time.Now().Before(state.pausedUntil) {
		return 0
	}
	return state.bodyMax
}

// learned records what the 101 of a dial without early data said: the most
// early data addr takes, 0 if it takes none (an original node, or a proxy
// that hid the answer). A pause in force stays in force.
func (t *peerTable) learned(addr string, bodyMax int) {
	if t == nil {
		return
	}
	bodyMax = min(bodyMax, maxEarlyData)
	if value, ok := t.peers.Load(addr); ok {
		state := value.(*peerState)
		if state.bodyMax == bodyMax || time.Now().Before(state.pausedUntil) {
			return
		}
	}
	if bodyMax <= 0 {
		t.peers.Delete(addr)
		return
	}
	t.peers.Store(addr, &peerState{bodyMax: bodyMax})
}

// failed records that a dial to addr with early data failed with err. A
// busy peer (503) says nothing about early data; any other failure, be it a
// refusal, a 101 that does not confirm the body, or a connection cut before
// the answer, might be a proxy that mishandles bodies, so dials to addr go
// without early data for a while. It costs a round trip per dial, never a
// lost request.
func (t *peerTable) failed(addr string, err error) {
	if t == nil {
		return
	}
	if statusErr := (*StatusError)(nil); errors.As(err, &statusErr) && statusErr.StatusCode == http.StatusServiceUnavailable {
		return
	}
	t.peers.Store(addr, &peerState{pausedUntil: time.Now().Add(earlyDataPause)})
	t.logger.Warn("upgrade with early data failed: dialing this peer with a full handshake for a while",
		"address", addr, "pause", earlyDataPause, "error", err)
}
