package rafthttp_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"strings"
	"testing"

	"github.com/rafthttp/rafthttp"
)

// Helpers for the WebSocket tests: the frames of RFC 6455 section 5.2,
// read and written by hand, so that the tests check the wire rather than
// trust the library that makes it.

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// frame is one WebSocket frame, its payload unmasked.
type frame struct {
	fin     bool
	rsv     byte // the three RSV bits, in place
	opcode  byte
	masked  bool
	payload []byte
}

// readFrame reads one frame.
func readFrame(reader io.Reader) (frame, error) {
	var head [2]byte
	if _, err := io.ReadFull(reader, head[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: head[0]&0x80 != 0, rsv: head[0] & 0x70, opcode: head[0] & 0x0F, masked: head[1]&0x80 != 0}
	length := uint64(head[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(reader, ext[:]); err != nil {
			return frame{}, err
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(reader, ext[:]); err != nil {
			return frame{}, err
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(reader, key[:]); err != nil {
			return frame{}, err
		}
	}
	if length > 16<<20 {
		return frame{}, fmt.Errorf("frame of %d bytes: more than a test sends", length)
	}
	f.payload = make([]byte, length)
	if _, err := io.ReadFull(reader, f.payload); err != nil {
		return frame{}, err
	}
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= key[i%4]
		}
	}
	return f, nil
}

// appendFrame appends a final frame with payload, masked with a random key
// if mask is set, as a client must.
func appendFrame(out []byte, opcode byte, payload []byte, mask bool) []byte {
	out = append(out, 0x80|opcode)
	maskBit := byte(0)
	if mask {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, maskBit|byte(n))
	case n < 1<<16:
		out = append(out, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !mask {
		return append(out, payload...)
	}
	key := rand.Uint32()
	out = binary.BigEndian.AppendUint32(out, key)
	var keyBytes [4]byte
	binary.BigEndian.PutUint32(keyBytes[:], key)
	for i, b := range payload {
		out = append(out, b^keyBytes[i%4])
	}
	return out
}

// closePayload is the payload of a close frame with code.
func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// acceptKey is the Sec-WebSocket-Accept answering key.
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// webSocket101 is a server's 101 to a WebSocket request with key,
// selecting protocol ("" selects none), with any extra header lines.
func webSocket101(key, protocol string, extra ...string) string {
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n"
	if protocol != "" {
		head += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	for _, line := range extra {
		head += line + "\r\n"
	}
	return head + "\r\n"
}

// webSocketRequest is what a webSocketPeer read of one handshake.
type webSocketRequest struct {
	target string
	header textproto.MIMEHeader
}

// webSocketPeer is a server that reads each connection's request head
// and hands the connection to serve, with the request and the reader that
// read it. It stands in for nodes that answer a WebSocket dial by hand:
// well, badly, or as an original node would.
func webSocketPeer(t *testing.T, serve func(conn net.Conn, reader *bufio.Reader, request webSocketRequest)) (string, <-chan webSocketRequest) {
	t.Helper()
	requests := make(chan webSocketRequest, 16)
	addr := rawPeer(t, func(conn net.Conn) {
		reader := bufio.NewReader(conn)
		text := textproto.NewReader(reader)
		line, err := text.ReadLine()
		if err != nil {
			return
		}
		header, err := text.ReadMIMEHeader()
		if err != nil {
			return
		}
		request := webSocketRequest{target: line, header: header}
		requests <- request
		serve(conn, reader, request)
	})
	return addr, requests
}

// webSocketLayer returns a Layer in WebSocket mode built from config (see
// newLayer).
func webSocketLayer(t *testing.T, config rafthttp.LayerConfig) *rafthttp.Layer {
	t.Helper()
	config.WebSocket = true
	return newLayer(t, config)
}

// webSocketHead is the head of a WebSocket upgrade request to the server,
// with the headers a well-formed one carries, less those named in drop,
// plus extra.
func (s *testServer) webSocketHead(drop []string, extra ...string) string {
	lines := []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: raft"}
	var kept []string
	for _, line := range lines {
		name, _, _ := strings.Cut(line, ":")
		if !containsFold(drop, name) {
			kept = append(kept, line)
		}
	}
	kept = append(kept, s.clientHeaders...)
	return requestHead("GET", s.path, s.addr(), append(kept, extra...)...)
}

func containsFold(list []string, s string) bool {
	for _, item := range list {
		if strings.EqualFold(item, s) {
			return true
		}
	}
	return false
}
