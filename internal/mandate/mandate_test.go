package mandate

import (
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// equal compares mandates by meaning: amounts by value, times by instant.
func equal(a, b *Mandate) bool {
	if a == nil || b == nil {
		return a == b
	}
	eqInt := func(x, y *big.Int) bool { return (x == nil) == (y == nil) && (x == nil || x.Cmp(y) == 0) }
	eqTime := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	eqRate := func(x, y *Rate) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eqInt(a.PerTxAuto, b.PerTxAuto) && eqInt(a.PerTxMax, b.PerTxMax) && eqInt(a.Daily, b.Daily) && eqInt(a.Lifetime, b.Lifetime) &&
		eqTime(a.ValidFrom, b.ValidFrom) && eqTime(a.ValidUntil, b.ValidUntil) &&
		slices.Equal(a.Hosts, b.Hosts) && slices.Equal(a.Payees, b.Payees) && slices.Equal(a.DenyPayees, b.DenyPayees) && slices.Equal(a.Rails, b.Rails) &&
		eqRate(a.Rate, b.Rate) && a.ApproveNewPayees == b.ApproveNewPayees && a.Timezone == b.Timezone
}

type fieldCode struct{ field, code string }

func fieldCodes(t *testing.T, err error) []fieldCode {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	if ve.Code() != "mandate_invalid" {
		t.Fatalf("Code() = %q", ve.Code())
	}
	var out []fieldCode
	for _, f := range ve.Fields {
		if f.Message == "" {
			t.Fatalf("field error %+v has no message", f)
		}
		out = append(out, fieldCode{f.Field, f.Code})
	}
	return out
}

const full = `{"per_tx_auto":"0.5","per_tx_max":"5","daily":"10","lifetime":"100",
	"valid_from":"2026-01-01T00:00:00Z","valid_until":"2027-01-01T00:00:00+01:00",
	"hosts":["API.A.com","*.b.com"],"payees":["0xAbCdEf0000000000000000000000000000000001","acct_1"],
	"deny_payees":["0x9999999999999999999999999999999999999999"],"rails":["x402"],
	"rate":"10/60s","approve_new_payees":true,"timezone":"Europe/Paris"}`

func TestDecodeFull(t *testing.T) {
	t.Parallel()
	m, err := Decode([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	until := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	want := &Mandate{
		PerTxAuto: big.NewInt(500_000), PerTxMax: big.NewInt(5_000_000), Daily: big.NewInt(10_000_000), Lifetime: big.NewInt(100_000_000),
		ValidFrom: &from, ValidUntil: &until,
		Hosts:  []string{"api.a.com", "*.b.com"},
		Payees: []string{"0xabcdef0000000000000000000000000000000001", "acct_1"}, DenyPayees: []string{"0x9999999999999999999999999999999999999999"},
		Rails: []string{"x402"}, Rate: &Rate{Count: 10, Per: time.Minute}, ApproveNewPayees: true, Timezone: "Europe/Paris",
	}
	if !equal(m, want) {
		t.Fatalf("Decode = %+v, want %+v", m, want)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"per_tx_auto":"0.5","per_tx_max":"5","daily":"10","lifetime":"100","valid_from":"2026-01-01T00:00:00Z","valid_until":"2027-01-01T00:00:00+01:00","hosts":["api.a.com","*.b.com"],"payees":["0xabcdef0000000000000000000000000000000001","acct_1"],"deny_payees":["0x9999999999999999999999999999999999999999"],"rails":["x402"],"rate":"10/1m","approve_new_payees":true,"timezone":"Europe/Paris"}`
	if string(out) != wantJSON {
		t.Fatalf("MarshalJSON =\n%s\nwant\n%s", out, wantJSON)
	}
	back, err := Decode(out)
	if err != nil || !equal(back, m) {
		t.Fatalf("round trip: %v, %+v", err, back)
	}
}

func TestDecodeAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		check    func(*Mandate) bool
	}{
		{"empty object", `{}`, func(m *Mandate) bool { return equal(m, &Mandate{}) }},
		{"null is absent", `{"daily":null,"hosts":null,"rate":null,"approve_new_payees":null}`, func(m *Mandate) bool { return equal(m, &Mandate{}) }},
		{"empty list is absent", `{"hosts":[],"deny_payees":[]}`, func(m *Mandate) bool { return m.Hosts == nil && m.DenyPayees == nil }},
		{"whitespace around", " \n{\"daily\":\"1\"}\n ", func(m *Mandate) bool { return m.Daily.Int64() == 1_000_000 }},
		{"zero budget", `{"daily":"0"}`, func(m *Mandate) bool { return m.Daily.Sign() == 0 }},
		{"equal auto and max", `{"per_tx_auto":"5","per_tx_max":"5"}`, func(m *Mandate) bool { return m.PerTxAuto.Cmp(m.PerTxMax) == 0 }},
		{"utc timezone", `{"timezone":"UTC"}`, func(m *Mandate) bool { return m.Timezone == "UTC" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(m) {
				t.Fatalf("Decode(%s) = %+v", tt.in, m)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []fieldCode
	}{
		{"unknown field", `{"daily":"1","color":"red"}`, []fieldCode{{"color", FieldUnknown}}},
		{"misspelled cap", `{"per_tx_mx":"5","daily":"10"}`, []fieldCode{{"per_tx_mx", FieldUnknown}}},
		{"wrong case field", `{"Daily":"10"}`, []fieldCode{{"Daily", FieldUnknown}}},
		{"duplicate field", `{"daily":"10","daily":"1000"}`, []fieldCode{{"daily", FieldDuplicate}}},
		{"trailing garbage", `{"daily":"1"} x`, []fieldCode{{"", FieldMalformedJSON}}},
		{"second object", `{"daily":"1"}{}`, []fieldCode{{"", FieldMalformedJSON}}},
		{"truncated", `{"daily":"1"`, []fieldCode{{"", FieldMalformedJSON}}},
		{"not an object", `["daily"]`, []fieldCode{{"", FieldMalformedJSON}}},
		{"null", `null`, []fieldCode{{"", FieldMalformedJSON}}},
		{"empty input", ``, []fieldCode{{"", FieldMalformedJSON}}},
		{"amount as number", `{"daily":10}`, []fieldCode{{"daily", FieldWrongType}}},
		{"bool as string", `{"approve_new_payees":"yes"}`, []fieldCode{{"approve_new_payees", FieldWrongType}}},
		{"list of numbers", `{"hosts":[1]}`, []fieldCode{{"hosts", FieldWrongType}}},
		{"negative amount", `{"daily":"-1"}`, []fieldCode{{"daily", "amount_negative"}}},
		{"over-precise amount", `{"per_tx_max":"0.0000001"}`, []fieldCode{{"per_tx_max", "amount_too_precise"}}},
		{"malformed amount", `{"lifetime":"1e6"}`, []fieldCode{{"lifetime", "amount_invalid"}}},
		{"auto above max", `{"per_tx_auto":"6","per_tx_max":"5"}`, []fieldCode{{"per_tx_auto", FieldContradiction}, {"per_tx_max", FieldContradiction}}},
		{"daily above lifetime", `{"daily":"101","lifetime":"100"}`, []fieldCode{{"daily", FieldContradiction}, {"lifetime", FieldContradiction}}},
		{"max above lifetime", `{"per_tx_max":"101","lifetime":"100"}`, []fieldCode{{"per_tx_max", FieldContradiction}, {"lifetime", FieldContradiction}}},
		{"valid range empty", `{"daily":"1","valid_from":"2026-01-01T00:00:00Z","valid_until":"2026-01-01T01:00:00+01:00"}`, []fieldCode{{"valid_from", FieldContradiction}, {"valid_until", FieldContradiction}}},
		{"bad time", `{"valid_from":"2026-01-01"}`, []fieldCode{{"valid_from", FieldInvalid}}},
		{"host with scheme", `{"hosts":["https://a.com"]}`, []fieldCode{{"hosts", FieldInvalid}}},
		{"host with port", `{"hosts":["a.com:443"]}`, []fieldCode{{"hosts", FieldInvalid}}},
		{"host inner wildcard", `{"hosts":["a.*.com"]}`, []fieldCode{{"hosts", FieldInvalid}}},
		{"bare wildcard", `{"hosts":["*"]}`, []fieldCode{{"hosts", FieldInvalid}}},
		{"host empty label", `{"hosts":["a..com"]}`, []fieldCode{{"hosts", FieldInvalid}}},
		{"payee with space", `{"payees":["bob smith"]}`, []fieldCode{{"payees", FieldInvalid}}},
		{"payee truncated address", `{"deny_payees":["0x999999999999999999999999999999999999999"]}`, []fieldCode{{"deny_payees", FieldInvalid}}},
		{"payee too long", `{"payees":["` + strings.Repeat("a", 129) + `"]}`, []fieldCode{{"payees", FieldInvalid}}},
		{"payee allowed and denied", `{"payees":["0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"deny_payees":["0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}`, []fieldCode{{"payees", FieldContradiction}, {"deny_payees", FieldContradiction}}},
		{"rail upper case", `{"rails":["X402"]}`, []fieldCode{{"rails", FieldInvalid}}},
		{"bad rate", `{"rate":"10 per minute"}`, []fieldCode{{"rate", FieldInvalid}}},
		{"rate window too short", `{"rate":"10/500ms"}`, []fieldCode{{"rate", FieldInvalid}}},
		{"unknown timezone", `{"timezone":"Mars/Olympus"}`, []fieldCode{{"timezone", FieldInvalid}}},
		{"local timezone", `{"timezone":"Local"}`, []fieldCode{{"timezone", FieldInvalid}}},
		{"every problem listed", `{"per_tx_auto":"6","per_tx_max":"5","daily":"x","hosts":["a b"],"nope":1}`, []fieldCode{
			{"daily", "amount_invalid"}, {"nope", FieldUnknown},
			{"per_tx_auto", FieldContradiction}, {"per_tx_max", FieldContradiction}, {"hosts", FieldInvalid},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want an error", tt.in, m)
			}
			if m != nil {
				t.Fatal("Decode returned a mandate with its error")
			}
			if got := fieldCodes(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("fields = %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    *Mandate
		want []fieldCode
	}{
		{"valid", &Mandate{Daily: big.NewInt(1), Hosts: []string{"a.com"}, Rate: &Rate{Count: 1, Per: time.Second}}, nil},
		{"negative", &Mandate{PerTxMax: big.NewInt(-1)}, []fieldCode{{"per_tx_max", "amount_negative"}}},
		{"rate count zero", &Mandate{Rate: &Rate{Count: 0, Per: time.Minute}}, []fieldCode{{"rate", FieldInvalid}}},
		{"rate window too long", &Mandate{Rate: &Rate{Count: 1, Per: 25 * time.Hour}}, []fieldCode{{"rate", FieldInvalid}}},
		{"too many hosts", &Mandate{Hosts: slices.Repeat([]string{"a.com"}, maxListLen+1)}, []fieldCode{{"hosts", FieldTooMany}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.m.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := fieldCodes(t, err); !slices.Equal(got, tt.want) {
				t.Fatalf("fields = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := Decode([]byte(`{"per_tx_auto":"6","per_tx_max":"5"}`))
	const want = "mandate invalid: per_tx_auto: per_tx_auto (6 USD) is above per_tx_max (5 USD); per_tx_max: per_tx_auto (6 USD) is above per_tx_max (5 USD)"
	if err == nil || err.Error() != want {
		t.Fatalf("Error() = %v, want %q", err, want)
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     Rate
		str      string
		ok       bool
	}{
		{"per minute", "10/1m", Rate{10, time.Minute}, "10/1m", true},
		{"seconds normalised", "5/60s", Rate{5, time.Minute}, "5/1m", true},
		{"hours", "1/24h", Rate{1, 24 * time.Hour}, "1/24h", true},
		{"compound", "3/1m30s", Rate{3, 90 * time.Second}, "3/90s", true},
		{"fractional seconds", "3/1500ms", Rate{3, 1500 * time.Millisecond}, "3/1.5s", true},
		{"max count", "1000000/1s", Rate{1_000_000, time.Second}, "1000000/1s", true},
		{"count too large", "1000001/1s", Rate{}, "", false},
		{"count zero", "0/1m", Rate{}, "", false},
		{"negative count", "-1/1m", Rate{}, "", false},
		{"window too short", "1/999ms", Rate{}, "", false},
		{"window too long", "1/25h", Rate{}, "", false},
		{"signed window", "1/+1m", Rate{}, "", false},
		{"no unit", "1/60", Rate{}, "", false},
		{"no slash", "10", Rate{}, "", false},
		{"empty", "", Rate{}, "", false},
		{"huge count", "99999999999999999999/1m", Rate{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := ParseRate(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseRate(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if r != tt.want || r.String() != tt.str {
				t.Fatalf("ParseRate(%q) = %+v (%s), want %+v (%s)", tt.in, r, r, tt.want, tt.str)
			}
			if back, err := ParseRate(r.String()); err != nil || back != r {
				t.Fatalf("String() does not round-trip: %v, %v", back, err)
			}
		})
	}
}

func TestRateWindowStart(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		rate *Rate
		now  time.Time
		want time.Time
	}{
		{"no rate", nil, at("2026-01-01T00:00:30Z"), time.Time{}},
		{"minute", &Rate{1, time.Minute}, at("2026-01-01T10:05:59.999Z"), at("2026-01-01T10:05:00Z")},
		{"window start is its own window", &Rate{1, time.Minute}, at("2026-01-01T10:05:00Z"), at("2026-01-01T10:05:00Z")},
		{"zone does not matter", &Rate{1, time.Hour}, at("2026-01-01T10:35:00+05:30"), at("2026-01-01T05:00:00Z")},
		{"day is the UTC day", &Rate{1, 24 * time.Hour}, at("2026-01-01T23:00:00-05:00"), at("2026-01-02T00:00:00Z")},
		{"before the epoch", &Rate{1, time.Minute}, at("1969-12-31T23:59:30Z"), at("1969-12-31T23:59:00Z")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := &Mandate{Rate: tt.rate}
			if got := m.RateWindowStart(tt.now); !got.Equal(tt.want) {
				t.Fatalf("RateWindowStart = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestDayKey(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 7, 1, 2, 30, 0, 0, time.UTC)
	tests := []struct{ name, zone, want string }{
		{"utc default", "", "2026-07-01"},
		{"utc", "UTC", "2026-07-01"},
		{"behind utc", "America/New_York", "2026-06-30"},
		{"ahead of utc", "Asia/Tokyo", "2026-07-01"},
		{"invalid falls back to utc", "Nowhere/Land", "2026-07-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := &Mandate{Timezone: tt.zone}
			if got := m.DayKey(now); got != tt.want {
				t.Fatalf("DayKey = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBounded(t *testing.T) {
	t.Parallel()
	one := big.NewInt(1)
	tests := []struct {
		name string
		m    *Mandate
		want bool
	}{
		{"nil", nil, false},
		{"empty", &Mandate{}, false},
		{"auto only", &Mandate{PerTxAuto: one}, false},
		{"per tx max", &Mandate{PerTxMax: one}, true},
		{"daily", &Mandate{Daily: one}, true},
		{"lifetime", &Mandate{Lifetime: one}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.m.Bounded(); got != tt.want {
				t.Fatalf("Bounded = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	t.Parallel()
	m, err := Decode([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	if !equal(c, m) {
		t.Fatal("clone differs")
	}
	c.Daily.SetInt64(1)
	c.Hosts[0] = "x.com"
	c.Rate.Count = 99
	*c.ValidFrom = time.Time{}
	if m.Daily.Int64() != 10_000_000 || m.Hosts[0] != "api.a.com" || m.Rate.Count != 10 || m.ValidFrom.IsZero() {
		t.Fatal("mutating the clone changed the original")
	}
	if (*Mandate)(nil).Clone() != nil {
		t.Fatal("nil.Clone() != nil")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{full, `{}`, `{"daily":"1"}`, `{"per_tx_mx":"5"}`, `{"daily":"1"} x`, `{"rate":"10/1m","timezone":"Asia/Tokyo"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("error %v is not a non-empty *ValidationError", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded mandate fails Validate: %v", err)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if !equal(back, m) {
			t.Fatalf("round trip changed the mandate:\n%s\n%+v\n%+v", out, m, back)
		}
		if !equal(m.Clone(), m) {
			t.Fatal("Clone differs")
		}
		m.DayKey(time.Unix(0, 0))
		m.RateWindowStart(time.Unix(0, 0))
	})
}
