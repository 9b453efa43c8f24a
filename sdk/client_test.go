package sdk

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
)

var testDomain = agentauth.DeploymentDomain([32]byte{0xde, 0x91, 31: 7})

func serveDeployment(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"deployment_id": testDomain.DeploymentHex(), "auth_versions": []int{2}})
}

// verifyingServer answers agent requests only when agentauth verifies
// their signature over the request as received; answer writes the reply.
func verifyingServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/deployment" {
			serveDeployment(w)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s, err := agentauth.Parse(r.Header)
		if err == nil {
			err = s.Verify(testDomain, r.Method, r.RequestURI, body, time.Now())
		}
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"code": "signature_invalid", "message": err.Error()})
			return
		}
		if exp := time.Until(s.Expires); exp < SignatureTTL-time.Minute || exp > SignatureTTL+time.Second {
			t.Errorf("signature expires in %s, want about %s", exp, SignatureTTL)
		}
		answer(w, r, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAgentRequestsAreSigned(t *testing.T) {
	t.Parallel()
	key, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	nonces := map[string]bool{}
	srv := verifyingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		n := r.Header.Get(agentauth.HeaderNonce)
		if nonces[n] {
			t.Errorf("nonce %s reused", n)
		}
		nonces[n] = true
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/agent/limits":
			io.WriteString(w, `{"agent_id":"ag_1","name":"bob","daily":{"limit":"10","used":"1","remaining":"9"},"rate":{"limit":"10/1m","used":3}}`)
		default:
			io.WriteString(w, `{"spend_id":"sp_1","status":"captured","decision":"allow","reasons":[],"amount":"0.05"}`)
		}
	})
	c := testAgent(t, srv.URL, key)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"get spend", func() error { _, err := c.Spend(ctx, "sp_1"); return err }},
		{"id needing escapes", func() error { _, err := c.Spend(ctx, "sp 1/ü?x"); return err }},
		{"confirm", func() error { _, err := c.Confirm(ctx, "sp_1"); return err }},
		{"capture", func() error { _, err := c.Capture(ctx, "sp_1", "0.01"); return err }},
		{"release", func() error { _, err := c.Release(ctx, "sp_1"); return err }},
		{"limits", func() error {
			l, err := c.Limits(ctx)
			if err == nil && (l.Daily == nil || l.Daily.Remaining != "9" || l.Rate.Used != 3) {
				t.Errorf("limits decoded as %+v", l)
			}
			return err
		}},
	}
	for _, tt := range tests {
		if err := tt.call(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestAuthorizeOutcomes(t *testing.T) {
	t.Parallel()
	key, _ := agentauth.GenerateKey()
	tests := []struct {
		name       string
		status     int
		body       string
		wantStatus string
		wantCode   string
		wantReason []string
	}{
		{"allowed", 201, `{"spend_id":"sp_1","status":"authorized","decision":"allow","reasons":[]}`, "authorized", "", nil},
		{"pending", 202, `{"spend_id":"sp_2","status":"pending_approval","decision":"needs_approval","reasons":["over_auto"]}`, "pending_approval", "", []string{"over_auto"}},
		{"denied", 403, `{"code":"spend_denied","message":"no","details":{"spend_id":"sp_3","status":"denied","reasons":["daily_exceeded"],"spend":{"spend_id":"sp_3","status":"denied","decision":"deny","reasons":["daily_exceeded"],"amount":"0.05"}}}`, "denied", "spend_denied", []string{"daily_exceeded"}},
		{"denied without spend", 403, `{"code":"spend_denied","message":"no","details":{"spend_id":"sp_4","reasons":["agent_frozen"]}}`, "denied", "spend_denied", []string{"agent_frozen"}},
		{"other error", 409, `{"code":"idempotency_conflict","message":"differs","details":{"field":"amount"}}`, "", "idempotency_conflict", nil},
		{"not json", 502, `<html>bad gateway</html>`, "", "http_502", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := verifyingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				var req map[string]any
				if err := json.Unmarshal(body, &req); err != nil || req["rail"] != "custom" || req["amount"] != "0.05" {
					t.Errorf("request body %s", body)
				}
				if _, ok := req["host"]; ok {
					t.Errorf("empty host sent: %s", body)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			c := testAgent(t, srv.URL, key)
			s, err := c.Authorize(context.Background(), AuthorizeRequest{Rail: "custom", Payee: "0xdead", Amount: "0.05"})
			var ae *Error
			var ar *ApprovalRequiredError
			var re *RefusedError
			switch {
			case tt.wantStatus == "pending_approval":
				if !errors.As(err, &ar) || ar.SpendID != "sp_2" || ar.Spend != s {
					t.Fatalf("err %#v, want an *ApprovalRequiredError", err)
				}
			case tt.wantCode == "":
				if err != nil {
					t.Fatalf("err %v", err)
				}
			case !errors.As(err, &ae) || ae.Code != tt.wantCode || ae.Status != tt.status:
				t.Fatalf("err %#v, want code %s", err, tt.wantCode)
			}
			if tt.wantCode == "spend_denied" && (!errors.As(err, &re) || re.SpendID == "" || re.Spend != s ||
				strings.Join(re.Reasons, ",") != strings.Join(tt.wantReason, ",")) {
				t.Errorf("err %#v, want a *RefusedError with the spend and its reasons", err)
			}
			if tt.wantStatus == "" {
				if s != nil {
					t.Errorf("spend %+v with a non-denial error", s)
				}
				return
			}
			if s == nil || s.Status != tt.wantStatus || strings.Join(s.Reasons, ",") != strings.Join(tt.wantReason, ",") || s.SpendID == "" {
				t.Errorf("spend %+v, want status %s reasons %v", s, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func TestOwnerTokenAndErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(agentauth.HeaderSignature) != "" {
			t.Errorf("owner request carries an agent signature")
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			io.WriteString(w, `{"code":"unauthorized","message":"bad token","request_id":"r1"}`)
			return
		}
		switch r.URL.Path {
		case "/v1/agents/bob/mandate":
			if r.Method == http.MethodPut {
				body, _ := io.ReadAll(r.Body)
				if string(body) != `{"mandate":{"daily":"20"},"base_version":3}` {
					t.Errorf("PUT body %s", body)
				}
			}
			io.WriteString(w, `{"agent_id":"ag_1","version":4,"mandate":{"daily":"20"}}`)
		case "/v1/agents":
			io.WriteString(w, `{"agents":[{"id":"ag_1","name":"bob","status":"active","future":1}]}`)
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"code":"not_found","message":"no"}`)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	bad, _ := NewOwner(srv.URL, "wrong")
	_, err := Collect(bad.Agents(ctx))
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != "unauthorized" || ae.RequestID != "r1" {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := NewOwner(srv.URL, ""); err == nil {
		t.Errorf("an owner client without a token was made")
	}

	c, _ := NewOwner(srv.URL+"/", "tok")
	as, err := Collect(c.Agents(ctx))
	if err != nil || len(as) != 1 || as[0].Name != "bob" || !strings.Contains(string(as[0].Raw), `"future":1`) {
		t.Fatalf("list: %v %+v", err, as)
	}
	base := int64(3)
	v, err := c.SetMandate(ctx, "bob", json.RawMessage(`{"daily":"20"}`), &base)
	if err != nil || v.Version != 4 {
		t.Fatalf("set mandate: %v %+v", err, v)
	}
	if _, err := c.Spend(ctx, "nope"); !IsCode(err, "not_found") {
		t.Errorf("missing spend: %v", err)
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:8402", "ftp://x", "http://", "http://h/?q=1", "http://user:pw@h/"} {
		if _, err := NewOwner(u, "t"); err == nil {
			t.Errorf("NewOwner(%q) accepted", u)
		}
	}
}

func TestResponseBodyCapped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"agents":[`)
		chunk := strings.Repeat(" ", 1<<20)
		for range 9 {
			io.WriteString(w, chunk)
		}
		io.WriteString(w, `]}`)
	}))
	t.Cleanup(srv.Close)
	c, _ := NewOwner(srv.URL, "t")
	if _, err := Collect(c.Agents(context.Background())); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized answer: %v", err)
	}
}

// TestDeploymentFetchedOnceOrPinned: the client asks for the deployment
// id once, before its first signed request, and keeps it; a failed fetch
// signs nothing and is retried; a pinned id is never fetched.
func TestDeploymentFetchedOnceOrPinned(t *testing.T) {
	t.Parallel()
	key, err := agentauth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var fetches, signed, failFirst atomic.Int32
	failFirst.Store(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/deployment" {
			fetches.Add(1)
			if failFirst.Add(-1) >= 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			serveDeployment(w)
			return
		}
		signed.Add(1)
		s, err := agentauth.Parse(r.Header)
		if err == nil {
			err = s.Verify(testDomain, r.Method, r.RequestURI, nil, time.Now())
		}
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"code":"signature_invalid","message":"x"}`)
			return
		}
		io.WriteString(w, `{"agent_id":"ag_1"}`)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	c := testAgent(t, srv.URL, key)
	if _, err := c.Limits(ctx); err == nil || signed.Load() != 0 {
		t.Fatalf("with the deployment unknown: err %v, %d signed requests sent", err, signed.Load())
	}
	for range 3 {
		if _, err := c.Limits(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if fetches.Load() != 2 || signed.Load() != 3 {
		t.Errorf("%d fetches and %d signed requests, want 2 and 3", fetches.Load(), signed.Load())
	}

	fetches.Store(0)
	pinned := testAgent(t, srv.URL, key, WithDeployment(testDomain.DeploymentHex()))
	if _, err := pinned.Limits(ctx); err != nil || fetches.Load() != 0 {
		t.Errorf("pinned: %v, %d fetches", err, fetches.Load())
	}
	other := testAgent(t, srv.URL, key, WithDeployment("0x01"+strings.Repeat("00", 31)))
	if _, err := other.Limits(ctx); !IsCode(err, "signature_invalid") {
		t.Errorf("pinned to another deployment: %v, want signature_invalid", err)
	}
}

func testAgent(t *testing.T, url string, key *ecdsa.PrivateKey, opts ...Option) *Agent {
	t.Helper()
	s, err := NewKey(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAgent(url, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
