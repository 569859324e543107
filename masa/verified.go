package masa

import (
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// The cache of verified registrar voucher-requests. A registrar sends the
// same signed RVR twice per onboarding, to /requestvoucher and then to
// /requestauditlog (RFC 8995 §5.8: "the same registrar voucher-request"),
// and sends it again when it retries. Authenticating it costs two CMS or
// COSE verifications, each with a certificate chain (the RVR's against the
// TLS client certificate, the pledge's inside it against the manufacturer
// anchors), and one more chain check for the pinned domain CA: about a
// fifth of the MASA's CPU per onboarding. The cache keeps the outcome of a
// successful authentication so that a byte-identical request from the same
// TLS client certificate is not verified again.
//
// What may be reused, and what is re-applied on every request:
//
//   - The key is the SHA-256 of the media type, the TLS client certificate
//     and the exact body. The signatures, the decoding and every check of
//     one field against another (serial-number, nonce, proximity, idevid
//     issuer, cmcRA, the pinned CA having issued the registrar certificate)
//     are functions of those bytes and of the service's fixed configuration
//     (the IDevID anchors), so they give the same answer again. The TLS
//     client certificate is in the key because the RVR must be signed by
//     exactly that certificate (RFC 8995 §5.5.4): the same body from
//     another client is verified, and refused, afresh.
//   - The verification also depends on the time, in two ways. (1) The
//     certificate validity windows checked at the verification instant: the
//     registrar certificate, the CAs of the pledge's IDevID chain, the
//     IDevID's NotBefore (its NotAfter is ignored, RFC 8995 §2.6.2), the
//     pinned CA and any other CA certificate the request carries. The entry
//     records the intersection of those windows and is used only inside it,
//     so a hit never accepts a certificate that is not valid at the hit's
//     instant; a verification at that instant would have accepted the same
//     chains. (2) The RVR's created-on, which must lie within MaxClockSkew
//     of the clock: that check is cheap and is applied again on every hit.
//   - The ownership policy, the device records and the nonce log are read
//     from the store on every request (checkOwner, RecordMASAVoucher,
//     AuditLog); nothing of them is cached.
//   - The TTL (verifiedTTL) bounds how long an entry lives regardless, and
//     an entry verified at an instant later than the clock (a clock set
//     back) is not used.
//
// Only successes are cached, and only for bodies up to verifiedMaxBody
// bytes. An entry is a claim, which copies what it keeps (the pinned
// certificate's DER, the nonce) rather than holding the request's buffers:
// about 650 bytes for a lab RVR of 3.8 KiB. The cache holds at most
// verifiedEntries entries, the least recently used going first, so its
// memory stays under a MiB in the lab and bounded (1,024 × 8 KiB) whoever
// fills it.
const (
	verifiedEntries = 1024
	verifiedTTL     = 5 * time.Minute
	verifiedMaxBody = 8 << 10
)

// verifiedKey identifies one authentication: media type, TLS client
// certificate and body.
type verifiedKey [sha256.Size]byte

func newVerifiedKey(mediaType string, leaf *x509.Certificate, raw []byte) verifiedKey {
	h := sha256.New()
	var n [8]byte
	for _, b := range [][]byte{[]byte(mediaType), leaf.Raw, raw} {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k verifiedKey
	h.Sum(k[:0])
	return k
}

// validity is the intersection of certificate validity windows: the
// instants at which every certificate a verification checked is valid.
type validity struct {
	notBefore, notAfter time.Time
}

// everywhere is the window before any certificate narrowed it.
func everywhere() validity {
	return validity{notAfter: time.Unix(1<<62, 0)}
}

// narrow intersects w with c's validity; with ignoreExpiry only with its
// NotBefore (an IDevID signer, RFC 8995 §2.6.2).
func (w *validity) narrow(c *x509.Certificate, ignoreExpiry bool) {
	if c.NotBefore.After(w.notBefore) {
		w.notBefore = c.NotBefore
	}
	if !ignoreExpiry && c.NotAfter.Before(w.notAfter) {
		w.notAfter = c.NotAfter
	}
}

// contains reports whether t is inside w, with the bounds checkValidity in
// the voucher package uses (both inclusive).
func (w validity) contains(t time.Time) bool {
	return !t.Before(w.notBefore) && !t.After(w.notAfter)
}

// verifiedEntry is a cached authentication.
type verifiedEntry struct {
	key    verifiedKey
	claim  claim
	window validity
	at     time.Time // when it was verified
}

// verifiedCache is a bounded LRU of verifiedEntry, safe for concurrent use.
type verifiedCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	entries map[verifiedKey]*list.Element
	order   list.List // of *verifiedEntry, most recently used first
}

func newVerifiedCache(maxEntries int, ttl time.Duration) *verifiedCache {
	return &verifiedCache{max: maxEntries, ttl: ttl, entries: make(map[verifiedKey]*list.Element, maxEntries)}
}

// get returns a copy of the claim cached under k if it may be used at now:
// inside its TTL, not verified after now, and now inside its validity
// window. An entry that may not is dropped.
func (vc *verifiedCache) get(k verifiedKey, now time.Time) (claim, bool) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	el, ok := vc.entries[k]
	if !ok {
		return claim{}, false
	}
	e := el.Value.(*verifiedEntry)
	if age := now.Sub(e.at); age < 0 || age >= vc.ttl || !e.window.contains(now) {
		vc.order.Remove(el)
		delete(vc.entries, k)
		return claim{}, false
	}
	vc.order.MoveToFront(el)
	return e.claim, true
}

// put caches c under k, verified at at and valid inside window, evicting
// the least recently used entry when full.
func (vc *verifiedCache) put(k verifiedKey, c claim, window validity, at time.Time) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if el, ok := vc.entries[k]; ok {
		el.Value = &verifiedEntry{key: k, claim: c, window: window, at: at}
		vc.order.MoveToFront(el)
		return
	}
	if vc.order.Len() >= vc.max {
		last := vc.order.Back()
		vc.order.Remove(last)
		delete(vc.entries, last.Value.(*verifiedEntry).key)
	}
	vc.entries[k] = vc.order.PushFront(&verifiedEntry{key: k, claim: c, window: window, at: at})
}
