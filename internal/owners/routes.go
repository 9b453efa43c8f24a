package owners

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

type handler func(w http.ResponseWriter, r *http.Request) error

func (a *auth) routes(mux *http.ServeMux) {
	open := func(pattern string, h handler) { // no session; Origin checked on POST
		mux.Handle(pattern, a.wrap(false, h))
	}
	signed := func(pattern string, h handler) { // a session and, on POST, the CSRF token
		mux.Handle(pattern, a.wrap(true, h))
	}
	open("POST "+PathEnrolBegin, a.enrolBegin)
	open("POST "+PathEnrolFinish, a.enrolFinish)
	open("POST "+PathLoginBegin, a.loginBegin)
	open("POST "+PathLoginFinish, a.loginFinish)
	signed("POST "+PathLogout, a.logout)
	signed("GET "+PathSession, a.sessionInfo)
	signed("POST "+PathApprovalBegin, a.approvalBegin)
	signed("POST "+PathApprovalFinish, a.approvalFinish)
	signed("POST "+PathApprovalDeny, a.approvalDeny)
	mux.Handle("/auth/", a.wrap(false, func(w http.ResponseWriter, r *http.Request) error {
		return spend.Errorf("not_found", "no such endpoint")
	}))
}

func (a *auth) wrap(needSession bool, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				a.log.Error("panic in /auth handler", "route", r.URL.Path, "panic", v)
				a.writeError(w, r, errors.New("panic"))
			}
		}()
		r.Body = http.MaxBytesReader(w, r.Body, maxBody+1)
		if err := a.checkOrigin(r); err != nil {
			a.writeError(w, r, err)
			return
		}
		if needSession {
			s, _, err := a.session(r)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			r = r.WithContext(WithSession(r.Context(), s))
			if err := a.checkCSRF(r); err != nil {
				a.writeError(w, r, err)
				return
			}
		}
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// --- enrolment ---

type enrolBeginReq struct {
	Token string `json:"token"`
}

func (a *auth) enrolBegin(w http.ResponseWriter, r *http.Request) error {
	var req enrolBeginReq
	if err := readJSON(r, &req); err != nil {
		return err
	}
	th := hashHex(req.Token)
	inv, o, err := a.svc.OwnerInvite(r.Context(), th)
	if err != nil {
		return err
	}
	if !a.starts.allow() {
		return spend.Errorf(spend.CodeTooManyRequests, "too many sign-in attempts; try again in a moment")
	}
	u := &waUser{id: []byte(spend.NewOwnerID()), name: inv.Name}
	var exclude []protocol.CredentialDescriptor
	if o != nil { // a further device of an existing owner
		if u, err = a.ownerUser(r.Context(), o.ID); err != nil {
			return err
		}
		for _, c := range u.creds {
			exclude = append(exclude, c.Descriptor())
		}
	}
	creation, sd, err := a.wa.BeginRegistration(u, webauthn.WithCredentialParameters(credParams), webauthn.WithExclusions(exclude),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation))
	if err != nil {
		return err
	}
	if err := a.startCeremony(r.Context(), ceremonyEnrol, string(u.id), th, sd, nil, min(a.cerTTL, inv.ExpiresAt.Sub(a.svc.Now()))); err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"options": creation, "name": inv.Name, "new_owner": o == nil})
	return nil
}

type enrolFinishReq struct {
	Token      string          `json:"token"`
	Credential json.RawMessage `json:"credential"`
}

func (a *auth) enrolFinish(w http.ResponseWriter, r *http.Request) error {
	var req enrolFinishReq
	if err := readJSON(r, &req); err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(req.Credential)
	if err != nil {
		return webauthnErr(err)
	}
	c, d, err := a.takeCeremony(r.Context(), parsed.Raw.AttestationResponse.ClientDataJSON, ceremonyEnrol)
	if err != nil {
		return err
	}
	th := hashHex(req.Token)
	if c.Subject != th {
		return spend.Errorf(spend.CodeChallengeInvalid, "this challenge was made for another enrolment link; begin again")
	}
	u := &waUser{id: []byte(c.OwnerID)}
	cred, err := a.wa.CreateCredential(u, d.Session, parsed)
	if err != nil {
		return webauthnErr(err)
	}
	spki, alg, err := spkiOf(cred.PublicKey)
	if err != nil {
		return spend.Errorf(spend.CodeWebAuthnInvalid, "the passkey's public key is not one Purser accepts (ES256, EdDSA, RS256)")
	}
	o, err := a.svc.EnrolPasskey(r.Context(), th, c.OwnerID, spend.NewPasskey{
		CredentialID: cred.ID, PublicKeyCOSE: cred.PublicKey, PublicKeySPKI: spki, Algorithm: alg,
		SignCount: cred.Authenticator.SignCount, AAGUID: cred.Authenticator.AAGUID, BackupEligible: cred.Flags.BackupEligible,
		RPID: a.rpID, Origin: a.origin})
	if err != nil {
		return err
	}
	// Enrolment signs the new passkey in.
	return a.signIn(w, r, cred.ID, cred.Authenticator.SignCount, o.Name)
}

// --- sign-in ---

func (a *auth) loginBegin(w http.ResponseWriter, r *http.Request) error {
	if err := readJSON(r, &struct{}{}); err != nil {
		return err
	}
	if !a.starts.allow() {
		return spend.Errorf(spend.CodeTooManyRequests, "too many sign-in attempts; try again in a moment")
	}
	assertion, sd, err := a.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return err
	}
	if err := a.startCeremony(r.Context(), ceremonyLogin, "", "", sd, nil, a.cerTTL); err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"options": assertion})
	return nil
}

type credentialReq struct {
	Credential json.RawMessage `json:"credential"`
}

func (a *auth) loginFinish(w http.ResponseWriter, r *http.Request) error {
	var req credentialReq
	if err := readJSON(r, &req); err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(req.Credential)
	if err != nil {
		return webauthnErr(err)
	}
	_, d, err := a.takeCeremony(r.Context(), parsed.Raw.AssertionResponse.ClientDataJSON, ceremonyLogin)
	if err != nil {
		return err
	}
	var name string
	cred, err := a.wa.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
		u, err := a.ownerUser(r.Context(), string(userHandle))
		if err != nil {
			return nil, err
		}
		name = u.name
		return u, nil
	}, d.Session, parsed)
	if err != nil {
		return webauthnErr(err)
	}
	return a.signIn(w, r, cred.ID, parsed.Response.AuthenticatorData.Counter, name)
}

func (a *auth) signIn(w http.ResponseWriter, r *http.Request, credID []byte, signCount uint32, name string) error {
	token, csrf := randToken(32), randToken(32)
	o, sess, err := a.svc.SignIn(r.Context(), spend.SignInParams{CredentialID: credID, SignCount: signCount,
		SessionHash: hashHex(token), CSRF: csrf, MaxAge: a.max})
	if err != nil {
		return err
	}
	a.setCookie(w, token, int(a.max/time.Second))
	writeJSON(w, 200, sessionJSON(&Session{OwnerID: o.ID, OwnerName: o.Name, CSRF: csrf, CreatedAt: sess.CreatedAt, ExpiresAt: sess.ExpiresAt}))
	return nil
}

func sessionJSON(s *Session) map[string]any {
	return map[string]any{"owner_id": s.OwnerID, "owner_name": s.OwnerName, "csrf_token": s.CSRF,
		"created_at": s.CreatedAt.Format(time.RFC3339), "expires_at": s.ExpiresAt.Format(time.RFC3339)}
}

func (a *auth) logout(w http.ResponseWriter, r *http.Request) error {
	_, h, err := a.session(r)
	if err != nil {
		return err
	}
	if err := a.svc.EndOwnerSession(r.Context(), h); err != nil {
		return err
	}
	a.setCookie(w, "", -1)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		// The portal's sign-out form, posted without script.
		http.Redirect(w, r, PathSignIn, http.StatusSeeOther)
		return nil
	}
	writeJSON(w, 200, map[string]any{"signed_out": true})
	return nil
}

func (a *auth) sessionInfo(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, 200, sessionJSON(SessionFrom(r.Context())))
	return nil
}

// --- approvals ---

func spendJSON(sp *spend.Spend) map[string]any {
	return map[string]any{"id": sp.ID, "agent_id": sp.AgentID, "status": sp.Status, "rail": sp.Rail, "host": sp.Host,
		"payee": sp.Payee, "asset": sp.Asset, "network": sp.Network, "amount_atomic": sp.Amount.String(), "memo": sp.Memo,
		"reasons": sp.Reasons, "deny_reason": sp.DenyReason}
}

func (a *auth) approvalBegin(w http.ResponseWriter, r *http.Request) error {
	if err := readJSON(r, &struct{}{}); err != nil {
		return err
	}
	s := SessionFrom(r.Context())
	sp, err := a.svc.GetSpend(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if spend.Approved(sp) {
		writeJSON(w, 200, map[string]any{"already_approved": true, "spend": spendJSON(sp)})
		return nil
	}
	if sp.Status != spend.StatusPendingApproval {
		return spend.Errorf(spend.CodeInvalidState, "spend %s is %s, not pending approval", sp.ID, sp.Status)
	}
	u, err := a.ownerUser(r.Context(), s.OwnerID)
	if err != nil {
		return err
	}
	var nonce [16]byte
	rand.Read(nonce[:]) //nolint:errcheck // crypto/rand does not fail
	expires := a.svc.Now().Add(a.cerTTL).Truncate(time.Millisecond)
	if sp.ExpiresAt.Before(expires) {
		expires = sp.ExpiresAt.Truncate(time.Millisecond)
	}
	commit := spend.ApprovalCommitFor(sp, nonce[:], expires)
	var allow []protocol.CredentialDescriptor
	for _, c := range u.creds {
		allow = append(allow, c.Descriptor())
	}
	assertion, sd, err := a.wa.BeginLogin(u, webauthn.WithChallenge(commit.Challenge()), webauthn.WithAllowedCredentials(allow),
		webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return err
	}
	if err := a.startCeremony(r.Context(), ceremonyApprov, s.OwnerID, sp.ID, sd, &commit, expires.Sub(a.svc.Now())+time.Second); err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"already_approved": false, "spend": spendJSON(sp), "commit": commit, "options": assertion})
	return nil
}

func (a *auth) approvalFinish(w http.ResponseWriter, r *http.Request) error {
	var req credentialReq
	if err := readJSON(r, &req); err != nil {
		return err
	}
	s := SessionFrom(r.Context())
	parsed, err := protocol.ParseCredentialRequestResponseBytes(req.Credential)
	if err != nil {
		return webauthnErr(err)
	}
	c, d, err := a.takeCeremony(r.Context(), parsed.Raw.AssertionResponse.ClientDataJSON, ceremonyApprov)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if c.Subject != id || d.Commit == nil || d.Commit.SpendID != id {
		return spend.Errorf(spend.CodeApprovalMismatch, "this assertion approves spend %s, not %s", c.Subject, id)
	}
	if c.OwnerID != s.OwnerID {
		return spend.Errorf(spend.CodeChallengeInvalid, "this challenge was made for another owner's session")
	}
	u, err := a.ownerUser(r.Context(), s.OwnerID)
	if err != nil {
		return err
	}
	cred, err := a.wa.ValidateLogin(u, d.Session, parsed)
	if err != nil {
		return webauthnErr(err)
	}
	ap := &audit.PasskeyAssertion{OwnerID: s.OwnerID, CredentialID: b64.EncodeToString(cred.ID),
		AuthenticatorData: b64.EncodeToString(parsed.Raw.AssertionResponse.AuthenticatorData),
		ClientDataJSON:    b64.EncodeToString(parsed.Raw.AssertionResponse.ClientDataJSON),
		Signature:         b64.EncodeToString(parsed.Raw.AssertionResponse.Signature),
		RPID:              a.rpID, Origin: a.origin, Commit: *d.Commit}
	// What `audit verify` will check offline must hold now.
	spki, _, err := spkiOf(cred.PublicKey)
	if err != nil {
		return err
	}
	if err := ap.Verify(spki); err != nil {
		return spend.Errorf(spend.CodeWebAuthnInvalid, "the assertion does not verify: %v", err)
	}
	sp, replayed, err := a.svc.ApproveWithPasskey(r.Context(), id, ap, parsed.Response.AuthenticatorData.Counter)
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"approved": spend.Approved(sp), "replayed": replayed, "spend": spendJSON(sp)})
	return nil
}

type denyReq struct {
	Reason string `json:"reason"`
}

func (a *auth) approvalDeny(w http.ResponseWriter, r *http.Request) error {
	var req denyReq
	if err := readJSON(r, &req); err != nil {
		return err
	}
	sp, err := a.svc.DenyAsOwner(r.Context(), r.PathValue("id"), req.Reason, SessionFrom(r.Context()).OwnerID)
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"spend": spendJSON(sp)})
	return nil
}
