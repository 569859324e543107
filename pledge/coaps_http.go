package pledge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/gatehouse-pki/gatehouse/est"
	"github.com/gatehouse-pki/gatehouse/voucher"
)

// The Client speaks BRSKI and EST in HTTP terms (paths, media types,
// status codes, base64 EST bodies). Over coaps:// a CoAPSession carries
// the same exchange, translated as an HTTPS-to-CoAPS proxy would (RFC 9148
// §6; cBRSKI): the long paths become the short resources, the media types
// Content-Formats, base64 bodies binary DER, JSON status reports CBOR
// (cBRSKI: pledges MUST send CBOR), and the CoAP codes HTTP statuses; a
// 5.03 with Max-Age becomes a 202 with Retry-After where HTTPS could
// answer 202, else a 503 with Retry-After, so the Client's retry logic
// applies unchanged.

// coapPaths maps the Client's HTTPS paths to the CoAP resources.
var coapPaths = map[string]string{
	PathRequestVoucher: "/.well-known/brski/rv",
	PathVoucherStatus:  "/.well-known/brski/vs",
	PathEnrollStatus:   "/.well-known/brski/es",
	PathCACerts:        coapsCrts,
	PathCSRAttrs:       "/.well-known/est/att",
	PathSimpleEnroll:   coapsSen,
	PathSimpleReenroll: coapsSren,
}

// acceptedPaths are the requests HTTPS may answer 202 + Retry-After.
var acceptedPaths = map[string]bool{PathRequestVoucher: true, PathSimpleEnroll: true, PathSimpleReenroll: true}

// coapFormats maps media types to Content-Formats and back.
var coapFormats = map[string]message.MediaType{
	MediaTypeCertsOnly:    cfCertsOnly,
	MediaTypePKCS10:       cfPKCS10,
	MediaTypeCSRAttrs:     285,
	voucher.MediaTypeCOSE: 836,
	MediaTypeJSON:         60, // sent as CBOR
}

func mediaOf(cf message.MediaType) string {
	for mt, f := range coapFormats {
		if f == cf && mt != MediaTypeJSON {
			return mt
		}
	}
	return ""
}

// coapStatus maps a CoAP response code to the HTTP status the Client
// understands (RFC 8075 §7).
var coapStatus = map[codes.Code]int{
	codes.Created:                 http.StatusOK,
	codes.Deleted:                 http.StatusOK,
	codes.Valid:                   http.StatusOK,
	codes.Changed:                 http.StatusOK,
	codes.Content:                 http.StatusOK,
	codes.BadRequest:              http.StatusBadRequest,
	codes.Unauthorized:            http.StatusUnauthorized,
	codes.BadOption:               http.StatusBadRequest,
	codes.Forbidden:               http.StatusForbidden,
	codes.NotFound:                http.StatusNotFound,
	codes.MethodNotAllowed:        http.StatusMethodNotAllowed,
	codes.NotAcceptable:           http.StatusNotAcceptable,
	codes.RequestEntityIncomplete: http.StatusBadRequest,
	codes.RequestEntityTooLarge:   http.StatusRequestEntityTooLarge,
	codes.UnsupportedMediaType:    http.StatusUnsupportedMediaType,
	codes.InternalServerError:     http.StatusInternalServerError,
	codes.BadGateway:              http.StatusBadGateway,
	codes.ServiceUnavailable:      http.StatusServiceUnavailable,
	codes.GatewayTimeout:          http.StatusGatewayTimeout,
}

func (s *CoAPSession) get(ctx context.Context, path, accept string) (*answer, error) {
	return s.roundTrip(ctx, codes.GET, path, "", accept, nil)
}

func (s *CoAPSession) post(ctx context.Context, path, contentType, accept string, body []byte) (*answer, error) {
	return s.roundTrip(ctx, codes.POST, path, contentType, accept, body)
}

// roundTrip sends one translated request and translates the answer.
func (s *CoAPSession) roundTrip(ctx context.Context, method codes.Code, path, contentType, accept string, body []byte) (*answer, error) {
	cpath, ok := coapPaths[path]
	if !ok {
		return nil, fmt.Errorf("coaps: no CoAP resource for %s", path)
	}
	var opts []message.Option
	if cf, ok := coapFormats[accept]; ok && accept != MediaTypeJSON {
		opts = append(opts, message.Option{ID: message.Accept, Value: uintOption(uint32(cf))})
	}
	req := s.cc.AcquireMessage(ctx)
	defer s.cc.ReleaseMessage(req)
	token, err := message.GetToken()
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w", cpath, err)
	}
	if method == codes.GET {
		err = req.SetupGet(cpath, token, opts...)
	} else {
		payload, cf, cerr := coapPayload(contentType, body)
		if cerr != nil {
			return nil, cerr
		}
		err = req.SetupPost(cpath, token, cf, bytes.NewReader(payload), opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w", cpath, err)
	}
	resp, err := s.cc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w: %w", cpath, ErrConnect, err)
	}
	defer s.cc.ReleaseMessage(resp)
	rb, err := resp.ReadBody()
	if err != nil {
		return nil, fmt.Errorf("coaps %s: %w", cpath, err)
	}
	if len(rb) > MaxResponseBytes {
		return nil, fmt.Errorf("coaps %s: response is larger than %d bytes", cpath, MaxResponseBytes)
	}
	a := &answer{status: http.StatusBadGateway, header: http.Header{}, body: rb}
	if st, ok := coapStatus[resp.Code()]; ok {
		a.status = st
	}
	if cf, err := resp.ContentFormat(); err == nil && a.status == http.StatusOK {
		a.header.Set("Content-Type", mediaOf(cf))
		if cf == cfCertsOnly || cf == 285 {
			a.body = est.EncodeBase64(rb) // the Client's EST decoders take RFC 8951 base64
		}
	}
	if ma, err := resp.GetOptionUint32(message.MaxAge); err == nil && resp.Code() == codes.ServiceUnavailable {
		// RFC 9148 §5.7: retry after Max-Age. Where HTTPS would answer
		// 202 + Retry-After (a voucher pending approval, RFC 8995 §5.6;
		// an enrolment in progress, RFC 7030 §4.2.3) that is what it
		// means; elsewhere (telemetry, cacerts, csrattrs) only a busy
		// registrar, 503 + Retry-After, which the Client also waits out
		// but, unlike a 202, never takes for a success.
		if acceptedPaths[path] {
			a.status = http.StatusAccepted
		}
		a.header.Set("Retry-After", strconv.FormatUint(uint64(ma), 10))
	}
	return a, nil
}

// coapPayload turns an HTTP body into the CoAP payload: base64 PKCS#10
// into DER (286), a JSON status report into CBOR with the same text keys
// (60), a COSE voucher-request as is (836).
func coapPayload(contentType string, body []byte) ([]byte, message.MediaType, error) {
	switch contentType {
	case MediaTypePKCS10:
		der, err := est.DecodeBase64Body(body)
		if err != nil {
			return nil, 0, fmt.Errorf("coaps: %w", err)
		}
		return der, cfPKCS10, nil
	case MediaTypeJSON:
		var sb statusBody
		if err := json.Unmarshal(body, &sb); err != nil {
			return nil, 0, fmt.Errorf("coaps: status report: %w", err)
		}
		m := map[string]any{"version": sb.Version, "status": sb.Status}
		if sb.Reason != "" {
			m["reason"] = sb.Reason
		}
		b, err := cbor.Marshal(m)
		if err != nil {
			return nil, 0, fmt.Errorf("coaps: status report: %w", err)
		}
		return b, 60, nil
	case voucher.MediaTypeCOSE:
		return body, 836, nil
	}
	return nil, 0, fmt.Errorf("coaps: no Content-Format for %q", contentType)
}

// uintOption encodes a CoAP uint option value.
func uintOption(v uint32) []byte {
	var b []byte
	for v > 0 {
		b = append([]byte{byte(v & 0xff)}, b...)
		v >>= 8
	}
	return b
}
