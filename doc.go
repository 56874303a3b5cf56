// Package rafthttp carries the traffic of a [github.com/hashicorp/raft]
// cluster over the HTTP server an application already runs, so a node needs
// one port for everything instead of a second one for raft.
//
// # How it works
//
// A [Handler] mounted on the application's ServeMux answers a GET with
// "Upgrade: raft" by taking the connection over from net/http (an HTTP
// upgrade, as WebSocket does) and queueing it for [Layer.Accept]. A [Layer]
// is the [raft.StreamLayer] given to raft.NewNetworkTransport: its Dial asks
// a peer's Handler to upgrade a new connection, and its Accept returns the
// connections this node's Handler upgraded. After the 101 answer the
// connection carries raft's own protocol, byte for byte as over TCP.
//
// The same Handler serves membership changes: [Layer.Join] sends
// POST <path>?id=ID&address=ADDR to any node and [Layer.Leave] sends
// DELETE <path>?id=ID. The Handler passes them to
// raftmembership.HandleChangeRequests, which applies them on the leader; a
// follower redirects the caller to the leader, and a node that knows of no
// leader answers 503 so the caller retries. A GET <path> without an Upgrade
// header asks for the node's view of the membership, answered as JSON by
// HandleChangeRequests on any node ([Membership]); [Layer.Members] is its
// client, and [ExampleLayer_Members] runs it.
//
// # Usage
//
// On every node:
//
//	handler := rafthttp.NewHandler()
//	mux.Handle("/raft", handler)
//	layer := rafthttp.NewLayer("/raft", advertisedAddr, handler, rafthttp.NewDialTCP())
//	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
//		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second,
//		MaxRPCsInFlight: 1, // raft's pipelining can wedge; see the README
//	})
//	r, err := raft.NewRaft(config, fsm, logs, stable, snapshots, transport)
//	go raftmembership.HandleChangeRequests(r, handler.Requests())
//
// Then bootstrap the first node and call [Layer.Join] on the others with the
// address of any existing member. [Example] runs a whole cluster. For TLS,
// serve the mux with TLS and dial with [NewDialContextTLS]
// ([LayerConfig.DialContext]) or [NewDialTLS].
//
// # Connection setup
//
// raft dials a new connection at start, after every failure or leader
// change, and for every snapshot, and waits for it before its next request.
// The first dial a Layer makes to a peer waits for the 101, whose headers
// say whether the peer takes early data. Later dials to a peer that does
// return once connected: the upgrade request goes out with raft's first
// write, which rides in the request's body as far as one TCP segment
// allows, so that a heartbeat or a vote on a new connection costs no extra
// round trip. The body is plain HTTP, so reverse proxies forward it (nginx
// and Go's httputil.ReverseProxy are tested); the peer reads all of it
// before its 101 confirms it, and a dial whose 101 does not is failed,
// never read as raft data. Failures of such dials surface from the
// connection's first Read or Write instead of from Dial.
// [LayerConfig.EagerHandshake] turns early data off.
//
// # WebSocket mode
//
// Some proxies forward WebSocket upgrades and no other kind (Envoy and the
// meshes built on it, CDNs, managed load balancers). A Layer with
// [LayerConfig.WebSocket] dials with an RFC 6455 handshake, subprotocol
// "raft", and carries raft's stream in binary messages; every Handler
// serves both forms on the same path, so a cluster may mix them. WebSocket
// dials wait for the 101, as RFC 6455 requires, and cost a round trip more
// than raw ones with early data; after that, replication runs within
// noise of a raw connection but for large entries committed one at a
// time (about 10 % slower: clients mask what they send).
//
// # Security
//
// The Handler shares the application's port, so whoever can reach the
// application can reach raft. [HandlerConfig.Authorize] sees every request
// first (check a client certificate or a token that
// [LayerConfig.Header] sends), and [HandlerConfig.ClusterID] with
// [LayerConfig.ClusterID] keeps clusters apart. Every resource a peer can
// make a node hold is bounded ([HandlerConfig]); joins are checked (a
// malformed ID or address is a 400, an address held by another member a
// 409, an address the leader cannot reach a 503). The README's Security
// section has the threat model and a mutual-TLS setup;
// [ExampleHandlerConfig_authorize] runs a locked-down node.
//
// # Shutdown
//
// Shut a node down in this order: raft.Raft.Shutdown, then the transport's
// Close (which closes the Layer, the Handler and every upgraded connection,
// and makes HandleChangeRequests return), then the HTTP server. Calling the
// transport's CloseStreams is not needed.
//
// # Compatibility
//
// The wire format interoperates with nodes running the original rafthttp
// package in both directions: such nodes send no Connection header and expect
// only a 101 with "Upgrade: raft", which is what this package sends and
// accepts. Early data is an extension that leaves them alone: a Layer asks
// for it with a Rafthttp-Body request header, which they ignore, and a
// Handler offers it (Rafthttp-Body-Max on the 101) only to a request that
// asked, so they get the original's answer plus a "Connection: Upgrade"
// header, which HTTP requires of a 101 and they ignore. If an original
// node takes over the address of a rafthttp one, the first dial with early
// data to it fails on its plain 101; the request and its body fit one TCP
// segment (on any path that carries IPv6's minimum MTU; with TLS, the
// record's overhead is counted), so the original node drops the body with
// the request's buffer and its raft does not read a byte of it. Original
// nodes cannot serve WebSocket mode: they answer its dial with a 400.
package rafthttp
