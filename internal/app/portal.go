package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/owners"
	"github.com/purserhq/purser/internal/portal"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/webhook"
)

// rootHandler puts the owner's browser side beside the JSON API: /auth/
// (passkey enrolment, sign-in, sessions and approvals: internal/owners)
// and everything else to the API, which answers /v1, /healthz and
// /metrics and hands every other path to the portal's pages
// (internal/portal, behind auth.RequireSession).
func rootHandler(api http.Handler, auth *owners.Auth) http.Handler {
	authH := auth.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/auth/") {
			authH.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// Owners is the owner sign-in the server runs: its enrolment links, its
// session middleware for the portal.
func (s *Server) Owners() *owners.Auth { return s.owners }

// newPortal builds the owner portal on svc, with auth's sessions, at
// auth's public origin.
func newPortal(svc *spend.Service, assets *money.Registry, chains portal.Chains, auth *owners.Auth, hooks *webhook.Webhooks, log *slog.Logger) (*portal.Server, error) {
	cfg := portal.Config{Service: svc, Assets: assets, Auth: ownersAuth{auth}, AuthHandler: auth.Handler(),
		Chains: chains, Origin: auth.PublicURL(), Logger: log}
	if hooks != nil {
		cfg.Webhooks = hooks
	}
	p, err := portal.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	return p, nil
}

// ownersAuth is internal/owners as the portal's Auth.
type ownersAuth struct{ a *owners.Auth }

func (o ownersAuth) RequireSession(next http.Handler) http.Handler { return o.a.RequireSession(next) }

func (o ownersAuth) Session(ctx context.Context) (portal.Session, bool) {
	s := owners.SessionFrom(ctx)
	if s == nil {
		return portal.Session{}, false
	}
	return portal.Session{OwnerID: s.OwnerID, OwnerName: s.OwnerName, CSRF: s.CSRF}, true
}

func (o ownersAuth) CheckCSRF(r *http.Request) error { return o.a.CheckCSRF(r) }
