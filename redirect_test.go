package rafthttp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestClusterRedirectsAnyClientFollows joins three nodes to a TLS cluster
// through a follower, each with another kind of client, following the
// follower's redirect to the leader:
//
//   - the original package's membership client: an http.Client whose
//     Transport puts TLS inside its dials and that sends http:// URLs;
//   - a standard HTTPS client, trusting the cluster's CA, sending https://
//     URLs;
//   - rafthttp's own, Layer.Join.
//
// A Location with a scheme would fail one of the first two: http:// sends
// the standard client's request in the clear to a TLS port, https:// makes
// the original client wrap TLS in TLS. The follower's Location has none,
// so each client keeps its own.
func TestClusterRedirectsAnyClientFollows(t *testing.T) {
	ca := clustertest.NewCA(t)
	options := ca.Options(false)
	recorder := &clustertest.Recorder{}
	options.Wrap = recorder.Wrap
	cluster := clustertest.Start(t, 3, options)
	leader := cluster.WaitLeaderKnown()
	follower := cluster.Followers()[0]

	// post sends joiner's join to the follower with client, to a URL with
	// scheme, and fails unless the final answer is 200. A 503 (no leader
	// known: an election on a loaded machine) is retried, as any client of
	// a raft cluster must.
	post := func(t *testing.T, client *http.Client, scheme string, joiner *clustertest.Node) error {
		query := url.Values{"id": {string(joiner.ID)}, "address": {joiner.Addr}}.Encode()
		ctx, cancel := context.WithTimeout(t.Context(), clustertest.WaitTimeout)
		defer cancel()
		for {
			request, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+follower.Addr+clustertest.Path+"?"+query, nil)
			require.NoError(t, err)
			response, err := client.Do(request)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			switch {
			case response.StatusCode == http.StatusOK:
				return nil
			case response.StatusCode != http.StatusServiceUnavailable || ctx.Err() != nil:
				return fmt.Errorf("got %d: %s", response.StatusCode, body)
			}
			waitPast(time.Now().Add(50 * time.Millisecond))
		}
	}
	// The original package's client: http:// URLs, and a Transport whose
	// only dial is the cluster's, which puts TLS inside. An https://
	// Location would make the Transport add TLS on top of it.
	tlsDial := rafthttp.NewDialTLS(ca.ClientConfig(false))
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		return tlsDial(addr, clustertest.WaitTimeout)
	}
	original := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	standard := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, DisableKeepAlives: true}}

	for _, client := range []struct {
		name string
		join func(t *testing.T, joiner *clustertest.Node) error
	}{
		{name: "original client", join: func(t *testing.T, joiner *clustertest.Node) error {
			return post(t, original, "http", joiner)
		}},
		{name: "standard HTTPS client", join: func(t *testing.T, joiner *clustertest.Node) error {
			return post(t, standard, "https", joiner)
		}},
		{name: "Layer.Join", join: func(_ *testing.T, joiner *clustertest.Node) error {
			return joiner.Layer.Join(joiner.ID, raft.ServerAddress(follower.Addr), clustertest.WaitTimeout)
		}},
	} {
		// Started by the test, not the subtest: a member stopped when
		// its subtest ends would cost the cluster its quorum.
		joiner := clustertest.StartNode(t, raft.ServerID(strings.ReplaceAll(client.name, " ", "-")), options)
		t.Run(client.name, func(t *testing.T) {
			require.NoError(t, client.join(t, joiner))

			// The join to the follower, the one it redirected, and, if an
			// election or the machine's load got in the way, their retries:
			// every redirect has a Location without a scheme, and the last
			// request is the one the leader took.
			joins := recorder.Find(isJoinOf(joiner.ID))
			require.GreaterOrEqual(t, len(joins), 2, "the join to the follower and the one it redirected: %+v", joins)
			assert.Equal(t, follower.Addr, joins[0].Host)
			for i, join := range joins {
				if join.Status != http.StatusTemporaryRedirect {
					continue
				}
				assert.True(t, strings.HasPrefix(join.Location, "//"), "Location %q, want no scheme", join.Location)
				require.Less(t, i+1, len(joins), "a redirect nobody followed")
				assert.Equal(t, strings.TrimPrefix(join.Location, "//")[:len(joins[i+1].Host)], joins[i+1].Host, "the redirect was followed")
			}
			assert.Equal(t, http.StatusTemporaryRedirect, joins[0].Status)
			assert.True(t, strings.HasPrefix(joins[0].Location, "//"+leader.Addr+clustertest.Path+"?") || leader.Raft.State() != raft.Leader,
				"Location %q, want the leader's with no scheme", joins[0].Location)
			assert.Equal(t, http.StatusOK, joins[len(joins)-1].Status)
			for _, join := range joins {
				assert.True(t, join.TLS, "a join to %s came without TLS", join.Host)
			}
			clustertest.Eventually(t, func() error {
				servers, err := leader.Servers()
				if err != nil {
					return err
				}
				for _, server := range servers {
					if server.ID == joiner.ID && server.Address == raft.ServerAddress(joiner.Addr) && server.Suffrage == raft.Voter {
						return nil
					}
				}
				return fmt.Errorf("%s is not a voter in %v", joiner.ID, servers)
			})
		})
	}
	cluster.Apply("after the joins")
}
