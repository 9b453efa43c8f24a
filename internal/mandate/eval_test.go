package mandate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/money"
)

var update = flag.Bool("update", false, "rewrite the want section of testdata/eval/*.txtar")

// scenario is a txtar-like file: a free comment, then "-- name --" sections.
type scenario struct {
	comment  string
	names    []string
	sections map[string]string
}

func parseScenario(data string) (*scenario, error) {
	s := &scenario{sections: map[string]string{}}
	cur := ""
	var body strings.Builder
	flush := func() {
		if cur == "" {
			s.comment = body.String()
		} else {
			s.sections[cur] = body.String()
		}
		body.Reset()
	}
	for line := range strings.SplitAfterSeq(data, "\n") {
		trimmed := strings.TrimRight(line, "\n")
		if name, ok := strings.CutPrefix(trimmed, "-- "); ok && strings.HasSuffix(name, " --") {
			flush()
			cur = strings.TrimSuffix(name, " --")
			if _, dup := s.sections[cur]; dup {
				return nil, fmt.Errorf("section %q appears twice", cur)
			}
			s.sections[cur] = ""
			s.names = append(s.names, cur)
			continue
		}
		body.WriteString(line)
	}
	flush()
	return s, nil
}

func (s *scenario) format() string {
	var b strings.Builder
	b.WriteString(s.comment)
	for _, n := range s.names {
		fmt.Fprintf(&b, "-- %s --\n%s", n, s.sections[n])
	}
	return b.String()
}

func decodeStrict(data string, v any) error {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func usdOrNil(t *testing.T, s *string) *big.Int {
	t.Helper()
	if s == nil {
		return nil
	}
	v, err := money.ParseAmount(*s, money.USDDecimals)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// run evaluates a scenario and renders the result in the want format.
func (s *scenario) run(t *testing.T) string {
	t.Helper()
	var m *Mandate
	if raw := strings.TrimSpace(s.sections["mandate.json"]); raw != "null" {
		var err error
		if m, err = Decode([]byte(raw)); err != nil {
			t.Fatalf("mandate.json: %v", err)
		}
	}
	var in struct {
		Rail, Host, Payee string
		AmountUSD         *string `json:"amount_usd"`
	}
	if err := decodeStrict(s.sections["intent.json"], &in); err != nil {
		t.Fatalf("intent.json: %v", err)
	}
	var us struct {
		DailyUSD    *string `json:"daily_usd"`
		LifetimeUSD *string `json:"lifetime_usd"`
		RateCount   int     `json:"rate_count"`
		PayeeKnown  bool    `json:"payee_known"`
		PinnedPayee string  `json:"pinned_payee"`
	}
	if raw, ok := s.sections["usage.json"]; ok {
		if err := decodeStrict(raw, &us); err != nil {
			t.Fatalf("usage.json: %v", err)
		}
	}
	now, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s.sections["now"]))
	if err != nil {
		t.Fatalf("now: %v", err)
	}
	d := Evaluate(m, Intent{Rail: in.Rail, Host: in.Host, Payee: in.Payee, AmountUSD: usdOrNil(t, in.AmountUSD)},
		Usage{DailyUSD: usdOrNil(t, us.DailyUSD), LifetimeUSD: usdOrNil(t, us.LifetimeUSD), RateCount: us.RateCount, PayeeKnown: us.PayeeKnown, PinnedPayee: us.PinnedPayee}, now)
	if d.Reasons == nil {
		t.Fatal("Reasons is nil")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "verdict: %s\nreasons:", d.Verdict)
	for _, r := range d.Reasons {
		b.WriteString(" " + r)
	}
	b.WriteString("\n")
	if m != nil {
		fmt.Fprintf(&b, "day: %s\n", m.DayKey(now))
		if m.Rate != nil {
			fmt.Fprintf(&b, "rate_window: %s\n", m.RateWindowStart(now).Format(time.RFC3339Nano))
		}
	}
	return b.String()
}

func TestEvaluateGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/eval/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("found %d scenarios, want at least 25", len(files))
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	// The group returns only once its parallel subtests finish, so the
	// coverage check below sees every scenario.
	t.Run("scenarios", func(t *testing.T) {
		for _, file := range files {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
				t.Parallel()
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				s, err := parseScenario(string(data))
				if err != nil {
					t.Fatal(err)
				}
				for _, need := range []string{"mandate.json", "intent.json", "now"} {
					if _, ok := s.sections[need]; !ok {
						t.Fatalf("missing section %q", need)
					}
				}
				got := s.run(t)
				mu.Lock()
				for _, f := range strings.Fields(strings.TrimPrefix(strings.SplitN(got, "\n", 3)[1], "reasons:")) {
					seen[f] = true
				}
				mu.Unlock()
				if *update {
					if _, ok := s.sections["want"]; !ok {
						s.names = append(s.names, "want")
					}
					s.sections["want"] = got
					if err := os.WriteFile(file, []byte(s.format()), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				if want := s.sections["want"]; got != want {
					t.Errorf("got:\n%swant:\n%s(run with -update to accept)", got, want)
				}
			})
		}
	})
	for _, code := range reasonConstants(t) {
		if !seen[code] {
			t.Errorf("no scenario produces reason %q", code)
		}
	}
}

func TestEvaluateAllowReasonsNonNil(t *testing.T) {
	t.Parallel()
	m := &Mandate{Daily: big.NewInt(10)}
	tests := []struct {
		name string
		m    *Mandate
		want Verdict
	}{
		{"allowed", m, Allow},
		{"nil mandate", nil, Deny},
		{"unbounded mandate", &Mandate{PerTxAuto: big.NewInt(1)}, Deny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := Evaluate(tt.m, Intent{AmountUSD: big.NewInt(1)}, Usage{}, time.Unix(0, 0))
			if d.Verdict != tt.want || d.Reasons == nil {
				t.Fatalf("Evaluate = %+v, want verdict %s with non-nil reasons", d, tt.want)
			}
		})
	}
}

func TestSumExceeds(t *testing.T) {
	t.Parallel()
	huge := new(big.Int).Lsh(big.NewInt(1), 70)
	maxU := new(big.Int).SetUint64(^uint64(0))
	tests := []struct {
		name                string
		used, amount, limit *big.Int
		want                bool
	}{
		{"nil used at limit", nil, big.NewInt(5), big.NewInt(5), false},
		{"one over", big.NewInt(1), big.NewInt(5), big.NewInt(5), true},
		{"uint64 wrap", maxU, big.NewInt(1), maxU, true},
		{"big limit", big.NewInt(1), big.NewInt(1), huge, false},
		{"big used", huge, big.NewInt(1), huge, true},
		{"negative used", big.NewInt(-3), big.NewInt(5), big.NewInt(2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := sumExceeds(tt.used, tt.amount, tt.limit); got != tt.want {
				t.Fatalf("sumExceeds = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScenarioFormatRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"comment and sections", "a comment\n-- now --\n2026-01-01T00:00:00Z\n-- want --\nverdict: allow\n"},
		{"no comment", "-- now --\nx\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := parseScenario(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.format(); !bytes.Equal([]byte(got), []byte(tt.in)) {
				t.Fatalf("format = %q, want %q", got, tt.in)
			}
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	m, err := Decode([]byte(`{
		"per_tx_auto": "0.5", "per_tx_max": "5", "daily": "50", "lifetime": "1000",
		"valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
		"hosts": ["api.openai.example", "*.anthropic.example", "api.weather.example", "*.data.example"],
		"payees": ["0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222",
			"0x3333333333333333333333333333333333333333", "acct_stripe_123"],
		"deny_payees": ["0x9999999999999999999999999999999999999999"],
		"rails": ["x402", "payout"], "rate": "60/1m", "approve_new_payees": true, "timezone": "Europe/Paris"}`))
	if err != nil {
		b.Fatal(err)
	}
	in := Intent{Rail: "x402", Host: "API.Data.Example:443", Payee: "0x3333333333333333333333333333333333333333", AmountUSD: big.NewInt(250_000)}
	u := Usage{DailyUSD: big.NewInt(12_000_000), LifetimeUSD: big.NewInt(400_000_000), RateCount: 10, PayeeKnown: true}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if d := Evaluate(m, in, u, now); d.Verdict != Allow {
			b.Fatal(d)
		}
	}
}

// reasonConstants returns the values of the Reason* constants of eval.go.
func reasonConstants(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "eval.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(n.Name, "Reason") {
					v, _ := strconv.Unquote(lit.Value)
					out = append(out, v)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no Reason constants found in eval.go")
	}
	return out
}
