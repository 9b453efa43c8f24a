package app

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The served binary mounts the owner's sign-in beside the API: an invite
// through /v1 gives a link on the public URL, /auth answers JSON, a
// portal session cookie authorizes no /v1 route, and agent signature
// headers and the owner token are no session on /auth.
func TestOwnerAuthMounted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := Start(bg, Config{DataDir: dir, Listen: "127.0.0.1:0", LogLevel: "warn", Stderr: io.Discard, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(bg) //nolint:errcheck
	tok, err := os.ReadFile(filepath.Join(dir, "owner.token"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()
	_, port, _ := strings.Cut(srv.Addr(), ":")
	origin := "http://localhost:" + port
	if srv.Owners().PublicURL() != origin {
		t.Fatalf("public URL %q, want %q", srv.Owners().PublicURL(), origin)
	}
	call := func(method, path, body string, hdr map[string]string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
		return resp.StatusCode, out
	}
	owner := map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(tok))}
	st, inv := call("POST", "/v1/owners/invites", `{"name":"alice"}`, owner)
	if st != 201 || !strings.HasPrefix(inv["link"].(string), origin+"/enrol#") {
		t.Fatalf("invite: %d %v", st, inv)
	}
	// The owner token is no portal session, nor are agent headers.
	for _, hdr := range []map[string]string{owner, {"Purser-Agent": "0x0000000000000000000000000000000000000001", "Purser-Signature": "0x00"}} {
		if st, out := call("GET", "/auth/session", "", hdr); st != 401 || out["code"] != "session_required" {
			t.Fatalf("/auth/session with %v: %d %v", hdr, st, out)
		}
	}
	// A session cookie (even a live one) is no owner token.
	if st, out := call("GET", "/v1/agents", "", map[string]string{"Cookie": "purser_session=anything"}); st != 401 || out["code"] != "unauthorized" {
		t.Fatalf("/v1 with a session cookie: %d %v", st, out)
	}
	// Enrolment answers on the public origin only.
	if st, out := call("POST", "/auth/enrol/begin", `{"token":"x"}`, map[string]string{"Origin": "https://evil.example"}); st != 403 || out["code"] != "origin_not_allowed" {
		t.Fatalf("foreign origin: %d %v", st, out)
	}
	if st, out := call("POST", "/auth/enrol/begin", `{"token":"x"}`, map[string]string{"Origin": origin}); st != 400 || out["code"] != "invite_invalid" {
		t.Fatalf("unknown invite: %d %v", st, out)
	}
	if st, out := call("GET", "/auth/nothing", "", nil); st != 404 || out["code"] != "not_found" {
		t.Fatalf("unknown /auth path: %d %v", st, out)
	}
	if st, _ := call("GET", "/healthz", "", nil); st != 200 {
		t.Fatalf("healthz %d", st)
	}
}
