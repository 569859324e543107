package pledge

import (
	"context"
	"encoding/json"
	"fmt"
)

// StatusVersion is the version of the telemetry format (RFC 8995 §5.7).
const StatusVersion = 1

// statusBody is voucherstatus-post and enrollstatus-post (RFC 8995 §5.7,
// §5.9.4; lowercase keys per erratum 6834).
type statusBody struct {
	Version int    `json:"version"`
	Status  bool   `json:"status"`
	Reason  string `json:"reason,omitempty"`
}

// VoucherStatus posts voucher_status telemetry (RFC 8995 §5.7): whether the
// pledge accepted the voucher, and why not. RequestVoucher already sends it;
// call it directly only to report a later verdict. A non-2xx answer is a
// *StatusError (the RFC lets a registrar answer 404).
func (c *Client) VoucherStatus(ctx context.Context, ok bool, reason string) error {
	return postStatus(ctx, c, c.busy(), PathVoucherStatus, ok, reason)
}

// EnrollStatus posts enrollstatus telemetry (RFC 8995 §5.9.4): whether the
// pledge enrolled. A non-2xx answer is a *StatusError.
func (c *Client) EnrollStatus(ctx context.Context, ok bool, reason string) error {
	return postStatus(ctx, c, c.busy(), PathEnrollStatus, ok, reason)
}

// postStatus posts a telemetry body to path over p, again after busy
// answers as b allows (the same body: the registrar did nothing with it).
func postStatus(ctx context.Context, p poster, b busyPolicy, path string, ok bool, reason string) error {
	body, err := json.Marshal(statusBody{Version: StatusVersion, Status: ok, Reason: reason})
	if err != nil {
		return fmt.Errorf("pledge: encode %s: %w", path, err)
	}
	ans, err := b.do(ctx, func() (*answer, error) { return p.post(ctx, path, MediaTypeJSON, "", body) })
	if err != nil {
		return err
	}
	if ans.status/100 != 2 {
		return statusError(path, ans)
	}
	return nil
}
