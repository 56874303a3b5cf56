package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/raftmembership"
)

const (
	// raftPath is where every node serves raft and membership requests.
	raftPath = "/raft"

	// defaultMaxValue is the largest value a PUT may carry.
	defaultMaxValue = 1 << 20

	// defaultSnapshotThreshold is how many log entries since the last
	// snapshot make raft take another. Lower than raft's 8192 so that a
	// small cluster (and the demo) really snapshots and restores.
	defaultSnapshotThreshold = 512

	// applyTimeout bounds one write.
	applyTimeout = 10 * time.Second

	// joinTimeout bounds the whole join at start-up, over every -join
	// address.
	joinTimeout = 2 * time.Minute

	// maxClusterID is the longest cluster ID rafthttp sends.
	maxClusterID = 256

	// readTimeout bounds the reading of a whole request, body included
	// (a 1 MiB value at 35 KB/s), and idleTimeout how long a kept-alive
	// connection may wait for its next request. See startNode.
	readTimeout = 30 * time.Second
	idleTimeout = 2 * time.Minute

	// defaultSnapshotInterval is how often raft checks the snapshot
	// threshold. raft's own default (two to four minutes) would leave the
	// threshold unchecked for the life of a short-lived node.
	defaultSnapshotInterval = 5 * time.Second

	// storeLockTimeout bounds the wait for the lock on the data
	// directory's raft.db, which another process may hold: it is in use,
	// and waiting longer will not help.
	storeLockTimeout = 5 * time.Second

	// storeLockPoll is how long one attempt to open raft.db waits for the
	// lock; between attempts a cancelled start-up gets its say.
	storeLockPoll = 200 * time.Millisecond

	// removalPoll is how often a node checks that it is still in raft's
	// configuration, and removalQuiet how long a node missing from it
	// must also have heard nothing from a leader to count as removed.
	removalPoll  = 250 * time.Millisecond
	removalQuiet = 3 * time.Second

	// exitRemoved is raftkv serve's exit status when the node was removed
	// from the cluster's configuration, by itself or by another member.
	exitRemoved = 3
)

// nodeConfig is what one node needs; serve fills it from flags and the
// demo directly.
type nodeConfig struct {
	ID        string
	Listen    string
	Advertise string
	DataDir   string
	Bootstrap bool
	Join      []string
	Nonvoter  bool
	// LeaveOnShutdown makes stop ask the cluster to remove this node first.
	LeaveOnShutdown bool

	TLSCert, TLSKey, TLSCA string

	// Token, if set, is required of every request to the node, raft's and
	// the API's, as "Authorization: Bearer <Token>", and sent to peers.
	Token bearerToken
	// ClusterID, if set, names the cluster: peers with another ID, or
	// none, are refused, and refuse this node.
	ClusterID string
	// WebSocket makes the node dial its peers in rafthttp's WebSocket mode
	// (LayerConfig.WebSocket), for proxies that forward WebSocket
	// upgrades alone. The node serves both forms whatever it says.
	WebSocket bool

	MaxValue          int64
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks the threshold; zero means
	// defaultSnapshotInterval.
	SnapshotInterval time.Duration
	// ReadTimeout bounds the reading of one request, body included; zero
	// means readTimeout.
	ReadTimeout time.Duration

	Logger hclog.Logger

	// hooks let tests reach into what startNode builds.
	hooks nodeHooks
}

// nodeHooks are for tests. Each, if set, sees one part as startNode builds
// it and returns what the node uses instead.
type nodeHooks struct {
	// listener wraps the node's listener (under TLS, if any).
	listener func(net.Listener) net.Listener
	// dial wraps how the node dials its peers for raft.
	dial func(rafthttp.DialContext) rafthttp.DialContext
	// handler wraps the rafthttp Handler where the mux serves it.
	handler func(http.Handler) http.Handler
	// raft adjusts the raft configuration.
	raft func(*raft.Config)
}

// node is one running raftkv server: raft, its transport over rafthttp, and
// the HTTP server that carries both raft and the key-value API.
type node struct {
	config    nodeConfig
	logger    hclog.Logger
	listener  net.Listener
	server    *http.Server
	handler   *rafthttp.Handler
	layer     *rafthttp.Layer
	transport *raft.NetworkTransport
	raft      *raft.Raft
	fsm       *kvFSM
	reads     *consistentReads
	store     *raftboltdb.BoltStore
	snapshots *raft.FileSnapshotStore
	// existing says the data directory already held raft state at start.
	existing bool

	serveDone      chan struct{}
	membershipDone chan struct{}
	// raftDown is closed once raft has shut down; see await.
	raftDown chan struct{}

	// removed receives, once, why the node is no longer a member of the
	// cluster; see watchRemoval. stopping ends the watch, and watchDone
	// is closed when it has ended.
	removed    chan string
	stopping   chan struct{}
	watchDone  chan struct{}
	wasRemoved atomic.Bool
}

// advertiseAddr is the address peers reach this node at.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// startNode starts a node: it opens the data directory, listens, starts
// raft, and bootstraps or joins when the data directory is new. ctx bounds
// the join. On error everything started so far is stopped.
func startNode(ctx context.Context, config nodeConfig) (_ *node, err error) {
	if config.Logger == nil {
		config.Logger = hclog.New(&hclog.LoggerOptions{Name: "raftkv"})
	}
	if config.MaxValue <= 0 {
		config.MaxValue = defaultMaxValue
	}
	if config.SnapshotThreshold == 0 {
		config.SnapshotThreshold = defaultSnapshotThreshold
	}
	if config.SnapshotInterval <= 0 {
		config.SnapshotInterval = defaultSnapshotInterval
	}
	if config.ReadTimeout <= 0 {
		config.ReadTimeout = readTimeout
	}
	n := &node{config: config, logger: config.Logger.With("id", config.ID), fsm: newKVFSM(),
		serveDone: make(chan struct{}), membershipDone: make(chan struct{}), raftDown: make(chan struct{}),
		removed: make(chan string, 1), stopping: make(chan struct{}), watchDone: make(chan struct{})}
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}
	}()

	serverTLS, clientTLS, err := loadTLS(config)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(config.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	n.logger.Debug("opening the data directory", "data", config.DataDir)
	n.store, err = openStore(ctx, config.DataDir)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { n.store.Close() })
	n.snapshots, err = raft.NewFileSnapshotStoreWithLogger(config.DataDir, 2, n.logger.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	n.existing, err = raft.HasExistingState(n.store, n.store, n.snapshots)
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	if !n.existing && !config.Bootstrap && len(config.Join) == 0 {
		return nil, usageError{"a new data directory needs -bootstrap or -join"}
	}

	n.listener, err = net.Listen("tcp", config.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	cleanups = append(cleanups, func() { n.listener.Close() })
	if config.hooks.listener != nil {
		n.listener = config.hooks.listener(n.listener)
	}
	advertise := config.Advertise
	if advertise == "" {
		advertise = n.listener.Addr().String()
	}
	// Logged now, not once the node has joined, which can take minutes:
	// whoever started it on port 0 learns here which port it got.
	n.logger.Info("listening", "listen", n.listener.Addr(), "advertise", advertise)
	if serverTLS != nil {
		n.listener = tls.NewListener(n.listener, serverTLS)
	}

	// With a CA, the TLS server has verified the client's certificate;
	// authorize checks that it did, and the token if there is one.
	mutualTLS := serverTLS != nil && serverTLS.ClientCAs != nil
	authorize := newAuthorizer(config.Token, mutualTLS)
	n.handler = rafthttp.NewHandlerWithConfig(rafthttp.HandlerConfig{
		Logger: n.logger.Named("rafthttp"), Authorize: authorize, ClusterID: config.ClusterID,
	})
	var dial rafthttp.DialContext
	if clientTLS != nil {
		dial = rafthttp.NewDialContextTLS(clientTLS)
	}
	if config.hooks.dial != nil {
		if dial == nil {
			dial = rafthttp.NewDialContextTCP()
		}
		dial = config.hooks.dial(dial)
	}
	var header http.Header
	if config.Token != "" {
		header = http.Header{"Authorization": {"Bearer " + string(config.Token)}}
	}
	n.layer, err = rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{
		Path: raftPath, Addr: advertiseAddr(advertise), Handler: n.handler, DialContext: dial,
		Header: header, ClusterID: config.ClusterID, WebSocket: config.WebSocket,
	})
	if err != nil {
		return nil, err
	}
	n.transport = newTransport(n.layer, n.logger.Named("transport"))
	cleanups = append(cleanups, func() { n.transport.Close() })

	raftConfig := raft.DefaultConfig()
	raftConfig.LocalID = raft.ServerID(config.ID)
	raftConfig.Logger = n.logger.Named("raft")
	raftConfig.SnapshotThreshold = config.SnapshotThreshold
	raftConfig.SnapshotInterval = config.SnapshotInterval
	// Keep enough log behind a snapshot for a briefly lagging follower to
	// catch up from the log rather than from a snapshot install.
	raftConfig.TrailingLogs = 1024
	if config.hooks.raft != nil {
		config.hooks.raft(raftConfig)
	}
	n.raft, err = raft.NewRaft(raftConfig, n.fsm, n.store, n.store, n.snapshots, n.transport)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.reads = newConsistentReads(n.raft, n.fsm)
	cleanups = append(cleanups, func() {
		n.raft.Shutdown().Error()
		close(n.raftDown)
		n.reads.close(time.Second)
	})
	go func() {
		defer close(n.membershipDone)
		raftmembership.HandleChangeRequestsWithConfig(n.raft, n.handler.Requests(),
			raftmembership.Config{Logger: n.logger.Named("membership")})
	}()

	// The Handler runs authorize itself, before anything else; every other
	// route, the key-value API and whatever matches nothing, passes the
	// same check first.
	api := http.NewServeMux()
	newAPI(n).register(api)
	mux := http.NewServeMux()
	var raftHandler http.Handler = n.handler
	if config.hooks.handler != nil {
		raftHandler = config.hooks.handler(raftHandler)
	}
	mux.Handle(raftPath, raftHandler)
	mux.Handle("/", requireAuthorized(authorize, n.logger.Named("api"), api))
	n.server = &http.Server{
		Handler: mux,
		// A client sending its request head slowly holds a connection.
		ReadHeaderTimeout: 10 * time.Second,
		// A stalled PUT body must not hold a goroutine and its buffer. A
		// server-wide bound rather than a deadline in the PUT handler: it
		// also covers the bodies net/http drains after a handler that did
		// not read them, and an upgrade's early data, while raft's
		// upgraded connections are untouched, since the Handler clears
		// the deadline when it takes a connection over. It must exceed
		// the longest wait of any handler (the Handler's Timeout and
		// applyTimeout, 10 s): net/http cancels a request's context when
		// the deadline passes while its handler runs.
		ReadTimeout: config.ReadTimeout,
		IdleTimeout: idleTimeout,
		// Raft and the API need a few hundred bytes of headers; the
		// default of 1 MiB per request is only room for abuse.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       n.logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	go func() {
		defer close(n.serveDone)
		n.server.Serve(n.listener)
	}()
	cleanups = append(cleanups, func() { n.server.Close(); <-n.serveDone })

	n.logStart()
	switch {
	case n.existing && len(config.Join) > 0:
		// Joins are idempotent: asking again updates an address that
		// changed since the last start, and lets a removed node back in.
		if err := n.join(ctx, config.Join); err != nil {
			var refused *joinRefusedError
			if ctx.Err() != nil || errors.As(err, &refused) {
				return nil, err
			}
			// The node still has its state and may well be a member:
			// it serves rather than give up.
			n.logger.Warn("could not join again; resuming with the stored configuration", "error", err)
		}
	case n.existing:
	case config.Bootstrap:
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
			{ID: raftConfig.LocalID, Address: raft.ServerAddress(advertise), Suffrage: raft.Voter},
		}}).Error()
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	default:
		if err := n.join(ctx, config.Join); err != nil {
			return nil, err
		}
	}
	go n.watchRemoval()
	n.logger.Info("serving", "listen", n.listener.Addr(), "advertise", advertise, "tls", serverTLS != nil,
		"client-certificates", mutualTLS,
		"token", config.Token != "", "cluster-id", config.ClusterID, "websocket", config.WebSocket)
	return n, nil
}

// openStore opens the raft store in dataDir. Another process holding it
// fails the open after storeLockTimeout with an error naming the directory;
// ctx ending fails it at once.
func openStore(ctx context.Context, dataDir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dataDir, "raft.db")
	options := *bbolt.DefaultOptions
	// bbolt waits for the file lock forever by default.
	options.Timeout = storeLockPoll
	deadline := time.Now().Add(storeLockTimeout)
	for {
		store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &options})
		switch {
		case err == nil:
			return store, nil
		case !errors.Is(err, bbolt.ErrTimeout):
			return nil, fmt.Errorf("open raft store %s: %w", path, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("open raft store %s: %w", path, ctx.Err())
		case time.Now().After(deadline):
			return nil, fmt.Errorf("data directory %s is in use by another process: %s stayed locked for %v", dataDir, path, storeLockTimeout)
		}
	}
}

// logStart says in one line what the node found in its data directory and
// what it does with it.
func (n *node) logStart() {
	found, action := "new", ""
	if n.existing {
		found = "existing"
	}
	join := strings.Join(n.config.Join, ",")
	switch {
	case n.existing && len(n.config.Join) > 0:
		action = "resuming, and asking to join again via " + join
	case n.existing && n.config.Bootstrap:
		action = "resuming (not bootstrapping: the data directory holds a cluster already)"
	case n.existing:
		action = "resuming"
	case n.config.Bootstrap:
		action = "bootstrapping a new cluster"
	default:
		action = "joining via " + join
	}
	n.logger.Info("starting", "data", n.config.DataDir, "found", found,
		"last-index", n.raft.LastIndex(), "term", n.raft.Stats()["term"], "action", action)
}

// watchRemoval tells n.removed why, once this node is no longer a member
// of the cluster:
//   - raft has shut down (a leader that removes itself does);
//   - raft's configuration does not list this node, and no leader has been
//     in touch for removalQuiet. The quiet period tells a removed node,
//     which the leader no longer contacts, from one the leader is adding or
//     bringing up to date, which replays older configurations without
//     itself: a new joiner, or a removed node rejoining;
//   - no leader has been in touch for removalQuiet, and the leader, asked
//     for its membership view, does not list this node. A leader hands a removed
//     follower the configuration without it only as a best effort: a
//     follower that missed it still lists itself, and would otherwise
//     campaign in vain forever.
func (n *node) watchRemoval() {
	defer close(n.watchDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	id := raft.ServerID(n.config.ID)
	started := time.Now()
	var asked time.Time
	ticker := time.NewTicker(removalPoll)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		reason := ""
		if n.raft.State() == raft.Shutdown {
			reason = "raft has shut down: the node removed itself from the cluster"
		} else {
			future := n.raft.GetConfiguration()
			if future.Error() != nil {
				continue // raft is shutting down: the next round says so.
			}
			servers := future.Configuration().Servers
			listed := slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == id })
			heard := n.raft.LastContact()
			if heard.Before(started) {
				heard = started
			}
			// A leader hears from no leader, and needs no word from one.
			quiet := time.Since(heard) > removalQuiet && n.raft.State() != raft.Leader
			switch {
			case !quiet || len(servers) == 0:
			case !listed:
				reason = "the cluster's configuration no longer lists this node"
			case time.Since(asked) > removalQuiet:
				asked = time.Now()
				if n.leaderDropped(ctx, servers) {
					reason = "the leader's configuration no longer lists this node"
				}
			}
		}
		if reason != "" {
			n.wasRemoved.Store(true)
			n.removed <- reason
			return
		}
	}
}

// leaderDropped asks the servers, and the leader they name, for their
// membership view, and reports whether the leader's lacks this node. Only
// the leader's word counts: a lagging follower may not list a node added
// recently.
func (n *node) leaderDropped(ctx context.Context, servers []raft.Server) bool {
	var addresses []raft.ServerAddress
	for _, server := range servers {
		if server.ID != raft.ServerID(n.config.ID) {
			addresses = append(addresses, server.Address)
		}
	}
	for i := 0; i < len(addresses) && ctx.Err() == nil; i++ {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		membership, err := n.layer.Members(attempt, addresses[i])
		cancel()
		if err != nil {
			n.logger.Debug("ask a peer for its membership", "peer", addresses[i], "error", err)
			continue
		}
		switch {
		case membership.Leader == nil:
		case membership.Leader.Address == addresses[i]:
			return !slices.ContainsFunc(membership.Servers, func(s raftmembership.Server) bool {
				return s.ID == raft.ServerID(n.config.ID)
			})
		case !slices.Contains(addresses, membership.Leader.Address):
			addresses = append(addresses, membership.Leader.Address)
		}
	}
	return false
}

// join asks the members in turn to add this node until one succeeds. A
// member that fails in a way retrying will not fix (a 4xx, an untrusted
// certificate) is not asked again. A refusal of this node's token or
// cluster ID ends the join at once: every member of a cluster shares
// them, so the others would refuse too, and the reason is the error.
func (n *node) join(ctx context.Context, members []string) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	id := raft.ServerID(n.config.ID)
	// last holds each member's latest failure, so the final error names
	// every member once.
	last := make(map[string]error, len(members))
	pending := members
	for len(pending) > 0 && ctx.Err() == nil {
		var again []string
		for _, member := range pending {
			attempt, cancelAttempt := context.WithTimeout(ctx, 10*time.Second)
			var err error
			if n.config.Nonvoter {
				err = n.layer.JoinNonvoterContext(attempt, id, raft.ServerAddress(member))
			} else {
				err = n.layer.JoinContext(attempt, id, raft.ServerAddress(member))
			}
			// The join retries what may succeed later until its context
			// ends; an error before that is one retrying will not fix.
			final := err != nil && attempt.Err() == nil
			cancelAttempt()
			if err == nil {
				n.logger.Info("joined the cluster", "via", member)
				return nil
			}
			if refused := joinRefusal(member, err); refused != nil {
				return refused
			}
			n.logger.Warn("join failed", "via", member, "error", err)
			last[member] = err
			if !final {
				again = append(again, member)
			}
		}
		pending = again
		if len(pending) == 0 {
			break
		}
		// Every round already waited out the join's own retries; pause
		// briefly so a member that fails fast is not hammered.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	var errs []error
	for _, member := range members {
		if err, ok := last[member]; ok {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("join: %w", ctx.Err())
	}
	return fmt.Errorf("join: no member added this node: %w", errors.Join(errs...))
}

// joinRefusedError is a member's refusal of this node's credentials or
// cluster ID, in one line that says which flag to check.
type joinRefusedError struct {
	member, reason string
	err            error
}

func (e *joinRefusedError) Error() string { return "join " + e.member + " refused: " + e.reason }

func (e *joinRefusedError) Unwrap() error { return e.err }

// joinRefusal returns the error for a member that refused this node's
// token, certificate or cluster ID (401, 403, 412), or nil for any other
// failure.
func joinRefusal(member string, err error) error {
	var mismatch *rafthttp.ClusterIDError
	if errors.As(err, &mismatch) {
		return &joinRefusedError{member: member, reason: mismatch.Error() + ": check -cluster-id", err: err}
	}
	var status *rafthttp.StatusError
	if !errors.As(err, &status) {
		return nil
	}
	reason := fmt.Sprintf("%d %s", status.StatusCode, http.StatusText(status.StatusCode))
	switch status.StatusCode {
	case http.StatusUnauthorized:
		reason += ": check -token-file"
	case http.StatusForbidden:
		if status.Body != "" {
			reason += ": " + status.Body
		}
	default:
		return nil
	}
	return &joinRefusedError{member: member, reason: reason, err: err}
}

// stop shuts the node down: leave first if asked, then raft, the transport
// (with the Layer and its Handler), and the HTTP server.
func (n *node) stop() {
	close(n.stopping)
	<-n.watchDone
	if n.config.LeaveOnShutdown && !n.wasRemoved.Load() {
		// Sent to this node itself: it redirects to the leader, or hands
		// leadership over first if it is the leader.
		err := n.layer.Leave(raft.ServerID(n.config.ID), raft.ServerAddress(n.layer.Addr().String()), 30*time.Second)
		if err != nil {
			n.logger.Error("leave failed", "error", err)
		} else {
			n.logger.Info("left the cluster")
		}
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		n.logger.Error("raft shutdown", "error", err)
	}
	close(n.raftDown)
	if !n.reads.close(5 * time.Second) {
		n.logger.Warn("a consistent read's barrier outlived raft")
	}
	n.transport.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.server.Shutdown(ctx); err != nil {
		n.server.Close()
	}
	<-n.serveDone
	<-n.membershipDone
	if err := n.store.Close(); err != nil {
		n.logger.Error("close raft store", "error", err)
	}
}

// newTransport returns raft's transport over stream, with pipelining off.
//
// raft v1.7's pipelined replication can wedge: when a follower rejects an
// append, the pipeline's decoder returns, and the sender may still send
// once more into a channel that nobody drains. Replication to that
// follower then stops for good, while heartbeats hide it (no election
// comes to the rescue), and raft.Shutdown never returns. With the default
// MaxRPCsInFlight of 2 the channels are unbuffered and each rejection
// wedges it about half the time; the linearizability test found it.
// MaxRPCsInFlight 1 sends each append and waits for its answer, which
// raft's own measurements (hashicorp/raft#541) found costs next to
// nothing. TestReplicationSurvivesRejectedAppends covers it.
func newTransport(stream raft.StreamLayer, logger hclog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: logger,
		MaxRPCsInFlight: 1,
	})
}

// await returns the error of a future raft was handed, once raft answers
// or has shut down. hashicorp/raft v1.7 may never answer an Apply in flight
// when it shuts down (hashicorp/raft#498): a write's request would then
// wait forever, and with it http.Server.Shutdown. Once raft is down, await
// answers raft.ErrRaftShutdown, which the API reports as an unknown
// outcome; the goroutine still waiting on the future ends if raft answers
// after all.
func (n *node) await(future raft.Future) error {
	answer := make(chan error, 1)
	go func() { answer <- future.Error() }()
	select {
	case err := <-answer:
		return err
	case <-n.raftDown:
		select {
		case err := <-answer:
			return err
		default:
			return raft.ErrRaftShutdown
		}
	}
}

// leader returns the leader's address and ID, or empty strings if none is
// known.
func (n *node) leader() (string, string) {
	address, id := n.raft.LeaderWithID()
	return string(address), string(id)
}

// loadTLS builds the server and client TLS configurations from the flags;
// both are nil without -tls-cert.
func loadTLS(config nodeConfig) (server, client *tls.Config, err error) {
	if config.TLSCert == "" {
		return nil, nil, nil
	}
	certificate, err := tls.LoadX509KeyPair(config.TLSCert, config.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{certificate}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{MinVersion: tls.VersionTLS12}
	if config.TLSCA != "" {
		pem, err := os.ReadFile(config.TLSCA)
		if err != nil {
			return nil, nil, fmt.Errorf("read TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("read TLS CA %s: no PEM certificates", config.TLSCA)
		}
		// With a CA, the cluster is closed: peers (and API clients) must
		// present a certificate it signed, and we present ours to them.
		server.ClientCAs = pool
		server.ClientAuth = tls.RequireAndVerifyClientCert
		client.RootCAs = pool
		client.Certificates = []tls.Certificate{certificate}
	}
	return server, client, nil
}
