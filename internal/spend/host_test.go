package spend_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

// newEnv is a service on a fresh SQLite store with the scripted rails.
func newEnv(t *testing.T) (*spendtest.Env, *spendtest.SignRail) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sr := &spendtest.SignRail{}
	e := spendtest.NewEnv(t, st, &spendtest.Rail{}, sr)
	sr.Clock = e.Clock
	return e, sr
}

// TestHostSpellingsShareOnePin: "api.x.com:443", "api.x.com." and
// "API.X.COM" are one host: pinned once to a payee, none of the other
// spellings can pay another payee.
func TestHostSpellingsShareOnePin(t *testing.T) {
	t.Parallel()
	e, _ := newEnv(t)
	a := e.NewAgent("pinned", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10","pin_payees":true}`)
	r := spendtest.Custom("0.05")
	r.Host = "api.x.com"
	if sp := a.MustAuthorize(r); sp.Status != spend.StatusAuthorized {
		t.Fatalf("first payment to a host: %s", spendtest.Describe(sp))
	}
	r.Payee = "0x000000000000000000000000000000000000bEEF"
	for _, h := range []string{"api.x.com:443", "api.x.com.", "API.X.COM", "api.x.com.:0443"} {
		r.Host = h
		sp := a.MustAuthorize(r)
		if sp.Status != spend.StatusDenied || !slices.Contains(sp.Reasons, "payee_pin_mismatch") {
			t.Fatalf("host %q to another payee: %s; want denied payee_pin_mismatch", h, spendtest.Describe(sp))
		}
		if sp.Host != "api.x.com" {
			t.Fatalf("host %q stored as %q, want api.x.com", h, sp.Host)
		}
	}
	// Another port of the same name is the same pin: the host allowlist
	// ignores ports, so a port must not buy a fresh pin either.
	for _, h := range []string{"api.x.com:8443", "api.x.com:80"} {
		r.Host = h
		if sp := a.MustAuthorize(r); sp.Status != spend.StatusDenied || !slices.Contains(sp.Reasons, "payee_pin_mismatch") {
			t.Fatalf("host %q to another payee: %s; want denied payee_pin_mismatch", h, spendtest.Describe(sp))
		}
	}
}

// TestHostNormalized: a spend's host is stored in one form; a host that
// names nothing once normalized is refused and stores nothing.
func TestHostNormalized(t *testing.T) {
	t.Parallel()
	e, _ := newEnv(t)
	a := e.NewAgent("hosts", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10","hosts":["api.x.com","*.b.com"]}`)
	for in, want := range map[string]string{
		"Api.X.com.":     "api.x.com",
		"api.x.com:443":  "api.x.com",
		"api.x.com:8443": "api.x.com:8443",
		"api.x.com:080":  "api.x.com:80",
		"c.B.com.:443":   "c.b.com",
	} {
		r := spendtest.Custom("0.01")
		r.Host = in
		sp := a.MustAuthorize(r)
		if sp.Host != want || sp.Status != spend.StatusAuthorized {
			t.Errorf("host %q: stored %q (%s), want %q authorized", in, sp.Host, spendtest.Describe(sp), want)
		}
	}
	for _, in := range []string{".", "..", "a..b", "api.x.com..", ".api.x.com", "api.x.com:0", "api.x.com:70000", "api.x.com.:"} {
		r := spendtest.Custom("0.01")
		r.Host = in
		if _, err := a.Authorize(r); spend.CodeOf(err) != spend.CodeInvalidRequest {
			t.Errorf("host %q: err %v, want invalid_request", in, err)
		}
	}
	list, err := e.Svc.ListSpends(context.Background(), "hosts", nil, 100)
	if err != nil || len(list) != 5 {
		t.Fatalf("%d spends stored (%v), want the 5 well-formed ones", len(list), err)
	}
}
