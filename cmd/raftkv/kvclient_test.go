package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// kvClient is one client of the cluster: it sends each operation to a node
// (which redirects writes and consistent reads to the leader) and records
// what it got.
type kvClient struct {
	http    *http.Client
	history *history
	id      int
}

func newKVClient(h *history, timeout time.Duration) *kvClient {
	return &kvClient{
		// No idle connections: none outlives the test, and each operation
		// meets the network as it is now, cuts included.
		http:    &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout},
		history: h,
		id:      h.newClient(),
	}
}

// do runs one operation against base (http://host:port) and records it. A
// read that failed is not recorded: it changed nothing. It returns the
// output.
func (c *kvClient) do(ctx context.Context, base string, in kvInput) kvOutput {
	call := c.history.now()
	out, recorded := c.send(ctx, base, in)
	if !recorded {
		c.history.mu.Lock()
		c.history.notRecorded++
		c.history.mu.Unlock()
		return out
	}
	c.history.add(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: out, Return: c.history.now()})
	if out.Unknown {
		c.id = c.history.newClient()
	}
	return out
}

func (c *kvClient) send(ctx context.Context, base string, in kvInput) (out kvOutput, recorded bool) {
	url := base + "/kv/" + in.Key
	var body io.Reader
	method := http.MethodGet
	switch in.Op {
	case "get":
		url += "?consistent=true"
	case "put":
		method, body = http.MethodPut, strings.NewReader(in.Value)
	case "delete":
		method = http.MethodDelete
	}
	request, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		panic(err)
	}
	response, err := c.http.Do(request)
	if err != nil {
		// A request that never reached a node changed nothing; any
		// other failure leaves a write's fate unknown.
		return kvOutput{Unknown: true}, in.Op != "get" && !neverSent(err)
	}
	defer response.Body.Close()
	value, err := io.ReadAll(response.Body)
	switch {
	case err != nil:
		return kvOutput{Unknown: true}, in.Op != "get"
	case in.Op == "get" && response.StatusCode == http.StatusOK:
		return kvOutput{Value: string(value), Found: true}, true
	case in.Op == "get" && response.StatusCode == http.StatusNotFound:
		return kvOutput{}, true
	case in.Op == "get":
		return kvOutput{Unknown: true}, false
	case response.StatusCode == http.StatusNoContent:
		return kvOutput{}, true
	case response.StatusCode/100 == 3, response.StatusCode == http.StatusServiceUnavailable &&
		response.Header.Get(outcomeHeader) != "unknown":
		// raftkv redirects, or answers 503 without the header, only
		// for a write raft did not take.
		return kvOutput{Unknown: true}, false
	case response.StatusCode == http.StatusBadGateway && response.Header.Get(clustertest.UpstreamConnectTime) == "-":
		// nginx could not connect to the node: the write never left
		// the proxy.
		return kvOutput{Unknown: true}, false
	default:
		// A 503 saying so, or a proxy's 502 or 504 for a request that
		// reached the node.
		return kvOutput{Unknown: true}, true
	}
}

// neverSent reports whether err says the request could not have left the
// client: its connection was never made.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// workload is the operations clients choose from: few keys, so that
// operations collide, and writes to unique keys, each checked on every
// node once the cluster has healed.
type workload struct {
	keys []string
}

// next draws an operation; seq makes values unique.
func (w workload) next(random *rand.Rand, client, seq int) kvInput {
	key := w.keys[random.IntN(len(w.keys))]
	value := fmt.Sprintf("c%d-%d", client, seq)
	switch roll := random.IntN(100); {
	case roll < 45:
		return kvInput{Op: "get", Key: key}
	case roll < 80:
		return kvInput{Op: "put", Key: key, Value: value}
	case roll < 90:
		return kvInput{Op: "delete", Key: key}
	default:
		return kvInput{Op: "put", Key: "unique-" + value, Value: value}
	}
}

// runClient runs operations until ctx ends, each against a node that
// target picks.
func runClient(ctx context.Context, h *history, w workload, seed uint64, index int, target func(*rand.Rand) string) {
	random := rand.New(rand.NewPCG(seed, uint64(index)))
	client := newKVClient(h, 2*time.Second)
	for seq := 0; ctx.Err() == nil; seq++ {
		in := w.next(random, index, seq)
		out := client.do(ctx, target(random), in)
		if errors.Is(ctx.Err(), context.Canceled) {
			return
		}
		if in.Op == "put" && strings.HasPrefix(in.Key, "unique-") && !out.Unknown {
			h.mu.Lock()
			h.acked[in.Key] = in.Value
			h.mu.Unlock()
		}
	}
}
