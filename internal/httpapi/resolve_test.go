package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/httpapi"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

// TestResolveEndpoint: POST /v1/spends/{id}/resolve is an owner endpoint
// with a strict body; it settles an unknown spend once, and answers
// invalid_state for one that is not unknown.
func TestResolveEndpoint(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rail := &spendtest.Rail{Outcome: func(*spend.Spend) (spend.ExecResult, error) {
		return spend.ExecResult{Outcome: spend.OutcomeUnknown}, nil
	}}
	e := spendtest.NewEnv(t, st, rail)
	assets, _ := money.NewRegistry(money.DefaultAssets()...)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Service: e.Svc, Assets: assets, OwnerToken: "pso_test",
		Metrics: metrics.NewRegistry(), Clock: e.Clock}).Handler())
	t.Cleanup(srv.Close)
	a := e.NewAgent("r", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10"}`)
	r := spendtest.Custom("0.10")
	r.Rail = "testrail"
	unknown, authorized := a.MustAuthorize(r), a.MustAuthorize(spendtest.Custom("0.10"))
	if unknown.Status != spend.StatusUnknown || authorized.Status != spend.StatusAuthorized {
		t.Fatalf("spends: %s, %s", spendtest.Describe(unknown), spendtest.Describe(authorized))
	}
	post := func(token, id, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/spends/"+id+"/resolve", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var out map[string]any
		json.Unmarshal(raw, &out) //nolint:errcheck
		return res.StatusCode, out
	}
	for _, c := range []struct {
		name, token, id, body string
		status                int
		code                  string
	}{
		{"no token", "wrong", unknown.ID, `{"released":true,"reason":"x"}`, 401, "unauthorized"},
		{"empty body", "pso_test", unknown.ID, ``, 400, "invalid_request"},
		{"both", "pso_test", unknown.ID, `{"released":true,"reason":"x","captured_tx":"0xabc"}`, 400, "invalid_request"},
		{"no reason", "pso_test", unknown.ID, `{"released":true}`, 400, "invalid_request"},
		{"unknown field", "pso_test", unknown.ID, `{"released":true,"reason":"x","force":true}`, 400, "invalid_request"},
		{"no such spend", "pso_test", "spd_nope", `{"released":true,"reason":"x"}`, 404, "spend_not_found"},
	} {
		if status, out := post(c.token, c.id, c.body); status != c.status || out["code"] != c.code {
			t.Errorf("%s: %d %v; want %d %s", c.name, status, out, c.status, c.code)
		}
	}
	if status, out := post("pso_test", unknown.ID, `{"captured_tx":"ref-77","reason":"seller's statement"}`); status != 200 || out["status"] != "captured" || out["rail_ref"] != "ref-77" {
		t.Fatalf("resolve captured: %d %v", status, out)
	}
	if status, out := post("pso_test", unknown.ID, `{"released":true,"reason":"again"}`); status != 409 || out["code"] != "invalid_state" {
		t.Fatalf("second resolve: %d %v", status, out)
	}
	if status, out := post("pso_test", authorized.ID, `{"released":true,"reason":"x"}`); status != 409 || out["code"] != "invalid_state" {
		t.Fatalf("resolve of a spend that is not unknown: %d %v", status, out)
	}
}
