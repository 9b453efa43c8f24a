package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       int
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p95 of 1..100", ms(hundred...), 95, 95 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of four", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.samples, tt.p); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestParseAuditKey(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("ab", 32)
	tests := []struct {
		in string
		ok bool
	}{
		{good, true},
		{"0x" + good + "\n", true},
		{good[:62], false},
		{strings.Repeat("zz", 32), false},
		{"", false},
	}
	for _, tt := range tests {
		if _, err := parseAuditKey(tt.in); (err == nil) != tt.ok {
			t.Errorf("parseAuditKey(%q): %v", tt.in, err)
		}
	}
}

func TestBenchAgainstVerifyingServer(t *testing.T) {
	t.Parallel()
	var created atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v1/agents":
			if r.Header.Get("Authorization") != "Bearer tok" || !strings.Contains(string(body), `"per_tx_max":"1"`) {
				w.WriteHeader(400)
				return
			}
			created.Add(1)
			w.WriteHeader(201)
			io.WriteString(w, `{"id":"ag","name":"x","status":"active"}`)
		case "/v1/agent/spends":
			s, err := agentauth.Parse(r.Header)
			if err == nil {
				err = s.Verify(r.Method, r.RequestURI, body, time.Now())
			}
			if err != nil {
				w.WriteHeader(401)
				io.WriteString(w, `{"code":"signature_invalid","message":"x"}`)
				return
			}
			if strings.Contains(string(body), `-3"`) { // every agent's fourth spend
				w.WriteHeader(403)
				io.WriteString(w, `{"code":"spend_denied","message":"x","details":{"reasons":["rate"]}}`)
				return
			}
			w.WriteHeader(201)
			io.WriteString(w, `{"spend_id":"sp","status":"authorized","decision":"allow","reasons":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}
	code, out, errOut := runCLI(t, envv, "bench", "--agents", "3", "--duration", "300ms", "--warmup", "0s", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if created.Load() != 3 || res.Agents != 3 || res.Authorizations == 0 || res.AuthorizationsS <= 0 ||
		res.Errors["spend_denied"] != 3 || res.Errors["signature_invalid"] != 0 || res.P50ms > res.P99ms {
		t.Errorf("result %+v (agents created %d)", res, created.Load())
	}
}
