package portal

import (
	"context"
	"crypto/ed25519"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/purserhq/purser/internal/browsertest"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/webhook"
)

// browserSetup is setup with the portal on http://localhost:PORT, as a
// browser must reach it, and a browser tab signed in with the test
// session's cookie.
func browserSetup(t *testing.T) (*bundle, context.Context, string) {
	t.Helper()
	ctx := browsertest.Start(t)
	b := setup(t)
	srv := httptest.NewUnstartedServer(nil)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	origin := "http://localhost:" + port
	hooks, err := webhook.New(webhook.Config{Service: b.env.Svc, Assets: assetsOf(t), PublicURL: origin,
		SecretKey: make([]byte, 32), SigningKey: ed25519.NewKeyFromSeed(make([]byte, 32))})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Service: b.env.Svc, Assets: assetsOf(t), Auth: b.auth, Origin: origin, Clock: b.env.Clock,
		AuthHandler: b.portal.cfg.AuthHandler, SSEPoll: 100 * time.Millisecond, Webhooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	b.portal = p
	browsertest.Do(t, ctx, "session cookie", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.SetCookie, network.SetCookieParams{Name: "sess", Value: b.auth.cookie, URL: origin + "/"})
		return err
	}))
	return b, ctx, origin
}

// TestBrowserPages drives every page in headless Chromium at desktop and
// phone width, saves a screenshot of each, and checks what an owner
// relies on: the live queue, one-handed approval at 390 px, the keyboard,
// the mandate editor, freezing.
func TestBrowserPages(t *testing.T) {
	b, ctx, origin := browserSetup(t)
	s := seed(t, b)
	dir := browsertest.ScreenshotDir(t)
	t.Logf("screenshots in %s", dir)
	pages := []struct{ name, path string }{
		{"overview", "/"},
		{"agents", "/agents"},
		{"agent", "/agents/" + s.research.ID},
		{"agent-new", "/agents/new"},
		{"mandate-edit", "/agents/" + s.research.ID + "/mandate"},
		{"confirm-freeze", "/agents/" + s.ops.ID + "/confirm/freeze"},
		{"approvals", "/approvals"},
		{"approval", "/approvals/" + s.pending[1].ID},
		{"audit", "/audit"},
		{"webhooks", "/webhooks"},
		{"signin", "/signin"},
		{"enrol", "/enrol"},
	}
	for _, v := range []browsertest.Viewport{browsertest.Desktop, browsertest.Phone} {
		browsertest.Do(t, ctx, "viewport", v.Emulate())
		for _, p := range pages {
			browsertest.Do(t, ctx, "open "+p.path, chromedp.Navigate(origin+p.path), chromedp.WaitReady(chromedp.CSS("main")))
			// Nothing may scroll sideways: a phone reads the page top to bottom.
			if w := browsertest.Get(t, ctx, "width", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`)); w > v.Width {
				t.Errorf("%s at %s: the page is %d px wide, wider than the %d px screen", p.name, v.Name, w, v.Width)
			}
			browsertest.Screenshot(t, ctx, dir, p.name, v)
		}
	}

	t.Run("approval works one-handed at 390 px", func(t *testing.T) {
		browsertest.Do(t, ctx, "phone", browsertest.Phone.Emulate(), chromedp.Navigate(origin+"/approvals/"+s.pending[0].ID), chromedp.WaitVisible(chromedp.ID("approve")))
		type box struct{ Left, Right, Top, Bottom, Height float64 }
		for _, id := range []string{"approve", "reason"} {
			bx := browsertest.Get(t, ctx, "box", chromedp.Evaluate[box](`(() => { const r = document.getElementById("`+id+`").getBoundingClientRect(); return {Left: r.left, Right: r.right, Top: r.top, Bottom: r.bottom, Height: r.height}; })()`))
			if bx.Left < 0 || bx.Right > 390 {
				t.Errorf("#%s sticks out of a 390 px screen: %+v", id, bx)
			}
			if id == "approve" && bx.Height < 44 {
				t.Errorf("the approve button is %.0f px high: too small for a thumb", bx.Height)
			}
			// Under the thumb without scrolling: in the bottom third of
			// the screen as the page opens.
			if id == "approve" && (bx.Top < 844*2/3 || bx.Bottom > 844) {
				t.Errorf("the approve button is at %.0f–%.0f px of an 844 px screen: not under the thumb", bx.Top, bx.Bottom)
			}
		}
		deny := browsertest.Get(t, ctx, "deny", chromedp.Evaluate[float64](`document.querySelector(".deny button").getBoundingClientRect().height`))
		if deny < 44 {
			t.Errorf("the deny button is %.0f px high", deny)
		}
	})

	t.Run("keyboard reaches the decision", func(t *testing.T) {
		browsertest.Do(t, ctx, "desktop", browsertest.Desktop.Emulate(), chromedp.Navigate(origin+"/approvals/"+s.pending[0].ID), chromedp.WaitVisible(chromedp.ID("approve")))
		var seen []string
		for range 20 {
			browsertest.Do(t, ctx, "tab", chromedp.KeyEvent("\t"))
			id := browsertest.Get(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.id || document.activeElement.textContent.trim()`))
			seen = append(seen, id)
			if id == "reason" {
				break
			}
		}
		if !containsAll(seen, "Skip to content", "approve", "reason") {
			t.Errorf("tabbing from the top went %q: it must pass the skip link, Approve and the reason field", seen)
		}
		// Deny from the keyboard alone: type a reason, tab to Deny, Enter.
		browsertest.Do(t, ctx, "deny", chromedp.SendKeys(chromedp.ID("reason"), "Too expensive for this month"),
			chromedp.KeyEvent("\t"), chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS(".flash")))
		sp, err := b.env.Svc.GetSpend(context.Background(), s.pending[0].ID)
		if err != nil || sp.Status != spend.StatusDenied {
			t.Errorf("after denying from the keyboard the spend is %s (%v)", spendtest.Describe(sp), err)
		}
	})

	t.Run("queue updates live", func(t *testing.T) {
		browsertest.Do(t, ctx, "approvals", chromedp.Navigate(origin+"/approvals"), chromedp.WaitVisible(chromedp.ID("queue")))
		time.Sleep(300 * time.Millisecond) // the stream's first event
		r := spendtest.Custom("77")
		r.Host, r.Memo = "gpu.rent.example", "Fine-tuning run, 4 hours"
		sp := s.research.MustAuthorize(r)
		if sp.Status != spend.StatusPendingApproval {
			t.Fatalf("new spend: %s", spendtest.Describe(sp))
		}
		browsertest.Do(t, ctx, "live card", chromedp.WaitVisible(chromedp.CSS(`a[href="/approvals/`+sp.ID+`"]`)))
		text := browsertest.Get(t, ctx, "queue", chromedp.Text(chromedp.ID("queue")))
		for _, want := range []string{"77 USDC", "research-bot", "gpu.rent.example", "Fine-tuning run, 4 hours", "Above the amount approved automatically"} {
			if !strings.Contains(text, want) {
				t.Errorf("live card lacks %q: %s", want, text)
			}
		}
		browsertest.Screenshot(t, ctx, dir, "approvals-live", browsertest.Desktop)
	})

	t.Run("mandate edit shows the change, then saves", func(t *testing.T) {
		browsertest.Do(t, ctx, "edit", chromedp.Navigate(origin+"/agents/"+s.ops.ID+"/mandate"), chromedp.WaitVisible(chromedp.ID("f-daily")))
		browsertest.Get(t, ctx, "clear", chromedp.Evaluate[bool](`document.getElementById("f-daily").value = ""; true`))
		browsertest.Do(t, ctx, "type", chromedp.SendKeys(chromedp.ID("f-daily"), "75"),
			chromedp.Click(chromedp.CSS(`form.form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("table.diff")))
		browsertest.Screenshot(t, ctx, dir, "mandate-preview", browsertest.Desktop)
		diff := browsertest.Get(t, ctx, "diff", chromedp.Text(chromedp.CSS("table.diff")))
		if !strings.Contains(diff, "$50") || !strings.Contains(diff, "$75") {
			t.Errorf("diff %q does not show $50 → $75", diff)
		}
		browsertest.Do(t, ctx, "save", chromedp.Click(chromedp.CSS(`form.actions button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
		mv, err := b.env.Svc.GetMandate(context.Background(), s.ops.ID)
		if err != nil || mv.Version != 2 || mv.Mandate.Daily.String() != "75000000" {
			t.Errorf("saved mandate: %+v %v", mv, err)
		}
	})

	t.Run("freeze from the UI refuses the next spend", func(t *testing.T) {
		browsertest.Do(t, ctx, "freeze", chromedp.Navigate(origin+"/agents/"+s.travel.ID), chromedp.Click(chromedp.CSS(`a[href$="/confirm/freeze"]`)),
			chromedp.WaitVisible(chromedp.CSS(`form.actions button`)), chromedp.Click(chromedp.CSS(`form.actions button`)),
			chromedp.WaitVisible(chromedp.CSS(".pill.a-frozen")))
		browsertest.Screenshot(t, ctx, dir, "agent-frozen", browsertest.Desktop)
		out, err := s.travel.Authorize(spendtest.Custom("1"))
		if err != nil || out.Spend.Status != spend.StatusDenied || !containsAll(out.Spend.Reasons, "agent_frozen") {
			t.Errorf("a frozen agent's spend: %+v %v", out, err)
		}
	})
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
