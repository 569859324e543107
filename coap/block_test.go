package coap

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestReassembler(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789abcdef"), 10) // 160 bytes
	r := reassembler{lifetime: time.Minute}
	k := transferKey{path: "/sen", tag: "x"}
	var got []byte
	var err error
	for num := uint32(0); num*64 < uint32(len(body)); num++ {
		end := min(int(num+1)*64, len(body))
		got, err = r.add(t0, k, block{num: num, more: end < len(body), szx: 2}, 0, body[num*64:end])
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("reassembled %d bytes, want %d", len(got), len(body))
	}
	if len(r.transfers) != 0 {
		t.Fatal("finished transfer kept")
	}

	// Expiry: an idle transfer is forgotten.
	if _, err := r.add(t0, k, block{num: 0, more: true, szx: 2}, 0, body[:64]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.add(t0.Add(2*time.Minute), k, block{num: 1, more: true, szx: 2}, 0, body[64:128]); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("after expiry: %v, want ErrIncomplete", err)
	}

	// A short non-final block.
	if _, err := r.add(t0, k, block{num: 0, more: true, szx: 2}, 0, body[:10]); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("short block: %v", err)
	}
}

// TestReassembler_Bounded: reliability F06: at most 4 transfers, so at
// most 256 KiB per session.
func TestReassembler_Bounded(t *testing.T) {
	t.Parallel()
	r := reassembler{lifetime: time.Minute}
	blk := make([]byte, 1024)
	for i := range 10 {
		k := transferKey{path: "/sen", tag: string(rune('a' + i))}
		for num := range uint32(63) {
			if _, err := r.add(t0, k, block{num: num, more: true, szx: 6}, 0, blk); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := r.buffered(); n > maxTransfers*MaxBody || len(r.transfers) > maxTransfers {
		t.Fatalf("%d transfers, %d bytes buffered", len(r.transfers), n)
	}
}

func TestSlice(t *testing.T) {
	t.Parallel()
	body := make([]byte, 100)
	if p, more, ok := slice(body, 0, 2); !ok || !more || len(p) != 64 {
		t.Fatal("block 0")
	}
	if p, more, ok := slice(body, 1, 2); !ok || more || len(p) != 36 {
		t.Fatal("block 1")
	}
	if _, _, ok := slice(body, 2, 2); ok {
		t.Fatal("block 2 past the end")
	}
}

// FuzzReassemble drives the reassembler with arbitrary block sequences:
// no panic, memory stays bounded, and a completed body is never larger
// than MaxBody.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 0x0a, 1, 0x1a, 2, 0x22})
	f.Add([]byte{0, 0x0e, 0, 0x1e, 1, 0x2e})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := reassembler{lifetime: time.Minute}
		now := t0
		for i := 0; i+1 < len(ops); i += 2 {
			tag := string(rune(ops[i] & 7))
			v := uint32(ops[i+1])
			b, err := parseBlock(v)
			if err != nil {
				continue
			}
			n := b.size()
			if ops[i]&0x80 != 0 {
				n /= 2
			}
			now = now.Add(time.Duration(ops[i]>>4) * time.Second)
			whole, err := r.add(now, transferKey{path: "/sen", tag: tag}, b, 0, make([]byte, n))
			if err == nil && len(whole) > MaxBody {
				t.Fatalf("body of %d bytes", len(whole))
			}
			if len(r.transfers) > maxTransfers || r.buffered() > maxTransfers*MaxBody {
				t.Fatalf("%d transfers, %d bytes", len(r.transfers), r.buffered())
			}
		}
	})
}
