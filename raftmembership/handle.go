package raftmembership

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// DefaultTimeout bounds each raft operation HandleChangeRequests performs for
// one request when [Config.Timeout] is zero.
const DefaultTimeout = 10 * time.Second

// Config tunes [HandleChangeRequestsWithConfig]. The zero value means the
// documented defaults.
type Config struct {
	// Timeout bounds each change raft makes for one request (adding or
	// removing a server) and, when the leader is asked to remove itself,
	// the wait for a successor after raft's leadership transfer returns.
	// Zero means DefaultTimeout.
	Timeout time.Duration

	// Logger receives one line per request. Nil means a logger named
	// "raftmembership" at the default level.
	Logger hclog.Logger
}

// HandleChangeRequests applies join and leave requests received on requests
// to r, and answers membership requests ([NewMembersRequest]) with r's
// view, using the default [Config]. It returns when requests is closed. Run it
// in its own goroutine on every node.
func HandleChangeRequests(r *raft.Raft, requests <-chan *ChangeRequest) {
	HandleChangeRequestsWithConfig(r, requests, Config{})
}

// HandleChangeRequestsWithConfig is [HandleChangeRequests] with explicit
// settings. It returns when requests is closed.
//
// Each request is handled in turn and its outcome passed to
// [ChangeRequest.Done]: nil on success, [*ErrDifferentLeader] or
// [*ErrUnknownLeader] when this node is not the leader, and otherwise the
// error raft returned, wrapped with what was being attempted. A
// [MembersRequest] is answered on every node, leader or not, with
// [ChangeRequest.DoneMembers] and [ReadMembership]'s view.
func HandleChangeRequestsWithConfig(r *raft.Raft, requests <-chan *ChangeRequest, config Config) {
	h := newHandler(r, config)
	for request := range requests {
		if request.Kind() == MembersRequest {
			h.members(request)
			continue
		}
		err := h.handle(request)
		if err != nil {
			h.logger.Debug("membership change not applied", "kind", request.Kind(), "id", request.ID(), "address", request.Address(), "error", err)
		} else {
			h.logger.Info("membership change applied", "kind", request.Kind(), "id", request.ID(), "address", request.Address())
		}
		request.Done(err)
	}
}

// members answers a MembersRequest, on any node.
func (h *handler) members(request *ChangeRequest) {
	membership, err := ReadMembership(h.raft)
	if err != nil {
		h.logger.Debug("membership not read", "error", err)
		request.Done(err)
		return
	}
	request.DoneMembers(membership)
}

type handler struct {
	raft    *raft.Raft
	timeout time.Duration
	logger  hclog.Logger
}

func newHandler(r *raft.Raft, config Config) *handler {
	h := &handler{raft: r, timeout: config.Timeout, logger: config.Logger}
	if h.timeout <= 0 {
		h.timeout = DefaultTimeout
	}
	if h.logger == nil {
		h.logger = hclog.New(&hclog.LoggerOptions{Name: "raftmembership"})
	}
	return h
}

func (h *handler) handle(request *ChangeRequest) error {
	if h.raft.State() != raft.Leader {
		return h.notLeader()
	}
	switch request.Kind() {
	case JoinRequest:
		return h.join(request, raft.Voter)
	case JoinNonvoterRequest:
		return h.join(request, raft.Nonvoter)
	case LeaveRequest:
		return h.leave(request.ID())
	default:
		return fmt.Errorf("raftmembership: unknown request kind %v", request.Kind())
	}
}

// notLeader names the leader this node knows of, if any.
func (h *handler) notLeader() error {
	address, _ := h.raft.LeaderWithID()
	if address == "" {
		return &ErrUnknownLeader{}
	}
	return &ErrDifferentLeader{leader: string(address)}
}

// configuration reads the latest configuration, translating the errors a
// deposed leader gets into the ones that tell the caller where to go.
//
// The changes below pass raft a prevIndex of 0, which skips raft's check that
// the configuration is unchanged since it was read: raft's GetConfiguration
// reports no index to check against, requests are applied one at a time
// here, and join and leave are idempotent, so a retry settles any race with
// a change the application makes itself.
func (h *handler) configuration() (raft.Configuration, error) {
	future := h.raft.GetConfiguration()
	if err := future.Error(); err != nil {
		return raft.Configuration{}, h.raftError("read configuration", err)
	}
	return future.Configuration(), nil
}

func (h *handler) join(request *ChangeRequest, suffrage raft.ServerSuffrage) error {
	id, address := request.ID(), request.Address()
	if id == "" || address == "" {
		return errors.New("raftmembership: join needs both an ID and an address")
	}
	configuration, err := h.configuration()
	if err != nil {
		return err
	}
	for _, server := range configuration.Servers {
		switch {
		case server.ID == id && server.Address == address:
			// Already a member here. Promote a non-voter asked to join as a
			// voter; otherwise there is nothing to change. A voter asking to
			// join as a non-voter stays a voter: demotion is a decision for
			// an operator, not a side effect of a retried join.
			if suffrage == raft.Voter && server.Suffrage != raft.Voter {
				break
			}
			return nil
		case server.ID != id && server.Address == address:
			// Removing the other member would let anyone who can send a
			// join evict any member, the leader included.
			return &ErrAddressInUse{Address: address, Member: server.ID}
		}
	}
	if request.reachable != nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		err := request.reachable(ctx, address)
		cancel()
		if err != nil {
			return &ErrUnreachable{Address: address, Err: err}
		}
	}
	// For a known ID with a new address, AddVoter/AddNonvoter replace the
	// address in place.
	var future raft.IndexFuture
	if suffrage == raft.Voter {
		future = h.raft.AddVoter(id, address, 0, h.timeout)
	} else {
		future = h.raft.AddNonvoter(id, address, 0, h.timeout)
	}
	if err := future.Error(); err != nil {
		return h.raftError(fmt.Sprintf("add %s at %s", id, address), err)
	}
	return nil
}

func (h *handler) leave(id raft.ServerID) error {
	if id == "" {
		return errors.New("raftmembership: leave needs an ID")
	}
	configuration, err := h.configuration()
	if err != nil {
		return err
	}
	member := false
	for _, server := range configuration.Servers {
		if server.ID == id {
			member = true
			break
		}
	}
	if !member {
		return nil
	}
	if _, leaderID := h.raft.LeaderWithID(); leaderID == id {
		return h.handOver()
	}
	if err := h.raft.RemoveServer(id, 0, h.timeout).Error(); err != nil {
		return h.raftError(fmt.Sprintf("remove %s", id), err)
	}
	return nil
}

// handOver transfers leadership away from this node, which has been asked
// to remove itself, and points the caller at the new leader. Removing the
// leader directly would make it step down without choosing a successor, and
// the caller would then see "leader unknown" from a node that is about to
// shut down.
func (h *handler) handOver() error {
	if err := h.raft.LeadershipTransfer().Error(); err != nil {
		return h.raftError("transfer leadership before leaving", err)
	}
	// The transfer succeeds once another node has been told to start an
	// election; this node learns who won from the next heartbeat.
	deadline := time.Now().Add(h.timeout)
	for {
		address, _ := h.raft.LeaderWithID()
		state := h.raft.State()
		if address != "" && state != raft.Leader {
			return &ErrDifferentLeader{leader: string(address)}
		}
		if state == raft.Shutdown {
			// No leader will be heard of any more: the node is stopping.
			return h.raftError("wait for a successor", raft.ErrRaftShutdown)
		}
		if time.Now().After(deadline) {
			return &ErrUnknownLeader{}
		}
		// Poll: LeaderCh belongs to the application and must not be read here.
		time.Sleep(10 * time.Millisecond)
	}
}

// raftError maps raft's "you are not the leader any more" errors onto the
// redirect errors, so that a request caught by an election is retried at the
// new leader instead of failing.
func (h *handler) raftError(action string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		if h.raft.State() == raft.Leader {
			// Still leader, but busy handing over: the caller should retry.
			return &ErrUnknownLeader{}
		}
		return h.notLeader()
	default:
		return fmt.Errorf("raftmembership: %s: %w", action, err)
	}
}
