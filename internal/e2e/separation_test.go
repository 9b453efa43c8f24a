package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/sdk"
)

// TestOwnerAndAgentSeparation: an agent sees only its own spends, and
// agent endpoints refuse unsigned requests.
func TestOwnerAndAgentSeparation(t *testing.T) {
	t.Parallel()
	n := startApp(t, app.Config{})
	ctx := context.Background()
	const mandate = `{"per_tx_max":"1","daily":"10"}`
	a := n.agentClient(t, n.newAgent(t, "ann", mandate))
	keyB := n.newAgent(t, "ben", mandate)
	b := n.agentClient(t, keyB)

	spB, err := b.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.05"})
	if err != nil {
		t.Fatalf("ben authorizes: %v", err)
	}
	spA, err := a.Authorize(ctx, sdk.AuthorizeRequest{Rail: "custom", Payee: payee, Amount: "0.02"})
	if err != nil {
		t.Fatalf("ann authorizes: %v", err)
	}
	// Positive controls: each agent reads its own spend.
	if got, err := b.Spend(ctx, spB.SpendID); err != nil || got.SpendID != spB.SpendID {
		t.Fatalf("ben reads his own spend: %+v, %v", got, err)
	}
	if got, err := a.Spend(ctx, spA.SpendID); err != nil || got.SpendID != spA.SpendID {
		t.Fatalf("ann reads her own spend: %+v, %v", got, err)
	}

	// Ann can neither read nor settle Ben's spend, and cannot tell it exists.
	if _, err := a.Spend(ctx, spB.SpendID); !isAPI(err, 404, "spend_not_found") {
		t.Errorf("ann reads ben's spend: %v, want 404 spend_not_found", err)
	}
	if _, err := a.Spend(ctx, "spd_doesnotexist"); !isAPI(err, 404, "spend_not_found") {
		t.Errorf("ann reads a missing spend: %v, want 404 spend_not_found", err)
	}
	if _, err := a.Release(ctx, spB.SpendID); !isAPI(err, 404, "spend_not_found") {
		t.Errorf("ann releases ben's spend: %v, want 404 spend_not_found", err)
	}
	if _, err := a.Capture(ctx, spB.SpendID, ""); !isAPI(err, 404, "spend_not_found") {
		t.Errorf("ann captures ben's spend: %v, want 404 spend_not_found", err)
	}
	if got, err := n.owner.Spend(ctx, spB.SpendID); err != nil || got.Status != sdk.StatusAuthorized {
		t.Errorf("ben's spend after ann's attempts: %+v, %v; want authorized", got, err)
	}
	if l := n.limits(t, "ben"); micro(t, l.Daily.Used) != 50_000 {
		t.Errorf("ben's daily used %s, want 0.05", l.Daily.Used)
	}
	// Ann's limits are hers.
	if l, err := a.Limits(ctx); err != nil || l.Name != "ann" || micro(t, l.Daily.Used) != 20_000 {
		t.Errorf("ann's limits: %+v, %v; want ann with 0.02 used", l, err)
	}

	// Unsigned requests to every agent endpoint.
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/v1/agent/spends", string(spendBody("0.01", ""))},
		{"GET", "/v1/agent/spends/" + spA.SpendID, ""},
		{"POST", "/v1/agent/spends/" + spA.SpendID + "/confirm", "{}"},
		{"POST", "/v1/agent/spends/" + spA.SpendID + "/capture", "{}"},
		{"POST", "/v1/agent/spends/" + spA.SpendID + "/release", "{}"},
		{"GET", "/v1/agent/limits", ""},
	} {
		var body []byte
		if ep.body != "" {
			body = []byte(ep.body)
		}
		if r := send(t, ep.method, n.url+ep.path, body, nil); r.status != http.StatusUnauthorized || r.code != "auth_missing" {
			t.Errorf("unsigned %s %s: %v, want 401 auth_missing", ep.method, ep.path, r)
		}
	}
	// Owner endpoints without a token.
	for _, p := range []string{"/v1/agents", "/v1/spends/" + spA.SpendID, "/v1/agents/ann/limits"} {
		if r := send(t, "GET", n.url+p, nil, nil); r.status != http.StatusUnauthorized || r.code != "unauthorized" {
			t.Errorf("GET %s without a token: %v, want 401 unauthorized", p, r)
		}
	}
	// The owner sees both agents' spends.
	for _, id := range []string{spA.SpendID, spB.SpendID} {
		if _, err := n.owner.Spend(ctx, id); err != nil {
			t.Errorf("owner reads %s: %v", id, err)
		}
	}
	if got, err := n.owner.Spend(ctx, spA.SpendID); err != nil || got.Status != sdk.StatusAuthorized {
		t.Errorf("ann's spend after the unsigned attempts: %+v, %v; want authorized", got, err)
	}
}

func isAPI(err error, status int, code string) bool {
	var ae *sdk.Error
	return errors.As(err, &ae) && ae.Status == status && ae.Code == code
}
