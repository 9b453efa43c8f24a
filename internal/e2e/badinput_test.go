package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// TestHTTPBadInputChangesNothing sends every documented kind of bad
// request over raw HTTP and checks each gets its documented status and
// code, and that together they changed nothing: the audit head and the
// agents' usage are what they were before.
func TestHTTPBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{})
	ctx := context.Background()
	const mandate = `{"per_tx_max":"1","daily":"10"}`
	keyA := n.newAgent(t, "alice", mandate)
	keyB := n.newAgent(t, "bob", mandate)
	keyOld := n.newAgent(t, "carol", mandate)
	keyNew := newKey(t)
	if _, err := n.owner.RotateKey(ctx, "carol", agentauth.Address(keyNew).Hex()); err != nil {
		t.Fatalf("rotate-key: %v", err)
	}

	const spends = "/v1/agent/spends"
	spendsURL := n.url + spends
	now := time.Now()
	exp := now.Add(time.Minute)

	// The first half of the replay pair is a good request; it is sent
	// before the "before" snapshot, so only its replay counts as bad input.
	replayBody := spendBody("0.01", "")
	replaySig := signHeaders(t, n.domain(t), keyB, "POST", spends, replayBody, exp)
	if a := send(t, "POST", spendsURL, replayBody, replaySig); a.status != http.StatusCreated {
		t.Fatalf("first send of the replayed request: %v, want 201", a)
	}

	before := n.verify(t)
	usedB := n.limits(t, "bob").Daily.Used

	spendBy := func(body []byte) func() answer {
		return func() answer {
			return send(t, "POST", spendsURL, body, signHeaders(t, n.domain(t), keyA, "POST", spends, body, exp))
		}
	}
	raw := func(s string) []byte { return []byte(s) }
	withField := func(k, v string) []byte {
		m := map[string]string{"rail": "custom", "payee": payee, "amount": "0.01"}
		m[k] = v
		b, _ := json.Marshal(m)
		return b
	}
	huge := append([]byte(`{"rail":"custom","payee":"`+payee+`","amount":"0.01","memo":"`), []byte(strings.Repeat("x", 1<<20))...)
	huge = append(huge, `"}`...)
	good := spendBody("0.01", "")
	ownerPath := func(p string) string { return n.url + p }

	cases := []struct {
		name   string
		do     func() answer
		status int
		code   string
		check  func(t *testing.T, a answer)
	}{
		{"malformed JSON", spendBy(raw(`{"rail":"custom","payee":`)), 400, "invalid_request", nil},
		{"malformed JSON owner", func() answer {
			return send(t, "POST", ownerPath("/v1/agents"), raw(`{"name":"x",`), bearer(n.token))
		}, 400, "invalid_request", nil},
		{"body over 1 MiB", spendBy(huge), 413, "body_too_large", nil},
		// The reproduced attack: one request padded with whitespace left a
		// 1 MB audit event. An agent request is at most 16 KiB.
		{"agent body padded past 16 KiB", spendBy(append(append([]byte(`{"rail":"custom","payee":"`+payee+`",`),
			[]byte(strings.Repeat(" ", 16<<10))...), `"amount":"0.01"}`...)), 413, "body_too_large", nil},
		{"rail_request over 8 KiB", spendBy([]byte(`{"rail":"custom","payee":"` + payee + `","amount":"0.01","rail_request":"` +
			strings.Repeat("x", 9<<10) + `"}`)), 400, "invalid_request", nil},
		{"body over 1 MiB owner", func() answer {
			b := append([]byte(`{"name":"zed","identity_address":"`), []byte(strings.Repeat("0", 1<<20))...)
			return send(t, "POST", ownerPath("/v1/agents"), append(b, `"}`...), bearer(n.token))
		}, 413, "body_too_large", nil},
		{"unknown field", spendBy(raw(`{"rail":"custom","payee":"` + payee + `","amout":"0.01"}`)), 400, "invalid_request",
			func(t *testing.T, a answer) {
				if a.details["field"] != "amout" {
					t.Errorf("details.field = %v, want amout", a.details["field"])
				}
			}},
		{"unknown field owner", func() answer {
			return send(t, "POST", ownerPath("/v1/agents"), raw(`{"name":"dave","identity_adress":"`+agentauth.Address(newKey(t)).Hex()+`"}`), bearer(n.token))
		}, 400, "invalid_request", nil},
		{"negative amount", spendBy(withField("amount", "-0.01")), 400, "amount_negative", nil},
		{"zero amount", spendBy(withField("amount", "0")), 400, "amount_zero", nil},
		{"overflowing amount", spendBy(withField("amount", strings.Repeat("9", 80))), 400, "amount_overflow", nil},
		{"over-precise amount", spendBy(withField("amount", "0.0000001")), 400, "amount_too_precise", nil},
		{"unknown asset", spendBy(withField("asset", "DOGE")), 400, "asset_unknown", nil},
		{"unknown network", spendBy(withField("network", "eip155:1")), 400, "network_unknown", nil},
		{"expired signature", func() answer {
			return send(t, "POST", spendsURL, good, signHeaders(t, n.domain(t), keyA, "POST", spends, good, now.Add(-time.Minute)))
		}, 401, "signature_expired", nil},
		{"expiry too far", func() answer {
			return send(t, "POST", spendsURL, good, signHeaders(t, n.domain(t), keyA, "POST", spends, good, now.Add(time.Hour)))
		}, 401, "signature_expiry_too_far", nil},
		{"replayed nonce", func() answer { return send(t, "POST", spendsURL, replayBody, replaySig) }, 401, "nonce_replayed", nil},
		{"B's signature with A's address", func() answer {
			sig := signHeaders(t, n.domain(t), keyB, "POST", spends, good, exp)
			return send(t, "POST", spendsURL, good, func(h http.Header) {
				sig(h)
				h.Set(agentauth.HeaderAgent, agentauth.Address(keyA).Hex())
			})
		}, 401, "signature_invalid", nil},
		{"signature over another body", func() answer {
			return send(t, "POST", spendsURL, withField("amount", "0.02"), signHeaders(t, n.domain(t), keyA, "POST", spends, good, exp))
		}, 401, "signature_invalid", nil},
		{"unknown agent key", func() answer {
			return send(t, "POST", spendsURL, good, signHeaders(t, n.domain(t), newKey(t), "POST", spends, good, exp))
		}, 401, "agent_unknown", nil},
		{"old key after rotate-key", func() answer {
			return send(t, "POST", spendsURL, good, signHeaders(t, n.domain(t), keyOld, "POST", spends, good, exp))
		}, 401, "agent_key_revoked", nil},
		{"bearer token on agent endpoint", func() answer {
			return send(t, "POST", spendsURL, good, bearer(n.token))
		}, 403, "wrong_credential", nil},
		{"bearer token and signature on agent endpoint", func() answer {
			sig := signHeaders(t, n.domain(t), keyA, "POST", spends, good, exp)
			return send(t, "POST", spendsURL, good, func(h http.Header) { sig(h); bearer(n.token)(h) })
		}, 403, "wrong_credential", nil},
		{"agent signature on owner endpoint", func() answer {
			return send(t, "GET", ownerPath("/v1/agents"), nil, signHeaders(t, n.domain(t), keyA, "GET", "/v1/agents", nil, exp))
		}, 403, "wrong_credential", nil},
		{"agent signature on owner write", func() answer {
			b := raw(`{}`)
			return send(t, "POST", ownerPath("/v1/agents/alice/freeze"), b, signHeaders(t, n.domain(t), keyA, "POST", "/v1/agents/alice/freeze", b, exp))
		}, 403, "wrong_credential", nil},
		{"wrong owner token", func() answer {
			return send(t, "POST", ownerPath("/v1/agents/alice/freeze"), raw(`{}`), bearer(n.token+"x"))
		}, 401, "unauthorized", nil},
		{"no owner token", func() answer {
			return send(t, "POST", ownerPath("/v1/agents/alice/freeze"), raw(`{}`), nil)
		}, 401, "unauthorized", nil},
		{"misspelled mandate field", func() answer {
			return send(t, "PUT", ownerPath("/v1/agents/alice/mandate"), raw(`{"mandate":{"per_tx_mx":"5","daily":"10"}}`), bearer(n.token))
		}, 400, "mandate_invalid", func(t *testing.T, a answer) { wantFields(t, a, "per_tx_mx") }},
		{"per_tx_auto above per_tx_max", func() answer {
			return send(t, "PUT", ownerPath("/v1/agents/alice/mandate"), raw(`{"mandate":{"per_tx_auto":"2","per_tx_max":"1"}}`), bearer(n.token))
		}, 400, "mandate_invalid", func(t *testing.T, a answer) { wantFields(t, a, "per_tx_auto", "per_tx_max") }},
		{"new agent with a bad mandate", func() answer {
			b, _ := json.Marshal(map[string]any{"name": "erin", "identity_address": agentauth.Address(newKey(t)).Hex(),
				"mandate": json.RawMessage(`{"per_tx_auto":"2","per_tx_max":"1"}`)})
			return send(t, "POST", ownerPath("/v1/agents"), b, bearer(n.token))
		}, 400, "mandate_invalid", func(t *testing.T, a answer) { wantFields(t, a, "per_tx_auto", "per_tx_max") }},
	}
	for _, c := range cases {
		a := c.do()
		if a.status != c.status || a.code != c.code {
			t.Errorf("%s: got %v; want HTTP %d %s", c.name, a, c.status, c.code)
			continue
		}
		if c.check != nil {
			c.check(t, a)
		}
	}

	after := n.verify(t)
	if after.HeadSeq != before.HeadSeq || after.HeadHash != before.HeadHash {
		t.Errorf("audit head moved from %d to %d: bad input changed something", before.HeadSeq, after.HeadSeq)
	}
	for _, name := range []string{"alice", "carol"} {
		if l := n.limits(t, name); l.Daily == nil || micro(t, l.Daily.Used) != 0 {
			t.Errorf("%s: daily used %+v after bad input only, want 0", name, l.Daily)
		}
	}
	if got := n.limits(t, "bob").Daily.Used; got != usedB || micro(t, got) != 10_000 {
		t.Errorf("bob: daily used %s, want %s (the one good spend) before and after", got, usedB)
	}
	if l, err := sdk.Collect(n.owner.Spends(ctx, sdk.SpendFilter{Agent: "alice"})); err != nil || len(l) != 0 {
		t.Errorf("alice's spends after bad input only: %d, %v; want none", len(l), err)
	}
	for _, name := range []string{"erin", "zed", "dave", "x"} {
		if _, err := n.owner.Agent(ctx, name); !sdk.IsCode(err, "agent_not_found") {
			t.Errorf("agent %s after refused creation: %v, want agent_not_found", name, err)
		}
	}
	if mv, err := n.owner.Mandate(ctx, "alice"); err != nil || mv.Version != 1 {
		t.Errorf("alice's mandate after refused edits: %+v, %v; want version 1", mv, err)
	}
}

// wantFields checks that details.fields of a mandate_invalid answer names
// every one of fields.
func wantFields(t *testing.T, a answer, fields ...string) {
	t.Helper()
	list, _ := a.details["fields"].([]any)
	named := map[string]bool{}
	for _, f := range list {
		if m, ok := f.(map[string]any); ok {
			if s, ok := m["field"].(string); ok {
				named[s] = true
			}
		}
	}
	for _, f := range fields {
		if !named[f] {
			t.Errorf("details.fields %v does not name %q", list, f)
		}
	}
}
