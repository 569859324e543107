package coap

import (
	"errors"
	"fmt"
	"time"
)

// block is a decoded Block1 or Block2 option value (RFC 7959 §2.2).
type block struct {
	num  uint32
	more bool
	szx  uint8
}

// size is the block size in bytes.
func (b block) size() int { return 1 << (b.szx + 4) }

// ErrBlock reports a Block option this server cannot honour (SZX 7 is
// reserved for BERT, which needs CoAP over TCP; RFC 8323 §6).
var ErrBlock = errors.New("coap: invalid block option")

// parseBlock decodes a Block option value of 0–3 bytes.
func parseBlock(v uint32) (block, error) {
	if v > 0xffffff {
		return block{}, fmt.Errorf("%w: value %d", ErrBlock, v)
	}
	b := block{num: v >> 4, more: v&0x8 != 0, szx: uint8(v & 0x7)}
	if b.szx == 7 {
		return block{}, fmt.Errorf("%w: SZX 7 (BERT) over UDP", ErrBlock)
	}
	return b, nil
}

// value encodes b as an option value.
func (b block) value() uint32 {
	v := b.num<<4 | uint32(b.szx)
	if b.more {
		v |= 0x8
	}
	return v
}

// transferKey names one Block1 transfer within a DTLS session: the path and
// the Request-Tag (RFC 9175 §3), not the token, which libcoap changes on
// every block.
type transferKey struct {
	path, tag string
}

type transfer struct {
	key     transferKey
	body    []byte
	szx     uint8
	next    uint32
	started time.Time
}

// Errors of Block1 reassembly, mapped to 4.08 and 4.13.
var (
	// ErrIncomplete: a block out of order, a block missing, or the block
	// size changed mid-transfer (RFC 7959 §2.9.2: 4.08).
	ErrIncomplete = errors.New("coap: request entity incomplete")
	// ErrTooLarge: Size1 or the running total over MaxBody (RFC 7959
	// §2.9.3: 4.13).
	ErrTooLarge = errors.New("coap: request entity too large")
)

// reassembler collects Block1 transfers for one DTLS session. At most
// maxTransfers are unfinished at once (the oldest is evicted, reliability
// F06), each at most MaxBody bytes, and a transfer idle for longer than
// lifetime is forgotten. It is not safe for concurrent use; a session
// handles its requests one at a time.
type reassembler struct {
	lifetime  time.Duration
	transfers []*transfer
}

// add records one Block1 block with payload. It returns the whole body
// when b is the last block, nil while more are expected, or an error (the
// transfer is then forgotten). size1 is the Size1 option, 0 when absent.
func (r *reassembler) add(now time.Time, key transferKey, b block, size1 uint32, payload []byte) ([]byte, error) {
	r.expire(now)
	if size1 > MaxBody {
		r.drop(key)
		return nil, fmt.Errorf("%w: Size1 %d over %d", ErrTooLarge, size1, MaxBody)
	}
	if b.more && len(payload) != b.size() {
		r.drop(key)
		return nil, fmt.Errorf("%w: block %d has %d bytes, not %d", ErrIncomplete, b.num, len(payload), b.size())
	}
	if !b.more && len(payload) > b.size() {
		r.drop(key)
		return nil, fmt.Errorf("%w: last block %d has %d bytes, over %d", ErrIncomplete, b.num, len(payload), b.size())
	}
	t := r.find(key)
	if b.num == 0 {
		// A first block (re)starts the transfer.
		r.drop(key)
		if !b.more {
			return payload, nil
		}
		t = &transfer{key: key, szx: b.szx, started: now}
		r.start(t)
	}
	if t == nil {
		return nil, fmt.Errorf("%w: block %d without block 0", ErrIncomplete, b.num)
	}
	if b.szx != t.szx || b.num != t.next {
		r.drop(key)
		return nil, fmt.Errorf("%w: block %d (size %d), expected block %d (size %d)", ErrIncomplete, b.num, b.size(), t.next, block{szx: t.szx}.size())
	}
	if len(t.body)+len(payload) > MaxBody {
		r.drop(key)
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBody)
	}
	t.body = append(t.body, payload...)
	t.next++
	t.started = now
	if b.more {
		return nil, nil
	}
	r.drop(key)
	return t.body, nil
}

func (r *reassembler) find(key transferKey) *transfer {
	for _, t := range r.transfers {
		if t.key == key {
			return t
		}
	}
	return nil
}

// start adds t, evicting the oldest transfer when maxTransfers are open.
func (r *reassembler) start(t *transfer) {
	if len(r.transfers) >= maxTransfers {
		r.transfers = r.transfers[1:]
	}
	r.transfers = append(r.transfers, t)
}

func (r *reassembler) drop(key transferKey) {
	for i, t := range r.transfers {
		if t.key == key {
			r.transfers = append(r.transfers[:i:i], r.transfers[i+1:]...)
			return
		}
	}
}

// expire forgets transfers idle for longer than the lifetime.
func (r *reassembler) expire(now time.Time) {
	kept := r.transfers[:0]
	for _, t := range r.transfers {
		if now.Sub(t.started) <= r.lifetime {
			kept = append(kept, t)
		}
	}
	clear(r.transfers[len(kept):])
	r.transfers = kept
}

// buffered returns the bytes held in unfinished transfers.
func (r *reassembler) buffered() int {
	n := 0
	for _, t := range r.transfers {
		n += len(t.body)
	}
	return n
}

// slice returns block num of body at size exponent szx for Block2 (RFC 7959
// §2.4), and whether more blocks follow; ok is false when num is past the
// end.
func slice(body []byte, num uint32, szx uint8) ([]byte, bool, bool) {
	size := 1 << (szx + 4)
	off := int64(num) * int64(size)
	if off > int64(len(body)) || (off == int64(len(body)) && num > 0) {
		return nil, false, false
	}
	end := min(off+int64(size), int64(len(body)))
	return body[off:end], end < int64(len(body)), true
}
