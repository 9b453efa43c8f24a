package strictjson_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/purserhq/purser/internal/strictjson"
)

func reasonOf(err error) string {
	var e *strictjson.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, reason, field string
	}{
		{"object", `{"a":1,"b":[true,false,null,"x",-0.5e+3,{}],"c":{"d":"é"}}`, "", ""},
		{"scalar", `"x"`, "", ""},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, "", ""},
		{"escaped keys differ", `{"a":1,"\u0062":2}`, "", ""},
		{"same key in two objects", `{"a":{"k":1},"b":{"k":1}}`, "", ""},
		{"many distinct keys", manyKeys(100, ""), "", ""},

		{"invalid utf8 in value", "{\"a\":\"\xff\"}", strictjson.ReasonInvalidUTF8, "a"},
		{"invalid utf8 in key", "{\"\xc3\":1}", strictjson.ReasonInvalidUTF8, ""},
		{"overlong encoding", "{\"a\":\"\xc0\xaf\"}", strictjson.ReasonInvalidUTF8, "a"},
		{"encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", strictjson.ReasonInvalidUTF8, "a"},
		{"invalid utf8 outside strings", "{\"a\":1}\xff", strictjson.ReasonSyntax, ""},
		{"lone high surrogate", `{"a":"\ud800"}`, strictjson.ReasonInvalidUTF8, "a"},
		{"lone low surrogate", `{"a":"\udc00x"}`, strictjson.ReasonInvalidUTF8, "a"},
		{"reversed pair", `{"a":"\ude00\ud83d"}`, strictjson.ReasonInvalidUTF8, "a"},

		{"duplicate", `{"amount":"1","amount":"100"}`, strictjson.ReasonDuplicateKey, "amount"},
		{"duplicate via escape", `{"amount":"1","\u0061mount":"100"}`, strictjson.ReasonDuplicateKey, "amount"},
		{"case variant", `{"amount":1,"AMOUNT":2}`, strictjson.ReasonCaseVariant, "AMOUNT"},
		{"kelvin sign", "{\"k\":1,\"\u212a\":2}", strictjson.ReasonCaseVariant, "\u212a"},
		{"long s", "{\"s\":1,\"\u017f\":2}", strictjson.ReasonCaseVariant, "\u017f"},
		{"nested duplicate", `{"rail_request":{"offer":{"payTo":"a","payTo":"b"}}}`, strictjson.ReasonDuplicateKey, "rail_request.offer.payTo"},
		{"nested in array", `{"x":[{},{"a":1,"A":1}]}`, strictjson.ReasonCaseVariant, "x[1].A"},
		{"duplicate past the small set", manyKeys(40, "k7"), strictjson.ReasonDuplicateKey, "k7"},
		{"case variant past the small set", manyKeys(40, "K39"), strictjson.ReasonCaseVariant, "K39"},

		{"empty", ``, strictjson.ReasonSyntax, ""},
		{"truncated", `{"a":`, strictjson.ReasonSyntax, ""},
		{"trailing", `{} {}`, strictjson.ReasonSyntax, ""},
		{"trailing comma", `{"a":1,}`, strictjson.ReasonSyntax, ""},
		{"leading zero", `[01]`, strictjson.ReasonSyntax, ""},
		{"bad escape", `["\x"]`, strictjson.ReasonSyntax, ""},
		{"control char", "[\"a\nb\"]", strictjson.ReasonSyntax, ""},
		{"single quotes", `{'a':1}`, strictjson.ReasonSyntax, ""},
		{"too deep", strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strictjson.ReasonSyntax, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := strictjson.Check([]byte(tc.in))
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("Check(%q) = %v, want reason %q", tc.in, err, tc.reason)
			}
			if err == nil {
				if !json.Valid([]byte(tc.in)) {
					t.Fatalf("Check accepts what encoding/json refuses: %q", tc.in)
				}
				return
			}
			var e *strictjson.Error
			errors.As(err, &e)
			if tc.field != "" && e.Field != tc.field {
				t.Errorf("field = %q, want %q", e.Field, tc.field)
			}
			if !utf8.ValidString(err.Error()) {
				t.Errorf("message is not UTF-8: %q", err.Error())
			}
		})
	}
}

// manyKeys is an object with keys k0…k(n-1), then extra (if any) again.
func manyKeys(n int, extra string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + itoa(i) + `":1`)
	}
	if extra != "" {
		b.WriteString(`,"` + extra + `":2`)
	}
	b.WriteString("}")
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

type inner struct {
	PayTo string `json:"payTo"`
}

type embedded struct {
	Memo string `json:"memo"`
}

type body struct {
	embedded
	Amount  string            `json:"amount"`
	Offer   *inner            `json:"offer"`
	Items   []inner           `json:"items"`
	Labels  map[string]inner  `json:"labels"`
	Raw     json.RawMessage   `json:"raw"`
	Any     any               `json:"any"`
	Untaged string            //nolint:unused // matched by its Go name
	Skipped string            `json:"-"`
	Extra   map[string]string `json:"extra,omitempty"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, reason, field string
	}{
		{"exact", `{"amount":"1","offer":{"payTo":"x"},"items":[{"payTo":"y"}],"labels":{"A":{"payTo":"z"}},"memo":"m","Untaged":"u","raw":{"Any":1},"any":{"X":1}}`, "", ""},
		{"map keys are data", `{"labels":{"ABC":{"payTo":"z"},"abc":{"payTo":"z"}}}`, strictjson.ReasonCaseVariant, "labels.abc"},
		{"top level case", `{"Amount":"1"}`, strictjson.ReasonKeyCase, "Amount"},
		{"nested case", `{"offer":{"PayTo":"x"}}`, strictjson.ReasonKeyCase, "offer.PayTo"},
		{"in slice", `{"items":[{"payTo":"x"},{"PAYTO":"y"}]}`, strictjson.ReasonKeyCase, "items[1].PAYTO"},
		{"in map value", `{"labels":{"a":{"payto":"z"}}}`, strictjson.ReasonKeyCase, "labels.a.payto"},
		{"promoted field", `{"Memo":"m"}`, strictjson.ReasonKeyCase, "Memo"},
		{"go name case", `{"untaged":"u"}`, strictjson.ReasonKeyCase, "untaged"},
		{"kelvin in a field name", "{\"offer\":{\"payTo\":\"x\"},\"\u212aey\":1}", "other", ""},
		{"raw keeps its case", `{"raw":{"PayTo":1,"payto":2}}`, strictjson.ReasonCaseVariant, "raw.payto"},
		{"duplicate beats decoding", `{"amount":"1","amount":"2"}`, strictjson.ReasonDuplicateKey, "amount"},
		{"unknown field", `{"amout":"1"}`, "other", ""},
		{"skipped field is unknown", `{"Skipped":"x"}`, "other", ""},
		{"trailing", `{"amount":"1"} {}`, strictjson.ReasonSyntax, ""},
		{"invalid utf8", "{\"amount\":\"\xff\"}", strictjson.ReasonInvalidUTF8, "amount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b body
			err := strictjson.Decode([]byte(tc.in), &b)
			got := reasonOf(err)
			if strings.HasPrefix(got, "other") {
				got = "other"
			}
			if got != tc.reason {
				t.Fatalf("Decode(%s) = %v, want %q", tc.in, err, tc.reason)
			}
			var e *strictjson.Error
			if errors.As(err, &e) && tc.field != "" && e.Field != tc.field {
				t.Errorf("field = %q, want %q", e.Field, tc.field)
			}
		})
	}
	// Recursive types terminate.
	type node struct {
		Next *node `json:"next"`
	}
	var n node
	if err := strictjson.Decode([]byte(`{"next":{"next":{"Next":null}}}`), &n); reasonOf(err) != strictjson.ReasonKeyCase {
		t.Errorf("recursive type: %v", err)
	}
}

// FuzzCheck: Check never accepts what encoding/json refuses, and what it
// accepts decodes in Go to a value that re-encodes to the same meaning
// (no replaced bytes, no lost keys).
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"A":2}`, "\"\xff\"", `"\ud800"`, `[1,{"b":[null]}]`, `{"k":"\u212a"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if strictjson.Check(in) != nil {
			return
		}
		if !json.Valid(in) {
			t.Fatalf("Check accepts invalid JSON %q", in)
		}
		if !utf8.Valid(in) {
			t.Fatalf("Check accepts invalid UTF-8 %q", in)
		}
		var v any
		dec := json.NewDecoder(strings.NewReader(string(in)))
		dec.UseNumber() // 1e1000 is JSON, not a float64
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsRune(string(out), utf8.RuneError) && !strings.ContainsRune(string(in), utf8.RuneError) && !strings.Contains(strings.ToLower(string(in)), `\ufffd`) {
			t.Fatalf("decoding replaced bytes: %q → %q", in, out)
		}
		if countKeys(in) != countKeys(out) {
			t.Fatalf("decoding lost keys: %q → %q", in, out)
		}
	})
}

// countKeys counts object keys through encoding/json's tokenizer.
func countKeys(b []byte) int {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	n, depth := 0, []bool{}
	expectKey := func() bool { return len(depth) > 0 && depth[len(depth)-1] }
	isKey := true
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		switch tok {
		case json.Delim('{'):
			depth = append(depth, true)
			isKey = true
			continue
		case json.Delim('['):
			depth = append(depth, false)
			continue
		case json.Delim('}'), json.Delim(']'):
			depth = depth[:len(depth)-1]
			isKey = expectKey()
			continue
		}
		if expectKey() {
			if isKey {
				n++
			}
			isKey = !isKey
		}
	}
}

var benchBody = []byte(`{"rail":"custom","host":"api.example.com","payee":"0x000000000000000000000000000000000000dEaD","asset":"USDC","network":"eip155:8453","amount":"0.05","idempotency_key":"k-123456","memo":"a short memo"}`)

func BenchmarkCheck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := strictjson.Check(benchBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var r struct {
			Rail           string `json:"rail"`
			Host           string `json:"host"`
			Payee          string `json:"payee"`
			Asset          string `json:"asset"`
			Network        string `json:"network"`
			Amount         string `json:"amount"`
			IdempotencyKey string `json:"idempotency_key"`
			Memo           string `json:"memo"`
		}
		if err := strictjson.Decode(benchBody, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodingJSON(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var r struct {
			Rail           string `json:"rail"`
			Host           string `json:"host"`
			Payee          string `json:"payee"`
			Asset          string `json:"asset"`
			Network        string `json:"network"`
			Amount         string `json:"amount"`
			IdempotencyKey string `json:"idempotency_key"`
			Memo           string `json:"memo"`
		}
		if err := json.Unmarshal(benchBody, &r); err != nil {
			b.Fatal(err)
		}
	}
}
