package portal

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

const testOrigin = "http://localhost:8402"

// testAuth is a test-only identity backend: one session, held in a
// cookie, with one CSRF token. It stands in for internal/owners so that
// the pages' own checks are tested on their own.
type testAuth struct{ cookie, csrf string }

type sessKey struct{}

func (a *testAuth) RequireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("sess")
		if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.cookie)) != 1 {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, `{"code":"session_required"}`, http.StatusUnauthorized)
			return
		}
		s := Session{OwnerID: "own_test", OwnerName: "Alex Owner", CSRF: a.csrf}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessKey{}, s)))
	})
}

func (a *testAuth) Session(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(sessKey{}).(Session)
	return s, ok
}

func (a *testAuth) CheckCSRF(r *http.Request) error {
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		tok = r.PostFormValue("csrf_token")
	}
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(a.csrf)) != 1 {
		return spend.Errorf("csrf_failed", "CSRF token missing or wrong")
	}
	return nil
}

type bundle struct {
	env    *spendtest.Env
	portal *Server
	srv    *httptest.Server
	auth   *testAuth
	client *http.Client
}

func setup(t testing.TB) *bundle {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	env := spendtest.NewEnv(t, st)
	auth := &testAuth{cookie: "session-secret", csrf: "csrf-secret"}
	p, err := New(Config{Service: env.Svc, Assets: assetsOf(t), Auth: auth, Origin: testOrigin, Clock: env.Clock,
		AuthHandler: http.NotFoundHandler(), SSEPoll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return &bundle{env: env, portal: p, srv: srv, auth: auth,
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// opt changes a request before it is sent.
type opt func(*http.Request)

func signedIn(b *bundle) opt {
	return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "sess", Value: b.auth.cookie}) }
}

func header(k, v string) opt { return func(r *http.Request) { r.Header.Set(k, v) } }

// do sends a request as a browser on the portal's origin would (Host
// and, for a POST, Origin), changed by opts.
func (b *bundle) do(t testing.TB, method, path string, form url.Values, opts ...opt) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost:8402"
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", testOrigin)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(raw)
}

func (b *bundle) csrfForm(kv ...string) url.Values {
	v := url.Values{"csrf_token": {b.auth.csrf}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func (b *bundle) agentStatus(t testing.TB, id string) spend.AgentStatus {
	t.Helper()
	a, err := b.env.Svc.GetAgent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Status
}

const yellowMandate = `{"daily":"100","per_tx_auto":"5","per_tx_max":"50"}`

func TestNoSessionRedirectsToSignIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", yellowMandate)
	for _, path := range []string{"/", "/agents", "/agents/" + a.ID, "/approvals", "/approvals/events", "/approvals/sp_x", "/audit", "/audit/export?format=jsonl", "/agents/" + a.ID + "/mandate"} {
		resp, body := b.do(t, http.MethodGet, path, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next="+url.QueryEscape(path) {
			t.Errorf("GET %s without a session: %d Location %q, want 303 to sign-in", path, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(body, "bot") {
			t.Errorf("GET %s without a session leaks agent data: %q", path, body)
		}
	}
	resp, _ := b.do(t, http.MethodPost, "/agents/"+a.ID+"/freeze", b.csrfForm())
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST freeze without a session: %d, want 401", resp.StatusCode)
	}
	if st := b.agentStatus(t, a.ID); st != spend.AgentActive {
		t.Errorf("agent is %s after a sessionless freeze", st)
	}
	// The sign-in page itself is public.
	if resp, body := b.do(t, http.MethodGet, "/signin", nil); resp.StatusCode != 200 || !strings.Contains(body, "Sign in with a passkey") {
		t.Errorf("sign-in page: %d %q", resp.StatusCode, body)
	}
}

func TestCSRFRequired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", yellowMandate)
	cases := map[string]url.Values{
		"missing": {},
		"wrong":   {"csrf_token": {"csrf-guess"}},
	}
	for name, form := range cases {
		resp, body := b.do(t, http.MethodPost, "/agents/"+a.ID+"/freeze", form, signedIn(b))
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Request refused") {
			t.Errorf("%s CSRF token: %d, want 403 refused", name, resp.StatusCode)
		}
		if st := b.agentStatus(t, a.ID); st != spend.AgentActive {
			t.Fatalf("%s CSRF token: the agent is %s", name, st)
		}
	}
	resp, _ := b.do(t, http.MethodPost, "/agents/"+a.ID+"/freeze", b.csrfForm(), signedIn(b))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("freeze with the token: %d", resp.StatusCode)
	}
	if st := b.agentStatus(t, a.ID); st != spend.AgentFrozen {
		t.Errorf("agent is %s after a freeze with the right token", st)
	}
}

func TestForeignOriginOrHostRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", yellowMandate)
	posts := map[string][]opt{
		"foreign origin":              {header("Origin", "http://evil.example")},
		"origin on another port":      {header("Origin", "http://localhost:9999")},
		"null origin":                 {header("Origin", "null")},
		"no origin, foreign referer":  {func(r *http.Request) { r.Header.Del("Origin"); r.Header.Set("Referer", "http://evil.example/x") }},
		"no origin and no referer":    {func(r *http.Request) { r.Header.Del("Origin") }},
		"rebinding host, same origin": {func(r *http.Request) { r.Host = "evil.example:8402" }},
	}
	for name, opts := range posts {
		resp, _ := b.do(t, http.MethodPost, "/agents/"+a.ID+"/freeze", b.csrfForm(), append([]opt{signedIn(b)}, opts...)...)
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("%s: %d, want refused", name, resp.StatusCode)
		}
		if st := b.agentStatus(t, a.ID); st != spend.AgentActive {
			t.Fatalf("%s: the agent is %s", name, st)
		}
	}
	// A DNS-rebinding page reads nothing either.
	resp, body := b.do(t, http.MethodGet, "/agents", nil, signedIn(b), func(r *http.Request) { r.Host = "evil.example" })
	if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(body, "bot") {
		t.Errorf("GET under a foreign Host: %d, body has the agent: %v", resp.StatusCode, strings.Contains(body, "bot"))
	}
	// A same-origin Referer stands in for a missing Origin.
	resp, _ = b.do(t, http.MethodPost, "/agents/"+a.ID+"/freeze", b.csrfForm(), signedIn(b),
		func(r *http.Request) { r.Header.Del("Origin"); r.Header.Set("Referer", testOrigin+"/agents") })
	if resp.StatusCode != http.StatusSeeOther || b.agentStatus(t, a.ID) != spend.AgentFrozen {
		t.Errorf("same-origin Referer without Origin: %d, agent %s", resp.StatusCode, b.agentStatus(t, a.ID))
	}
}

// TestAgentCredentialsGetNothing: an agent's signed request headers (and
// the owner bearer token, which is for the API) open no portal page.
func TestAgentCredentialsGetNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("secret-bot", yellowMandate)
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/agents", "/approvals", "/approvals/events", "/audit", "/agents/" + a.ID} {
		nonce, _ := agentauth.NewNonce()
		signed, err := agentauth.Sign(key, agentauth.UnboundDomain(), http.MethodGet, path, nil, nonce, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := b.do(t, http.MethodGet, path, nil, func(r *http.Request) { signed.Apply(r.Header) },
			header("Authorization", "Bearer pso_owner_token"))
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
			t.Errorf("GET %s with agent credentials: %d, want a redirect to sign-in", path, resp.StatusCode)
		}
		if strings.Contains(body, "secret-bot") {
			t.Errorf("GET %s with agent credentials shows the agent", path)
		}
	}
	nonce, _ := agentauth.NewNonce()
	signed, _ := agentauth.Sign(key, agentauth.UnboundDomain(), http.MethodPost, "/agents/"+a.ID+"/freeze", nil, nonce, time.Now().Add(time.Minute))
	resp, _ := b.do(t, http.MethodPost, "/agents/"+a.ID+"/freeze", b.csrfForm(), func(r *http.Request) { signed.Apply(r.Header) })
	if resp.StatusCode != http.StatusUnauthorized || b.agentStatus(t, a.ID) != spend.AgentActive {
		t.Errorf("POST freeze with agent credentials: %d, agent %s", resp.StatusCode, b.agentStatus(t, a.ID))
	}
}

const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>`

// TestHostileTextIsEscaped: names, hosts, payees, memos and the seller's
// description are shown as text, never as markup.
func TestHostileTextIsEscaped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", yellowMandate)
	// The memo is the agent's free text, stored as it came.
	r := spendtest.Custom("20")
	r.Memo = hostile
	sp := a.MustAuthorize(r)
	if sp.Status != spend.StatusPendingApproval {
		t.Fatalf("spend is %s, want pending approval", sp.Status)
	}
	for _, path := range []string{"/approvals", "/approvals/" + sp.ID, "/agents/" + a.ID} {
		_, body := b.do(t, http.MethodGet, path, nil, signedIn(b))
		assertEscaped(t, path, body)
	}
	// A hostile agent name is refused by the service, and the refusal,
	// which quotes it, is shown escaped.
	resp, body := b.do(t, http.MethodPost, "/agents", b.csrfForm("name", hostile, "identity_address", spendtest.RandomAddress()), signedIn(b))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "agent name") {
		t.Errorf("hostile name: %d", resp.StatusCode)
	}
	assertEscaped(t, "POST /agents", body)
	// Fields the service would refuse to store (host, payee, the x402
	// offer's description) are escaped by the templates all the same.
	row := pendingRow{Spend: &spend.Spend{ID: "sp_1", Host: hostile, Payee: hostile, Memo: hostile, Reasons: []string{hostile}},
		AgentName: hostile, Amount: hostile, Offer: offer{Description: hostile, Resource: hostile}}
	var out strings.Builder
	if err := b.portal.pages["queue"].ExecuteTemplate(&out, "queue", map[string]any{"Rows": []pendingRow{row}, "Max": 10}); err != nil {
		t.Fatal(err)
	}
	assertEscaped(t, "queue template", out.String())
	if strings.Count(out.String(), template.HTMLEscapeString("<script>")) < 5 {
		t.Errorf("the hostile text is not shown (escaped) in every field: %s", out.String())
	}
}

func assertEscaped(t *testing.T, where, body string) {
	t.Helper()
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
		t.Errorf("%s renders hostile text as markup", where)
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("%s does not show the hostile text escaped", where)
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/", "/signin", "/static/portal.css", "/no/such/page"} {
		resp, _ := b.do(t, http.MethodGet, path, nil, signedIn(b))
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline code", path)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") == "" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
	}
	// No page carries inline script or style, which the CSP would block.
	a := b.env.NewAgent("bot", yellowMandate)
	sp := a.MustAuthorize(spendtest.Custom("20"))
	for _, path := range []string{"/", "/agents", "/agents/" + a.ID, "/agents/" + a.ID + "/mandate", "/agents/new", "/approvals", "/approvals/" + sp.ID, "/audit", "/signin", "/enrol"} {
		resp, body := b.do(t, http.MethodGet, path, nil, signedIn(b))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		for _, bad := range []string{"<script>", " style=", "<style", " onclick=", "javascript:"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s has inline %q", path, bad)
			}
		}
	}
}

// TestEveryControlHasALabel: every input, select and textarea of every
// page is named by a <label for> or aria-label, and every button by its
// text.
func TestEveryControlHasALabel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", yellowMandate)
	sp := a.MustAuthorize(spendtest.Custom("20"))
	for _, path := range []string{"/", "/agents", "/agents/" + a.ID, "/agents/" + a.ID + "/mandate", "/agents/new", "/approvals", "/approvals/" + sp.ID, "/audit", "/agents/" + a.ID + "/confirm/freeze"} {
		_, body := b.do(t, http.MethodGet, path, nil, signedIn(b))
		for _, c := range controls(body) {
			if c.typ == "hidden" || c.typ == "submit" {
				continue
			}
			if c.aria == "" && (c.id == "" || !strings.Contains(body, `for="`+c.id+`"`)) && !c.wrapped {
				t.Errorf("%s: %s %q has no label", path, c.tag, c.name)
			}
		}
		if strings.Contains(body, "<button") && strings.Contains(body, "></button>") {
			t.Errorf("%s: a button without text", path)
		}
	}
}

type control struct {
	tag, typ, id, name, aria string
	wrapped                  bool // inside its <label>
}

// controls finds form controls in a page (the templates write each tag
// on one line, with double-quoted attributes).
func controls(body string) []control {
	var out []control
	attr := func(tag, name string) string {
		i := strings.Index(tag, " "+name+`="`)
		if i < 0 {
			return ""
		}
		rest := tag[i+len(name)+3:]
		return rest[:strings.IndexByte(rest, '"')]
	}
	for _, kind := range []string{"<input", "<select", "<textarea"} {
		for rest := body; ; {
			i := strings.Index(rest, kind)
			if i < 0 {
				break
			}
			end := strings.IndexByte(rest[i:], '>')
			tag := rest[i : i+end]
			before := rest[max(0, i-200):i]
			wrapped := strings.LastIndex(before, "<label") > strings.LastIndex(before, "</label>")
			out = append(out, control{tag: kind[1:], typ: attr(tag, "type"), id: attr(tag, "id"), name: attr(tag, "name"),
				aria: attr(tag, "aria-label"), wrapped: wrapped})
			rest = rest[i+end:]
		}
	}
	return out
}

func TestMandateEditValidatesAndShowsTheChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", `{"daily":"100","per_tx_auto":"5"}`)
	path := "/agents/" + a.ID + "/mandate"
	_, body := b.do(t, http.MethodGet, path, nil, signedIn(b))
	if !strings.Contains(body, `name="daily" value="100"`) || !strings.Contains(body, `name="base_version" value="1"`) {
		t.Fatalf("edit form does not show the current mandate: %s", body)
	}
	// Invalid: the API's validation, field by field.
	resp, body := b.do(t, http.MethodPost, path+"/preview", b.csrfForm("base_version", "1", "daily", "ten", "per_tx_auto", "50", "per_tx_max", "20"), signedIn(b))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid mandate: %d", resp.StatusCode)
	}
	for _, want := range []string{`id="e-daily"`, `id="e-per_tx_auto"`, `aria-invalid="true"`, `value="ten"`} {
		if !strings.Contains(body, want) {
			t.Errorf("invalid mandate page lacks %s", want)
		}
	}
	// Valid: the change against version 1, nothing saved yet.
	resp, body = b.do(t, http.MethodPost, path+"/preview", b.csrfForm("base_version", "1", "daily", "250", "per_tx_auto", "5", "approve_new_payees", "on"), signedIn(b))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preview: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"Changes against version 1", "$100", "$250", "Ask me before the first payment to a new payee"} {
		if !strings.Contains(body, want) {
			t.Errorf("preview lacks %q", want)
		}
	}
	if strings.Contains(body, "Approve automatically up to") {
		t.Errorf("preview lists an unchanged field")
	}
	if mv, _ := b.env.Svc.GetMandate(context.Background(), a.ID); mv.Version != 1 {
		t.Fatalf("preview saved: version %d", mv.Version)
	}
	canon := between(body, `name="mandate" value="`, `"`)
	canon = strings.NewReplacer("&#34;", `"`, "&quot;", `"`).Replace(canon)
	resp, _ = b.do(t, http.MethodPost, path, b.csrfForm("base_version", "1", "mandate", canon), signedIn(b))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	mv, err := b.env.Svc.GetMandate(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if mv.Version != 2 || mv.Mandate.Daily.String() != "250000000" || !mv.Mandate.ApproveNewPayees {
		t.Errorf("saved mandate: version %d daily %v new payees %v", mv.Version, mv.Mandate.Daily, mv.Mandate.ApproveNewPayees)
	}
	// Saving the same preview again is a conflict: version 1 is gone.
	resp, body = b.do(t, http.MethodPost, path, b.csrfForm("base_version", "1", "mandate", canon), signedIn(b))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "read it again") {
		t.Errorf("stale save: %d", resp.StatusCode)
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	return s[:strings.Index(s, to)]
}

// TestApprovalQueueIsLive: a new yellow spend reaches an open event
// stream without reloading, and leaves it when denied.
func TestApprovalQueueIsLive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.env.NewAgent("bot", yellowMandate)
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/approvals/events", nil)
	req.Host = "localhost:8402"
	req.AddCookie(&http.Cookie{Name: "sess", Value: b.auth.cookie})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := b.client.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev strings.Builder
		for sc.Scan() {
			line := sc.Text()
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				ev.WriteString(d + "\n")
			} else if line == "" && ev.Len() > 0 {
				events <- ev.String()
				ev.Reset()
			}
		}
		close(events)
	}()
	next := func() string {
		select {
		case e := <-events:
			return e
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return ""
	}
	if first := next(); !strings.Contains(first, "Nothing is waiting") {
		t.Fatalf("first event: %s", first)
	}
	r := spendtest.Custom("20")
	r.Memo = "weekly dataset refresh"
	sp := a.MustAuthorize(r)
	e := next()
	for _, want := range []string{sp.ID, "20 USDC", "bot", "weekly dataset refresh", "Above the amount approved automatically", "$80.00"} {
		if !strings.Contains(e, want) {
			t.Errorf("queue event lacks %q: %s", want, e)
		}
	}
	resp2, _ := b.do(t, http.MethodPost, "/approvals/"+sp.ID+"/deny", b.csrfForm("reason", "not this week"), signedIn(b))
	if resp2.StatusCode != http.StatusSeeOther {
		t.Fatalf("deny: %d", resp2.StatusCode)
	}
	if e := next(); strings.Contains(e, sp.ID) || !strings.Contains(e, "Nothing is waiting") {
		t.Errorf("the denied spend is still in the queue: %s", e)
	}
	got, _ := b.env.Svc.GetSpend(context.Background(), sp.ID)
	if got.Status != spend.StatusDenied {
		t.Errorf("spend is %s after deny", got.Status)
	}
	evs, _ := b.env.Svc.AuditBefore(context.Background(), 0, 1)
	var d struct {
		ReasonText string `json:"reason_text"`
	}
	if len(evs) != 1 || evs[0].Action != "spend.deny" || json.Unmarshal(evs[0].Details, &d) != nil || d.ReasonText != "not this week" {
		t.Errorf("last audit event does not carry the owner's reason: %+v", evs)
	}
}

func TestAuditFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	one := b.env.NewAgent("one", `{"daily":"1000"}`)
	two := b.env.NewAgent("two", `{"daily":"1000"}`)
	for range 60 {
		one.MustAuthorize(spendtest.Custom("1"))
	}
	two.MustAuthorize(spendtest.Custom("1"))
	_, body := b.do(t, http.MethodGet, "/audit?agent="+two.ID, nil, signedIn(b))
	if n := strings.Count(body, "<tr>") - 1; n != 2 { // agent.create and spend.authorize
		t.Errorf("agent filter: %d rows, want 2", n)
	}
	_, body = b.do(t, http.MethodGet, "/audit?action=spend.authorize&agent="+one.ID, nil, signedIn(b))
	if n := strings.Count(body, "<tr>") - 1; n != auditPageSize {
		t.Errorf("first page: %d rows, want %d", n, auditPageSize)
	}
	older := html(between(body, `href="/audit?`, `"`))
	if !strings.Contains(older, "before=") {
		t.Fatalf("no link to older events: %q", older)
	}
	_, body = b.do(t, http.MethodGet, "/audit?"+older, nil, signedIn(b))
	if n := strings.Count(body, "<tr>") - 1; n != 10 {
		t.Errorf("second page: %d rows, want 10", n)
	}
	_, body = b.do(t, http.MethodGet, "/audit?from=2000-01-01&to=2000-01-02", nil, signedIn(b))
	if !strings.Contains(body, "No events") {
		t.Errorf("a date range without events shows events")
	}
	resp, body := b.do(t, http.MethodGet, "/audit/export?format=csv", nil, signedIn(b))
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") || strings.Count(body, "spend.authorize") != 61 {
		t.Errorf("csv export: %d, %d authorizations", resp.StatusCode, strings.Count(body, "spend.authorize"))
	}
	resp, body = b.do(t, http.MethodPost, "/audit/verify", b.csrfForm(), signedIn(b))
	if resp.StatusCode != 200 || !strings.Contains(body, "The whole audit chain verifies") {
		t.Errorf("verify: %d", resp.StatusCode)
	}
}

func html(s string) string { return strings.ReplaceAll(s, "&amp;", "&") }

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"/agents": "/agents", "//evil.example": "/", "https://evil.example": "/", `/\evil`: "/", "": "/", "/a\r\nb": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func assetsOf(t testing.TB) *money.Registry {
	t.Helper()
	r, err := money.NewRegistry(money.DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testWriter sends the portal's log to the test's.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
