package owners

import (
	"context"
	"net/http"

	"github.com/purserhq/purser/internal/spend"
)

// Auth serves the owner's sign-in and the passkey approval, and guards
// the portal's pages.
type Auth struct {
	cfg Config
	a   *auth
}

// New checks cfg and builds an Auth.
func New(cfg Config) (*Auth, error) { return newAuth(cfg) }

// PublicURL is the origin the portal's links use (no trailing slash).
func (a *Auth) PublicURL() string { return a.a.origin }

// EnrolURL is the link an invite token is delivered in:
// <public-url>/enrol#<token> (the fragment never reaches a server log).
func (a *Auth) EnrolURL(token string) string { return a.a.origin + "/enrol#" + token }

// ApprovalURL is the stable page of one approval, for notifications.
func (a *Auth) ApprovalURL(spendID string) string { return a.a.origin + "/approvals/" + spendID }

// Routes registers the /auth endpoints on mux.
func (a *Auth) Routes(mux *http.ServeMux) { a.a.routes(mux) }

// Handler serves the /auth endpoints alone.
func (a *Auth) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Routes(mux)
	return mux
}

// RequireSession lets requests with a live session through, with the
// Session in their context (SessionFrom). Without one it answers a GET or
// HEAD that accepts HTML with a redirect to /signin?next=<path>, anything
// else with 401 {code: "session_required"}. It also refuses a request
// whose Host is not served, and a state-changing request (not GET, HEAD,
// OPTIONS) whose Origin is not the public origin or whose CSRF token is
// wrong: so a page behind it needs no check of its own.
func (a *Auth) RequireSession(next http.Handler) http.Handler { return a.a.requireSession(next) }

// CheckCSRF checks what a state-changing request must carry: an Origin
// equal to the public origin (or, failing an Origin header, a Referer
// on it), a served Host, and the session's CSRF token in X-CSRF-Token or
// the form field csrf_token, compared in constant time. Call it within
// RequireSession. The error is a *spend.Error (csrf_failed,
// origin_not_allowed, host_not_served).
func (a *Auth) CheckCSRF(r *http.Request) error { return a.a.checkCSRF(r) }

// WriteError writes err as JSON {code, message} with the status the code
// registry gives it.
func (a *Auth) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.a.writeError(w, r, err)
}

// Invite creates a one-time enrolment link for the owner called name (a
// new owner, or a further passkey of an existing one).
func (a *Auth) Invite(ctx context.Context, name string) (link string, inv *spend.OwnerInviteCreated, err error) {
	inv, err = a.a.svc.InviteOwner(ctx, name, a.a.invite)
	if err != nil {
		return "", nil, err
	}
	return a.EnrolURL(inv.Token), inv, nil
}
