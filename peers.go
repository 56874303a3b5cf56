package rafthttp

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	metrics "github.com/hashicorp/go-metrics/compat"
)

// peerTable remembers, per peer address, whether the peer takes early data:
// a Layer learns it from the 101s of its dials, and stops sending it for a
// while when a dial with it fails in a way early data may explain. It is
// safe for concurrent use.
type peerTable struct {
	logger hclog.Logger
	mu     sync.RWMutex
	peers  map[string]peerState
}

type peerState struct {
	// bodyMax is the most early data the peer takes; 0 while unknown.
	bodyMax int
	// pausedUntil, if set, is when early data may be tried again.
	pausedUntil time.Time
}

func newPeerTable(logger hclog.Logger) *peerTable {
	return &peerTable{logger: logger, peers: make(map[string]peerState)}
}

// earlyData returns the most early data a dial to addr may send, or 0 if
// the dial must wait for the 101 before raft writes. A nil table
// (LayerConfig.EagerHandshake) never allows any.
func (t *peerTable) earlyData(addr string) int {
	if t == nil {
		return 0
	}
	t.mu.RLock()
	state := t.peers[addr]
	t.mu.RUnlock()
	if !state.pausedUntil.IsZero() && time.Now().Before(state.pausedUntil) {
		return 0
	}
	return state.bodyMax
}

// learned records what a 101 from addr said: the most early data the peer
// takes, 0 if it takes none (an original node, or a proxy that hid the
// answer). A pause in force stays in force.
func (t *peerTable) learned(addr string, bodyMax int) {
	if t == nil {
		return
	}
	bodyMax = min(bodyMax, maxEarlyData)
	t.mu.Lock()
	defer t.mu.Unlock()
	state, known := t.peers[addr]
	switch {
	case known && time.Now().Before(state.pausedUntil):
	case bodyMax <= 0:
		delete(t.peers, addr)
	case state.bodyMax != bodyMax:
		t.peers[addr] = peerState{bodyMax: bodyMax}
	}
}

// failed records that a dial to addr with early data failed with err, and
// stops early data to addr for a while if the failure may be its doing: a
// 101 that does not confirm the body, a refusal of the request as such
// (400, 411, 413), or the connection cut before any answer, as a proxy that
// rejects bodies might do. A timeout, a busy peer (503) or any other
// refusal says nothing about early data. The request that failed is lost
// either way (raft retries it); a pause costs later dials a round trip.
func (t *peerTable) failed(addr string, err error) {
	if t == nil || !earlyDataSuspect(err) {
		return
	}
	t.mu.Lock()
	t.peers[addr] = peerState{pausedUntil: time.Now().Add(earlyDataPause)}
	t.mu.Unlock()
	metrics.IncrCounter(metricEarlyDataFallback, 1)
	t.logger.Warn("upgrade with early data failed: dialing this peer with a full handshake for a while",
		"address", addr, "pause", earlyDataPause, "error", err)
}

// earlyDataSuspect reports whether a failed dial with early data may have
// failed because of it.
func earlyDataSuspect(err error) bool {
	var upgradeErr *UpgradeError
	if !errors.As(err, &upgradeErr) {
		return false
	}
	var statusErr *StatusError
	switch {
	case upgradeErr.Step == StepUpgradeHeader:
		return true
	case errors.As(err, &statusErr):
		switch statusErr.StatusCode {
		case http.StatusBadRequest, http.StatusLengthRequired, http.StatusRequestEntityTooLarge:
			return true
		}
		return false
	case upgradeErr.Step == StepReadResponse:
		return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
	}
	return false
}
