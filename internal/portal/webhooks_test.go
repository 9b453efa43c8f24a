package portal

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/webhook"
)

// TestWebhooksPage: an owner adds a webhook in the portal (its secret is
// shown once), sees it listed, sees a delivery with the receiver's
// answer, and removes it; a private address is refused unless allowed.
func TestWebhooksPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	secret := make([]byte, 32)
	rand.Read(secret) //nolint:errcheck
	_, signing, _ := ed25519.GenerateKey(rand.Reader)
	hooks, err := webhook.New(webhook.Config{Service: b.env.Svc, Assets: assetsOf(t), PublicURL: testOrigin, SecretKey: secret, SigningKey: signing})
	if err != nil {
		t.Fatal(err)
	}
	b.portal.cfg.Webhooks = hooks
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"received":"<b>yes</b>"}`)
	}))
	t.Cleanup(receiver.Close)

	resp, body := b.do(t, http.MethodPost, "/webhooks", b.csrfForm("url", receiver.URL+"/hook"), signedIn(b))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "private") {
		t.Errorf("a loopback target without permission: %d", resp.StatusCode)
	}
	form := b.csrfForm("url", receiver.URL+"/hook", "allow_private", "on", "signing", "hmac")
	form["events"] = []string{webhook.TypeApprovalRequested, webhook.TypeAgentFrozen}
	resp, body = b.do(t, http.MethodPost, "/webhooks", form, signedIn(b))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "whsec_") || !strings.Contains(body, "shown this once") {
		t.Fatalf("add webhook: %d", resp.StatusCode)
	}
	eps, err := hooks.List(context.Background())
	if err != nil || len(eps) != 1 || len(eps[0].Events) != 2 || !eps[0].AllowPrivate {
		t.Fatalf("endpoints after adding: %+v %v", eps, err)
	}
	_, body = b.do(t, http.MethodGet, "/webhooks", nil, signedIn(b))
	if !strings.Contains(body, receiver.URL+"/hook") || strings.Contains(body, "whsec_") {
		t.Errorf("the list does not show the webhook, or shows its secret again")
	}
	if _, err := hooks.Ping(context.Background(), eps[0].ID); err != nil {
		t.Fatal(err)
	}
	_, body = b.do(t, http.MethodGet, "/webhooks/"+eps[0].ID, nil, signedIn(b))
	for _, want := range []string{"delivered", "202", "&lt;b&gt;yes&lt;/b&gt;", "ping"} {
		if !strings.Contains(body, want) {
			t.Errorf("the delivery log lacks %q", want)
		}
	}
	resp, _ = b.do(t, http.MethodPost, "/webhooks/"+eps[0].ID+"/delete", url.Values{}, signedIn(b))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("remove without the CSRF token: %d", resp.StatusCode)
	}
	resp, _ = b.do(t, http.MethodPost, "/webhooks/"+eps[0].ID+"/delete", b.csrfForm(), signedIn(b))
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("remove: %d", resp.StatusCode)
	}
	if eps, _ := hooks.List(context.Background()); len(eps) != 0 {
		t.Errorf("endpoints after removing: %+v", eps)
	}
}
