package app

import (
	"net/http"
	"strings"

	"github.com/purserhq/purser/internal/owners"
)

// rootHandler puts the owner's browser side beside the JSON API: /auth/
// (passkey enrolment, sign-in, sessions and approvals: internal/owners)
// and everything else to the API, which answers /v1, /healthz and
// /metrics. The portal's pages mount here too, behind
// auth.RequireSession (docs/portal.md).
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
