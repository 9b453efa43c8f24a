package e2e

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/store/storetest"
)

// TestProxyLimitsExactUnder200Calls fires 200 concurrent proxied calls
// of one agent against a daily budget for exactly 37 calls, a grant rate
// of 25 a minute, and a revocation in the middle of a burst, on SQLite
// and PostgreSQL: the upstream's own count must match the limit exactly,
// every call it saw must be a captured spend, and no call decided after
// the revocation may pass.
func TestProxyLimitsExactUnder200Calls(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); testProxyLimits(t, "") })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); testProxyLimits(t, storetest.PostgresDSN(t)) })
}

// burst sends total concurrent calls and returns their answers.
func burst(t *testing.T, ag *proxyAgent, pathQuery string, total int) ([]answer, []http.Header) {
	return stagger(t, ag, pathQuery, total, 0)
}

// stagger is burst with call i sent i*gap after the first.
func stagger(t *testing.T, ag *proxyAgent, pathQuery string, total int, gap time.Duration) ([]answer, []http.Header) {
	t.Helper()
	as, hs := make([]answer, total), make([]http.Header, total)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range total {
		wg.Go(func() {
			<-start
			time.Sleep(time.Duration(i) * gap)
			var err error
			if as[i], hs[i], err = ag.do("GET", pathQuery, nil, nil); err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return as, hs
}

// tally counts 200s and refusals for reason; anything else fails.
func tally(t *testing.T, what string, as []answer, hs []http.Header, reason string) (ok, refused int) {
	t.Helper()
	for i, a := range as {
		switch {
		case a.status == 200 && hs[i].Get(api.HeaderError) == "":
			ok++
		case a.refusedFor(hs[i], reason):
			refused++
		default:
			t.Errorf("%s, call %d: %s; want 200 or spend_denied %s", what, i, a, reason)
		}
	}
	return ok, refused
}

func testProxyLimits(t *testing.T, dsn string) {
	const total = 200
	n := startApp(t, app.Config{DB: dsn, NoAgentRate: true})
	const key = "sk_limits_0123456789abcdef"
	put := func(name, agent, mandate string, g api.GrantRequest) (*proxyAgent, *keyUpstream) {
		up := newKeyUpstream(t, key)
		mustOwner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: name, Upstream: up.srv.URL, Inject: "header:X-Api-Key={secret}",
			Secret: key, AllowPrivate: true}, 201, nil)
		ag := n.proxyAgent(t, n.newAgent(t, agent, mandate))
		g.Agent, g.Methods, g.Paths = agent, []string{"GET"}, []string{"/v1/*"}
		mustOwner(t, n, "POST", "/v1/vault/"+name+"/grants", g, 201, nil)
		return ag, up
	}
	captured := func(agent string) int {
		c := 0
		for _, sp := range agentSpends(t, n, agent) {
			if sp.Status == "captured" {
				c++
			}
		}
		return c
	}

	t.Run("daily budget for 37 calls", func(t *testing.T) {
		ag, up := put("budget", "budgeted", `{"per_tx_max":"1","daily":"0.37"}`, api.GrantRequest{Price: "0.01"})
		as, hs := burst(t, ag, "/v1/proxy/budget/v1/x?q=1", total)
		ok, refused := tally(t, "budget", as, hs, "daily_budget_exceeded")
		if ok != 37 || refused != total-37 || up.calls.Load() != 37 {
			t.Fatalf("%d paid, %d refused, %d reached the upstream; want 37, 163, 37", ok, refused, up.calls.Load())
		}
		waitSettled(t, n)
		if c := captured("budgeted"); c != 37 {
			t.Fatalf("%d captured spends, want 37", c)
		}
		if l := n.limits(t, "budgeted"); micro(t, l.DailyUsed) != 370_000 {
			t.Fatalf("daily used %s, want 0.37", l.DailyUsed)
		}
	})

	t.Run("grant rate 25/1m", func(t *testing.T) {
		ag, up := put("rated", "rated", `{"per_tx_max":"1","daily":"100"}`, api.GrantRequest{Price: "0.001", Rate: "25/1m"})
		// The grant's window is the clock minute: a burst across its end
		// would rightly get 25 more.
		if s := time.Now().Second(); s >= 50 {
			time.Sleep(time.Duration(61-s) * time.Second)
		}
		as, hs := burst(t, ag, "/v1/proxy/rated/v1/x", total)
		ok, refused := tally(t, "rate", as, hs, "grant_rate_limited")
		if ok != 25 || refused != total-25 || up.calls.Load() != 25 {
			t.Fatalf("%d paid, %d refused, %d reached the upstream; want 25, 175, 25", ok, refused, up.calls.Load())
		}
		waitSettled(t, n)
		if c := captured("rated"); c != 25 {
			t.Fatalf("%d captured spends, want 25", c)
		}
	})

	t.Run("revoke during a burst", func(t *testing.T) {
		ag, up := put("revoked", "revoked", `{"per_tx_max":"1","daily":"100"}`, api.GrantRequest{Price: "0.001"})
		// Half the burst goes at once; the other half is sent while the
		// revocation is under way, so that it lands among the decisions.
		as, hs := make([]answer, total), make([]http.Header, total)
		sentAt := make([]time.Time, total)
		revoking := make(chan struct{})
		var wg sync.WaitGroup
		for i := range total {
			wg.Go(func() {
				if i >= total/2 {
					<-revoking
					time.Sleep(time.Duration(i-total/2) * 5 * time.Millisecond)
				}
				sentAt[i] = time.Now()
				var err error
				if as[i], hs[i], err = ag.do("GET", "/v1/proxy/revoked/v1/x", nil, nil); err != nil {
					t.Errorf("call %d: %v", i, err)
				}
			})
		}
		for up.calls.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		close(revoking)
		mustOwner(t, n, "POST", "/v1/vault/revoked/grants/revoked/revoke", nil, 200, nil)
		revoked := time.Now()
		atRevoke := up.calls.Load()
		wg.Wait()
		// Every call sent after the revocation committed is refused.
		late := 0
		for i, a := range as {
			if sentAt[i].After(revoked) {
				late++
				if !a.refusedFor(hs[i], "grant_revoked") {
					t.Errorf("call %d, sent after the revocation: %s; want spend_denied grant_revoked", i, a)
				}
			}
		}
		after, afterH := burst(t, ag, "/v1/proxy/revoked/v1/x", 20)
		if ok, _ := tally(t, "after the revoke", after, afterH, "grant_revoked"); ok != 0 {
			t.Fatalf("%d calls sent after the revocation were carried out", ok)
		}
		ok, refused := tally(t, "burst", as, hs, "grant_revoked")
		seen := int(up.calls.Load())
		if ok != seen || refused != total-ok || refused == 0 || ok < 20 {
			t.Fatalf("%d carried out, %d refused, the upstream saw %d (%d at the revocation); want carried out = seen, some of each",
				ok, refused, seen, atRevoke)
		}
		waitSettled(t, n)
		if c := captured("revoked"); c != seen {
			t.Fatalf("%d captured spends for %d calls the upstream saw", c, seen)
		}
		for i, a := range as {
			if id := hs[i].Get(api.HeaderSpendID); a.status == 200 {
				if sp := ownerSpend(t, n, id); sp.Status != "captured" {
					t.Fatalf("call %d was carried out; its spend %s is %s", i, id, sp.Status)
				}
			}
		}
		t.Logf("revoked after %d calls reached the upstream; %d in all, %d refused (%d sent after the revocation's answer)", atRevoke, seen, refused, late)
	})
	n.verify(t)
}

// TestProxyFreezeAndExpiry: a freeze refuses the agent's next proxied
// call (agent_frozen), an unfreeze restores it, and a grant that expires
// in a second refuses calls (grant_expired) once it has; no refused call
// reaches the upstream.
func TestProxyFreezeAndExpiry(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{})
	const key = "sk_freeze_0123456789abcdef"
	up := newKeyUpstream(t, key)
	mustOwner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: "api", Upstream: up.srv.URL, Inject: "header:X-Api-Key={secret}",
		Secret: key, AllowPrivate: true}, 201, nil)
	ag := n.proxyAgent(t, n.newAgent(t, "icy", `{"per_tx_max":"1","daily":"1"}`))
	brief := n.proxyAgent(t, n.newAgent(t, "brief", `{"per_tx_max":"1","daily":"1"}`))
	for _, g := range []api.GrantRequest{{Agent: "icy"}, {Agent: "brief", Expires: "1s"}} {
		g.Methods, g.Paths, g.Price = []string{"GET"}, []string{"/v1/*"}, "0.001"
		mustOwner(t, n, "POST", "/v1/vault/api/grants", g, 201, nil)
	}
	ok := func(p *proxyAgent) {
		t.Helper()
		if a, h := p.call(t, "GET", "/v1/proxy/api/v1/x", nil, nil); a.status != 200 || h.Get(api.HeaderError) != "" {
			t.Fatalf("call: %s", a)
		}
	}
	refused := func(p *proxyAgent, reason string) {
		t.Helper()
		before := up.calls.Load()
		if a, h := p.call(t, "GET", "/v1/proxy/api/v1/x", nil, nil); !a.refusedFor(h, reason) {
			t.Fatalf("call: %s; want spend_denied %s", a, reason)
		}
		if up.calls.Load() != before {
			t.Fatalf("a call refused %s reached the upstream", reason)
		}
	}
	ok(ag)
	ok(brief)
	mustOwner(t, n, "POST", "/v1/agents/icy/freeze", nil, 200, nil)
	refused(ag, "agent_frozen")
	mustOwner(t, n, "POST", "/v1/agents/icy/unfreeze", nil, 200, nil)
	ok(ag)
	time.Sleep(1100 * time.Millisecond)
	refused(brief, "grant_expired")
	var gs api.Grants
	mustOwner(t, n, "GET", "/v1/vault/api/grants", nil, 200, &gs)
	for _, g := range gs.Grants {
		if g.AgentName == "brief" && g.Status != "expired" {
			t.Fatalf("the expired grant says %q", g.Status)
		}
	}
	n.verify(t)
}
