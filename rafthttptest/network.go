package rafthttptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rafthttp/rafthttp"
)

var (
	// ErrLinkCut is wrapped by the error of a dial across a cut link.
	ErrLinkCut = errors.New("rafthttptest: link is cut")
	// ErrNetworkClosed is wrapped by the error of a dial after
	// [Network.Close].
	ErrNetworkClosed = errors.New("rafthttptest: network closed")
)

// link is one direction between two named nodes.
type link struct{ from, to string }

func (l link) String() string { return l.from + "→" + l.to }

// delay is the latency and jitter added to one direction of a link.
type delay struct{ latency, jitter time.Duration }

// Network is a set of named nodes and the faults between them. Create one
// with [NewNetwork]; the zero value is not usable.
type Network struct {
	mu     sync.Mutex
	random *rand.Rand
	nodes  map[string]*Node
	// addrs maps every address a node is reached at to the node.
	addrs  map[string]*Node
	cut    map[link]bool
	delays map[link]delay
	paused map[string]bool
	conns  map[closer]struct{}
	// changed is closed and replaced whenever a fault is added or
	// removed, waking every connection that waits on one.
	changed chan struct{}
	closed  bool
}

// closer is a connection the Network tracks: those its nodes dialed and
// those their Handlers accepted.
type closer interface {
	reset()
	// touches reports whether the connection runs between a and b, or,
	// with b empty, whether either end is a.
	touches(a, b string) bool
	// lost reports whether the connection dropped bytes across l.
	lost(l link) bool
}

// NewNetwork returns an empty Network whose jitter is drawn from a source
// seeded with seed: a run with the same seed draws the same sequence of
// jitters. Which write gets which draw depends on the order in which
// connections write, which the scheduler decides.
func NewNetwork(seed uint64) *Network {
	return &Network{
		random:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nodes:   make(map[string]*Node),
		addrs:   make(map[string]*Node),
		cut:     make(map[link]bool),
		delays:  make(map[link]delay),
		paused:  make(map[string]bool),
		conns:   make(map[closer]struct{}),
		changed: make(chan struct{}),
	}
}

// Node returns the node called name, adding it if it is new, and records
// addrs as addresses it is reached at: its own listener's, and a proxy's in
// front of it, if any. An address recorded for another node moves to this
// one, so a node restarted on a new port, or a port reused, is found. It
// panics if name is empty.
func (n *Network) Node(name string, addrs ...string) *Node {
	if name == "" {
		panic("rafthttptest: a node needs a name")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	node := n.nodes[name]
	if node == nil {
		node = &Node{network: n, name: name}
		n.nodes[name] = node
	}
	for _, addr := range addrs {
		n.addrs[addr] = node
	}
	return node
}

// nodeAt returns the node reached at addr, or nil.
func (n *Network) nodeAt(addr string) *Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs[addr]
}

// Cut stops the link between a and b in both directions.
func (n *Network) Cut(a, b string) {
	n.update(func() {
		n.cut[link{a, b}] = true
		n.cut[link{b, a}] = true
	})
}

// CutOneWay stops what from sends to to; what to sends to from still
// arrives. A request then reaches its peer but the answer never returns.
func (n *Network) CutOneWay(from, to string) {
	n.update(func() { n.cut[link{from, to}] = true })
}

// Mend restores the link between a and b in both directions and resets the
// connections that dropped bytes while it was cut.
func (n *Network) Mend(a, b string) {
	n.mend(link{a, b}, link{b, a})
}

// MendOneWay restores what from sends to to, and resets the connections
// that dropped bytes in that direction.
func (n *Network) MendOneWay(from, to string) {
	n.mend(link{from, to})
}

// mend removes the cuts and resets the connections that lost bytes across
// them: their streams have a hole that no reader can recover from.
func (n *Network) mend(links ...link) {
	n.update(func() {
		for _, l := range links {
			delete(n.cut, l)
		}
	})
	for _, conn := range n.tracked() {
		for _, l := range links {
			if conn.lost(l) {
				conn.reset()
				break
			}
		}
	}
}

// Partition cuts every link between nodes of different groups. Nodes in no
// group keep every link they had: Partition([]string{"a", "b"},
// []string{"d", "e"}) leaves c as a bridge that reaches all four. The cuts
// add to those already made; to partition differently, Heal first.
func (n *Network) Partition(groups ...[]string) {
	n.update(func() {
		for i, group := range groups {
			for _, other := range groups[i+1:] {
				for _, a := range group {
					for _, b := range other {
						n.cut[link{a, b}] = true
						n.cut[link{b, a}] = true
					}
				}
			}
		}
	})
}

// Isolate cuts every link between name and the other nodes the Network
// knows now, in both directions; a node added later is not cut off.
func (n *Network) Isolate(name string) {
	n.update(func() {
		for other := range n.nodes {
			if other != name {
				n.cut[link{name, other}] = true
				n.cut[link{other, name}] = true
			}
		}
	})
}

// Pause holds every byte name sends or receives, and every request its
// Handler receives, until [Network.Resume]: the node looks frozen, as a
// stopped process or a long pause of its runtime would.
func (n *Network) Pause(name string) {
	n.update(func() { n.paused[name] = true })
}

// Resume delivers what Pause held, in order, and lets name's traffic flow.
func (n *Network) Resume(name string) {
	n.update(func() { delete(n.paused, name) })
}

// Delay adds latency plus a random jitter in [0, jitter) to every write
// between a and b, in both directions. Zero for both removes the delay.
// Writes stay in order: a write never overtakes an earlier one.
func (n *Network) Delay(a, b string, latency, jitter time.Duration) {
	n.DelayOneWay(a, b, latency, jitter)
	n.DelayOneWay(b, a, latency, jitter)
}

// DelayOneWay is [Network.Delay] for what from sends to to only. Both
// Delay and DelayOneWay panic on a negative latency or jitter.
func (n *Network) DelayOneWay(from, to string, latency, jitter time.Duration) {
	if latency < 0 || jitter < 0 {
		panic(fmt.Sprintf("rafthttptest: negative delay %v+%v", latency, jitter))
	}
	n.update(func() {
		if latency == 0 && jitter == 0 {
			delete(n.delays, link{from, to})
			return
		}
		n.delays[link{from, to}] = delay{latency, jitter}
	})
}

// Heal removes every fault: it mends every cut link (resetting the
// connections that lost bytes), removes every delay and resumes every
// paused node.
func (n *Network) Heal() {
	n.mu.Lock()
	links := make([]link, 0, len(n.cut))
	for l := range n.cut {
		links = append(links, l)
	}
	clear(n.delays)
	clear(n.paused)
	n.mu.Unlock()
	n.mend(links...)
	n.update(func() {})
}

// Reset closes every live connection between a and b, with an RST where it
// can, and reports how many it closed. It closes the end that dialed,
// which knows both nodes; the other end sees the reset.
func (n *Network) Reset(a, b string) int {
	return n.reset(func(c closer) bool { return c.touches(a, b) })
}

// ResetNode closes every live connection to or from name: those it dialed,
// those dialed to it, and those its Handler accepted. It reports how many
// ends it closed: a connection between two nodes of the Network, whose
// Handler is wrapped, has two.
func (n *Network) ResetNode(name string) int {
	return n.reset(func(c closer) bool { return c.touches(name, "") })
}

// ResetAll closes every live connection the Network knows, and reports
// how many ends it closed, as ResetNode does.
func (n *Network) ResetAll() int {
	return n.reset(func(closer) bool { return true })
}

func (n *Network) reset(match func(closer) bool) int {
	count := 0
	for _, conn := range n.tracked() {
		if match(conn) {
			conn.reset()
			count++
		}
	}
	return count
}

// Close resets every connection, waits for their goroutines to end, and
// makes every later dial fail with an error wrapping [ErrNetworkClosed].
// Requests held by a paused node's Handler are let through. It returns
// nil; it is an io.Closer so that it can go where one is expected.
func (n *Network) Close() error {
	n.update(func() {
		n.closed = true
		clear(n.paused)
	})
	n.ResetAll()
	return nil
}

// update applies a change to the faults and wakes every waiting connection.
func (n *Network) update(change func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	change()
	close(n.changed)
	n.changed = make(chan struct{})
}

func (n *Network) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// tracked returns the live connections.
func (n *Network) tracked() []closer {
	n.mu.Lock()
	defer n.mu.Unlock()
	conns := make([]closer, 0, len(n.conns))
	for conn := range n.conns {
		conns = append(conns, conn)
	}
	return conns
}

func (n *Network) track(conn closer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.conns[conn] = struct{}{}
	return true
}

func (n *Network) untrack(conn closer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, conn)
}

// linkState is what a connection needs to know about one direction of its
// link at one moment, and the channel that tells it when that changes.
type linkState struct {
	cut     bool
	held    bool
	delay   delay
	changed <-chan struct{}
}

func (n *Network) state(l link) linkState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return linkState{
		cut:     n.cut[l],
		held:    n.paused[l.from] || n.paused[l.to],
		delay:   n.delays[l],
		changed: n.changed,
	}
}

// due returns when bytes written now across a link with d may arrive.
func (n *Network) due(now time.Time, d delay) time.Time {
	wait := d.latency
	if d.jitter > 0 {
		n.mu.Lock()
		wait += time.Duration(n.random.Int64N(int64(d.jitter)))
		n.mu.Unlock()
	}
	return now.Add(wait)
}

// pausedNode reports whether name is paused, and the channel that tells
// when that may have changed.
func (n *Network) pausedNode(name string) (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused[name], n.changed
}

// Node is one node of a [Network]. Its methods wire the node's dial and
// Handler into the Network; the faults themselves are the Network's.
type Node struct {
	network *Network
	name    string
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// DialContext returns a dial for the node's [rafthttp.LayerConfig] that
// opens connections with next (plain TCP if nil) and applies the Network's
// faults to them. A dial to an address no node was given is not subject to
// link faults, only to this node's pause and resets.
func (n *Node) DialContext(next rafthttp.DialContext) rafthttp.DialContext {
	if next == nil {
		next = rafthttp.NewDialContextTCP()
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		to := ""
		if peer := n.network.nodeAt(addr); peer != nil {
			to = peer.name
		}
		out, in := link{n.name, to}, link{to, n.name}
		if err := n.network.waitToDial(ctx, out, in); err != nil {
			return nil, fmt.Errorf("rafthttptest: dial %s (%s) from %s: %w", addr, orUnknown(to), n.name, err)
		}
		conn, err := next(ctx, addr)
		if err != nil {
			return nil, err
		}
		fc := newFaultConn(n.network, conn, out, in)
		// Started before it is tracked, so that a Close of the Network
		// that finds it also waits for its goroutines.
		fc.start()
		if !n.network.track(fc) {
			fc.Close()
			return nil, fmt.Errorf("rafthttptest: dial %s from %s: %w", addr, n.name, ErrNetworkClosed)
		}
		return fc, nil
	}
}

// Dial is [Node.DialContext] for a Layer configured with a
// [rafthttp.Dial] (next, plain TCP if nil) rather than a DialContext: the
// timeout it is given bounds the whole dial, a hold by a paused node
// included.
func (n *Node) Dial(next rafthttp.Dial) rafthttp.Dial {
	if next == nil {
		next = rafthttp.NewDialTCP()
	}
	dial := n.DialContext(func(ctx context.Context, addr string) (net.Conn, error) {
		var timeout time.Duration
		if deadline, ok := ctx.Deadline(); ok {
			if timeout = time.Until(deadline); timeout <= 0 {
				return nil, context.DeadlineExceeded
			}
		}
		return next(addr, timeout)
	})
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		ctx := context.Background()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		return dial(ctx, addr)
	}
}

func orUnknown(name string) string {
	if name == "" {
		return "no known node"
	}
	return name
}

// waitToDial applies the faults to a new connection: a cut link refuses at
// once, a paused end holds the dial, a delay costs one round trip.
func (n *Network) waitToDial(ctx context.Context, out, in link) error {
	for {
		if n.isClosed() {
			return ErrNetworkClosed
		}
		state := n.state(out)
		if state.cut && out.to != "" {
			return fmt.Errorf("%w: %s", ErrLinkCut, out)
		}
		if !state.held {
			rtt := state.delay.latency + n.state(in).delay.latency
			if rtt == 0 {
				return nil
			}
			timer := time.NewTimer(rtt)
			defer timer.Stop()
			select {
			case <-timer.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case <-state.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Handler returns next wrapped for this node: while the node is paused, a
// request waits for Resume before next sees it, and a connection next takes
// over (a raft upgrade) holds its bytes. Every connection taken over is
// tracked, so that [Network.ResetNode] and [Network.ResetAll] reach it.
func (n *Node) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.network.waitUnpaused(r.Context(), n.name) {
			http.Error(w, "rafthttptest: request abandoned while the node was paused", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(&hijackWriter{ResponseWriter: w, node: n}, r)
	})
}

// waitUnpaused waits until name is not paused; it reports false if ctx
// ended first.
func (n *Network) waitUnpaused(ctx context.Context, name string) bool {
	for {
		paused, changed := n.pausedNode(name)
		if !paused {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// hijackWriter hands the Handler a tracked connection when it takes one
// over.
type hijackWriter struct {
	http.ResponseWriter
	node *Node
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	// Refused before the connection is taken, so that the Handler can
	// still answer the request.
	if w.node.network.isClosed() {
		return nil, nil, ErrNetworkClosed
	}
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	held := &heldConn{Conn: conn, network: w.node.network, node: w.node.name}
	if !w.node.network.track(held) {
		conn.Close()
		return nil, nil, ErrNetworkClosed
	}
	return held, rw, nil
}

// Unwrap lets http.ResponseController reach the writer's other methods.
func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
