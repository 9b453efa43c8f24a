package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/portal"
	"github.com/purserhq/purser/internal/spend"
)

// portalOrigin is the origin owners' browsers use: --public-url, else
// http://localhost:PORT (a WebAuthn relying-party id must be a name, not
// an IP address, and localhost is a secure context without TLS).
func portalOrigin(publicURL string, addr net.Addr) string {
	if publicURL != "" {
		u, err := url.Parse(publicURL)
		if err == nil {
			return u.Scheme + "://" + u.Host
		}
	}
	_, port, _ := net.SplitHostPort(addr.String())
	return "http://localhost:" + port
}

// newPortal builds the owner portal on svc.
func newPortal(svc *spend.Service, assets *money.Registry, chains portal.Chains, auth portal.Auth, authHandler http.Handler, origin string, log *slog.Logger) (*portal.Server, error) {
	p, err := portal.New(portal.Config{Service: svc, Assets: assets, Auth: auth, AuthHandler: authHandler,
		Chains: chains, Origin: origin, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	return p, nil
}

// noSessions is the portal's identity backend until one is configured:
// nobody is signed in, so every page sends the browser to sign-in, which
// says that passkey sign-in is not set up.
type noSessions struct{}

func (noSessions) RequireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		http.Error(w, "sign in first", http.StatusUnauthorized)
	})
}

func (noSessions) Session(context.Context) (portal.Session, bool) { return portal.Session{}, false }

func (noSessions) CheckCSRF(*http.Request) error {
	return spend.Errorf("csrf_failed", "no session")
}

// publicHost is the host name of --public-url ("" when unset), which the
// Host check must serve.
func publicHost(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
