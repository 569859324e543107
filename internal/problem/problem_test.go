package problem

import (
	"errors"
	"fmt"
	"testing"
)

func TestFrom(t *testing.T) {
	t.Parallel()
	cause := errors.New("disk on fire")
	p := New(Forbidden, cause, "device %s is not allowed", "SN-1")
	tests := []struct {
		name       string
		err        error
		wantKind   Kind
		wantDetail string
	}{
		{"direct", p, Forbidden, "device SN-1 is not allowed"},
		{"wrapped-twice", fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", p)), Forbidden, "device SN-1 is not allowed"},
		{"unknown", cause, Internal, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := From(tc.err)
			if got.Kind != tc.wantKind || got.Detail != tc.wantDetail {
				t.Fatalf("From() = %v %q, want %v %q", got.Kind, got.Detail, tc.wantKind, tc.wantDetail)
			}
			if !errors.Is(got, cause) {
				t.Fatalf("From() lost the cause: %v", got)
			}
		})
	}
}

func TestKind_String(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for k := Internal; k <= Unavailable; k++ {
		s := k.String()
		if s == "" || seen[s] {
			t.Fatalf("kind %d has empty or duplicate name %q", k, s)
		}
		seen[s] = true
	}
	if got := Kind(99).String(); got != "kind(99)" {
		t.Fatalf("unknown kind = %q", got)
	}
}
