// Package portal is the owner's web face of Purser: server-rendered
// pages (html/template, an embedded stylesheet and one embedded script,
// a strict Content-Security-Policy) for the overview, agents and their
// mandates, the live approval queue, and the audit trail.
//
// It is a transport like httpapi: every page turns into calls of
// spend.Service in process and renders the result; business rules live
// in spend. Who is signed in is not its business either: the owner
// identity backend (passkeys, sessions, CSRF tokens) implements Auth,
// and its endpoints are mounted under /auth/. The portal adds the
// checks every page needs: a live session (else the browser goes to
// sign-in), the session's CSRF token on every state change, the request's
// Host and Origin against the portal's public origin, and security
// headers on every answer.
package portal
