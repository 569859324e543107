package coap

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Part is one representation in an application/multipart-core payload
// (RFC 8710 §2): a Content-Format and its bytes.
type Part struct {
	Format uint16
	Body   []byte
}

// maxParts bounds a multipart-core payload's parts when decoding.
const maxParts = 16

// ErrMultipart reports a payload that is not application/multipart-core.
var ErrMultipart = errors.New("coap: not application/multipart-core")

var (
	mpEnc = func() cbor.EncMode {
		em, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err) // constant options
		}
		return em
	}()
	mpDec = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
			IndefLength:      cbor.IndefLengthForbidden,
			MaxNestedLevels:  4,
			MaxArrayElements: 2 * maxParts,
		}.DecMode()
		if err != nil {
			panic(err) // constant options
		}
		return dm
	}()
)

// MarshalMultipart encodes parts as the CBOR array RFC 8710 §2 defines:
// [format, bytes, format, bytes, …].
func MarshalMultipart(parts []Part) ([]byte, error) {
	arr := make([]any, 0, 2*len(parts))
	for _, p := range parts {
		arr = append(arr, p.Format, p.Body)
	}
	b, err := mpEnc.Marshal(arr)
	if err != nil {
		return nil, fmt.Errorf("marshal multipart-core: %w", err)
	}
	return b, nil
}

// ParseMultipart decodes an application/multipart-core payload: one
// definite-length CBOR array of an even number of elements, each pair an
// unsigned Content-Format (at most 65535) and a byte string (RFC 8710 §2;
// the null representation of an absent part is refused, as no EST-coaps
// response uses it). Every error wraps ErrMultipart.
func ParseMultipart(b []byte) ([]Part, error) {
	var arr []cbor.RawMessage
	if err := mpDec.Unmarshal(b, &arr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMultipart, err)
	}
	if len(arr)%2 != 0 || len(arr) == 0 {
		return nil, fmt.Errorf("%w: %d elements", ErrMultipart, len(arr))
	}
	parts := make([]Part, 0, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		var p Part
		if err := mpDec.Unmarshal(arr[i], &p.Format); err != nil {
			return nil, fmt.Errorf("%w: part %d format: %w", ErrMultipart, i/2, err)
		}
		if len(arr[i+1]) == 0 || arr[i+1][0]>>5 != 2 {
			return nil, fmt.Errorf("%w: part %d is not a byte string", ErrMultipart, i/2)
		}
		if err := mpDec.Unmarshal(arr[i+1], &p.Body); err != nil {
			return nil, fmt.Errorf("%w: part %d: %w", ErrMultipart, i/2, err)
		}
		parts = append(parts, p)
	}
	return parts, nil
}
