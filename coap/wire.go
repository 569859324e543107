package coap

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// CoAP message types (RFC 7252 §3).
const (
	typeCON = 0
	typeNON = 1
	typeACK = 2
	typeRST = 3
)

// Option numbers this server knows (RFC 7252 §12.2, RFC 7959, RFC 9175,
// RFC 8613, RFC 7967, RFC 8768).
const (
	optIfMatch       = 1
	optURIHost       = 3
	optETag          = 4
	optIfNoneMatch   = 5
	optObserve       = 6
	optURIPort       = 7
	optLocationPath  = 8
	optOSCORE        = 9
	optURIPath       = 11
	optContentFormat = 12
	optMaxAge        = 14
	optURIQuery      = 15
	optHopLimit      = 16
	optAccept        = 17
	optQBlock1       = 19
	optLocationQuery = 20
	optBlock2        = 23
	optBlock1        = 27
	optSize2         = 28
	optQBlock2       = 31
	optProxyURI      = 35
	optProxyScheme   = 39
	optSize1         = 60
	optEcho          = 252
	optNoResponse    = 258
	optRequestTag    = 292
)

// optionRule is what the server knows of an option: its legal value
// lengths, whether it may repeat, and whether this server implements it.
type optionRule struct {
	min, max   int
	repeatable bool
	supported  bool
}

// optionRules lists every option a request may carry that this server
// recognises. A critical option (odd number) that is absent here, or
// present but not supported, is "unrecognized" in the sense of RFC 7252
// §5.4.1 and answered 4.02: conditional requests (If-Match,
// If-None-Match), OSCORE, Q-Block and proxying are not implemented.
var optionRules = map[int]optionRule{
	optIfMatch:       {0, 8, true, false},
	optURIHost:       {1, 255, false, true},
	optETag:          {1, 8, true, true},
	optIfNoneMatch:   {0, 0, false, false},
	optObserve:       {0, 3, false, true},
	optURIPort:       {0, 2, false, true},
	optOSCORE:        {0, 255, false, false},
	optURIPath:       {0, 255, true, true},
	optContentFormat: {0, 2, false, true},
	optURIQuery:      {0, 255, true, true},
	optHopLimit:      {1, 1, false, true},
	optAccept:        {0, 2, false, true},
	optQBlock1:       {0, 3, false, false},
	optBlock2:        {0, 3, false, true},
	optBlock1:        {0, 3, false, true},
	optSize2:         {0, 4, false, true},
	optQBlock2:       {0, 3, false, false},
	optProxyURI:      {1, 1034, false, false},
	optProxyScheme:   {1, 255, false, false},
	optSize1:         {0, 4, false, true},
	optEcho:          {1, 40, false, true},
	optNoResponse:    {0, 1, false, true},
	optRequestTag:    {0, 8, true, true},
}

// ErrFormat reports a datagram that is not a well-formed CoAP message
// (RFC 7252 §3, §4.2 "message format error").
var ErrFormat = errors.New("coap: message format error")

// Verdict is what CheckRequest decides for one datagram.
type Verdict int

// The verdicts.
const (
	// Pass hands the datagram to the CoAP stack.
	Pass Verdict = iota
	// Drop ignores it silently (RFC 7252 §3: unknown version; too short
	// to answer).
	Drop
	// Reply answers it with the returned message and does not pass it on
	// (a Reset for a format error, 4.02 for a bad option).
	Reply
)

// header is the fixed part of a CoAP message.
type header struct {
	typ   uint8
	code  uint8
	mid   uint16
	token []byte
}

// CheckRequest inspects one datagram received on a DTLS session before the
// CoAP stack decodes it (reliability F01–F03, F11):
//   - shorter than 4 bytes or version ≠ 1: Drop;
//   - token length > 8, a truncated option or token, reserved nibbles, or a
//     payload marker with no payload: a Reset for CON and NON messages,
//     Drop otherwise (RFC 7252 §4.2, §4.3);
//   - a request with an unrecognised or unsupported critical option, a
//     repeated non-repeatable option, or an option of illegal length:
//     4.02 Bad Option, piggybacked for CON (RFC 7252 §5.4.1, §5.4.3,
//     §5.4.5; reliability rows F02 and F03 apply this to elective options
//     too);
//   - anything else: Pass.
func CheckRequest(b []byte) (Verdict, []byte) {
	if len(b) < 4 || b[0]>>6 != 1 {
		return Drop, nil
	}
	h := header{typ: (b[0] >> 4) & 3, code: b[1], mid: binary.BigEndian.Uint16(b[2:4])}
	bad, err := checkOptions(b, &h)
	if err != nil {
		if h.typ == typeCON || h.typ == typeNON {
			return Reply, reset(h.mid)
		}
		return Drop, nil
	}
	if bad != "" && isRequest(h.code) {
		return Reply, badOption(b, h, bad)
	}
	return Pass, nil
}

// isRequest reports a request code (class 0, detail 1–31).
func isRequest(code uint8) bool {
	return code>>5 == 0 && code&0x1f != 0
}

// checkOptions parses the token and options of b into h. It returns a
// format error, or a non-empty reason for 4.02.
func checkOptions(b []byte, h *header) (string, error) {
	tkl := int(b[0] & 0x0f)
	if tkl > 8 {
		return "", fmt.Errorf("%w: token length %d", ErrFormat, tkl)
	}
	if h.code == 0 && (tkl != 0 || len(b) != 4) {
		// RFC 7252 §4.1: an Empty message has no token, options or payload.
		return "", fmt.Errorf("%w: empty message with content", ErrFormat)
	}
	if len(b) < 4+tkl {
		return "", fmt.Errorf("%w: truncated token", ErrFormat)
	}
	h.token = b[4 : 4+tkl]
	rest := b[4+tkl:]
	num := 0
	last := -1 // the previous option's number: equal numbers are adjacent
	bad := ""
	for len(rest) > 0 {
		if rest[0] == 0xff {
			if len(rest) == 1 {
				return "", fmt.Errorf("%w: payload marker without payload", ErrFormat)
			}
			break
		}
		delta, length := int(rest[0]>>4), int(rest[0]&0x0f)
		rest = rest[1:]
		var err error
		if delta, rest, err = extend(delta, rest); err != nil {
			return "", err
		}
		if length, rest, err = extend(length, rest); err != nil {
			return "", err
		}
		if num += delta; num > 0xffff {
			return "", fmt.Errorf("%w: option number overflow", ErrFormat)
		}
		if len(rest) < length {
			return "", fmt.Errorf("%w: option %d truncated", ErrFormat, num)
		}
		rest = rest[length:]
		if bad != "" {
			continue
		}
		rule, known := optionRules[num]
		switch {
		case !known && num&1 == 1, known && !rule.supported && num&1 == 1:
			bad = fmt.Sprintf("unrecognized critical option %d", num)
		case !known:
			// RFC 7252 §5.4.1: unrecognised elective options are ignored.
		case length < rule.min || length > rule.max:
			bad = fmt.Sprintf("option %d has illegal length %d", num, length)
		case !rule.repeatable && num == last:
			bad = fmt.Sprintf("option %d repeated", num)
		}
		last = num
	}
	return bad, nil
}

// extend reads an extended option delta or length (RFC 7252 §3.1).
func extend(v int, rest []byte) (int, []byte, error) {
	switch v {
	case 13:
		if len(rest) < 1 {
			return 0, nil, fmt.Errorf("%w: truncated option header", ErrFormat)
		}
		return int(rest[0]) + 13, rest[1:], nil
	case 14:
		if len(rest) < 2 {
			return 0, nil, fmt.Errorf("%w: truncated option header", ErrFormat)
		}
		return int(binary.BigEndian.Uint16(rest)) + 269, rest[2:], nil
	case 15:
		return 0, nil, fmt.Errorf("%w: reserved option nibble", ErrFormat)
	}
	return v, rest, nil
}

// reset builds an RST for message ID mid (RFC 7252 §4.2).
func reset(mid uint16) []byte {
	return binary.BigEndian.AppendUint16([]byte{0x40 | typeRST<<4, 0}, mid)
}

// Response codes this file answers with itself.
const (
	codeBadOption = 4<<5 | 2  // 4.02
	codeTooLarge  = 4<<5 | 13 // 4.13
)

// CheckSize answers a datagram too large for the CoAP stack's read buffer
// (limit bytes): a request gets 4.13 (RFC 7959 §2.9.3: send it block-wise),
// anything else is dropped. It returns nil for a drop.
func CheckSize(b []byte, limit int) []byte {
	if len(b) <= limit || len(b) < 4 || b[0]>>6 != 1 {
		return nil
	}
	h := header{typ: (b[0] >> 4) & 3, code: b[1], mid: binary.BigEndian.Uint16(b[2:4])}
	if _, err := checkOptions(b, &h); err != nil || !isRequest(h.code) || (h.typ != typeCON && h.typ != typeNON) {
		return nil
	}
	return respond(b, h, codeTooLarge, fmt.Sprintf("request of %d bytes: send it block-wise (Block1)", len(b)))
}

// badOption builds the 4.02 response to h.
func badOption(b []byte, h header, reason string) []byte {
	return respond(b, h, codeBadOption, reason)
}

// respond builds a response with code to h: piggybacked in an ACK for a
// CON request, a NON with a fresh message ID for a NON request, with a
// diagnostic payload (RFC 7252 §5.5.2).
func respond(b []byte, h header, code uint8, reason string) []byte {
	typ, mid := uint8(typeACK), h.mid
	if h.typ == typeNON {
		typ = typeNON
		var r [2]byte
		_, _ = rand.Read(r[:])
		mid = binary.BigEndian.Uint16(r[:])
	}
	m := make([]byte, 0, 4+len(h.token)+1+len(reason))
	m = append(m, 0x40|typ<<4|b[0]&0x0f, code)
	m = binary.BigEndian.AppendUint16(m, mid)
	m = append(m, h.token...)
	m = append(m, 0xff)
	return append(m, reason...)
}
