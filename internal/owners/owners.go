// Package owners is the owner's identity in the browser: passkeys
// (WebAuthn) enrolled through one-time invites, sign-in sessions held in
// HttpOnly SameSite=Strict cookies, a per-session CSRF token, an
// Origin/Host check on every state change, and the human-signed approval
// of a spend: a fresh passkey assertion whose challenge commits to the
// spend (audit.ApprovalCommit), stored in the spend.approve audit event
// and checked offline by `purser audit verify`.
//
// The portal (internal/portal) mounts its pages behind RequireSession and
// checks CheckCSRF on every state-changing request of its own. The owner
// bearer token keeps working for /v1; a session never authorizes /v1,
// and agent signatures get nothing here. Persistence and audit events are
// spend.Service's (spend/owners.go); this package holds the ceremonies
// and the HTTP side. docs/portal.md lists the routes.
package owners

import (
	"context"
	"log/slog"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// Route paths. Every /auth route answers JSON ({code, message} on error).
const (
	PathEnrolBegin  = "/auth/enrol/begin"  // POST {token} → WebAuthn creation options
	PathEnrolFinish = "/auth/enrol/finish" // POST {token, credential} → session cookie
	PathLoginBegin  = "/auth/login/begin"  // POST {} → WebAuthn request options (discoverable)
	PathLoginFinish = "/auth/login/finish" // POST {credential} → session cookie
	PathLogout      = "/auth/logout"       // POST (CSRF) → clears the session
	PathSession     = "/auth/session"      // GET → {owner_id, owner_name, csrf_token, expires_at}
	// Approvals: {id} is a spend id. begin and finish need a session and
	// the CSRF token.
	PathApprovalBegin  = "/auth/approvals/{id}/begin"  // POST → request options whose challenge commits to the spend
	PathApprovalFinish = "/auth/approvals/{id}/finish" // POST {credential} → the approved spend
	PathApprovalDeny   = "/auth/approvals/{id}/deny"   // POST {reason} → the denied spend
	// PathSignIn is the portal's sign-in page RequireSession redirects
	// HTML requests to (?next=<path>).
	PathSignIn = "/signin"
	// CSRFHeader carries the session's CSRF token on state changes.
	CSRFHeader = "X-CSRF-Token"
)

// Config wires an Auth.
type Config struct {
	Service *spend.Service
	// PublicURL is the origin browsers use, scheme://host[:port] (no
	// path): it sets the WebAuthn origin and RP id (the host), the
	// cookie's Secure flag and __Host- prefix (https), and the only
	// Origin accepted on state changes. Default http://localhost:PORT.
	PublicURL string
	// HostNames are further Host header names served (besides the public
	// URL's host, localhost and IP literals); "*" turns the check off.
	HostNames []string
	Logger    *slog.Logger
	// Clock is ignored: sessions, invites and challenges run on the
	// spend service's clock.
	Clock spend.Clock
	// SessionIdle and SessionMax bound a session: it ends after
	// SessionIdle without a request (default 30 min) and SessionMax after
	// sign-in whatever happens (default 12 h).
	SessionIdle, SessionMax time.Duration
	// InviteTTL is how long an enrolment link works (default 15 min);
	// CeremonyTTL how long a WebAuthn challenge can be answered (default
	// 5 min).
	InviteTTL, CeremonyTTL time.Duration
}

// Session is a signed-in owner, as RequireSession puts it in the
// request's context.
type Session struct {
	OwnerID   string
	OwnerName string
	// CSRF is the token the page must send back in X-CSRF-Token (or a
	// form field named csrf_token) on every state-changing request.
	CSRF      string
	CreatedAt time.Time
	// ExpiresAt is when the session ends if it stays in use (absolute
	// expiry); it ends earlier after SessionIdle without a request.
	ExpiresAt time.Time
}

type ctxKey struct{}

// SessionFrom returns the session RequireSession found, or nil.
func SessionFrom(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// WithSession returns ctx carrying s (for tests of pages behind
// RequireSession).
func WithSession(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}
