package rafthttp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Early data: the first raft bytes of a connection sent as the body of its
// upgrade request, so that raft's first request needs no round trip of its
// own. The body is plain HTTP, which proxies forward (unlike bytes sent
// behind a request head before the 101, which some drop), and the peer
// reads all of it before it answers, so a 101 that confirms it proves it
// arrived.
//
// Request and body together fit one TCP segment on any path that carries
// IPv6's minimum MTU (every IPv6 path, and IPv4 ones but for rare links
// below 1280 bytes), so that a server that ignores the body reads it whole
// with the head and drops it with its buffer when it hijacks the
// connection: an original node that took the address of a rafthttp one
// does not hand part of it to its raft.
const (
	// bodyHeader, on an upgrade request, says how many bytes of raft data
	// its body holds. Every rafthttp dial sends it, 0 when there is no body,
	// which also asks the peer to say whether it takes bodies.
	bodyHeader = "Rafthttp-Body"

	// bodyMaxHeader, on a 101, answers a request that sent bodyHeader: the
	// peer read the body whole, and takes bodies of up to this many bytes.
	bodyMaxHeader = "Rafthttp-Body-Max"

	// maxEarlyData is the largest body a Handler takes. It bounds what an
	// upgrade makes the Handler hold before its 101; a Layer sends less
	// (maxEarlyRequest).
	maxEarlyData = 4096

	// maxEarlyRequest bounds a request with early data, head and body: the
	// TCP payload of one segment at IPv6's minimum MTU of 1280 bytes, less
	// the IPv6 and TCP headers and TCP options. Heartbeats,
	// votes and small appends fit; a longer first write sends what fits
	// and the rest after the 101.
	maxEarlyRequest = 1200

	// earlyDataPause is how long a Layer dials a peer without early data
	// after a dial with it failed in a way early data may explain.
	earlyDataPause = 5 * time.Minute
)

// checkEarlyData validates the early data an upgrade request announces and
// carries as its body (see bodyHeader). A body is raft's first bytes, so
// it must be announced, whole, and no larger than the Handler reads before
// it answers; a body that does not match its announcement was changed on
// the way, and the raft data in it cannot be trusted.
func checkEarlyData(r *http.Request) (int, string) {
	announced, ok := r.Header[bodyHeader]
	if !ok {
		if r.ContentLength != 0 {
			return http.StatusBadRequest, "rafthttp: an upgrade request's body must be announced in " + bodyHeader
		}
		return 0, ""
	}
	length, valid := 0, len(announced) == 1
	if valid {
		length, valid = parseBodyMax([]byte(announced[0]))
	}
	switch {
	case !valid:
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: invalid %s %q: want one byte count", bodyHeader, strings.Join(announced, ", "))
	case r.ContentLength < 0:
		return http.StatusLengthRequired, "rafthttp: an upgrade request's body needs a Content-Length"
	case int64(length) != r.ContentLength:
		return http.StatusBadRequest, fmt.Sprintf("rafthttp: the upgrade request announced %d bytes of raft data but its body holds %d: something between the nodes changed it", length, r.ContentLength)
	case length > maxEarlyData:
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("rafthttp: %d bytes of raft data in an upgrade request: at most %d are taken", length, maxEarlyData)
	}
	return 0, ""
}

// readEarlyData reads the n bytes of an upgrade request's body, the first
// bytes of raft data, from the hijacked connection's reader, within the
// Handler's timeout; Close ends the wait at once. The body is read before
// the 101 so that the 101 can confirm it. On success it leaves no read
// deadline on the connection (net/http's hijack cleared its own).
func (h *Handler) readEarlyData(conn net.Conn, reader *bufio.Reader, n int64) ([]byte, error) {
	body := make([]byte, n)
	if int64(reader.Buffered()) >= n {
		// Usually the whole body came with the head: no wait, no timer.
		_, err := io.ReadFull(reader, body)
		return body, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(h.currentTimeout())); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(h.ctx, func() { conn.SetReadDeadline(aLongTimeAgo) })
	_, err := io.ReadFull(reader, body)
	stop()
	if err != nil {
		return nil, err
	}
	return body, conn.SetReadDeadline(time.Time{})
}
