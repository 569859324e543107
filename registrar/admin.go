package registrar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gatehouse-pki/gatehouse/internal/audit"
	"github.com/gatehouse-pki/gatehouse/internal/problem"
	"github.com/gatehouse-pki/gatehouse/internal/web"
	"github.com/gatehouse-pki/gatehouse/store"
)

// Admin API paths.
const (
	PathAdminDevices = "/api/v1/devices"
	pathAdminApprove = "/api/v1/devices/{serial}/approve"
	pathAdminDeny    = "/api/v1/devices/{serial}/deny"
	// PathAdminCA is the domain CA lifecycle: GET the status, POST
	// rollover, POST revoke.
	PathAdminCA         = "/api/v1/ca"
	pathAdminCARollover = "/api/v1/ca/rollover"
	pathAdminCARevoke   = "/api/v1/ca/revoke/{serial}"
)

// maxAdminBody caps an admin request body (a deny reason).
const maxAdminBody = 4 << 10

// DeviceView is a device as the admin API lists it.
type DeviceView struct {
	Issuer       string    `json:"issuer"`
	Serial       string    `json:"serial"`
	Status       string    `json:"status"`
	StatusReason string    `json:"statusReason,omitempty"`
	MASAURL      string    `json:"masaURL,omitempty"`
	VoucherNonce string    `json:"voucherNonce,omitempty"`
	VoucherAt    time.Time `json:"voucherAt,omitzero"`
	LDevIDs      []string  `json:"ldevids,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// DeviceList is the body of GET /api/v1/devices.
type DeviceList struct {
	Devices []DeviceView `json:"devices"`
	// Next is the cursor of the following page (query parameter cursor);
	// empty on the last page.
	Next string `json:"next,omitempty"`
}

// AdminHandler returns the operator API, answered with RFC 9457
// problem+json errors:
//
//	GET  /api/v1/devices[?status=S&serial=N&cursor=C&limit=L]  → 200 DeviceList
//	POST /api/v1/devices/{serial}/approve                     → 204
//	POST /api/v1/devices/{serial}/deny   [{"reason": "…"}]    → 204
//	GET  /api/v1/ca[?renewalWindow=720h]                      → 200 CAStatus
//	POST /api/v1/ca/rollover                                  → 200 RolloverResult
//	POST /api/v1/ca/revoke/{serial}     [{"reason": "…"}]    → 204
//
// Everything else is 404 or 405. The caller serves it on the admin
// listener, which authenticates operators.
func (s *Service) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+PathAdminDevices, web.Handle(s.handleListDevices, web.WriteProblem))
	mux.Handle("POST "+pathAdminApprove, web.Handle(s.handleApprove, web.WriteProblem))
	mux.Handle("POST "+pathAdminDeny, web.Handle(s.handleDeny, web.WriteProblem))
	mux.Handle("GET "+PathAdminCA, web.Handle(s.handleCAStatus, web.WriteProblem))
	mux.Handle("POST "+pathAdminCARollover, web.Handle(s.handleCARollover, web.WriteProblem))
	mux.Handle("POST "+pathAdminCARevoke, web.Handle(s.handleCARevoke, web.WriteProblem))
	notAllowed := web.Handle(func(http.ResponseWriter, *http.Request) error {
		return problem.New(problem.MethodNotAllowed, nil, "method not allowed")
	}, web.WriteProblem)
	for _, p := range []string{PathAdminDevices, pathAdminApprove, pathAdminDeny, PathAdminCA, pathAdminCARollover, pathAdminCARevoke} {
		mux.Handle(p, notAllowed)
	}
	mux.Handle("/", web.Handle(func(http.ResponseWriter, *http.Request) error {
		return problem.New(problem.NotFound, nil, "not found")
	}, web.WriteProblem))
	return web.Chain(mux, web.Options{Logger: s.log, Clock: s.clk, Errors: web.WriteProblem})
}

func (s *Service) handleListDevices(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.DeviceFilter{Status: store.DeviceStatus(q.Get("status")), Serial: q.Get("serial"), Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		if _, err := fmt.Sscanf(l, "%d", &f.Limit); err != nil {
			return problem.New(problem.BadRequest, err, "limit must be a number")
		}
	}
	list, err := s.Devices(r.Context(), f)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", MediaTypeJSON)
	return json.NewEncoder(w).Encode(list)
}

func (s *Service) handleApprove(w http.ResponseWriter, r *http.Request) error {
	if err := s.Approve(r.Context(), r.PathValue("serial")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// readReason reads the optional {"reason": "…"} body of an admin POST.
func readReason(w http.ResponseWriter, r *http.Request) (string, error) {
	var req struct {
		Reason string `json:"reason"`
	}
	body, err := web.ReadBody(w, r, maxAdminBody)
	if err != nil {
		return "", err
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return "", problem.New(problem.BadRequest, err, "the body must be {\"reason\": \"…\"}")
		}
	}
	return req.Reason, nil
}

func (s *Service) handleDeny(w http.ResponseWriter, r *http.Request) error {
	reason, err := readReason(w, r)
	if err != nil {
		return err
	}
	if err := s.Deny(r.Context(), r.PathValue("serial"), reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Devices lists devices for the admin API.
func (s *Service) Devices(ctx context.Context, f store.DeviceFilter) (*DeviceList, error) {
	if f.Status != "" && !f.Status.IsValid() {
		return nil, problem.New(problem.BadRequest, nil, "unknown status %q", f.Status)
	}
	page, err := s.db.ListDevices(ctx, f)
	if errors.Is(err, store.ErrInvalid) {
		return nil, problem.New(problem.BadRequest, err, "bad cursor")
	}
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out := &DeviceList{Devices: []DeviceView{}, Next: page.Next}
	for _, d := range page.Devices {
		v := DeviceView{
			Issuer: d.Key.Issuer, Serial: d.Key.Serial, Status: string(d.Status), StatusReason: d.StatusReason,
			MASAURL: d.MASAURL, VoucherNonce: d.LastVoucher.Nonce, VoucherAt: d.LastVoucher.At,
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
		}
		for _, sn := range d.LDevIDs {
			v.LDevIDs = append(v.LDevIDs, sn.Text(16))
		}
		out.Devices = append(out.Devices, v)
	}
	return out, nil
}

// Approve releases a device waiting for approval (or pre-approves a denied
// one): its next identical voucher-request goes to the MASA. The serial
// must name exactly one device (404 for none, 409 when several
// manufacturers use it).
func (s *Service) Approve(ctx context.Context, serial string) error {
	return s.decide(ctx, serial, store.DeviceApproved, audit.DeviceApproved, "operator approved")
}

// Deny refuses a device: its voucher-requests get 403 until an operator
// approves it.
func (s *Service) Deny(ctx context.Context, serial string, reason string) error {
	if reason == "" {
		reason = "operator denied"
	}
	return s.decide(ctx, serial, store.DeviceDenied, audit.DeviceDenied, reason)
}

func (s *Service) decide(ctx context.Context, serial string, to store.DeviceStatus, typ, reason string) error {
	web.EventFrom(ctx).Add(slog.String("pledge_serial", serial), slog.String("decision", string(to)))
	page, err := s.db.ListDevices(ctx, store.DeviceFilter{Serial: serial, Limit: 2})
	if err != nil {
		return fmt.Errorf("find device %q: %w", serial, err)
	}
	switch len(page.Devices) {
	case 0:
		return problem.New(problem.NotFound, nil, "no device with serial %q", serial)
	case 1:
	default:
		return problem.New(problem.Conflict, nil, "serial %q names devices of several manufacturers", serial)
	}
	d := page.Devices[0]
	ev := audit.New(typ, "pledge_serial", serial, "device", d.Key.String(), "from", string(d.Status), "reason", reason)
	if _, err := s.db.TransitionDevice(ctx, d.Key, d.Status, to, reason, ev); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return problem.New(problem.Conflict, err, "device %q is %s and cannot become %s", serial, d.Status, to)
		}
		return fmt.Errorf("transition device: %w", err)
	}
	return nil
}

func (s *Service) handleCAStatus(w http.ResponseWriter, r *http.Request) error {
	var window time.Duration
	if v := r.URL.Query().Get("renewalWindow"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return problem.New(problem.BadRequest, err, "renewalWindow must be a positive duration such as 720h")
		}
		window = d
	}
	st, err := s.CAStatus(r.Context(), window)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Service) handleCARollover(w http.ResponseWriter, r *http.Request) error {
	res, err := s.RolloverCA(r.Context(), RolloverDeps{})
	if err != nil {
		return err
	}
	web.EventFrom(r.Context()).Add(slog.String("from", res.From), slog.String("to", res.To))
	return writeJSON(w, http.StatusOK, res)
}

func (s *Service) handleCARevoke(w http.ResponseWriter, r *http.Request) error {
	name, err := readReason(w, r)
	if err != nil {
		return err
	}
	serial, err := ParseSerial(r.PathValue("serial"))
	if err != nil {
		return problem.New(problem.BadRequest, err, "%v", err)
	}
	reason, err := ParseRevocationReason(name)
	if err != nil {
		return problem.New(problem.BadRequest, err, "%v", err)
	}
	web.EventFrom(r.Context()).Add(slog.String("cert_serial", serial.Text(16)))
	if err := s.Revoke(r.Context(), serial, reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", MediaTypeJSON)
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
