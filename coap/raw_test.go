package coap_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/pki/pkitest"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// opt is one CoAP option for msg.
type opt struct {
	num uint16
	val []byte
}

// msg encodes a confirmable CoAP message by hand (RFC 7252 §3), so tests can send
// what a well-behaved library would refuse to build. Options are sorted
// by number, stable for repeats.
func msg(code uint8, mid uint16, token []byte, opts []opt, payload []byte) []byte {
	slices.SortStableFunc(opts, func(a, b opt) int { return int(a.num) - int(b.num) })
	b := []byte{0x40 | uint8(len(token)), code, byte(mid >> 8), byte(mid)}
	b = append(b, token...)
	prev := uint16(0)
	for _, o := range opts {
		d, l := int(o.num-prev), len(o.val)
		prev = o.num
		nib := func(v int) (uint8, []byte) {
			switch {
			case v < 13:
				return uint8(v), nil
			case v < 269:
				return 13, []byte{byte(v - 13)}
			default:
				return 14, binary.BigEndian.AppendUint16(nil, uint16(v-269))
			}
		}
		dn, dx := nib(d)
		ln, lx := nib(l)
		b = append(b, dn<<4|ln)
		b = append(b, dx...)
		b = append(b, lx...)
		b = append(b, o.val...)
	}
	if len(payload) > 0 {
		b = append(b, 0xff)
		b = append(b, payload...)
	}
	return b
}

func path(p string) []opt {
	var o []opt
	for _, seg := range splitPath(p) {
		o = append(o, opt{11, []byte(seg)})
	}
	return o
}

func splitPath(p string) []string {
	var out []string
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func u(v uint32) []byte {
	switch {
	case v == 0:
		return nil
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return []byte{byte(v >> 8), byte(v)}
	case v < 1<<24:
		return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	}
	return binary.BigEndian.AppendUint32(nil, v)
}

func tok() []byte {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return b
}

// reply is a decoded response.
type reply struct {
	typ, code uint8
	mid       uint16
	token     []byte
	opts      []opt
	payload   []byte
}

func (r reply) opt(n uint16) ([]byte, bool) {
	for _, o := range r.opts {
		if o.num == n {
			return o.val, true
		}
	}
	return nil, false
}

func parse(t *testing.T, b []byte) reply {
	t.Helper()
	if len(b) < 4 {
		t.Fatalf("short reply %x", b)
	}
	r := reply{typ: (b[0] >> 4) & 3, code: b[1], mid: binary.BigEndian.Uint16(b[2:])}
	tkl := int(b[0] & 15)
	r.token = b[4 : 4+tkl]
	rest := b[4+tkl:]
	num := 0
	for len(rest) > 0 {
		if rest[0] == 0xff {
			r.payload = rest[1:]
			break
		}
		d, l := int(rest[0]>>4), int(rest[0]&15)
		rest = rest[1:]
		ext := func(v int) int {
			switch v {
			case 13:
				v = int(rest[0]) + 13
				rest = rest[1:]
			case 14:
				v = int(binary.BigEndian.Uint16(rest)) + 269
				rest = rest[2:]
			}
			return v
		}
		d, l = ext(d), ext(l)
		num += d
		r.opts = append(r.opts, opt{uint16(num), rest[:l]})
		rest = rest[l:]
	}
	return r
}

// raw is a DTLS session for hand-made datagrams.
type raw struct {
	t   *testing.T
	c   *piondtls.Conn
	mid uint16
}

func (e *env) raw(t *testing.T, cert tls.Certificate) *raw {
	t.Helper()
	c, err := e.dtlsClient(t,
		piondtls.WithCertificates(cert),
		piondtls.WithInsecureSkipVerify(true), // the registrar's identity is not under test here
	)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return &raw{t: t, c: c, mid: 100}
}

// dtlsClient runs a pion DTLS client handshake with opts against the
// listener, for at most 10 s, and returns the connection (closed when t
// ends) with the handshake's error.
func (e *env) dtlsClient(t *testing.T, opts ...piondtls.ClientOption) (*piondtls.Conn, error) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := (&net.ListenConfig{}).ListenPacket(t.Context(), "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := piondtls.ClientWithOptions(pc, ua, opts...)
	if err != nil {
		_ = pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return c, fmt.Errorf("%w (the 10-s handshake deadline passed)", err)
		}
		return c, err
	}
	return c, nil
}

// send writes b and returns the next datagram received.
func (r *raw) send(b []byte) reply {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
	return r.recv()
}

func (r *raw) recv() reply {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, err := r.c.Read(buf)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return parse(r.t, buf[:n])
}

// con sends a CON request and returns the response: the piggybacked one,
// or, after an empty ACK (a back end slower than PiggybackWait, as on a
// loaded machine), the separate CON response, which it acknowledges.
func (r *raw) con(code uint8, token []byte, opts []opt, payload []byte) reply {
	r.t.Helper()
	r.mid++
	got := r.send(msg(code, r.mid, token, opts, payload))
	if got.typ != 2 || got.code != 0 {
		return got
	}
	sep := r.recv()
	if _, err := r.c.Write([]byte{0x60, 0, byte(sep.mid >> 8), byte(sep.mid)}); err != nil {
		r.t.Fatal(err)
	}
	return sep
}

const (
	get  = 1
	post = 2
)

func code(c, d uint8) uint8 { return c<<5 | d }

// TestServer_BadOptions: reliability F01–F03, F07, F11 on a real DTLS
// session: each gets its code and leaves the registrar's state alone.
func TestServer_BadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-OPT")
	r := e.raw(t, id.TLS)
	csr := registrartest.NewCSR(t, pkitest.NewKey(t), "SN-COAP-OPT")
	sen := path("/.well-known/est/sen")
	with := func(o ...opt) []opt { return append(slices.Clone(sen), o...) }
	before := e.reg.StateDigest(t)
	tests := []struct {
		name string
		opts []opt
		body []byte
		want uint8
	}{
		{"F01/unknown-critical", with(opt{12, u(286)}, opt{65001, []byte{1}}), csr, code(4, 2)},
		{"F01/if-match-unsupported", with(opt{1, []byte{1}}, opt{12, u(286)}), csr, code(4, 2)},
		{"F02/two-content-formats", with(opt{12, u(286)}, opt{12, u(286)}), csr, code(4, 2)},
		{"F02/two-accepts", with(opt{12, u(286)}, opt{17, u(281)}, opt{17, u(287)}), csr, code(4, 2)},
		{"F03/content-format-3-bytes", with(opt{12, []byte{0, 1, 30}}), csr, code(4, 2)},
		{"F03/block1-4-bytes", with(opt{12, u(286)}, opt{27, []byte{0, 0, 0, 6}}), csr, code(4, 2)},
		{"F07/json", with(opt{12, u(50)}), csr, code(4, 15)},
		{"F07/none", sen, csr, code(4, 15)},
		{"F04/size1", with(opt{12, u(286)}, opt{27, u(0<<4 | 8 | 6)}, opt{60, u(100_000)}), make([]byte, 1024), code(4, 13)},
		{"bad-csr", with(opt{12, u(286)}), []byte("not a csr"), code(4, 0)},
		{"unknown-path", append(path("/.well-known/est/nope"), opt{12, u(286)}), csr, code(4, 4)},
	}
	for _, tc := range tests {
		body := tc.body
		if len(body) > 1024 {
			body = body[:1024]
		}
		tk := tok()
		got := r.con(post, tk, tc.opts, body)
		// Piggybacked (ACK, same mid) or, on a loaded machine, separate.
		if got.code != tc.want || string(got.token) != string(tk) || (got.typ == 2 && got.mid != r.mid) {
			t.Errorf("%s: got %d.%02d type %d mid %d, want %d.%02d for mid %d", tc.name, got.code>>5, got.code&31, got.typ, got.mid, tc.want>>5, tc.want&31, r.mid)
		}
	}
	// F11: a token length of 9 is a format error: Reset.
	r.mid++
	bad := msg(get, r.mid, nil, path("/.well-known/core"), nil)
	bad[0] = bad[0]&0xf0 | 9
	if got := r.send(append(bad, make([]byte, 9)...)); got.typ != 3 || got.mid != r.mid {
		t.Errorf("F11/tkl-9: got type %d mid %d, want RST", got.typ, got.mid)
	}
	// F11: version 2 is silently ignored; the next request is answered.
	v2 := msg(get, 999, nil, path("/.well-known/core"), nil)
	v2[0] = v2[0]&0x3f | 2<<6
	if _, err := r.c.Write(v2); err != nil {
		t.Fatal(err)
	}
	// F11: a truncated option: Reset.
	r.mid++
	trunc := msg(get, r.mid, nil, []opt{{11, []byte("crts")}}, nil)
	if got := r.send(trunc[:len(trunc)-2]); got.typ != 3 || got.mid != r.mid {
		t.Errorf("F11/truncated: got type %d mid %d, want RST (the version-2 datagram must have been dropped)", got.typ, got.mid)
	}
	// An unblocked request larger than the CoAP stack reads: 4.13, and
	// the session goes on.
	if got := r.con(post, tok(), with(opt{12, u(286)}), make([]byte, 3000)); got.code != code(4, 13) {
		t.Errorf("oversize: %d.%02d, want 4.13", got.code>>5, got.code&31)
	}
	// The session still works.
	if got := r.con(get, tok(), path("/.well-known/core"), nil); got.code != code(2, 5) {
		t.Fatalf("core after bad datagrams: %d.%02d", got.code>>5, got.code&31)
	}
	if after := e.reg.StateDigest(t); after != before {
		t.Fatal("bad requests changed the registrar's state")
	}
}

// TestServer_Block1NewTokenEachBlock: libcoap's behaviour (a new token on
// every Block1 block, one Request-Tag): the whole CSR arrives in 64-byte
// blocks and is issued once; the certificate comes back in 64-byte Block2
// blocks the client asks for.
func TestServer_Block1NewTokenEachBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-B1")
	r := e.raw(t, id.TLS)
	key := pkitest.NewKey(t)
	csr := registrartest.NewCSR(t, key, "SN-COAP-B1")
	tag := []byte{0xca, 0xfe}
	var last reply
	for num := 0; num*64 < len(csr); num++ {
		end := min((num+1)*64, len(csr))
		more := uint32(0)
		if end < len(csr) {
			more = 8
		}
		o := append(path("/.well-known/est/sen"), opt{12, u(286)}, opt{27, u(uint32(num)<<4 | more | 2)}, opt{292, tag}, opt{17, u(287)})
		last = r.con(post, tok(), o, csr[num*64:end])
		if more != 0 && last.code != code(2, 31) {
			t.Fatalf("block %d: %d.%02d %s, want 2.31", num, last.code>>5, last.code&31, last.payload)
		}
	}
	if last.code != code(2, 4) {
		t.Fatalf("last block: %d.%02d %s, want 2.04", last.code>>5, last.code&31, last.payload)
	}
	body := slices.Clone(last.payload)
	if b2, ok := last.opt(23); ok {
		t.Fatalf("unexpected Block2 %x on a %d-byte answer without a Block2 request", b2, len(body))
	}
	cert, err := x509.ParseCertificate(body)
	if err != nil {
		t.Fatalf("287 payload: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("certificate is not for the CSR's key: the CSR did not arrive whole")
	}

	// Block2 at 64 bytes on /crts.
	want, err := est.MarshalCertsOnly(e.reg.DomainCA.Chain)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for num := uint32(0); ; num++ {
		resp := r.con(get, tok(), append(path("/.well-known/est/crts"), opt{23, u(num<<4 | 2)}), nil)
		if resp.code != code(2, 5) {
			t.Fatalf("crts block %d: %d.%02d", num, resp.code>>5, resp.code&31)
		}
		got = append(got, resp.payload...)
		if !resp.moreBlocks() {
			break
		}
	}
	if string(got) != string(want) {
		t.Fatalf("crts reassembled from Block2 differs (%d bytes, want %d)", len(got), len(want))
	}
}

// TestServer_Block1Errors: reliability F04–F06.
func TestServer_Block1Errors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-B1E")
	r := e.raw(t, id.TLS)
	before := e.reg.StateDigest(t)
	blk := func(tag string, num, more, szx uint32, n int) reply {
		o := append(path("/.well-known/est/sen"), opt{12, u(286)}, opt{27, u(num<<4 | more<<3 | szx)}, opt{292, []byte(tag)})
		return r.con(post, tok(), o, make([]byte, n))
	}
	// F05: out of order.
	if got := blk("a", 0, 1, 2, 64); got.code != code(2, 31) {
		t.Fatalf("block 0: %d.%02d", got.code>>5, got.code&31)
	}
	if got := blk("a", 2, 1, 2, 64); got.code != code(4, 8) {
		t.Errorf("F05/skip: %d.%02d, want 4.08", got.code>>5, got.code&31)
	}
	// F05: size changed mid-transfer.
	blk("b", 0, 1, 2, 64)
	if got := blk("b", 1, 1, 3, 128); got.code != code(4, 8) {
		t.Errorf("F05/size-change: %d.%02d, want 4.08", got.code>>5, got.code&31)
	}
	// F05: a block without block 0.
	if got := blk("c", 3, 0, 2, 10); got.code != code(4, 8) {
		t.Errorf("F05/no-start: %d.%02d, want 4.08", got.code>>5, got.code&31)
	}
	// F06: a fifth transfer evicts the oldest.
	for _, tag := range []string{"t1", "t2", "t3", "t4", "t5"} {
		blk(tag, 0, 1, 2, 64)
	}
	if got := blk("t1", 1, 1, 2, 64); got.code != code(4, 8) {
		t.Errorf("F06/evicted: %d.%02d, want 4.08", got.code>>5, got.code&31)
	}
	if got := blk("t5", 1, 1, 2, 64); got.code != code(2, 31) {
		t.Errorf("F06/kept: %d.%02d, want 2.31", got.code>>5, got.code&31)
	}
	// F04: the running total passes 64 KiB.
	var got reply
	for num := uint32(0); num <= 64; num++ {
		got = blk("big", num, 1, 6, 1024)
		if got.code != code(2, 31) {
			break
		}
	}
	if got.code != code(4, 13) {
		t.Errorf("F04/total: %d.%02d, want 4.13", got.code>>5, got.code&31)
	}
	if after := e.reg.StateDigest(t); after != before {
		t.Fatal("refused transfers changed the registrar's state")
	}
}

// TestServer_Block2CopyDropped: a POST answer is kept for Block2 only
// while the client still has blocks to fetch. The /skg answer (which
// holds the generated private key) fetched in 64-byte blocks is gone once
// its last block is served: asking for that block again gets 4.08. An
// answer that fit in one block is not kept at all.
func TestServer_Block2CopyDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.onboarded(t, "SN-COAP-B2")
	r := e.raw(t, id.TLS)
	csr := registrartest.NewCSR(t, pkitest.NewKey(t), "SN-COAP-B2")
	skg := func(num uint32) reply {
		return r.con(post, tok(), append(path("/.well-known/est/skg"), opt{12, u(286)}, opt{23, u(num<<4 | 2)}), csr)
	}
	var got []byte
	var last uint32
	for num := uint32(0); ; num++ {
		resp := skg(num)
		if resp.code != code(2, 4) {
			t.Fatalf("skg block %d: %d.%02d %s", num, resp.code>>5, resp.code&31, resp.payload)
		}
		got = append(got, resp.payload...)
		if !resp.moreBlocks() {
			last = num
			break
		}
	}
	if last == 0 || len(got) <= 64 {
		t.Fatalf("the skg answer (%d bytes) came in one block: nothing to prove", len(got))
	}
	if resp := skg(last); resp.code != code(4, 8) {
		t.Fatalf("the last skg block again: %d.%02d, want 4.08 (the copy dropped)", resp.code>>5, resp.code&31)
	}
	// /sen answered whole (no Block2 asked; 287 fits in one block): a
	// Block2 continuation finds nothing kept.
	o := append(path("/.well-known/est/sen"), opt{12, u(286)}, opt{17, u(287)})
	if resp := r.con(post, tok(), o, registrartest.NewCSR(t, pkitest.NewKey(t), "SN-COAP-B2")); resp.code != code(2, 4) {
		t.Fatalf("sen: %d.%02d %s", resp.code>>5, resp.code&31, resp.payload)
	}
	if resp := r.con(post, tok(), append(slices.Clone(o), opt{23, u(1<<4 | 2)}), nil); resp.code != code(4, 8) {
		t.Fatalf("a Block2 continuation of a one-block answer: %d.%02d, want 4.08", resp.code>>5, resp.code&31)
	}
}

// moreBlocks reports whether r's Block2 option has the M bit (more
// blocks follow).
func (r reply) moreBlocks() bool {
	b2, _ := r.opt(23)
	var v uint32
	for _, x := range b2 {
		v = v<<8 | uint32(x)
	}
	return v&8 != 0
}
