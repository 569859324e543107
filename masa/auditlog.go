package masa

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"

	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// AuditLog answers a requestauditlog call (RFC 8995 §5.8): the same RVR as
// for requestvoucher, checked the same way. A registrar that neither owns
// the device nor appears in its log gets 404 (§5.8: "the requester never
// owned it"), as does an unknown device.
func (s *Service) AuditLog(ctx context.Context, req VoucherRequest) (*Response, error) {
	c, err := s.authorize(req.Raw, req.MediaType, req.Peer)
	if err != nil {
		return nil, err
	}
	web.EventFrom(ctx).Add(slog.String("pledge_serial", c.serial), slog.String("domain_id", c.domainID))
	dev, err := s.store.MASADevice(ctx, c.serial)
	if err != nil {
		if isNotFound(err) {
			return nil, problem.New(problem.NotFound, err, "device %q is unknown to this MASA", c.serial)
		}
		return nil, fmt.Errorf("look up device: %w", err)
	}
	entries, err := s.store.MASAAuditLog(ctx, c.serial)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	owned := bytes.Equal(dev.OwnerSPKIHash, c.ownerHash[:])
	l := &voucher.AuditLog{Version: 1, Events: make([]voucher.AuditEvent, 0, len(entries))}
	for _, e := range entries {
		owned = owned || e.DomainID == c.domainID
		l.Events = append(l.Events, voucher.AuditEvent{Date: e.Date, DomainID: e.DomainID, Nonce: e.Nonce, Assertion: voucher.Assertion(e.Assertion)})
	}
	if !owned {
		return nil, problem.New(problem.NotFound, nil, "device %q was never owned by this domain", c.serial)
	}
	body, err := l.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode audit log: %w", err)
	}
	return &Response{MediaType: MediaJSON, Body: body}, nil
}
