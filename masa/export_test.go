package masa

import "sync/atomic"

// CountVerifications makes s add one to n for every voucher-request it
// verifies in full, that is for every miss of its cache of verified
// requests. Call it before s handles a request.
func CountVerifications(s *Service, n *atomic.Int64) { s.onVerify = func() { n.Add(1) } }
