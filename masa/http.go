package masa

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Metric label values of the endpoint label.
const (
	endpointRequestVoucher  = "requestvoucher"
	endpointRequestAuditLog = "requestauditlog"
)

// Handler returns the MASA's HTTP handler: the BRSKI routes and their legacy
// aliases behind the web middleware chain. Anything else is 404 or 405.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	voucherH := web.Handle(s.counted(endpointRequestVoucher, s.handleRequestVoucher), web.WritePlain)
	auditH := web.Handle(s.counted(endpointRequestAuditLog, s.handleRequestAuditLog), web.WritePlain)
	mux.Handle("POST "+PathRequestVoucher, voucherH)
	mux.Handle("POST "+PathLegacyRequestVoucher, voucherH)
	mux.Handle("POST "+PathRequestAuditLog, auditH)
	mux.Handle("POST "+PathLegacyAuditLog, auditH)
	return web.Chain(mux, web.Options{
		Logger: s.log,
		Clock:  s.clk,
		Errors: web.WritePlain,
		OnPanic: func(r *http.Request, v any) {
			_ = s.audit.Record(r.Context(), audit.New(audit.Panic, "component", "masa", "path", r.URL.Path, "value", fmt.Sprint(v)))
		},
	})
}

// counted counts requests by endpoint and result.
func (s *Service) counted(endpoint string, h web.HandlerFunc) web.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		result := "ok"
		if err != nil {
			result = problem.From(err).Kind.String()
		}
		s.metrics.requests.WithLabelValues(endpoint, result).Inc()
		return err
	}
}

func (s *Service) handleRequestVoucher(w http.ResponseWriter, r *http.Request) error {
	return s.serve(w, r, s.RequestVoucher)
}

func (s *Service) handleRequestAuditLog(w http.ResponseWriter, r *http.Request) error {
	return s.serve(w, r, s.AuditLog)
}

// serve is the shape of both handlers: bounded body of an accepted media
// type (CMS, or COSE under either name), the TLS peer, one service call, the answer.
func (s *Service) serve(w http.ResponseWriter, r *http.Request, call func(context.Context, VoucherRequest) (*Response, error)) error {
	// RFC 8995 §5.6: 415 for a voucher-request media type not understood.
	body, err := web.ReadBody(w, r, MaxRequestBytes, MediaVoucherCMS, MediaVoucherCOSE, MediaVoucherCOSELegacy)
	if err != nil {
		return err
	}
	peer, err := web.PeerCertificates(r)
	if err != nil {
		return err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")) // checked by ReadBody
	resp, err := call(r.Context(), VoucherRequest{Raw: body, MediaType: strings.ToLower(mt), Peer: peer, Accept: r.Header.Get("Accept")})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", resp.MediaType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp.Body)
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
