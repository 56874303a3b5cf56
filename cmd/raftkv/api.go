package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// maxKeyLength bounds a key, in bytes.
const maxKeyLength = 512

// api serves the key-value HTTP API of one node.
type api struct {
	node *node
}

func newAPI(n *node) *api { return &api{node: n} }

func (a *api) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /kv/{key}", a.get)
	mux.HandleFunc("PUT /kv/{key}", a.put)
	mux.HandleFunc("DELETE /kv/{key}", a.delete)
	mux.HandleFunc("/kv/", func(w http.ResponseWriter, r *http.Request) {
		// Reached only by what the patterns above do not match: no key,
		// a key with a slash, or another method.
		switch key := strings.TrimPrefix(r.URL.Path, "/kv/"); {
		case key == "":
			http.Error(w, "raftkv: missing key: use /kv/{key}", http.StatusBadRequest)
		case strings.Contains(key, "/"):
			http.Error(w, "raftkv: a key cannot hold /", http.StatusBadRequest)
		default:
			w.Header().Set("Allow", "GET, PUT, DELETE")
			http.Error(w, "raftkv: use GET, PUT or DELETE on /kv/{key}", http.StatusMethodNotAllowed)
		}
	})
	mux.HandleFunc("GET /status", a.status)
	// The sink is installed now, before raft's first RPC, so that
	// /metrics counts from the start.
	processMetrics()
	mux.HandleFunc("GET /metrics", serveMetrics)
}

// checkKey returns why key is not acceptable, or "".
func checkKey(key string) string {
	switch {
	case key == "":
		return "empty key"
	case len(key) > maxKeyLength:
		return fmt.Sprintf("key longer than %d bytes", maxKeyLength)
	case !utf8.ValidString(key):
		return "key is not valid UTF-8"
	case strings.ContainsFunc(key, unicode.IsControl):
		return "key holds control characters"
	case strings.Contains(key, "/"):
		// Reachable as %2F; rejected so that a key is valid or not
		// whatever the URL's escaping.
		return "key holds /"
	case key == "." || key == "..":
		// Their literal forms are cleaned away by the ServeMux.
		return "key . or .. cannot be addressed"
	}
	return ""
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if reason := checkKey(key); reason != "" {
		http.Error(w, "raftkv: "+reason, http.StatusBadRequest)
		return
	}
	mode, reason := parseReadMode(r)
	if reason != "" {
		http.Error(w, "raftkv: "+reason, http.StatusBadRequest)
		return
	}
	if mode.consistent {
		// A linearizable read: only the leader can answer, once it has
		// confirmed it still leads and applied everything committed
		// before now. See consistentReads: nothing is written.
		if !a.leaderOnly(w, r) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), applyTimeout)
		err := a.node.reads.wait(ctx)
		cancel()
		if err != nil {
			a.raftError(w, r, err)
			return
		}
	} else {
		// A local read says how stale it may be, whatever its answer: a
		// 404 from a node cut off from its leader is as stale as a value.
		stale := a.node.staleness()
		stale.setHeaders(w.Header())
		if mode.maxStale > 0 {
			if reason := stale.within(mode.maxStale); reason != "" {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "raftkv: "+reason, http.StatusServiceUnavailable)
				return
			}
		}
	}
	value, ok := a.node.fsm.Get(key)
	if !ok {
		http.Error(w, "raftkv: no such key", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(value)))
	w.Write(value)
}

func (a *api) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if reason := checkKey(key); reason != "" {
		http.Error(w, "raftkv: "+reason, http.StatusBadRequest)
		return
	}
	limit := a.node.config.MaxValue
	if r.ContentLength > limit {
		http.Error(w, fmt.Sprintf("raftkv: value larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	// Redirect before reading the body, so a large value is not read twice.
	if !a.leaderOnly(w, r) {
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("raftkv: value larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "raftkv: read value: "+err.Error(), http.StatusBadRequest)
		return
	}
	a.apply(w, r, encodePut(key, value))
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if reason := checkKey(key); reason != "" {
		http.Error(w, "raftkv: "+reason, http.StatusBadRequest)
		return
	}
	if !a.leaderOnly(w, r) {
		return
	}
	a.apply(w, r, encodeDelete(key))
}

// outcomeHeader is set to "unknown" on a 503 for a write that raft may
// have committed: leadership was lost, or raft shut down, after the entry
// was handed to it. Without it, a failed write was not applied.
const outcomeHeader = "Raftkv-Outcome"

func (a *api) apply(w http.ResponseWriter, r *http.Request, command []byte) {
	future := a.node.raft.Apply(command, applyTimeout)
	if err := a.node.await(future); err != nil {
		if errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			// Never a redirect here: a client following it would send
			// the write again to the new leader, which may then apply it
			// a second time, after writes that followed the first.
			w.Header().Set(outcomeHeader, "unknown")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "raftkv: "+err.Error()+": the write may or may not have been applied", http.StatusServiceUnavailable)
			return
		}
		a.raftError(w, r, err)
		return
	}
	if err, ok := future.Response().(error); ok && err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// leaderOnly reports whether this node leads; if not, it has answered with a
// redirect to the leader, or 503 while no leader is known.
func (a *api) leaderOnly(w http.ResponseWriter, r *http.Request) bool {
	if a.node.raft.State() == raft.Leader {
		return true
	}
	leader, _ := a.node.leader()
	if leader == "" {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "raftkv: no leader known; retry", http.StatusServiceUnavailable)
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	location := url.URL{Scheme: scheme, Host: leader, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	http.Redirect(w, r, location.String(), http.StatusTemporaryRedirect)
	return false
}

// raftError answers a failed raft operation: leadership changes are worth
// retrying (503), anything else is the server's failure (500).
func (a *api) raftError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		if a.node.raft.State() != raft.Leader {
			a.leaderOnly(w, r)
			return
		}
		fallthrough
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		w.Header().Set("Retry-After", "1")
		http.Error(w, "raftkv: "+err.Error(), http.StatusServiceUnavailable)
	default:
		http.Error(w, "raftkv: "+err.Error(), http.StatusInternalServerError)
	}
}

// statusJSON is the body of GET /status. Its keys are part of the API.
// Leader and Servers are the Handler's membership view (GET /raft), read
// by the same function, raftmembership.ReadMembership.
type statusJSON struct {
	ID           string       `json:"id"`
	State        string       `json:"state"`
	Leader       *leaderJSON  `json:"leader"`
	Term         uint64       `json:"term"`
	AppliedIndex uint64       `json:"applied_index"`
	Servers      []serverJSON `json:"servers"`
}

// leaderJSON and serverJSON are raftmembership.Leader and Server, with
// plain strings for the fields the code here compares with strings.
type leaderJSON struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

type serverJSON struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
}

func (a *api) status(w http.ResponseWriter, _ *http.Request) {
	status, err := a.node.status()
	if err != nil {
		http.Error(w, "raftkv: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(status)
}

// status reports the node's view of the cluster.
func (n *node) status() (statusJSON, error) {
	membership, err := raftmembership.ReadMembership(n.raft)
	if err != nil {
		return statusJSON{}, err
	}
	term, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	status := statusJSON{
		ID:           n.config.ID,
		State:        n.raft.State().String(),
		Term:         term,
		AppliedIndex: n.raft.AppliedIndex(),
		Servers:      make([]serverJSON, 0, len(membership.Servers)),
	}
	if leader := membership.Leader; leader != nil {
		status.Leader = &leaderJSON{ID: string(leader.ID), Address: string(leader.Address)}
	}
	for _, server := range membership.Servers {
		status.Servers = append(status.Servers, serverJSON{
			ID: string(server.ID), Address: string(server.Address), Suffrage: server.Suffrage,
		})
	}
	return status, nil
}
