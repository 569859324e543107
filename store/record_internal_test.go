package store

import (
	"strings"
	"testing"
	"time"
)

// TestDecodeRecord: one-pass decoding for record types that carry their
// version, with the same outcomes as checking the version first.
func TestDecodeRecord(t *testing.T) {
	t.Parallel()
	for _, into := range []any{&auditRecordV1{}, &auditHeadV1{}, &telemetryRecordV1{}, &versioned{}} {
		if _, ok := versionField(into); !ok {
			t.Errorf("%T: no settable version field (decoded in two passes)", into)
		}
	}
	if _, ok := versionField(&struct{ Hash string }{}); ok {
		t.Error("a type without V has a version field")
	}

	rec := `{"v":1,"seq":7,"time":"2030-01-02T03:04:05Z","type":"x","fields":{"a":"b"},"prev":"00","hash":"ab"}`
	var got auditRecordV1
	if err := decodeRecord([]byte(rec), &got); err != nil {
		t.Fatal(err)
	}
	if got.V != 1 || got.Seq != 7 || got.Fields["a"] != "b" || got.Hash != "ab" || !got.Time.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("decoded %+v", got)
	}
	var head auditHeadV1
	if err := decodeRecord([]byte(rec), &head); err != nil || head.Hash != "ab" {
		t.Errorf("head = %+v, %v", head, err)
	}
	var plain struct{ Hash string }
	if err := decodeRecord([]byte(rec), &plain); err != nil || plain.Hash != "ab" {
		t.Errorf("type without V: %+v, %v", plain, err)
	}

	tests := []struct {
		name, raw, want string
	}{
		{"version-2", `{"v":2,"hash":"ab"}`, "version 2"},
		{"version-missing", `{"hash":"ab"}`, "version 0"},
		{"version-2-other-layout", `{"v":2,"seq":"seven"}`, "version 2"},
		{"malformed", `{"v":1,"seq":"seven"}`, "decode record: json"},
		{"not-json", `{`, "decode record"},
	}
	for _, tc := range tests {
		stale := auditRecordV1{auditBodyV1: auditBodyV1{V: 1}} // a reused variable must not pass for v1
		err := decodeRecord([]byte(tc.raw), &stale)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
