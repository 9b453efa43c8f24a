package e2e

import (
	"context"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/browsertest"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/sdk"
)

// TestPortalPasskeyEndToEnd is an owner's first hour, in a real headless
// Chromium with a virtual passkey authenticator, against a real Purser
// on the dev chain with a real x402 seller: enrol through the invite
// link, sign out and back in with the passkey, create an agent and its
// mandate in the portal, watch the agent's yellow payment appear in the
// live queue, approve it with the passkey and see the seller paid on
// chain; then freeze the agent in the portal and see its next payment
// refused.
func TestPortalPasskeyEndToEnd(t *testing.T) {
	ctx := browsertest.Start(t)
	browsertest.AddPasskeyAuthenticator(t, ctx)
	m := newMarket(t)
	dataDir := t.TempDir()
	srv, err := app.Start(context.Background(), app.Config{DataDir: dataDir, Listen: "127.0.0.1:0",
		RPC: map[string]string{m.dev.Network(): m.dev.RPCURL()}, Assets: []money.Asset{m.asset}, DefaultNetwork: m.dev.Network()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	origin := srv.Owners().PublicURL()
	if !strings.HasPrefix(origin, "http://localhost:") {
		t.Fatalf("default public URL %q is not http://localhost:PORT", origin)
	}
	dir := browsertest.ScreenshotDir(t)
	shot := func(name string) {
		for _, v := range []browsertest.Viewport{browsertest.Desktop, browsertest.Phone} {
			browsertest.Do(t, ctx, "viewport", v.Emulate())
			browsertest.Screenshot(t, ctx, dir, name, v)
		}
		browsertest.Do(t, ctx, "viewport", browsertest.Desktop.Emulate())
	}
	bg := context.Background()

	// Enrol through the one-time link.
	link, _, err := srv.Owners().Invite(bg, "Alex Owner")
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Do(t, ctx, "open the invite", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#enrol button")))
	shot("enrol")
	browsertest.Do(t, ctx, "create a passkey", chromedp.Click(chromedp.CSS("#enrol button")), chromedp.WaitVisible(chromedp.CSS(".stats")))
	if who := browsertest.Get(t, ctx, "who", chromedp.Text(chromedp.CSS(".who"))); who != "Alex Owner" {
		t.Errorf("signed in as %q after enrolment", who)
	}
	// The link works once.
	browsertest.Do(t, ctx, "sign out", chromedp.Click(chromedp.CSS("form.signout button")), chromedp.WaitVisible(chromedp.ID("signin")))
	browsertest.Do(t, ctx, "reuse the invite", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#enrol button")),
		chromedp.Click(chromedp.CSS("#enrol button")), chromedp.WaitVisible(chromedp.ID("enrol-error")))

	// Sign in with the passkey.
	browsertest.Do(t, ctx, "sign-in page", chromedp.Navigate(origin+"/agents"), chromedp.WaitVisible(chromedp.ID("signin")))
	shot("signin")
	browsertest.Do(t, ctx, "sign in", chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.CSS(`a[href="/agents/new"]`)))

	// Create an agent for the identity key it generated, and its mandate.
	key, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Do(t, ctx, "create agent", chromedp.Navigate(origin+"/agents/new"), chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), "shopper"), chromedp.SendKeys(chromedp.ID("identity_address"), agentauth.Address(key).Hex()),
		chromedp.Click(chromedp.CSS(`form.form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	browsertest.Do(t, ctx, "mandate", chromedp.Click(chromedp.CSS(`a[href$="/mandate"]`)), chromedp.WaitVisible(chromedp.ID("f-daily")),
		chromedp.SendKeys(chromedp.ID("f-daily"), "5"), chromedp.SendKeys(chromedp.ID("f-per_tx_auto"), "0.10"),
		chromedp.SendKeys(chromedp.ID("f-per_tx_max"), "1"), chromedp.SendKeys(chromedp.ID("f-rails"), "x402"),
		chromedp.Click(chromedp.CSS(`form.form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("table.diff")))
	shot("mandate-preview")
	browsertest.Do(t, ctx, "save mandate", chromedp.Click(chromedp.CSS(`form.actions button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	owner := newNode(t, "http://"+srv.Addr(), dataDir)
	a, err := owner.owner.Agent(bg, "shopper")
	if err != nil {
		t.Fatal(err)
	}
	if a.MandateVersion != 1 {
		t.Fatalf("agent after the portal: %+v", a)
	}
	var wallet common.Address
	for _, w := range a.Wallets {
		if w.Network == m.dev.Network() {
			wallet = common.HexToAddress(w.Address)
		}
	}
	if _, err := m.dev.Mint(bg, wallet, big.NewInt(2_000_000)); err != nil {
		t.Fatal(err)
	}

	// A running agent asks for a yellow payment and waits for the owner.
	browsertest.Do(t, ctx, "approvals", chromedp.Navigate(origin+"/approvals"), chromedp.WaitVisible(chromedp.ID("queue")))
	time.Sleep(500 * time.Millisecond) // the live stream's first event
	agent, err := sdk.NewAgent("http://"+srv.Addr(), signer(t, key), sdk.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	type fetched struct {
		res *sdk.FetchResult
		err error
	}
	done := make(chan fetched, 1)
	go func() {
		res, err := agent.Fetch(bg, sdk.FetchRequest{URL: m.sellerURL + "/pricey", Memo: "Market data for the weekly report",
			WaitForApproval: 90 * time.Second})
		done <- fetched{res, err}
	}()
	browsertest.Do(t, ctx, "the request appears live", chromedp.WaitVisible(chromedp.CSS("#queue .approval-card")))
	card := browsertest.Get(t, ctx, "card", chromedp.Text(chromedp.CSS("#queue .approval-card")))
	for _, want := range []string{"0.5 USDC", "shopper", "Market data for the weekly report", "Above the amount approved automatically", "Left today after this", "$4.50"} {
		if !strings.Contains(card, want) {
			t.Errorf("live card lacks %q: %q", want, card)
		}
	}
	shot("approvals-live")
	browsertest.Do(t, ctx, "review", chromedp.Click(chromedp.CSS("#queue .approval-card a.button")), chromedp.WaitVisible(chromedp.ID("approve")))
	shot("approval")
	sellerBefore := m.balance(t, m.seller)
	browsertest.Do(t, ctx, "approve with the passkey", chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.CSS(".flash")))
	var got fetched
	select {
	case got = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the agent never got its payment through")
	}
	if got.err != nil || got.res.Outcome != sdk.Paid || string(got.res.Body) != "content of /pricey" || !got.res.Settlement.Success {
		t.Fatalf("the agent's payment after the passkey approval: %+v %v", got.res, got.err)
	}
	if paid := new(big.Int).Sub(m.balance(t, m.seller), sellerBefore); paid.Int64() != 500000 {
		t.Errorf("the seller received %s on chain, want 500000", paid)
	}

	// Freeze from the portal: the next payment is refused.
	browsertest.Do(t, ctx, "freeze", chromedp.Navigate(origin+"/agents/"+a.ID), chromedp.Click(chromedp.CSS(`a[href$="/confirm/freeze"]`)),
		chromedp.WaitVisible(chromedp.CSS("form.actions button")))
	shot("confirm-freeze")
	browsertest.Do(t, ctx, "confirm freeze", chromedp.Click(chromedp.CSS("form.actions button")), chromedp.WaitVisible(chromedp.CSS(".pill.a-frozen")))
	shot("agent")
	res, err := agent.Fetch(bg, sdk.FetchRequest{URL: m.sellerURL + "/item"})
	if err != nil || res.Outcome != sdk.Refused || !slices.Contains(res.Reasons, "agent_frozen") {
		t.Errorf("a frozen agent's fetch: %+v %v", res, err)
	}
	browsertest.Do(t, ctx, "overview", chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS(".stats")))
	shot("overview")
	browsertest.Do(t, ctx, "audit", chromedp.Navigate(origin+"/audit"), chromedp.WaitVisible(chromedp.CSS("table.events")))
	shot("audit")
	events := browsertest.Get(t, ctx, "events", chromedp.Text(chromedp.CSS("table.events")))
	if !strings.Contains(events, "Payment approved with a passkey") {
		t.Errorf("the audit table does not show the passkey approval: %q", events)
	}
	if !strings.Contains(events, "Alex Owner") {
		t.Errorf("the audit table does not name the owner: %q", events)
	}
	// The approval is a human signature in the chain, which verifies.
	if err := srv.Checkpoint(bg); err != nil {
		t.Fatal(err)
	}
	owner.verify(t)
}
