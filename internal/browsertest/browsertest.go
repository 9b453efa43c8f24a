// Package browsertest runs pages in a real headless Chromium for tests,
// through the Chrome DevTools Protocol (chromedp): it finds the browser,
// starts one per test and stops it at cleanup, adds a virtual WebAuthn
// authenticator for passkeys, and saves screenshots.
//
// A test skips when no Chromium is installed, unless PURSER_TEST_BROWSER
// is set (CI sets it, and installs Debian's chromium package): there a
// missing browser fails the test.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// Desktop and Phone are the widths screenshots are taken at; Phone is a
// 390 px wide phone held in one hand.
var (
	Desktop = Viewport{Name: "desktop", Width: 1280, Height: 900}
	Phone   = Viewport{Name: "phone", Width: 390, Height: 844, Mobile: true}
)

// Viewport is a browser window size.
type Viewport struct {
	Name          string
	Width, Height int64
	Mobile        bool
}

// Emulate sets the page's viewport.
func (v Viewport) Emulate() chromedp.Action[chromedp.Void] {
	if v.Mobile {
		return chromedp.EmulateViewport(v.Width, v.Height, chromedp.EmulateMobile, chromedp.EmulateScale(2))
	}
	return chromedp.EmulateViewport(v.Width, v.Height)
}

// findChromium returns the browser binary, or "" when there is none.
func findChromium() string {
	if p := os.Getenv("PURSER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start launches a headless Chromium for t and returns a browser tab's
// context; the browser process ends at cleanup.
func Start(t testing.TB) context.Context {
	t.Helper()
	bin := findChromium()
	if bin == "" {
		if os.Getenv("PURSER_TEST_BROWSER") != "" {
			t.Fatal("PURSER_TEST_BROWSER is set but no chromium binary was found (apt-get install chromium, or set PURSER_CHROMIUM)")
		}
		t.Skip("no chromium binary found: browser tests skipped (apt-get install chromium, or set PURSER_TEST_BROWSER=1 to make this a failure)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // containers run tests as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(Desktop.Width), int(Desktop.Height)),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills the browser process and waits for it
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	return ctx
}

// Do runs steps with a timeout, failing the test on error.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// Get runs one action with a timeout and returns its value, failing the
// test on error.
func Get[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// AddPasskeyAuthenticator enables the WebAuthn domain and adds a virtual
// platform authenticator with resident keys and user verification that
// answers at once: a device with a passkey, for the test's browser.
func AddPasskeyAuthenticator(t testing.TB, ctx context.Context) webauthn.AuthenticatorID {
	t.Helper()
	return Get(t, ctx, "virtual authenticator", func(ctx context.Context, tg *chromedp.Target) (webauthn.AuthenticatorID, error) {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return "", err
		}
		res, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
			Options: &webauthn.VirtualAuthenticatorOptions{
				Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
				Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true,
			}})
		return res.AuthenticatorID, err
	})
}

// ScreenshotDir is where screenshots go: $PURSER_TEST_SCREENSHOTS (kept
// after the test, to look at) or the test's temporary directory.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PURSER_TEST_SCREENSHOTS"); d != "" {
		d = filepath.Join(d, filepath.Base(t.Name()))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// Screenshot saves the whole page as dir/name-viewport.png.
func Screenshot(t testing.TB, ctx context.Context, dir, name string, v Viewport) string {
	t.Helper()
	png := Get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.png", name, v.Name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
