package owners_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/owners"
)

// portalJS strips a credential to what internal/portal's script sends:
// no clientExtensionResults, no authenticatorAttachment, and userHandle
// null when the authenticator gave none.
func portalJS(c map[string]any, nullHandle bool) map[string]any {
	delete(c, "clientExtensionResults")
	delete(c, "authenticatorAttachment")
	if nullHandle {
		c["response"].(map[string]any)["userHandle"] = nil
	}
	return c
}

// TestPortalScriptShapes: the JSON the portal's script builds from a
// browser's credential is accepted for enrolment, sign-in and approval.
func TestPortalScriptShapes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	tok := h.invite("alice")
	b := h.browser()
	begin := must(t, b.post(owners.PathEnrolBegin, map[string]any{"token": tok}), 200)
	cred, resp := h.sa.create(t, begin.body["options"])
	fin := must(t, b.post(owners.PathEnrolFinish, map[string]any{"token": tok, "credential": portalJS(resp, false)}), 200)
	b.csrf, _ = fin.body["csrf_token"].(string)

	b2 := h.browser()
	lb := must(t, b2.post(owners.PathLoginBegin, map[string]any{}), 200)
	lf := must(t, b2.post(owners.PathLoginFinish, map[string]any{"credential": portalJS(h.sa.get(t, cred, lb.body["options"]).json(), false)}), 200)
	b2.csrf, _ = lf.body["csrf_token"].(string)

	sp := h.pending(h.agent("a1"), "5")
	ab := b2.beginApproval(sp.ID)
	a := h.sa.get(t, cred, ab.body["options"])
	must(t, b2.post(approvalPath(sp.ID, "finish"), map[string]any{"credential": portalJS(a.json(), true)}), 200)
}

// TestLogoutForm: the sign-out form works without script: a form post
// with the CSRF token field ends the session and goes to sign-in.
func TestLogoutForm(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "")
	b, _ := h.enrol(h.invite("alice"))
	post := func(csrf string) *http.Response {
		req, _ := http.NewRequest("POST", h.srv.URL+owners.PathLogout, strings.NewReader(url.Values{"csrf_token": {csrf}}.Encode()))
		req.Host, req.Header["Origin"] = h.host, []string{h.origin}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		req.AddCookie(b.cookie)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("wrong"); r.StatusCode != 403 {
		t.Fatalf("a form without the right token: %d", r.StatusCode)
	}
	r := post(b.csrf)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != owners.PathSignIn {
		t.Fatalf("logout form: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	refused(t, b.do("GET", owners.PathSession, nil), 401, "session_required")
}
