package cli

import (
	"encoding/json"
	"io"
	"math"
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
	thousand := make([]int, 1000)
	for i := range thousand {
		thousand[i] = i + 1
	}
	for _, tt := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"p99.9 of empty", nil, 0},
		{"p99.9 of one", ms(7), 7 * time.Millisecond},
		{"p99.9 of 1..100", ms(hundred...), 100 * time.Millisecond},
		{"p99.9 of 1..1000", ms(thousand...), 999 * time.Millisecond},
	} {
		if got := quantile(tt.samples, 999, 1000); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestBenchSummary(t *testing.T) {
	t.Parallel()
	var a, b []time.Duration
	for i := 1; i <= 1000; i++ { // 1..1000 ms, interleaved over two workers
		if i%2 == 0 {
			a = append(a, time.Duration(i)*time.Millisecond)
		} else {
			b = append(b, time.Duration(i)*time.Millisecond)
		}
	}
	workers := []*benchWorker{
		{samples: a, reqs: len(a) + 2, late: 3, errs: map[string]int64{"spend_denied": 2}},
		{samples: b, reqs: len(b), late: 1, errs: map[string]int64{}},
	}
	res := summarize(workers, 2*time.Second)
	if res.Requests != 1002 || res.Authorizations != 1000 || res.AuthorizationsS != 500 || res.Late != 4 ||
		res.Errors["spend_denied"] != 2 || res.P50ms != 500 || res.P99ms != 990 || res.P999ms != 999 || res.MaxMs != 1000 {
		t.Errorf("summary %+v", res)
	}
	if empty := summarize(nil, time.Second); empty.P999ms != 0 || empty.MaxMs != 0 || empty.Authorizations != 0 {
		t.Errorf("empty summary %+v", empty)
	}
}

func TestBenchOffset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate         float64
		agents, i, k int
		want         time.Duration
	}{
		{1000, 4, 0, 0, 0},
		{1000, 4, 1, 0, time.Millisecond},            // agents staggered by 1/rate
		{1000, 4, 3, 0, 3 * time.Millisecond},        //
		{1000, 4, 0, 1, 4 * time.Millisecond},        // each agent every agents/rate
		{1000, 4, 2, 5, 22 * time.Millisecond},       // (5*4+2)/1000 s
		{3000, 64, 0, 1, 21333333 * time.Nanosecond}, // 64/3000 s
		{0.5, 1, 0, 3, 6 * time.Second},
		{1e-12, 64, 63, 1 << 40, math.MaxInt64}, // saturates instead of overflowing
	}
	for _, tt := range tests {
		if got := benchOffset(tt.rate, tt.agents, tt.i, tt.k); got != tt.want {
			t.Errorf("benchOffset(%g, %d, %d, %d) = %s, want %s", tt.rate, tt.agents, tt.i, tt.k, got, tt.want)
		}
	}
	// Over the agents, the schedule is one request every 1/rate, in order.
	const rate, agents = 200.0, 4
	var prev time.Duration = -1
	for n := 0; n < 40; n++ {
		got := benchOffset(rate, agents, n%agents, n/agents)
		if want := time.Duration(n) * 5 * time.Millisecond; got != want || got <= prev {
			t.Fatalf("request %d (agent %d, k %d) at %s, want %s", n, n%agents, n/agents, got, want)
		}
		prev = got
	}
}

func TestBenchRateFlag(t *testing.T) {
	t.Parallel()
	envv := map[string]string{"PURSER_SERVER": "http://127.0.0.1:1", "PURSER_OWNER_TOKEN": "tok"}
	for _, rate := range []string{"-1", "1000001", "NaN", "+Inf", "fast"} {
		code, _, errOut := runCLI(t, envv, "bench", "--agents", "4", "--rate", rate)
		if code != ExitUsage {
			t.Errorf("--rate %s: exit %d, want %d (%s)", rate, code, ExitUsage, errOut)
		}
	}
	for _, tt := range []struct {
		rate float64
		ok   bool
	}{
		{0, true},
		{3000, true},
		{maxBenchRate, true}, // 1µs per request, however many agents share it
		{maxBenchRate + 1, false},
		{-0.5, false},
		{math.NaN(), false},
	} {
		if err := checkBenchRate("bench", tt.rate); (err == nil) != tt.ok {
			t.Errorf("checkBenchRate(%g): %v", tt.rate, err)
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

// benchServer is a stand-in for purser serve that checks the owner token,
// the bench mandate and each agent signature, and denies every agent's
// fourth spend.
func benchServer(t *testing.T, created *atomic.Int32, revoked ...*atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/v1/agents/bench-") && strings.HasSuffix(r.URL.Path, "/revoke") && r.Method == "POST" &&
			r.Header.Get("Authorization") == "Bearer tok" {
			for _, n := range revoked {
				n.Add(1)
			}
			io.WriteString(w, `{"id":"ag","name":"x","status":"revoked"}`)
			return
		}
		switch r.URL.Path {
		case "/v1/deployment":
			io.WriteString(w, `{"deployment_id":"`+fakeDomain.DeploymentHex()+`","auth_versions":[2]}`)
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
				err = s.Verify(fakeDomain, r.Method, r.RequestURI, body, time.Now())
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
	return srv
}

func TestBenchAgainstVerifyingServer(t *testing.T) {
	t.Parallel()
	var created, revoked atomic.Int32
	srv := benchServer(t, &created, &revoked)
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}
	code, out, errOut := runCLI(t, envv, "bench", "--agents", "3", "--duration", "300ms", "--warmup", "0s", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if revoked.Load() != 3 {
		t.Errorf("bench revoked %d of its 3 agents", revoked.Load())
	}
	var created2, revoked2 atomic.Int32
	srv2 := benchServer(t, &created2, &revoked2)
	env2 := map[string]string{"PURSER_SERVER": srv2.URL, "PURSER_OWNER_TOKEN": "tok"}
	if code, _, errOut := runCLI(t, env2, "bench", "--agents", "2", "--duration", "100ms", "--warmup", "0s", "--json", "--keep"); code != 0 || created2.Load() != 2 || revoked2.Load() != 0 {
		t.Errorf("bench --keep: exit %d, %d revoked (%s)", code, revoked2.Load(), errOut)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if created.Load() != 3 || res.Agents != 3 || res.Authorizations == 0 || res.AuthorizationsS <= 0 ||
		res.Errors["spend_denied"] != 3 || res.Errors["signature_invalid"] != 0 || res.P50ms > res.P99ms ||
		res.Mode != "closed" || res.OfferedRateS != 0 || res.Late != 0 || res.P99ms > res.P999ms || res.P999ms > res.MaxMs {
		t.Errorf("result %+v (agents created %d)", res, created.Load())
	}
}

func TestBenchOpenLoopAgainstVerifyingServer(t *testing.T) {
	t.Parallel()
	var created atomic.Int32
	srv := benchServer(t, &created)
	envv := map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}
	// A modest rate (each agent every 100 ms): what is checked is the open
	// loop's schedule and accounting, which must hold on a loaded machine
	// under -race too, not how fast this machine is.
	code, out, errOut := runCLI(t, envv, "bench", "--agents", "4", "--rate", "40", "--duration", "1s", "--warmup", "400ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res benchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	// 40/s: each agent's fourth spend (k=3, at 300-375 ms) falls in the warmup.
	rate := float64(res.Requests) / res.DurationS
	if created.Load() != 4 || res.Agents != 4 || res.Mode != "open" || res.OfferedRateS != 40 ||
		rate < 30 || rate > 44 || res.Errors["signature_invalid"] != 0 || res.Errors["spend_denied"] != 0 ||
		res.Authorizations != res.Requests || res.P50ms > res.P99ms || res.P999ms > res.MaxMs {
		t.Errorf("result %+v, achieved %.1f/s (agents created %d)", res, rate, created.Load())
	}

	// The human output keeps the closed-loop lines and adds the open-loop ones.
	code, out, errOut = runCLI(t, envv, "bench", "--agents", "2", "--rate", "100", "--duration", "200ms", "--warmup", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"offered         100.0/s (open loop)\n", "\nlatency         p50 ", "\ntail            p99.9 ", "\nlate            "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
