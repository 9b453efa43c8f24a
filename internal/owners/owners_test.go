package owners_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/owners"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

var ctx = context.Background()

type harness struct {
	t      *testing.T
	env    *spendtest.Env
	auth   *owners.Auth
	srv    *httptest.Server
	origin string
	host   string // the Host header browsers send
	sa     *softAuthenticator
}

func newHarness(t *testing.T, publicURL string) *harness {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return newHarnessOn(t, publicURL, st)
}

func newHarnessOn(t *testing.T, publicURL string, st spend.Store) *harness {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	env := spendtest.NewEnv(t, st)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if publicURL == "" {
		publicURL = "http://localhost:" + port
	}
	a, err := owners.New(owners.Config{Service: env.Svc, PublicURL: publicURL})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	// A stand-in for a portal page: it reports the session it sees.
	mux.Handle("/portal/", a.RequireSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := owners.SessionFrom(r.Context())
		if err := a.CheckCSRF(r); err != nil {
			a.WriteError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"owner": s.OwnerName, "method": r.Method}) //nolint:errcheck
	})))
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	origin, host, _, err := owners.ParsePublicURL(publicURL)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(publicURL, "http://localhost") {
		host = "localhost:" + port
	}
	return &harness{t: t, env: env, auth: a, srv: srv, origin: origin, host: host, sa: &softAuthenticator{origin: origin}}
}

// browser is one browser profile: its cookie and the CSRF token its page
// holds.
type browser struct {
	h      *harness
	cookie *http.Cookie
	csrf   string
	origin string
	host   string
	header http.Header // extra headers
}

func (h *harness) browser() *browser {
	return &browser{h: h, origin: h.origin, host: h.host, header: http.Header{}}
}

type answer struct {
	status int
	body   map[string]any
	resp   *http.Response
}

func (a answer) code() string { s, _ := a.body["code"].(string); return s }

func (b *browser) do(method, path string, body any) answer {
	b.h.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			b.h.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.h.srv.URL+path, rd)
	if err != nil {
		b.h.t.Fatal(err)
	}
	req.Host = b.host
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	req.Header.Set("Content-Type", "application/json")
	if b.csrf != "" {
		req.Header.Set(owners.CSRFHeader, b.csrf)
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := answer{status: resp.StatusCode, resp: resp}
	json.Unmarshal(raw, &out.body) //nolint:errcheck // some answers are not JSON
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "purser_session") {
			if c.MaxAge < 0 {
				b.cookie = nil
			} else {
				b.cookie = c
			}
		}
	}
	return out
}

func (b *browser) post(path string, body any) answer { b.h.t.Helper(); return b.do("POST", path, body) }

func must(t *testing.T, a answer, status int) answer {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %v", a.status, status, a.body)
	}
	return a
}

func refused(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.code() != code {
		t.Fatalf("got %d %v, want %d %s", a.status, a.body, status, code)
	}
	if m, _ := a.body["message"].(string); m == "" {
		t.Fatalf("an error without a message: %v", a.body)
	}
}

// invite makes an enrolment link and returns its token.
func (h *harness) invite(name string) string {
	h.t.Helper()
	link, inv, err := h.auth.Invite(ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	if !strings.HasPrefix(link, h.origin+"/enrol#") || !strings.HasSuffix(link, inv.Token) {
		h.t.Fatalf("link %q", link)
	}
	return inv.Token
}

// enrol runs the enrolment ceremony in a new browser and returns it
// signed in.
func (h *harness) enrol(token string) (*browser, *softCredential) {
	h.t.Helper()
	b := h.browser()
	begin := must(h.t, b.post(owners.PathEnrolBegin, map[string]any{"token": token}), 200)
	cred, resp := h.sa.create(h.t, begin.body["options"])
	fin := must(h.t, b.post(owners.PathEnrolFinish, map[string]any{"token": token, "credential": resp}), 200)
	b.csrf, _ = fin.body["csrf_token"].(string)
	if b.cookie == nil || b.csrf == "" {
		h.t.Fatalf("enrolment did not sign in: %v", fin.body)
	}
	return b, cred
}

// login signs cred in from a new browser.
func (h *harness) login(cred *softCredential) (*browser, answer) {
	h.t.Helper()
	b := h.browser()
	begin := must(h.t, b.post(owners.PathLoginBegin, nil), 200)
	fin := b.post(owners.PathLoginFinish, map[string]any{"credential": h.sa.get(h.t, cred, begin.body["options"]).json()})
	b.csrf, _ = fin.body["csrf_token"].(string)
	return b, fin
}

func approvalPath(id, step string) string { return "/auth/approvals/" + id + "/" + step }

// pending makes an agent's spend wait for approval.
func (h *harness) pending(agent *spendtest.Agent, amount string) *spend.Spend {
	h.t.Helper()
	sp := agent.MustAuthorize(spendtest.Custom(amount))
	if sp.Status != spend.StatusPendingApproval {
		h.t.Fatalf("spend %s, want pending_approval", spendtest.Describe(sp))
	}
	return sp
}

func (h *harness) agent(name string) *spendtest.Agent {
	return h.env.NewAgent(name, `{"per_tx_auto":"1","per_tx_max":"100","daily":"1000"}`)
}

// beginApproval returns the begin answer for spend id.
func (b *browser) beginApproval(id string) answer {
	b.h.t.Helper()
	return must(b.h.t, b.post(approvalPath(id, "begin"), nil), 200)
}

// approve runs the whole approval with cred.
func (b *browser) approve(id string, cred *softCredential) answer {
	b.h.t.Helper()
	begin := b.beginApproval(id)
	a := b.h.sa.get(b.h.t, cred, begin.body["options"])
	return b.post(approvalPath(id, "finish"), map[string]any{"credential": a.json()})
}

func (h *harness) export() []byte {
	h.t.Helper()
	var buf bytes.Buffer
	if err := h.env.Svc.ExportAudit(ctx, &buf, "jsonl"); err != nil {
		h.t.Fatal(err)
	}
	return buf.Bytes()
}

func (h *harness) status(id string) spend.Status {
	h.t.Helper()
	sp, err := h.env.Svc.GetSpend(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return sp.Status
}

// TestEnrolSignInApprove: the owner's whole path. An invite enrols a
// passkey and signs it in; the passkey signs in again later; an approval
// signed over the spend moves it on, and its assertion is in the
// spend.approve event, where the offline verifier checks it. Approving
// again is idempotent.
func TestEnrolSignInApprove(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, cred := h.enrol(h.invite("alice"))
	s := must(t, b.do("GET", owners.PathSession, nil), 200)
	if s.body["owner_name"] != "alice" || s.body["csrf_token"] != b.csrf {
		t.Fatalf("session %v", s.body)
	}
	if c := b.cookie; !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/" || c.Name != "purser_session" {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/ (not Secure on http://localhost)", c)
	}
	b2, fin := h.login(cred)
	must(t, fin, 200)
	must(t, b2.do("GET", "/portal/x", nil), 200)

	sp := h.pending(h.agent("a1"), "5")
	ok := must(t, b2.approve(sp.ID, cred), 200)
	if ok.body["approved"] != true || ok.body["replayed"] != false || h.status(sp.ID) != spend.StatusAuthorized {
		t.Fatalf("approve: %v, status %s", ok.body, h.status(sp.ID))
	}
	// Approving twice: begin says so, and nothing changes.
	again := b2.beginApproval(sp.ID)
	if again.body["already_approved"] != true {
		t.Fatalf("second begin: %v", again.body)
	}
	// The chain verifies, and holds the assertion and the key.
	exp := h.export()
	if res, err := audit.VerifyExport(bytes.NewReader(exp), nil); err != nil || res.PasskeyApprovals != 1 {
		t.Fatalf("export: %+v, %v; want one passkey approval verified", res, err)
	}
	var sawKey, sawApproval bool
	for _, line := range bytes.Split(exp, []byte("\n")) {
		var ev struct {
			Action  string          `json:"action"`
			Actor   audit.Actor     `json:"actor"`
			Details json.RawMessage `json:"details"`
		}
		json.Unmarshal(line, &ev) //nolint:errcheck
		switch ev.Action {
		case "owner.passkey_added":
			var d audit.PasskeyAdded
			json.Unmarshal(ev.Details, &d) //nolint:errcheck
			sawKey = d.CredentialID == b64.EncodeToString(cred.id) && d.PublicKeySPKI != "" && d.PublicKeyCOSE != "" && d.Algorithm == -7
		case "spend.approve":
			var d struct {
				Passkey *audit.PasskeyAssertion `json:"passkey"`
			}
			json.Unmarshal(ev.Details, &d) //nolint:errcheck
			sawApproval = d.Passkey != nil && d.Passkey.Commit.SpendID == sp.ID && d.Passkey.Signature != "" &&
				d.Passkey.Commit.Amount == sp.Amount.String() && d.Passkey.Commit.Payee == sp.Payee
		}
	}
	if !sawKey || !sawApproval {
		t.Fatalf("export: passkey_added with the key %v, approve with the assertion %v", sawKey, sawApproval)
	}
}

// TestApprovalAttacks: an assertion for another spend, a replayed one,
// one from a revoked passkey, one after its challenge expired, one with
// a foreign origin or without user verification, and one finishing
// another owner's challenge are all refused, and the spend stays pending.
func TestApprovalAttacks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, cred := h.enrol(h.invite("alice"))
	agent := h.agent("a1")

	t.Run("another spend", func(t *testing.T) {
		sp1, sp2 := h.pending(agent, "5"), h.pending(agent, "6")
		begin := b.beginApproval(sp1.ID)
		a := h.sa.get(t, cred, begin.body["options"])
		refused(t, b.post(approvalPath(sp2.ID, "finish"), map[string]any{"credential": a.json()}), 409, "approval_mismatch")
		// A challenge begun for sp2 but answered with sp1's signature.
		begin2 := b.beginApproval(sp2.ID)
		o2 := parseOptions(t, begin2.body["options"])
		a.clientDataJSON = bytes.Replace(a.clientDataJSON, []byte(parseOptions(t, begin.body["options"]).PublicKey.Challenge), []byte(o2.PublicKey.Challenge), 1)
		refused(t, b.post(approvalPath(sp2.ID, "finish"), map[string]any{"credential": a.json()}), 400, "webauthn_invalid")
		if h.status(sp1.ID) != spend.StatusPendingApproval || h.status(sp2.ID) != spend.StatusPendingApproval {
			t.Fatal("a refused assertion changed a spend")
		}
	})
	t.Run("replayed", func(t *testing.T) {
		sp1, sp2 := h.pending(agent, "5"), h.pending(agent, "7")
		begin := b.beginApproval(sp1.ID)
		a := h.sa.get(t, cred, begin.body["options"])
		must(t, b.post(approvalPath(sp1.ID, "finish"), map[string]any{"credential": a.json()}), 200)
		refused(t, b.post(approvalPath(sp1.ID, "finish"), map[string]any{"credential": a.json()}), 400, "challenge_invalid")
		refused(t, b.post(approvalPath(sp2.ID, "finish"), map[string]any{"credential": a.json()}), 400, "challenge_invalid")
		if h.status(sp2.ID) != spend.StatusPendingApproval {
			t.Fatal("a replayed assertion approved another spend")
		}
	})
	t.Run("expired challenge", func(t *testing.T) {
		sp := h.pending(agent, "5")
		begin := b.beginApproval(sp.ID)
		a := h.sa.get(t, cred, begin.body["options"])
		h.env.Clock.Advance(5*time.Minute + 2*time.Second)
		b.post(owners.PathSession, nil) // keep nothing else from expiring
		refused(t, b.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": a.json()}), 400, "challenge_invalid")
		if h.status(sp.ID) != spend.StatusPendingApproval {
			t.Fatal("an expired challenge approved the spend")
		}
	})
	t.Run("foreign origin", func(t *testing.T) {
		sp := h.pending(agent, "5")
		begin := b.beginApproval(sp.ID)
		evil := &softAuthenticator{origin: "https://evil.example"}
		a := evil.get(t, cred, begin.body["options"])
		refused(t, b.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": a.json()}), 400, "webauthn_invalid")
	})
	t.Run("no user verification", func(t *testing.T) {
		sp := h.pending(agent, "5")
		begin := b.beginApproval(sp.ID)
		a := h.sa.sign(t, cred, parseOptions(t, begin.body["options"]).PublicKey.Challenge, 0x01) // UP only
		refused(t, b.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": a.json()}), 400, "webauthn_invalid")
	})
	t.Run("altered signature", func(t *testing.T) {
		sp := h.pending(agent, "5")
		begin := b.beginApproval(sp.ID)
		a := h.sa.get(t, cred, begin.body["options"])
		a.signature[len(a.signature)-3] ^= 1
		refused(t, b.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": a.json()}), 400, "webauthn_invalid")
	})
	t.Run("another owner's challenge", func(t *testing.T) {
		bob, bobCred := h.enrol(h.invite("bob"))
		sp := h.pending(agent, "5")
		begin := b.beginApproval(sp.ID) // alice's challenge
		a := h.sa.sign(t, bobCred, parseOptions(t, begin.body["options"]).PublicKey.Challenge, 0x05)
		refused(t, bob.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": a.json()}), 400, "challenge_invalid")
	})
	t.Run("revoked passkey", func(t *testing.T) {
		// Alice adds a second device, then revokes the first one.
		b2, cred2 := h.enrol(h.invite("alice"))
		sp := h.pending(agent, "5")
		begin := b2.beginApproval(sp.ID)
		a := h.sa.get(t, cred, begin.body["options"]) // signed by the device about to be revoked
		if _, err := h.env.Svc.RevokePasskey(ctx, b64.EncodeToString(cred.id)); err != nil {
			t.Fatal(err)
		}
		refused(t, b.do("GET", owners.PathSession, nil), 401, "session_required") // its session ended
		refused(t, b2.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": a.json()}), 400, "webauthn_invalid")
		_, fin := h.login(cred)
		if fin.status == 200 {
			t.Fatalf("a revoked passkey signed in: %v", fin.body)
		}
		if h.status(sp.ID) != spend.StatusPendingApproval {
			t.Fatal("a revoked passkey approved a spend")
		}
		must(t, b2.approve(sp.ID, cred2), 200) // the other device still works
	})
}

// TestSessionGuards: without a session a page redirects to sign-in (HTML)
// or answers 401 (JSON); state changes need the CSRF token and the
// portal's own Origin; a foreign Host is refused; agent signature headers
// and the owner bearer token get nothing.
func TestSessionGuards(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, _ := h.enrol(h.invite("alice"))

	anon := h.browser()
	anon.header.Set("Accept", "text/html")
	r := anon.do("GET", "/portal/agents?x=1", nil)
	if r.status != http.StatusSeeOther || r.resp.Header.Get("Location") != "/signin?next=%2Fportal%2Fagents%3Fx%3D1" {
		t.Fatalf("no session, HTML: %d %q", r.status, r.resp.Header.Get("Location"))
	}
	refused(t, h.browser().do("GET", "/portal/agents", nil), 401, "session_required")
	refused(t, h.browser().do("GET", owners.PathSession, nil), 401, "session_required")
	for name, hdr := range map[string]http.Header{
		"agent signature": {"Purser-Agent": {"0x0000000000000000000000000000000000000001"}, "Purser-Signature": {"0x00"}, "Purser-Nonce": {"0x01"}, "Purser-Expires": {"9999999999"}},
		"owner token":     {"Authorization": {"Bearer some-owner-token"}},
	} {
		c := h.browser()
		c.header = hdr
		if a := c.do("GET", "/portal/agents", nil); a.status != 401 {
			t.Fatalf("%s: %d %v", name, a.status, a.body)
		}
	}

	must(t, b.post("/portal/x", nil), 200)
	noCSRF := *b
	noCSRF.csrf = ""
	refused(t, noCSRF.post("/portal/x", nil), 403, "csrf_failed")
	refused(t, noCSRF.post(owners.PathLogout, nil), 403, "csrf_failed")
	wrong := *b
	wrong.csrf = b.csrf[:len(b.csrf)-1] + "A"
	if wrong.csrf == b.csrf {
		wrong.csrf = b.csrf[:len(b.csrf)-1] + "B"
	}
	refused(t, wrong.post("/portal/x", nil), 403, "csrf_failed")
	foreign := *b
	foreign.origin = "https://evil.example"
	refused(t, foreign.post("/portal/x", nil), 403, "origin_not_allowed")
	refused(t, foreign.post(owners.PathLoginBegin, nil), 403, "origin_not_allowed")
	noOrigin := *b
	noOrigin.origin = ""
	refused(t, noOrigin.post("/portal/x", nil), 403, "origin_not_allowed")
	crossSite := *b
	crossSite.header = http.Header{"Sec-Fetch-Site": {"cross-site"}}
	refused(t, crossSite.post("/portal/x", nil), 403, "origin_not_allowed")
	rebound := *b
	rebound.host = "evil.example:80"
	refused(t, rebound.do("GET", "/portal/x", nil), 421, "host_not_served")
	refused(t, rebound.do("GET", owners.PathSession, nil), 421, "host_not_served")
	// A GET needs no CSRF token; the session still works after all that.
	must(t, noCSRF.do("GET", "/portal/x", nil), 200)

	// Logout ends the session.
	must(t, b.post(owners.PathLogout, nil), 200)
	refused(t, noCSRF.do("GET", owners.PathSession, nil), 401, "session_required")
}

// TestSessionExpiry: a session ends after 30 minutes idle, and after 12
// hours however busy.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, cred := h.enrol(h.invite("alice"))
	h.env.Clock.Advance(29 * time.Minute)
	must(t, b.do("GET", owners.PathSession, nil), 200)
	h.env.Clock.Advance(30*time.Minute + time.Second)
	refused(t, b.do("GET", owners.PathSession, nil), 401, "session_required")

	b, fin := h.login(cred)
	must(t, fin, 200)
	for range 12 * 3 { // a request every 20 minutes for 12 hours
		must(t, b.do("GET", owners.PathSession, nil), 200)
		h.env.Clock.Advance(20 * time.Minute)
	}
	refused(t, b.do("GET", owners.PathSession, nil), 401, "session_required")
}

// TestInvites: an enrolment link works once and for 15 minutes; the link
// of an existing owner adds a device to them.
func TestInvites(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	tok := h.invite("alice")
	h.enrol(tok)
	b := h.browser()
	refused(t, b.post(owners.PathEnrolBegin, map[string]any{"token": tok}), 400, "invite_invalid")
	refused(t, b.post(owners.PathEnrolBegin, map[string]any{"token": "nope"}), 400, "invite_invalid")

	// Two ceremonies begun on one link: only the first finish enrols.
	tok = h.invite("bob")
	b1, b2 := h.browser(), h.browser()
	o1 := must(t, b1.post(owners.PathEnrolBegin, map[string]any{"token": tok}), 200)
	o2 := must(t, b2.post(owners.PathEnrolBegin, map[string]any{"token": tok}), 200)
	_, r1 := h.sa.create(t, o1.body["options"])
	_, r2 := h.sa.create(t, o2.body["options"])
	must(t, b1.post(owners.PathEnrolFinish, map[string]any{"token": tok, "credential": r1}), 200)
	refused(t, b2.post(owners.PathEnrolFinish, map[string]any{"token": tok, "credential": r2}), 400, "invite_invalid")

	tok = h.invite("carol")
	h.env.Clock.Advance(15*time.Minute + time.Second)
	refused(t, h.browser().post(owners.PathEnrolBegin, map[string]any{"token": tok}), 400, "invite_invalid")

	// A second device for alice.
	h.enrol(h.invite("alice"))
	os, err := h.env.Svc.ListOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, o := range os {
		got[o.Name] = len(o.Passkeys)
	}
	if got["alice"] != 2 || got["bob"] != 1 || len(got) != 2 {
		t.Fatalf("owners and passkeys: %v", got)
	}
	// A revoked owner's sessions end and their invites stop working.
	ab, _ := h.enrol(h.invite("alice"))
	tok = h.invite("alice")
	if _, err := h.env.Svc.RevokeOwner(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	refused(t, ab.do("GET", owners.PathSession, nil), 401, "session_required")
	refused(t, h.browser().post(owners.PathEnrolBegin, map[string]any{"token": tok}), 400, "invite_invalid")
}

// TestSecureCookie: behind https the cookie is Secure and __Host-.
func TestSecureCookie(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "https://wallet.example.com")
	b, _ := h.enrol(h.invite("alice"))
	if c := b.cookie; c.Name != "__Host-purser_session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie %+v", c)
	}
	must(t, b.do("GET", owners.PathSession, nil), 200)
}

func TestPublicURL(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"http://127.0.0.1:8402", "http://wallet.example.com", "https://wallet.example.com/portal", "ftp://x", "localhost:8402", "https://[::1]"} {
		if _, _, _, err := owners.ParsePublicURL(bad); err == nil {
			t.Errorf("ParsePublicURL(%q) accepted", bad)
		}
	}
	o, host, secure, err := owners.ParsePublicURL("https://Wallet.Example.com:8443")
	if err != nil || o != "https://wallet.example.com:8443" || host != "wallet.example.com" || !secure {
		t.Fatalf("%q %q %v %v", o, host, secure, err)
	}
}

// TestDenyWithReason: a signed-in owner denies with a reason, which the
// agent reads in its spend; the audit event names the owner. Without the
// CSRF token nothing happens.
func TestDenyWithReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, _ := h.enrol(h.invite("alice"))
	agent := h.agent("a1")
	sp := h.pending(agent, "5")
	noCSRF := *b
	noCSRF.csrf = ""
	refused(t, noCSRF.post(approvalPath(sp.ID, "deny"), map[string]any{"reason": "no"}), 403, "csrf_failed")
	refused(t, b.post(approvalPath(sp.ID, "deny"), map[string]any{"reason": strings.Repeat("x", 513)}), 400, "invalid_request")
	d := must(t, b.post(approvalPath(sp.ID, "deny"), map[string]any{"reason": "not <b>this</b> seller"}), 200)
	if d.body["spend"].(map[string]any)["status"] != "denied" {
		t.Fatalf("deny: %v", d.body)
	}
	got, err := h.env.Svc.AgentGetSpend(ctx, agent.Caller(nil), sp.ID)
	if err != nil || got.DenyReason != "not <b>this</b> seller" || got.Status != spend.StatusDenied {
		t.Fatalf("the agent's view: %+v, %v", got, err)
	}
	exp := string(h.export())
	if !strings.Contains(exp, `"action":"spend.deny"`) || !strings.Contains(exp, `"reason_text":"not \u003cb\u003ethis\u003c/b\u003e seller"`) {
		t.Fatalf("deny event missing or without its reason:\n%s", exp)
	}
	refused(t, b.post(approvalPath(sp.ID, "deny"), map[string]any{"reason": "again"}), 409, "invalid_state")
	refused(t, b.post(approvalPath(sp.ID, "begin"), nil), 409, "invalid_state")
}
