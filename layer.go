package rafthttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/rafthttp/rafthttp/raftmembership"
)

// LayerConfig configures a [Layer]. Path, Addr and Handler are required; the
// other fields have documented defaults for their zero values.
type LayerConfig struct {
	// Path is where the Handler is mounted on every node's HTTP server, such
	// as "/raft". It must start with "/" and hold no query or fragment.
	Path string

	// Addr is this node's advertised address: the host:port its peers reach
	// its HTTP server at. Layer.Addr returns it, raft uses it as this node's
	// ServerAddress, and Join sends it to the cluster.
	Addr net.Addr

	// Handler is the Handler mounted at Path on this node's server. It
	// belongs to this Layer, which closes it on Close.
	Handler *Handler

	// Dial opens connections to peers, for raft and for Join and Leave.
	// Set at most one of Dial and DialContext; with neither, the Layer
	// dials plain TCP (NewDialContextTCP). Use NewDialContextTLS, or
	// NewDialTLS, for a TLS cluster.
	Dial Dial

	// DialContext is Dial with a context, which the Layer prefers: see
	// [DialContext].
	DialContext DialContext

	// Logger receives the Layer's logs. Nil means the Handler's logger.
	Logger hclog.Logger

	// EagerHandshake makes every Dial wait for the peer's 101 before it
	// returns, as the original rafthttp does.
	//
	// By default a Layer sends early data: from the 101 of its first dial to
	// a peer it learns whether the peer takes it, and later dials to that
	// peer return once connected. raft's first write then travels as the
	// body of the upgrade request, as much of it as fits one small TCP
	// segment with the request (raft's heartbeats and votes do), saving a
	// round trip; the rest follows the 101. The body is plain HTTP, which proxies
	// forward, and the peer confirms it in its 101. A failed upgrade
	// surfaces from the connection's first Read or Write rather than from
	// Dial, as the same *UpgradeError, and the raft request in it fails
	// (raft retries it); a refusal is never read as raft data. Original
	// nodes, and proxies that hide the answer, are dialed eagerly.
	//
	// When a dial with early data fails in a way early data may explain (a
	// 101 that does not confirm the body, a 400, 411 or 413, or the
	// connection cut before any answer), the peer is dialed eagerly for
	// five minutes and a warning is logged. Set EagerHandshake when
	// something between the nodes mishandles bodies on upgrade requests in
	// a way these checks cannot see, such as middleware in front of the
	// Handler that reads the body of GET requests, which makes each such
	// upgrade wait out the Handler's timeout.
	EagerHandshake bool

	// Header holds headers sent on every upgrade and membership request
	// the Layer makes, such as "Authorization: Bearer ..." for a peer whose
	// [HandlerConfig.Authorize] checks it. NewLayerWithConfig refuses
	// invalid names or values and the headers the protocol sets itself:
	// Host, Upgrade, Connection, Content-Length, Transfer-Encoding and any
	// Rafthttp-*. The map is copied. A peer's 401 or 403 comes back from
	// Dial, Join and Leave as a *StatusError with that code, and is not
	// retried.
	//
	// The headers travel in every upgrade request, and with early data
	// they take room from raft's first bytes in the request's one segment:
	// "Authorization: Bearer " and a token of 43 characters (32 random
	// bytes, base64) leave 1,009 bytes of raft data where there were
	// 1,076 (987 of 1,054 over TLS 1.3).
	Header http.Header

	// ClusterID names the cluster this node belongs to. When set, every
	// upgrade and membership request carries it, and a peer whose Handler
	// has another [HandlerConfig.ClusterID] refuses it with 412: Dial, the
	// first Read or Write of an early-data connection, Join and Leave then
	// return an error for which errors.Is(err, ErrClusterIDMismatch)
	// holds, naming both IDs, and it is not retried. Empty sends nothing,
	// as the original package does.
	ClusterID string

	// WebSocket makes the Layer dial with a WebSocket handshake (RFC 6455:
	// Upgrade: websocket, Sec-WebSocket-Version 13, a fresh
	// Sec-WebSocket-Key, and Sec-WebSocket-Protocol: raft) and carry raft's
	// stream as binary messages, masked from client to server, with no
	// extensions. Set it when something between the nodes forwards
	// WebSocket upgrades and no other kind, as Envoy and the meshes built
	// on it (Istio), CDNs and managed load balancers do: a raw upgrade
	// ("Upgrade: raft") through them fails, typically with a 400, 403 or
	// 426 from the proxy.
	//
	// Every dial goes this way: raft's connections and the check a leader
	// makes that a joiner can be reached. Joins, leaves and membership
	// views are plain HTTP requests, which such proxies forward anyway.
	// Header and ClusterID travel in the handshake, and a peer's Handler
	// applies Authorize and its cluster ID as for a raw upgrade.
	//
	// A Handler serves both forms on the same path with no setting of its
	// own, so a cluster may mix Layers with and without WebSocket; nodes
	// running the original package cannot serve a WebSocket dial (they
	// answer 400). A WebSocket dial never sends early data (RFC 6455
	// allows no data before the 101), so it waits for the 101 as
	// EagerHandshake does, and the connection costs a round trip more to
	// set up than a raw one. After that, replication runs within noise of
	// a raw connection but for large entries committed one at a time,
	// about 10 % slower: the dialing end masks what it sends, as RFC 6455
	// requires of clients (see BENCHMARKS.md). The connection
	// handed to raft behaves as a raw one, but for one thing: a Read or
	// Write that fails, a passed deadline's included, fails every later
	// one in that direction, which raft, closing a connection after any
	// error, never sees.
	WebSocket bool
}

// Layer is a [raft.StreamLayer] that carries raft traffic over HTTP
// upgrades: Dial asks a peer's [Handler] to switch an HTTP connection to raw
// raft traffic, and Accept returns the connections this node's Handler
// switched. Join and Leave ask the cluster, over HTTP, to change membership;
// Members asks one node for its view of it.
//
// Pass a Layer to raft.NewNetworkTransport. A Layer is safe for concurrent use.
type Layer struct {
	addr     net.Addr
	handler  *Handler
	logger   hclog.Logger
	conns    *connSet
	members  *membershipClient
	upgrader *upgrader

	// ctx ends on Close, canceling Join and Leave calls in flight.
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*Layer)(nil)
var _ raftmembership.Changer = (*Layer)(nil)

// NewLayer returns a Layer for the Handler mounted at path, advertising
// localAddr and dialing peers with dial (nil means plain TCP).
//
// NewLayer panics if path is not a valid absolute URL path or localAddr or
// handler is nil: these are programming errors, better caught at start-up
// than inside a raft goroutine. Use [NewLayerWithConfig] to get an error
// instead.
func NewLayer(path string, localAddr net.Addr, handler *Handler, dial Dial) *Layer {
	return NewLayerWithLogger(path, localAddr, handler, dial, nil)
}

// NewLayerWithLogger is [NewLayer] with a logger; nil means the Handler's.
// It panics on the same invalid arguments as NewLayer.
func NewLayerWithLogger(path string, localAddr net.Addr, handler *Handler, dial Dial, logger hclog.Logger) *Layer {
	layer, err := NewLayerWithConfig(LayerConfig{Path: path, Addr: localAddr, Handler: handler, Dial: dial, Logger: logger})
	if err != nil {
		panic(err)
	}
	return layer
}

// NewLayerWithConfig returns a Layer configured by config, or an error if
// config is invalid.
func NewLayerWithConfig(config LayerConfig) (*Layer, error) {
	path, err := requestPath(config.Path)
	if err != nil {
		return nil, err
	}
	if config.Addr == nil {
		return nil, errors.New("rafthttp: LayerConfig.Addr is required")
	}
	if config.Handler == nil {
		return nil, errors.New("rafthttp: LayerConfig.Handler is required")
	}
	dial := connector{dial: config.Dial, dialContext: config.DialContext}
	switch {
	case dial.dial != nil && dial.dialContext != nil:
		return nil, errors.New("rafthttp: LayerConfig: set Dial or DialContext, not both")
	case dial.dial == nil && dial.dialContext == nil:
		dial.dialContext = NewDialContextTCP()
	}
	logger := config.Logger
	if logger == nil {
		logger = config.Handler.logger
	}
	if err := checkUserHeader(config.Header); err != nil {
		return nil, err
	}
	if err := checkClusterIDValue(config.ClusterID); err != nil {
		return nil, fmt.Errorf("rafthttp: LayerConfig.ClusterID: %w", err)
	}
	header := requestHeader(config.Header, config.ClusterID)
	upgrader := &upgrader{dial: dial, path: path, extra: headerLines(header), header: header,
		clusterID: config.ClusterID, webSocket: config.WebSocket}
	if !config.EagerHandshake && !config.WebSocket {
		upgrader.peers = newPeerTable(logger)
	}
	ctx, cancel := context.WithCancel(context.Background())
	layer := &Layer{
		addr:     config.Addr,
		handler:  config.Handler,
		logger:   logger,
		conns:    newConnSet(logger),
		members:  newMembershipClient(dial, header, config.ClusterID),
		upgrader: upgrader,
		ctx:      ctx,
		cancel:   cancel,
	}
	config.Handler.setProbe(layer.probe)
	return layer, nil
}

// probe checks, for a join this node applies as the leader, that it can
// open a raft connection to the joiner at addr: the same dial raft will
// make, with this Layer's Dial, path, headers and cluster ID, and without
// early data, so the whole handshake is checked. The connection is closed
// at once; the joiner's raft sees it end before its first byte.
func (l *Layer) probe(ctx context.Context, addr raft.ServerAddress) error {
	// Close ends the check as it ends the Layer's other dials: a node
	// shutting down must not wait, nor keep raftmembership waiting, on a
	// joiner that takes the connection and never answers.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	probe := *l.upgrader
	probe.peers = nil
	deadline, _ := ctx.Deadline()
	conn, err := probe.dialUpgrade(ctx, deadline, string(addr))
	if err != nil {
		if l.ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return err
	}
	return conn.Close()
}

// requestPath validates the mount path and returns it escaped for the
// request line.
func requestPath(path string) (string, error) {
	if path == "" || path[0] != '/' {
		return "", fmt.Errorf("rafthttp: path %q must start with /", path)
	}
	if strings.ContainsAny(path, "?#") {
		return "", fmt.Errorf("rafthttp: path %q must not hold a query or fragment", path)
	}
	if strings.IndexFunc(path, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return "", fmt.Errorf("rafthttp: path %q holds control characters", path)
	}
	return (&url.URL{Path: path}).EscapedPath(), nil
}

// Accept waits for and returns the next connection a peer upgraded through
// the Handler. After Close it returns an error wrapping [net.ErrClosed].
func (l *Layer) Accept() (net.Conn, error) {
	conn, err := l.handler.accept()
	if err != nil {
		return nil, err
	}
	return l.conns.add(conn, l.handler.connClosed, l.handler.currentTimeout())
}

// Close closes the Handler, makes Accept, Dial, Join, Leave and Members
// return [ErrClosed], ends any check in progress that a joiner can be reached,
// and closes every upgraded connection the Layer handed to raft that is
// still open, in both directions, so no raft goroutine stays blocked
// reading one. Close is idempotent and always returns nil.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.handler.Close()
		l.conns.closeAll()
		l.members.close()
		l.logger.Debug("layer closed", "address", l.addr)
	})
	return nil
}

// Addr returns this node's advertised address.
func (l *Layer) Addr() net.Addr { return l.addr }

// Dial connects to the raft peer at addr over an HTTP upgrade. timeout
// bounds the connect, the request and the 101 together; zero or less bounds
// only the connect, by DefaultTimeout. raft calls Dial for every new
// connection. Close ends a Dial in flight at once, with an error wrapping
// [ErrClosed].
//
// To a peer known to take early data (see [LayerConfig.EagerHandshake]),
// Dial returns once connected: the request goes out with the first Write,
// and the 101 is read by the first Read or by a Write with more to send
// than the request holds. Each waits for the 101 under its own deadline,
// the read or the write deadline; until the caller sets them, the deadline
// timeout set at Dial bounds both. A failed upgrade surfaces there, as the
// *UpgradeError Dial would have returned.
func (l *Layer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	return l.dialUpgrade(l.ctx, deadline, addr)
}

// DialContext is Dial bounded by ctx: its deadline, if any, covers the
// whole handshake, and canceling it (or closing the Layer) ends the dial at
// once. The connection it returns does not depend on ctx after it returns:
// a handshake left to the first Write and Read, as with early data, is
// bounded by ctx's deadline, if it has one, but not ended by its
// cancellation.
func (l *Layer) DialContext(ctx context.Context, addr raft.ServerAddress) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	deadline, _ := ctx.Deadline()
	return l.dialUpgrade(ctx, deadline, addr)
}

// dialUpgrade dials addr under ctx, which Close cancels, and tracks the
// connection so that Close can close it.
func (l *Layer) dialUpgrade(ctx context.Context, deadline time.Time, addr raft.ServerAddress) (net.Conn, error) {
	if l.ctx.Err() != nil {
		return nil, ErrClosed
	}
	conn, err := l.upgrader.dialUpgrade(ctx, deadline, string(addr))
	if err != nil {
		if l.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		l.logger.Debug("upgrade dial failed", "address", addr, "error", err)
		return nil, err
	}
	return l.conns.add(conn, nil, 0)
}

// Join asks the node at addr to add this node, under id and with its
// advertised address, as a voter. Non-leaders redirect the request to the
// leader; while no leader is known the request is retried, all within
// timeout.
func (l *Layer) Join(id raft.ServerID, addr raft.ServerAddress, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.JoinContext(ctx, id, addr)
}

// JoinContext is Join bounded by ctx rather than a timeout.
func (l *Layer) JoinContext(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return l.change(ctx, raftmembership.JoinRequest, id, addr)
}

// JoinNonvoterContext is JoinContext for a non-voter: this node receives the
// log but does not vote or count towards quorum.
func (l *Layer) JoinNonvoterContext(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return l.change(ctx, raftmembership.JoinNonvoterRequest, id, addr)
}

// Leave asks the node at addr to remove the server with the given id from
// the cluster, following redirects and retrying as Join does.
func (l *Layer) Leave(id raft.ServerID, addr raft.ServerAddress, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.LeaveContext(ctx, id, addr)
}

// LeaveContext is Leave bounded by ctx rather than a timeout.
func (l *Layer) LeaveContext(ctx context.Context, id raft.ServerID, addr raft.ServerAddress) error {
	return l.change(ctx, raftmembership.LeaveRequest, id, addr)
}

func (l *Layer) change(ctx context.Context, kind raftmembership.ChangeRequestKind, id raft.ServerID, target raft.ServerAddress) error {
	if l.ctx.Err() != nil {
		return ErrClosed
	}
	// Close cancels calls in flight.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	err := l.members.change(ctx, kind, l.upgrader.path, id, l.addr.String(), string(target))
	if err != nil && l.ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}
