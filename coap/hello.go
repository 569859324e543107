package coap

import "encoding/binary"

// The DTLS 1.2 framing the front reads before any session exists
// (RFC 6347 §4.1, §4.2.2, §4.2.1). Every length is checked against the
// bytes present; nothing is allocated.
const (
	recordHeaderLen    = 13 // type, version, epoch, sequence_number, length
	handshakeHeaderLen = 12 // msg_type, length, message_seq, fragment_offset, fragment_length

	contentAlert           = 21
	contentHandshake       = 22
	typeClientHello        = 1
	typeHelloVerifyRequest = 3

	maxSessionIDLen = 32
)

// clientHello is what the front needs from a ClientHello. Every slice
// aliases the datagram.
type clientHello struct {
	// recordSeq is the record's sequence number, which a
	// HelloVerifyRequest repeats (RFC 6347 §4.2.1).
	recordSeq []byte
	random    []byte
	cookie    []byte
	// head is client_version, random and session_id; tail is
	// cipher_suites and compression_methods: with the cookie between
	// them left out, the parameters a client must repeat when it echoes
	// the cookie, which the cookie is bound to.
	head, tail []byte
}

// parseClientHello accepts a datagram only when it is exactly one DTLS
// plaintext record of epoch 0 carrying exactly one unfragmented
// ClientHello, every vector inside it well formed. A first flight that
// does not fit this (a fragmented ClientHello, a second record) is not
// something a client sends with the 1024-byte MTU cBRSKI assumes, so
// refusing it costs nothing and keeps the check simple and bounded.
func parseClientHello(b []byte) (clientHello, bool) {
	body, ok := handshakeMessage(b, typeClientHello)
	if !ok {
		return clientHello{}, false
	}
	// client_version, random[32]
	if len(body) < 2+32 || body[0] != 0xfe {
		return clientHello{}, false
	}
	rest := body[34:]
	sid, rest, ok := vector8(rest)
	if !ok || len(sid) > maxSessionIDLen {
		return clientHello{}, false
	}
	cookie, rest, ok := vector8(rest)
	if !ok {
		return clientHello{}, false
	}
	tail := rest
	suites, rest, ok := vector16(rest)
	if !ok || len(suites) < 2 || len(suites)%2 != 0 {
		return clientHello{}, false
	}
	comp, rest, ok := vector8(rest)
	if !ok || len(comp) < 1 {
		return clientHello{}, false
	}
	if len(rest) > 0 {
		ext, tail, ok := vector16(rest)
		if !ok || len(tail) != 0 || !extensionsWellFormed(ext) {
			return clientHello{}, false
		}
	}
	return clientHello{
		recordSeq: b[5:11],
		random:    body[2:34],
		cookie:    cookie,
		head:      body[:34+1+len(sid)],
		tail:      tail[:len(tail)-len(rest)],
	}, true
}

// helloVerifyRequest appends to dst a record holding a HelloVerifyRequest
// with cookie (at most 255 bytes), answering a ClientHello with record sequence number seq
// (6 bytes): RFC 6347 §4.2.1 has the server repeat it and send version
// DTLS 1.0 (0xfeff) in both the record and the message, and the message is
// the server's first, message_seq 0.
func helloVerifyRequest(dst, seq, cookie []byte) []byte {
	n := uint8(len(cookie)) //nolint:gosec // callers pass cookieLen bytes
	body := 2 + 1 + uint16(n)
	dst = append(dst, contentHandshake, 0xfe, 0xff, 0, 0)
	dst = append(dst, seq...)
	dst = binary.BigEndian.AppendUint16(dst, handshakeHeaderLen+body)
	// msg_type, length, message_seq 0, fragment_offset 0, fragment_length
	dst = append(dst, typeHelloVerifyRequest, 0)
	dst = binary.BigEndian.AppendUint16(dst, body)
	dst = append(dst, 0, 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, body)
	dst = append(dst, 0xfe, 0xff, n)
	return append(dst, cookie[:n]...)
}

// handshakeMessage returns the body of the one unfragmented handshake
// message of type typ that makes up the whole of the epoch-0 record b.
func handshakeMessage(b []byte, typ byte) ([]byte, bool) {
	if len(b) < recordHeaderLen+handshakeHeaderLen || b[0] != contentHandshake || b[1] != 0xfe {
		return nil, false
	}
	if binary.BigEndian.Uint16(b[3:5]) != 0 { // epoch
		return nil, false
	}
	if int(binary.BigEndian.Uint16(b[11:13])) != len(b)-recordHeaderLen {
		return nil, false
	}
	h := b[recordHeaderLen:]
	length := uint24(h[1:4])
	offset := uint24(h[6:9])
	fragment := uint24(h[9:12])
	if h[0] != typ || offset != 0 || fragment != length || length != len(h)-handshakeHeaderLen {
		return nil, false
	}
	return h[handshakeHeaderLen:], true
}

// extensionsWellFormed checks that ext is a sequence of (type, opaque
// data<0..2^16-1>) with nothing left over.
func extensionsWellFormed(ext []byte) bool {
	for len(ext) > 0 {
		if len(ext) < 2 {
			return false
		}
		var ok bool
		if _, ext, ok = vector16(ext[2:]); !ok {
			return false
		}
	}
	return true
}

func uint24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// vector8 splits an opaque vector with a one-byte length off b.
func vector8(b []byte) ([]byte, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return nil, nil, false
	}
	return b[1 : 1+int(b[0])], b[1+int(b[0]):], true
}

// vector16 splits an opaque vector with a two-byte length off b.
func vector16(b []byte) ([]byte, []byte, bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// alertInternalError is the internal_error alert description (RFC 5246
// §7.2.2): the server cannot go on for a reason unrelated to the peer.
const alertInternalError = 80

// fatalAlert appends to dst an epoch-0 record holding a fatal alert
// (level 2) with description desc, with record sequence number seq (6
// bytes, the ClientHello's).
func fatalAlert(dst, seq []byte, desc byte) []byte {
	dst = append(dst, contentAlert, 0xfe, 0xfd, 0, 0)
	dst = append(dst, seq...)
	return append(dst, 0, 2, 2, desc)
}
