package rafthttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// Membership is a node's view of the cluster, as its Handler answers a GET
// without an Upgrade header and [Layer.Members] returns it: the leader it
// knows of, nil if none, and the servers of its latest configuration.
type Membership = raftmembership.Membership

// maxMembershipBody bounds the membership view Members reads: about ten
// thousand servers with long IDs, far more than a raft cluster holds.
const maxMembershipBody = 4 << 20

// Members asks the node at target for its view of the membership: one GET
// of the Layer's path without an Upgrade header, dialed with the Layer's
// Dial (so TLS stays TLS) and carrying its Header and cluster ID. Any node
// running raftmembership.HandleChangeRequests answers, leader or not.
//
// Members reports what that one node sees: it follows no redirect and
// retries nothing. An answer other than 200 is a [*StatusError] (503 with
// Retry-After when nothing consumes the node's Requests in time), or a
// [*ClusterIDError] for a node in another cluster; a 200 whose body is not
// the membership view is an error saying so. ctx bounds the whole request;
// without a deadline, DefaultTimeout does. Close ends a call in flight
// with an error wrapping [ErrClosed].
func (l *Layer) Members(ctx context.Context, target raft.ServerAddress) (*Membership, error) {
	if l.ctx.Err() != nil {
		return nil, ErrClosed
	}
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	membership, err := l.members.members(ctx, l.upgrader.path, string(target))
	if err != nil && l.ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return membership, err
}

// members sends one GET for target's membership view and decodes it.
func (c *membershipClient) members(ctx context.Context, path, target string) (*Membership, error) {
	fail := func(err error) (*Membership, error) {
		return nil, fmt.Errorf("rafthttp: members via %s: %w", target, err)
	}
	if err := validHost(target); err != nil {
		return fail(err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		ctx = context.WithValue(ctx, requestDeadline{}, deadline)
	}
	// http, whatever the cluster: the Dial decides whether the bytes are
	// TLS (see attempt).
	location := "http://" + target + path
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return fail(err)
	}
	if c.header != nil {
		request.Header = c.header.Clone()
	}
	request.Header.Set("Accept", "application/json")
	// The Transport, not an http.Client: a redirect is reported, not
	// followed.
	response, err := c.transport.RoundTrip(request)
	if err != nil {
		return fail(&url.Error{Op: "Get", URL: location, Err: err})
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return fail(refusal(response, c.clusterID))
	}
	membership, err := decodeMembership(io.LimitReader(response.Body, maxMembershipBody))
	if err != nil {
		return fail(fmt.Errorf("the answer is not a membership view (Content-Type %q): %w", response.Header.Get("Content-Type"), err))
	}
	return membership, nil
}

// errNoServers is decodeMembership's refusal of JSON that has no servers
// list, which every membership view has, if empty.
var errNoServers = errors.New(`no "servers" list`)

// decodeMembership reads one membership view and nothing after it.
func decodeMembership(body io.Reader) (*Membership, error) {
	decoder := json.NewDecoder(body)
	var membership Membership
	if err := decoder.Decode(&membership); err != nil {
		return nil, err
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, errors.New("more data after the JSON object")
	}
	if membership.Servers == nil {
		return nil, errNoServers
	}
	for i, server := range membership.Servers {
		if server.ID == "" || server.Address == "" || strings.TrimSpace(server.Suffrage) == "" {
			return nil, fmt.Errorf("server %d lacks its id, address or suffrage", i)
		}
	}
	return &membership, nil
}
