package coap

import (
	"bytes"
	"context"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Voucher is the registrar's transport-independent voucher API.
type Voucher interface {
	RequestVoucher(ctx context.Context, in registrar.VoucherInput) (*registrar.VoucherResponse, error)
	ReportStatus(ctx context.Context, in registrar.StatusInput) error
}

// rv serves POST /.well-known/brski/rv (cBRSKI): a COSE-signed pledge
// voucher-request (836) in, the voucher (836) out, 2.04. Every check, the
// MASA exchange and the audit trail are the registrar's; the proximity pin
// must name the RA certificate this DTLS session presented.
func (s *Server) rv(ctx context.Context, r *request) (response, error) {
	f, err := accepts(r, FormatVoucherCOSE)
	if err != nil {
		return response{}, err
	}
	served := s.reg.Certificate().Leaf
	res, err := s.reg.RequestVoucher(ctx, registrar.VoucherInput{
		Body:             bytes.NewReader(r.body),
		MediaType:        registrar.MediaTypeVoucherCOSE,
		Accept:           registrar.MediaTypeVoucherCOSE,
		PeerCertificates: r.ses.chain,
		Served:           served,
		Remote:           r.remote,
	})
	if err != nil {
		return response{}, err
	}
	return ok(codes.Changed, f, res.Body), nil
}

// status serves POST /vs and /es (cBRSKI): CBOR (60) or JSON (50) in,
// 2.04 with an empty payload.
func (s *Server) status(kind store.TelemetryKind) func(context.Context, *request) (response, error) {
	return func(ctx context.Context, r *request) (response, error) {
		mt := registrar.MediaTypeCBOR
		if r.format == int(FormatJSON) {
			mt = registrar.MediaTypeJSON
		}
		err := s.reg.ReportStatus(ctx, registrar.StatusInput{
			Kind:             kind,
			Body:             bytes.NewReader(r.body),
			MediaType:        mt,
			PeerCertificates: r.ses.chain,
		})
		if err != nil {
			return response{}, err
		}
		return response{code: codes.Changed}, nil
	}
}
