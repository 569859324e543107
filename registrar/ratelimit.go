package registrar

import (
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
)

// maxBuckets bounds each table of token buckets; when full, it is cleared
// (a full bucket is what a cleared entry becomes anyway, so the only cost is
// a burst granted early).
const maxBuckets = 65536

// limiter holds the per-IP and per-IDevID token buckets (reliability D7,
// Boulder's burst/period model).
type limiter struct {
	ip, idevid RateLimit

	mu       sync.Mutex
	byIP     map[string]*rate.Limiter
	byIDevID map[[32]byte]*rate.Limiter
}

func newLimiter(ip, idevid RateLimit) *limiter {
	return &limiter{ip: ip, idevid: idevid, byIP: map[string]*rate.Limiter{}, byIDevID: map[[32]byte]*rate.Limiter{}}
}

func bucket[K comparable](m map[K]*rate.Limiter, k K, rl RateLimit) *rate.Limiter {
	l, ok := m[k]
	if !ok {
		if len(m) >= maxBuckets {
			clear(m)
		}
		l = rate.NewLimiter(rate.Limit(rl.Rate), rl.Burst)
		m[k] = l
	}
	return l
}

// take spends one token from each bucket the request falls in and returns
// how long to wait when one is empty (zero when allowed).
func (l *limiter) take(r *http.Request, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	var spent []*rate.Reservation
	try := func(lim *rate.Limiter) {
		res := lim.ReserveN(now, 1)
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			wait = max(wait, d, time.Second)
			return
		}
		spent = append(spent, res)
	}
	if l.ip.Rate > 0 {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		try(bucket(l.byIP, host, l.ip))
	}
	if l.idevid.Rate > 0 && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		try(bucket(l.byIDevID, sha256.Sum256(r.TLS.PeerCertificates[0].Raw), l.idevid))
	}
	if wait > 0 {
		// A refused request costs nothing from the other bucket either.
		for _, res := range spent {
			res.CancelAt(now)
		}
	}
	return wait
}

var errRateLimited = errors.New("rate limited")

// limited refuses a request over its per-IP or per-IDevID rate with 429 and
// Retry-After (reliability G06). Throttled requests get no audit event, so a
// flood cannot flood the audit log; the request log records them.
func (s *Service) limited(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait := s.limits.take(r, s.clk.Now())
		if wait > 0 {
			web.EventFrom(r.Context()).AddError(errRateLimited)
			web.WritePlain(w, r, &problem.Error{Kind: problem.RateLimited, Detail: "too many requests", RetryAfter: min(wait, MaxRetryAfter)})
			return
		}
		h.ServeHTTP(w, r)
	})
}
