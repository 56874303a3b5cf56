// Package rafthttptest injects network faults between the nodes of a raft
// cluster that runs on rafthttp, for tests: ours, and those of services built
// on rafthttp.
//
// A [Network] knows each node by a name and the addresses it is reached at.
// Each node gets a dial for its Layer ([Node.DialContext], or [Node.Dial]
// for a Layer given a [rafthttp.Dial]) and a middleware for its Handler
// ([Node.Handler]); from then on a test can
//
//   - cut and mend the link between two nodes, in one direction or both
//     ([Network.Cut], [Network.CutOneWay], [Network.Mend], [Network.Partition],
//     [Network.Isolate]);
//   - pause a node's traffic and resume it, holding its bytes rather than
//     dropping them ([Network.Pause], [Network.Resume]);
//   - delay a link by a fixed latency and a random jitter ([Network.Delay]);
//   - reset live connections ([Network.Reset], [Network.ResetNode],
//     [Network.ResetAll]);
//   - and undo every fault at once ([Network.Heal]).
//
// Faults apply to connections that are already open, not only to new dials:
// a cut link stops carrying bytes at once, as a partition would. They are
// applied by the end that dialed the connection, in both directions, so they
// hold whatever sits between the nodes (a proxy such as nginx included), and
// the Handler middleware adds what only the serving side can do: hold the
// requests a paused node receives, and track the connections it accepted so
// that resets reach them.
//
// What a fault does to the bytes:
//
//   - A cut link drops the bytes written across it, silently, as a
//     firewall's DROP rule would; reads on the other end wait for their
//     deadline, and a close does not cross the cut either. A connection that lost bytes can never be trusted again, so
//     Mend resets it: both ends see an error and raft dials afresh. A new
//     dial across a cut link fails at once with an error wrapping
//     [ErrLinkCut].
//   - A paused node's bytes, in and out, are held and delivered in order on
//     Resume; a dial to or from it waits for Resume or its context.
//   - A delayed link delivers each write after the latency plus a jitter
//     drawn from the Network's seeded source, never out of order; a dial
//     across it takes one round trip.
//   - A reset closes the connection with TCP's RST where it can, so the peer
//     sees "connection reset by peer" rather than an orderly close.
//
// The package's Example runs a three-node cluster, isolates its leader,
// and shows the others electing a new one and the old leader following it
// once the links are mended.
//
// A Network is safe for concurrent use. Every goroutine it starts belongs to
// a connection and ends when the connection is closed; [Network.Close]
// closes all of them, so a test that calls it leaves nothing running.
package rafthttptest
