package registrar_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-pki/gatehouse/registrar"
	"github.com/gatehouse-pki/gatehouse/registrar/registrartest"
)

// TestAdmin_CAStatusRenewalWindow: GET /api/v1/ca lists renewals within
// Config.RenewalWindow unless the query names a window.
func TestAdmin_CAStatusRenewalWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *registrartest.Options) {
		o.Config = func(c *registrar.Config) { c.RenewalWindow = 240 * time.Hour }
	})
	admin := httptestServer(t, e.reg.Service.AdminHandler())
	for query, want := range map[string]string{"": "240h0m0s", "?renewalWindow=48h": "48h0m0s"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, admin+"/api/v1/ca"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/ca%s: %d %v %s", query, resp.StatusCode, err, body)
		}
		var st registrar.CAStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.RenewalWindow != want {
			t.Errorf("GET /api/v1/ca%s: renewal window %q, want %q", query, st.RenewalWindow, want)
		}
	}
}
