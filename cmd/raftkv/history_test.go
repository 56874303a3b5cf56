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
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvInput is an operation a client asked raftkv for.
type kvInput struct {
	Op    string // "get", "put" or "delete"
	Key   string
	Value string // for put
}

// kvOutput is what the operation returned. A write whose outcome the
// client could not learn (a timeout, a connection error, a 5xx) is
// unknown: it may or may not have taken effect.
type kvOutput struct {
	Value   string
	Found   bool
	Unknown bool
}

// kvState is one key's value in the model; the history is checked key by
// key.
type kvState struct {
	Value   string
	Present bool
}

// kvModel is the sequential specification of one raftkv key: a get returns
// the last value put, or nothing after a delete.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := make(map[string][]porcupine.Operation)
		var keys []string
		for _, op := range history {
			key := op.Input.(kvInput).Key
			if _, ok := byKey[key]; !ok {
				keys = append(keys, key)
			}
			byKey[key] = append(byKey[key], op)
		}
		partitions := make([][]porcupine.Operation, 0, len(keys))
		for _, key := range keys {
			partitions = append(partitions, byKey[key])
		}
		return partitions
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		current, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.Op {
		case "get":
			return out.Found == current.Present && out.Value == current.Value, current
		case "put":
			return true, kvState{Value: in.Value, Present: true}
		default:
			return true, kvState{}
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.Op == "get" && out.Found:
			return fmt.Sprintf("get(%s) → %q", in.Key, out.Value)
		case in.Op == "get":
			return fmt.Sprintf("get(%s) → not found", in.Key)
		case out.Unknown:
			return fmt.Sprintf("%s(%s, %q) → unknown", in.Op, in.Key, in.Value)
		default:
			return fmt.Sprintf("%s(%s, %q) → ok", in.Op, in.Key, in.Value)
		}
	},
	DescribeState: func(state any) string {
		if s := state.(kvState); s.Present {
			return fmt.Sprintf("%q", s.Value)
		}
		return "absent"
	},
}

// history records every operation's call and return, in nanoseconds since
// the history began (monotonic).
type history struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
	// clients counts the client IDs handed out: a client that saw an
	// unknown outcome takes a new ID, as a crashed Jepsen process would,
	// since its unknown write stays open until the history ends.
	clients int
	// acked holds the writes to unique keys acknowledged with a 2xx: each
	// must be on every node once the cluster has healed.
	acked map[string]string
	// counts of outcomes, for the report; notRecorded counts failed reads
	// and writes refused before raft saw them.
	ok, unknown, notRecorded int
}

func newHistory() *history {
	return &history{start: time.Now(), acked: make(map[string]string)}
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) newClient() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

// add records one operation; an unknown outcome stays open until the end.
func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.Output.(kvOutput).Unknown {
		h.unknown++
	} else {
		h.ok++
	}
	h.ops = append(h.ops, op)
}

// operations returns the history for the checker. An unknown write's
// return is set after every other event, so it may be placed anywhere
// after its call, including after everything, where it changes nothing
// anyone saw.
//
// An unknown put whose value no read returned is left out: placing it
// last is always possible, so it cannot make a history unlinearizable,
// while every such open write multiplies porcupine's search. (Values are
// unique. Unknown deletes stay: a read that found nothing may need one.)
// It returns how many it left out.
func (h *history) operations() ([]porcupine.Operation, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	observed := make(map[string]bool)
	for _, op := range h.ops {
		if out := op.Output.(kvOutput); op.Input.(kvInput).Op == "get" && out.Found {
			observed[out.Value] = true
		}
	}
	end := h.now() + 1
	ops := make([]porcupine.Operation, 0, len(h.ops))
	pruned := 0
	for _, op := range h.ops {
		in := op.Input.(kvInput)
		if op.Output.(kvOutput).Unknown {
			if in.Op == "put" && !observed[in.Value] {
				pruned++
				continue
			}
			op.Return = end
		}
		ops = append(ops, op)
	}
	return ops, pruned
}

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
	default:
		// A 503 saying so, or a proxy's 502 or 504.
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
