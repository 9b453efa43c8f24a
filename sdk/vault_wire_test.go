package sdk

// Wire-level tests of the SDK's proxy client: they answer per the contract
// of docs/vault.md from an httptest server, not from Purser. The
// end-to-end tests against a real in-process server are in vault_test.go;
// these hold only what a real server cannot be made to answer on demand: the signature over an
// exact request-target Purser would refuse (an encoded /), every header
// the SDK drops or passes as received, Purser answers without a JSON
// body or with the spend id in the header only, an answer that is not
// the upstream's.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/purserhq/purser/internal/agentauth"
)

// proxyServer is a stand-in for Purser's proxy: it verifies the agent's
// signature over the request as received (verifyingServer), records it,
// and answers with answer.
func proxyServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := verifyingServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		n.Add(1)
		w.Header().Set("Purser-Spend-Id", "spd_1") // on every answer of Purser's proxy
		answer(w, r, body)
	})
	return srv, &n
}

// TestProxySignsWhatItSends: the request-target signed is the one
// sent (escapes and query kept), the body and the caller's headers go
// through, but not Authorization, Host or Purser-* headers; the
// upstream's answer comes back as is, a redirect not followed.
func TestProxySignsWhatItSends(t *testing.T) {
	t.Parallel()
	key, _ := agentauth.GenerateKey()
	type rec struct {
		uri    string
		header http.Header
		body   string
	}
	var mu sync.Mutex
	var last rec
	srv, _ := proxyServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		last = rec{r.RequestURI, r.Header.Clone(), string(body)}
		mu.Unlock()
		w.Header().Set("Purser-Spend-Id", "spd_1")
		w.Header().Set("Purser-Price", "0.002")
		w.Header().Set("X-Upstream", "yes")
		if strings.HasSuffix(r.URL.Path, "/moved") {
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNotFound) // the upstream's own 404
		io.WriteString(w, "no such item")
	})
	a := testAgent(t, srv.URL, key)
	ctx := context.Background()
	h := http.Header{"Authorization": {"Bearer placeholder"}, "X-Custom": {"1", "2"}, "Purser-Agent": {"0xforged"},
		"Content-Type": {"application/x-www-form-urlencoded"}, "Idempotency-Key": {"k1"}}
	resp, err := a.Proxy(ctx, "my api", "POST", "/v1/items/a%2Fb?q=x+y&z=%C3%A9", []byte("a=1&b=2"), h)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || string(b) != "no such item" || resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get(HeaderSpendID) != "spd_1" {
		t.Errorf("answer %d %q %v", resp.StatusCode, b, resp.Header)
	}
	mu.Lock()
	got := last
	mu.Unlock()
	if got.uri != "/v1/proxy/my%20api/v1/items/a%2Fb?q=x+y&z=%C3%A9" {
		t.Errorf("request-target %s", got.uri)
	}
	if got.body != "a=1&b=2" || got.header.Get("Content-Type") != "application/x-www-form-urlencoded" ||
		strings.Join(got.header.Values("X-Custom"), ",") != "1,2" || got.header.Get("Idempotency-Key") != "k1" {
		t.Errorf("body %q headers %v", got.body, got.header)
	}
	if got.header.Get("Authorization") != "" {
		t.Errorf("the agent's Authorization header was sent to Purser")
	}
	if got.header.Get("Purser-Agent") != a.Address() {
		t.Errorf("Purser-Agent %q, want the signer's", got.header.Get("Purser-Agent"))
	}
	// A redirect is the upstream's answer: returned, not followed.
	resp, err = a.Proxy(ctx, "api", "", "/moved", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://elsewhere.example/" {
		t.Errorf("redirect: %d %v", resp.StatusCode, resp.Header)
	}
	// Bad paths and bodies fail before anything is sent.
	for _, p := range []string{"v1/x", "/x#frag"} {
		if _, err := a.Proxy(ctx, "api", "GET", p, nil, nil); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if _, err := a.Proxy(ctx, "api", "POST", "/x", make([]byte, MaxProxyBody+1), nil); !errors.Is(err, ErrProxyBodyTooLarge) {
		t.Errorf("oversized body: %v", err)
	}
	if _, err := a.Proxy(ctx, "", "GET", "/x", nil, nil); err == nil {
		t.Error("empty credential accepted")
	}
}

// TestProxyPurserAnswers: an answer with Purser-Error is an error:
// approval_required an *ApprovalRequiredError with the spend id (from
// details, else from Purser-Spend-Id), spend_denied a *RefusedError, the
// rest an *Error with the code.
func TestProxyPurserAnswers(t *testing.T) {
	t.Parallel()
	key, _ := agentauth.GenerateKey()
	srv, _ := proxyServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		code := strings.TrimPrefix(r.URL.Path, "/v1/proxy/api/")
		w.Header().Set("Purser-Error", code)
		w.Header().Set("Purser-Spend-Id", "spd_hdr")
		switch code {
		case "approval_required":
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"code":"approval_required","message":"waits","details":{"spend_id":"spd_1","reasons":["above_auto_approve"]}}`)
		case "approval_header_only":
			w.Header().Set("Purser-Error", "approval_required")
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"code":"approval_required","message":"waits"}`)
		case "spend_denied":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"code":"spend_denied","message":"no","details":{"spend_id":"spd_2","status":"denied","reasons":["daily_budget_exceeded"]}}`)
		case "not_upstream":
			// Neither Purser-Error nor Purser-Spend-Id: a redirect of a
			// router or a proxy in between, not the upstream's answer.
			w.Header().Del("Purser-Error")
			w.Header().Del("Purser-Spend-Id")
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		case "not_json":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "bad gateway")
		default:
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"code":"grant_not_found","message":"no grant"}`)
		}
	})
	a := testAgent(t, srv.URL, key)
	ctx := context.Background()
	_, err := a.Proxy(ctx, "api", "GET", "/approval_required", nil, nil)
	var ar *ApprovalRequiredError
	if !errors.As(err, &ar) || ar.SpendID != "spd_1" || strings.Join(ar.Reasons, ",") != "above_auto_approve" || ar.Spend.Status != StatusPendingApproval {
		t.Errorf("approval: %#v", err)
	}
	_, err = a.Proxy(ctx, "api", "GET", "/approval_header_only", nil, nil)
	if !errors.As(err, &ar) || ar.SpendID != "spd_hdr" {
		t.Errorf("approval, spend id in the header only: %#v", err)
	}
	_, err = a.Proxy(ctx, "api", "GET", "/spend_denied", nil, nil)
	var re *RefusedError
	if !errors.As(err, &re) || re.SpendID != "spd_2" || re.Reasons[0] != "daily_budget_exceeded" {
		t.Errorf("refused: %#v", err)
	}
	_, err = a.Proxy(ctx, "api", "GET", "/grant_not_found", nil, nil)
	if !IsCode(err, "grant_not_found") {
		t.Errorf("grant_not_found: %v", err)
	}
	_, err = a.Proxy(ctx, "api", "GET", "/not_upstream", nil, nil)
	if !IsCode(err, "http_301") {
		t.Errorf("an answer without Purser-Spend-Id: %v", err)
	}
	_, err = a.Proxy(ctx, "api", "GET", "/not_json", nil, nil)
	if !IsCode(err, "not_json") {
		t.Errorf("a non-JSON Purser answer keeps the header's code: %v", err)
	}
}

// TestProxyTransportWire: an unmodified http.Client over
// ProxyTransport reaches /v1/proxy/NAME + the request's path and query,
// whatever host it named; a body over 1 MiB is refused before anything
// is signed or sent; the upstream's redirects are followed on the same
// host only; the context's idempotency key is used when the
// request has none; Purser's refusals are errors wrapped by http.Client.
func TestProxyTransportWire(t *testing.T) {
	t.Parallel()
	key, _ := agentauth.GenerateKey()
	var mu sync.Mutex
	var uris, keys []string
	srv, n := proxyServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		uris = append(uris, r.Method+" "+r.RequestURI+" "+string(body))
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		switch r.URL.Path {
		case "/v1/proxy/search/moved":
			w.Header().Set("Location", "/v1/here") // the same host: followed through the proxy
			w.WriteHeader(http.StatusFound)
			return
		case "/v1/proxy/search/away":
			w.Header().Set("Location", "https://cdn.other.example/v1/here")
			w.WriteHeader(http.StatusFound)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/denied") {
			w.Header().Set("Purser-Error", "grant_not_found")
			w.WriteHeader(403)
			io.WriteString(w, `{"code":"grant_not_found","message":"no grant"}`)
			return
		}
		io.WriteString(w, "ok")
	})
	a := testAgent(t, srv.URL, key)
	hc := &http.Client{Transport: ProxyTransport(a, "search")}
	resp, err := hc.Get("https://api.example.com/v1/search?q=purser%20docs")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("body %q", b)
	}
	ctx := WithIdempotencyKey(context.Background(), "ctx-key")
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://ignored.invalid/v1/items", strings.NewReader(`{"a":1}`))
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ = http.NewRequestWithContext(ctx, "POST", "http://ignored.invalid/v1/items", strings.NewReader(`{"a":2}`))
	req.Header.Set("Idempotency-Key", "hdr-key")
	if resp, err = hc.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	want := []string{"GET /v1/proxy/search/v1/search?q=purser%20docs ", `POST /v1/proxy/search/v1/items {"a":1}`, `POST /v1/proxy/search/v1/items {"a":2}`}
	if strings.Join(uris, "\n") != strings.Join(want, "\n") || strings.Join(keys, ",") != ",ctx-key,hdr-key" {
		t.Errorf("sent %q with keys %q", uris, keys)
	}
	mu.Unlock()

	before := n.Load()
	// Length unknown to the client (a plain reader): read, then refused.
	big := io.MultiReader(bytes.NewReader(make([]byte, MaxProxyBody)), strings.NewReader("x"))
	_, err = hc.Post("https://api.example.com/v1/upload", "application/octet-stream", big)
	if !errors.Is(err, ErrProxyBodyTooLarge) {
		t.Errorf("oversized streamed body: %v", err)
	}
	_, err = hc.Post("https://api.example.com/v1/upload", "application/octet-stream", bytes.NewReader(make([]byte, MaxProxyBody+1)))
	if !errors.Is(err, ErrProxyBodyTooLarge) {
		t.Errorf("oversized body: %v", err)
	}
	if n.Load() != before {
		t.Errorf("an oversized body reached the server")
	}
	resp, err = hc.Get("https://api.example.com/moved")
	if err != nil || resp.Request.URL.Path != "/v1/here" {
		t.Errorf("a redirect on the same host: %v", err)
	} else {
		resp.Body.Close()
	}
	before = n.Load()
	if _, err := hc.Get("https://api.example.com/away"); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Errorf("a redirect to another host: %v", err)
	}
	if n.Load() != before+1 {
		t.Errorf("the redirect to another host was sent through the proxy")
	}
	_, err = hc.Get("https://api.example.com/denied")
	var ue *url.Error
	if !errors.As(err, &ue) || !IsCode(err, "grant_not_found") {
		t.Errorf("refusal: %v", err)
	}
}
