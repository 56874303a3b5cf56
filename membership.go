package rafthttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp/raftmembership"
)

const (
	// maxRedirects bounds how many redirects one attempt follows. Two are
	// enough in a settled cluster (follower, then leader); more allows for a
	// leadership change mid-request, fewer than this is a loop.
	maxRedirects = 5

	// The first retry waits about minBackoff, doubling up to maxBackoff, each
	// wait jittered so that nodes started together do not retry in step.
	minBackoff = 25 * time.Millisecond
	maxBackoff = time.Second

	// maxDrain bounds how much of a response body is read before the
	// connection is closed.
	maxDrain = 64 << 10
)

// ChangeMembership asks the node at target to apply a membership change:
// kind JoinRequest or JoinNonvoterRequest to add the server id at address,
// LeaveRequest to remove id. path is where the Handler is mounted and dial
// opens connections. The request follows redirects to the leader and is
// retried while the cluster has no leader or the node cannot be reached, all
// within timeout.
func ChangeMembership(kind raftmembership.ChangeRequestKind, path string, dial Dial, id raft.ServerID, address, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return ChangeMembershipContext(ctx, kind, path, dial, id, address, target)
}

// ChangeMembershipContext is ChangeMembership bounded by ctx. Errors from the
// remote node are returned as (or wrap) a [*StatusError]; a request that ran
// out of time wraps ctx's error and says what the last attempt got.
func ChangeMembershipContext(ctx context.Context, kind raftmembership.ChangeRequestKind, path string, dial Dial, id raft.ServerID, address, target string) error {
	escaped, err := requestPath(path)
	if err != nil {
		return err
	}
	if dial == nil {
		dial = NewDialTCP()
	}
	client := newMembershipClient(connector{dial: dial}, nil, "")
	defer client.close()
	return client.change(ctx, kind, escaped, id, address, target)
}

// membershipClient sends join and leave requests. Its http.Transport dials
// through the Layer's Dial for both http and https URLs: the Dial already
// speaks TLS in a TLS cluster, so a redirect to an https leader must not add
// a second TLS layer, and one to an http URL must not drop the first. It
// follows redirects itself (see attempt), and so sends each request with
// the Transport rather than an http.Client, which would parse a 3xx's
// Location first and fail on a bad one without a word of the status.
type membershipClient struct {
	transport *http.Transport
	// header goes on every request: the user's headers and the cluster ID.
	header http.Header
	// clusterID is this node's, to name in a mismatch.
	clusterID string
}

func newMembershipClient(dial connector, header http.Header, clusterID string) *membershipClient {
	dialContext := func(ctx context.Context, _, addr string) (net.Conn, error) {
		// net/http dials under a context stripped of the request's
		// deadline (a connection may outlive its request), but with its
		// values: the deadline travels as one.
		deadline, _ := ctx.Value(requestDeadline{}).(time.Time)
		return dial.connect(ctx, addr, deadline)
	}
	transport := &http.Transport{
		Proxy:          nil, // peers are dialed directly, as raft dials them
		DialContext:    dialContext,
		DialTLSContext: dialContext,
		// Membership changes are rare: a connection per request, closed
		// once its answer is read, leaves nothing idle behind.
		DisableKeepAlives: true,
	}
	return &membershipClient{header: header, clusterID: clusterID, transport: transport}
}

func (c *membershipClient) close() { c.transport.CloseIdleConnections() }

// requestDeadline is the context key under which a membership request
// carries its deadline to the Dial.
type requestDeadline struct{}

// change sends the request to target, following redirects and retrying
// what may succeed later until ctx ends.
func (c *membershipClient) change(ctx context.Context, kind raftmembership.ChangeRequestKind, path string, id raft.ServerID, address, target string) error {
	method, query, err := membershipQuery(kind, id, address)
	if err != nil {
		return err
	}
	if err := validHost(target); err != nil {
		return fmt.Errorf("rafthttp: %s %s via %s: %w", kind, id, target, err)
	}
	start := time.Now()
	backoff := minBackoff
	// last is the most recent answer that was not just the context ending,
	// which is what the caller needs to see when time runs out mid-request.
	var last error
	gaveUp := func(attempts int) error {
		if last == nil {
			return fmt.Errorf("rafthttp: %s %s via %s: gave up after %d attempts in %v: %w",
				kind, id, target, attempts, time.Since(start).Round(time.Millisecond), ctx.Err())
		}
		return fmt.Errorf("rafthttp: %s %s via %s: gave up after %d attempts in %v: %w; last attempt: %w",
			kind, id, target, attempts, time.Since(start).Round(time.Millisecond), ctx.Err(), last)
	}
	for attempt := 1; ; attempt++ {
		retryAfter, retry, err := c.attempt(ctx, method, path, query, target)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return gaveUp(attempt)
		}
		last = err
		if !retry {
			return fmt.Errorf("rafthttp: %s %s via %s: %w", kind, id, target, err)
		}
		wait := jitter(backoff)
		// Retry-After is the Handler's hint for generic clients; this
		// client's own backoff is shorter early on, to catch an election
		// that settles in milliseconds, and Retry-After caps it after that.
		if retryAfter > 0 && retryAfter < wait {
			wait = retryAfter
		}
		backoff = min(2*backoff, maxBackoff)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return gaveUp(attempt)
		case <-timer.C:
		}
	}
}

// membershipQuery returns the method and query string for a change.
func membershipQuery(kind raftmembership.ChangeRequestKind, id raft.ServerID, address string) (string, string, error) {
	if id == "" {
		return "", "", errors.New("rafthttp: membership change needs a server ID")
	}
	values := url.Values{"id": {string(id)}}
	switch kind {
	case raftmembership.JoinRequest, raftmembership.JoinNonvoterRequest:
		if address == "" {
			return "", "", errors.New("rafthttp: join needs the joining server's address")
		}
		values.Set("address", address)
		if kind == raftmembership.JoinNonvoterRequest {
			values.Set("voter", "false")
		}
		return http.MethodPost, values.Encode(), nil
	case raftmembership.LeaveRequest:
		return http.MethodDelete, values.Encode(), nil
	default:
		return "", "", fmt.Errorf("rafthttp: unknown membership change kind %v", kind)
	}
}

// attempt sends one request and follows its redirects. It returns the
// error, whether trying again later may help, and the server's Retry-After.
func (c *membershipClient) attempt(ctx context.Context, method, path, query, target string) (retryAfter time.Duration, retry bool, err error) {
	// The first hop is always http: the Dial decides whether the bytes are
	// TLS, and a TLS node redirects with https itself.
	location := "http://" + target + path + "?" + query
	if deadline, ok := ctx.Deadline(); ok {
		ctx = context.WithValue(ctx, requestDeadline{}, deadline)
	}
	for hop := 0; hop <= maxRedirects; hop++ {
		request, err := http.NewRequestWithContext(ctx, method, location, nil)
		if err != nil {
			return 0, false, err
		}
		if c.header != nil {
			request.Header = c.header.Clone()
		}
		response, err := c.transport.RoundTrip(request)
		if err != nil {
			// Said as an http.Client says it: which request failed.
			err = &url.Error{Op: method[:1] + strings.ToLower(method[1:]), URL: location, Err: err}
			return 0, transient(err), err
		}
		var refused error
		if status := response.StatusCode; status < 200 || status >= 300 {
			refused = refusal(response, c.clusterID)
		}
		io.Copy(io.Discard, io.LimitReader(response.Body, maxDrain))
		response.Body.Close()
		switch status := response.StatusCode; {
		case refused == nil:
			return 0, false, nil
		case status == http.StatusTemporaryRedirect || status == http.StatusPermanentRedirect:
			// Location has no scheme when a rafthttp Handler sends it;
			// resolved against this request's URL it keeps the scheme
			// this client chose (see DESIGN.md).
			next, err := response.Location()
			if err != nil {
				return 0, false, fmt.Errorf("redirect from %s: %w", request.URL.Host, err)
			}
			location = next.String()
		case status == http.StatusServiceUnavailable:
			return parseRetryAfter(response.Header.Get("Retry-After")), true, refused
		default:
			return 0, false, refused
		}
	}
	// Redirects that go round in circles mean the nodes disagree on the
	// leader, which an election settles.
	return 0, true, fmt.Errorf("more than %d redirects", maxRedirects)
}

// transient reports whether a failed request may succeed if sent again: a
// node restarting refuses or resets connections, but a certificate the
// cluster does not trust will not become trusted.
func transient(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		invalid          x509.CertificateInvalidError
		hostname         x509.HostnameError
		verification     *tls.CertificateVerificationError
		record           tls.RecordHeaderError
	)
	return !errors.As(err, &unknownAuthority) && !errors.As(err, &invalid) &&
		!errors.As(err, &hostname) && !errors.As(err, &verification) &&
		!errors.As(err, &record) &&
		// net/http reports a TLS client talking to a plain server this way.
		!errors.Is(err, http.ErrSchemeMismatch)
}

// parseRetryAfter reads a Retry-After given in seconds; dates are not worth
// supporting for waits this short.
func parseRetryAfter(value string) time.Duration {
	seconds, err := strconv.Atoi(value)
	if err != nil || seconds < 0 {
		return 0
	}
	return time.Duration(seconds) * time.Second
}

// jitter returns a duration drawn evenly from [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
