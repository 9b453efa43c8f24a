package owners

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

// Error codes this package answers with (registered in spend/codes.go).
const (
	codeCSRF       = "csrf_failed"
	codeOrigin     = "origin_not_allowed"
	codeHost       = "host_not_served"
	maxBody        = 64 << 10
	sessionCookie  = "purser_session"
	securePrefix   = "__Host-"
	ceremonyEnrol  = "enrol"
	ceremonyLogin  = "login"
	ceremonyApprov = "approve"
)

var b64 = base64.RawURLEncoding

// auth is the implementation behind Auth.
type auth struct {
	svc    *spend.Service
	wa     *webauthn.WebAuthn
	log    *slog.Logger
	origin string // scheme://host[:port]
	rpID   string
	secure bool
	cookie string
	hosts  map[string]bool // nil: any
	idle   time.Duration
	max    time.Duration
	invite time.Duration
	cerTTL time.Duration
	starts *bucket // unauthenticated ceremony starts
}

func newAuth(cfg Config) (*Auth, error) {
	if cfg.Service == nil {
		return nil, errors.New("owners: no spend service")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	origin, host, secure, err := ParsePublicURL(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	a := &auth{svc: cfg.Service, log: cfg.Logger, origin: origin, rpID: host, secure: secure,
		idle: or(cfg.SessionIdle, 30*time.Minute), max: or(cfg.SessionMax, 12*time.Hour),
		invite: or(cfg.InviteTTL, 15*time.Minute), cerTTL: or(cfg.CeremonyTTL, 5*time.Minute),
		starts: newBucket(5, 50)}
	a.cookie = sessionCookie
	if secure {
		a.cookie = securePrefix + sessionCookie
	}
	a.hosts = map[string]bool{"localhost": true, host: true}
	for _, h := range cfg.HostNames {
		if h == "*" {
			a.hosts = nil
			break
		}
		if h != "" {
			a.hosts[normalHost(h)] = true
		}
	}
	a.wa, err = webauthn.New(&webauthn.Config{
		RPID: host, RPDisplayName: "Purser", RPOrigins: []string{origin},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementRequired, RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification: protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
	})
	if err != nil {
		return nil, fmt.Errorf("owners: webauthn: %w", err)
	}
	return &Auth{cfg: cfg, a: a}, nil
}

func or(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// ParsePublicURL checks a --public-url: http or https, a host name (a
// WebAuthn RP id is a domain, never an IP address), an optional port, no
// path, query or fragment. It returns the origin, the host (the RP id)
// and whether it is https.
func ParsePublicURL(s string) (origin, host string, secure bool, err error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", false, fmt.Errorf("public URL %q: want http(s)://host[:port] with no path", s)
	}
	host = strings.ToLower(u.Hostname())
	if _, err := netip.ParseAddr(host); err == nil {
		return "", "", false, fmt.Errorf("public URL %q: a passkey's relying party is a domain name, not an IP address (use localhost)", s)
	}
	if u.Scheme == "http" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		return "", "", false, fmt.Errorf("public URL %q: browsers allow passkeys over plain http only on localhost; use https", s)
	}
	origin = u.Scheme + "://" + strings.ToLower(u.Host)
	return origin, host, u.Scheme == "https", nil
}

func normalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// --- errors and JSON ---

func (a *auth) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := spend.CodeOf(err)
	status, known := spend.HTTPStatus(code)
	msg := ""
	var se *spend.Error
	switch {
	case code == "" && errors.Is(err, context.DeadlineExceeded):
		code, status, msg = spend.CodeUnavailable, 503, "the request did not finish in time; nothing was changed"
	case code == "":
		a.log.Error("internal error", "route", r.URL.Path, "err", err)
		code, status, msg = "internal", 500, "internal error; the server log has the details"
	case errors.As(err, &se):
		msg = se.Message
	default:
		msg = err.Error()
	}
	if !known && code != "internal" && code != spend.CodeUnavailable {
		status = 400
	}
	writeJSON(w, status, map[string]any{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"code":"internal","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n')) //nolint:errcheck // the client went away
}

// readJSON decodes a small JSON body strictly (unknown fields are errors).
func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return spend.Errorf(spend.CodeInvalidRequest, "the body cannot be read")
	}
	if len(body) > maxBody {
		return spend.Errorf(spend.CodeInvalidRequest, "the body is larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return spend.Errorf(spend.CodeInvalidRequest, "the body is not the expected JSON object")
	}
	return nil
}

// --- Host, Origin, CSRF ---

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (a *auth) checkHost(r *http.Request) error {
	if a.hosts == nil {
		return nil
	}
	h := normalHost(r.Host)
	if a.hosts[h] {
		return nil
	}
	if _, err := netip.ParseAddr(h); err == nil && !strings.Contains(h, "%") {
		return nil
	}
	return spend.Errorf(codeHost, "this server does not answer for the host name in the Host header")
}

// checkOrigin: a state-changing request must come from the portal's own
// origin. Browsers send Origin on every cross-origin request and on
// same-origin non-GET requests; a request without one is refused.
func (a *auth) checkOrigin(r *http.Request) error {
	if err := a.checkHost(r); err != nil {
		return err
	}
	if safeMethod(r.Method) {
		return nil
	}
	if o := r.Header.Get("Origin"); o != a.origin {
		return spend.Errorf(codeOrigin, "state changes are accepted only from %s", a.origin)
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return spend.Errorf(codeOrigin, "state changes are accepted only from the portal's own pages")
	}
	return nil
}

func (a *auth) checkCSRF(r *http.Request) error {
	if err := a.checkOrigin(r); err != nil {
		return err
	}
	s := SessionFrom(r.Context())
	if s == nil {
		return spend.Errorf(spend.CodeSessionRequired, "sign in with your passkey")
	}
	if safeMethod(r.Method) {
		return nil
	}
	tok := r.Header.Get(CSRFHeader)
	if tok == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		tok = r.PostFormValue("csrf_token")
	}
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
		return spend.Errorf(codeCSRF, "the CSRF token is missing or wrong; reload the page")
	}
	return nil
}

// --- sessions ---

func hashHex(s string) string { return spend.SecretHash(s) }

func randToken(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand does not fail
	return b64.EncodeToString(b)
}

// session resolves the request's session cookie.
func (a *auth) session(r *http.Request) (*Session, string, error) {
	c, err := r.Cookie(a.cookie)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, "", spend.Errorf(spend.CodeSessionRequired, "sign in with your passkey")
	}
	h := hashHex(c.Value)
	ss, o, err := a.svc.OwnerSessionGet(r.Context(), h, a.idle)
	if err != nil {
		return nil, "", err
	}
	return &Session{OwnerID: o.ID, OwnerName: o.Name, CSRF: ss.CSRF, CreatedAt: ss.CreatedAt, ExpiresAt: ss.ExpiresAt}, h, nil
}

func (a *auth) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: a.cookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
}

func wantsHTML(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (a *auth) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.checkOrigin(r); err != nil {
			a.writeError(w, r, err)
			return
		}
		s, _, err := a.session(r)
		if err != nil {
			if spend.CodeOf(err) == spend.CodeSessionRequired && wantsHTML(r) {
				http.Redirect(w, r, PathSignIn+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			a.writeError(w, r, err)
			return
		}
		r = r.WithContext(WithSession(r.Context(), s))
		if err := a.checkCSRF(r); err != nil {
			a.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// --- WebAuthn users and keys ---

type waUser struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *waUser) WebAuthnID() []byte                         { return u.id }
func (u *waUser) WebAuthnName() string                       { return u.name }
func (u *waUser) WebAuthnDisplayName() string                { return u.name }
func (u *waUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func credentialOf(p *spend.Passkey) webauthn.Credential {
	return webauthn.Credential{ID: p.CredentialID, PublicKey: p.PublicKey, AttestationType: "none",
		Flags:         webauthn.CredentialFlags{UserPresent: true, UserVerified: true, BackupEligible: p.BackupEligible},
		Authenticator: webauthn.Authenticator{AAGUID: p.AAGUID, SignCount: p.SignCount}}
}

// ownerUser loads a live owner and its live passkeys as a WebAuthn user.
func (a *auth) ownerUser(ctx context.Context, ownerID string) (*waUser, error) {
	o, ps, err := a.svc.OwnerPasskeys(ctx, ownerID)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, spend.Errorf(spend.CodePasskeyRefused, "this passkey's owner is unknown or revoked")
	}
	u := &waUser{id: []byte(o.ID), name: o.Name}
	for _, p := range ps {
		u.creds = append(u.creds, credentialOf(p))
	}
	return u, nil
}

// spkiOf converts a COSE public key to PKIX DER, the form the offline
// verifier reads with the standard library alone.
func spkiOf(cose []byte) ([]byte, int64, error) {
	k, err := webauthncose.ParsePublicKey(cose)
	if err != nil {
		return nil, 0, err
	}
	var pub any
	var alg int64
	switch k := k.(type) {
	case webauthncose.EC2PublicKeyData:
		if pub, err = k.ToECDSA(); err != nil {
			return nil, 0, err
		}
		alg = k.Algorithm
	case webauthncose.RSAPublicKeyData:
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(k.Modulus), E: int(new(big.Int).SetBytes(k.Exponent).Int64())}
		alg = k.Algorithm
	case webauthncose.OKPPublicKeyData:
		if len(k.XCoord) != ed25519.PublicKeySize {
			return nil, 0, errors.New("an OKP key is not Ed25519")
		}
		pub, alg = ed25519.PublicKey(k.XCoord), k.Algorithm
	default:
		return nil, 0, fmt.Errorf("key type %T is not supported", k)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	return der, alg, err
}

var credParams = []protocol.CredentialParameter{
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgRS256},
}

func webauthnErr(err error) error {
	if spend.CodeOf(err) != "" {
		return err
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return spend.Errorf(spend.CodeWebAuthnInvalid, "the passkey's response does not verify: %s", pe.Details)
	}
	return spend.Errorf(spend.CodeWebAuthnInvalid, "the passkey's response does not verify")
}

// challengeOf reads the challenge a response answers (the ceremony id).
func challengeOf(clientDataJSON []byte) string {
	var cd struct {
		Challenge string `json:"challenge"`
	}
	if json.Unmarshal(clientDataJSON, &cd) != nil {
		return ""
	}
	return cd.Challenge
}

type ceremonyData struct {
	Session webauthn.SessionData  `json:"session"`
	Commit  *audit.ApprovalCommit `json:"commit,omitempty"`
}

func (a *auth) startCeremony(ctx context.Context, kind, ownerID, subject string, sd *webauthn.SessionData, commit *audit.ApprovalCommit, ttl time.Duration) error {
	data, err := json.Marshal(ceremonyData{Session: *sd, Commit: commit})
	if err != nil {
		return err
	}
	now := a.svc.Now()
	return a.svc.StartCeremony(ctx, &spend.Ceremony{ID: sd.Challenge, Kind: kind, OwnerID: ownerID, Subject: subject, Data: data,
		CreatedAt: now, ExpiresAt: now.Add(ttl)})
}

func (a *auth) takeCeremony(ctx context.Context, clientDataJSON []byte, kind string) (*spend.Ceremony, *ceremonyData, error) {
	id := challengeOf(clientDataJSON)
	if id == "" {
		return nil, nil, spend.Errorf(spend.CodeWebAuthnInvalid, "the response carries no challenge")
	}
	c, err := a.svc.TakeCeremony(ctx, id, kind)
	if err != nil {
		return nil, nil, err
	}
	var d ceremonyData
	if err := json.Unmarshal(c.Data, &d); err != nil {
		return nil, nil, err
	}
	return c, &d, nil
}

// --- a small token bucket for unauthenticated ceremony starts ---

type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate, burst float64) *bucket { return &bucket{rate: rate, burst: burst, tokens: burst} }

func (b *bucket) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
