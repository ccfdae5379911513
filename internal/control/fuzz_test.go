package control

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/telemetry"
	"github.com/autopilot/autopilot/supervisor/config"
)

// FuzzBodies sends arbitrary bodies to the endpoints that parse one: the
// answer is 200 or 422 with a reason, never a panic, and nothing invalid
// reaches the controller.
func FuzzBodies(f *testing.F) {
	for _, s := range []string{`{"app_hits":"3"}`, `{"app_temp":21.5}`, `{"K":"V"}`, `{"":"x"}`, `{"A=B":"1"}`,
		`{"app_hits":"NaN"}`, `{"app_hits":1e400}`, `{"app_hits":null}`, `[]`, `"x"`, ``, `{"app_hits":"-1"}`, "{\"K\":\"a\\u0000b\"}"} {
		f.Add("/v3/metric", s)
		f.Add("/v3/environ", s)
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != "/v3/metric" && path != "/v3/environ" {
			return
		}
		um, err := telemetry.NewUserMetrics([]config.Metric{
			{Namespace: "app", Name: "hits", Type: config.Counter},
			{Namespace: "app", Name: "temp", Type: config.Gauge},
		})
		if err != nil {
			t.Fatal(err)
		}
		fc := &fakeController{metrics: um}
		h := Handler(fc, zerolog.Nop())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		switch w.Code {
		case http.StatusOK:
		case http.StatusUnprocessableEntity:
			if strings.TrimSpace(w.Body.String()) == "" {
				t.Fatalf("422 without a reason for %q", body)
			}
		default:
			t.Fatalf("status %d for %s %q", w.Code, path, body)
		}
		_, _, env := fc.seen()
		for k, v := range env {
			if ValidEnv(k, v) != nil {
				t.Fatalf("invalid variable %q=%q reached the controller", k, v)
			}
		}
	})
}
