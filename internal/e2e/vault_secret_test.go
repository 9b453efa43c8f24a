package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/app"
)

// encodings of b an upstream might echo: raw, base64 (standard and
// URL-safe, padded and not), URL-escaped (query and path) and hex.
func encodings(b []byte) map[string]string {
	return map[string]string{
		"raw": string(b), "b64": base64.StdEncoding.EncodeToString(b), "b64url": base64.URLEncoding.EncodeToString(b),
		"b64raw": base64.RawStdEncoding.EncodeToString(b), "b64rawurl": base64.RawURLEncoding.EncodeToString(b),
		"json": jsonEscaped(b), "urlq": url.QueryEscape(string(b)), "urlpath": url.PathEscape(string(b)), "hex": hex.EncodeToString(b), "HEX": strings.ToUpper(hex.EncodeToString(b)),
	}
}

// jsonEscaped is b as a JSON string's content, the way PHP's json_encode
// writes it by default (every / as \/) and Go's (<, > and & as \u00XX).
func jsonEscaped(b []byte) string {
	j, _ := json.Marshal(string(b))
	return strings.ReplaceAll(string(j[1:len(j)-1]), "/", `\/`)
}

// leakForms are the spellings of a plaintext searched for: its encodings,
// and the part of its base64 fixed by the plaintext alone at each of the
// three alignments (the plaintext inside a larger base64 string).
func leakForms(pt []byte) []string {
	var out []string
	for _, v := range encodings(pt) {
		out = append(out, v, strings.ReplaceAll(v, "/", `\/`))
	}
	j, _ := json.Marshal(string(pt)) // Go's escapes: \u0026 and \"
	out = append(out, string(j[1:len(j)-1]))
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for off := range 3 {
			e := enc.EncodeToString(append(bytes.Repeat([]byte{'x'}, off), pt...))
			out = append(out, e[(8*off+5)/6:8*(off+len(pt))/6])
		}
	}
	return out
}

// findLeaks reports every haystack that holds a form (case-insensitive).
func findLeaks(t *testing.T, forms []string, haystacks map[string][]byte) {
	t.Helper()
	names := make([]string, 0, len(haystacks))
	for k := range haystacks {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		h := bytes.ToLower(haystacks[name])
		for _, f := range forms {
			if i := bytes.Index(h, []byte(strings.ToLower(f))); i >= 0 {
				lo, hi := max(0, i-60), min(len(h), i+len(f)+60)
				t.Errorf("the secret (as %q) is in the %s: …%s…", f, name, h[lo:hi])
			}
		}
	}
}

// echoUpstream answers every request with everything it received (the
// request line, every header, the body) in every encoding, in its body
// and its headers; /redirect puts it in a Location, /status/N answers
// status N, /slow answers after the credential's timeout, /gzip
// compresses its answer, /brotli claims an encoding the proxy cannot
// check, /big streams it inside 200 KiB after early hints and before a
// trailer that carry it.
type echoUpstream struct {
	srv     *httptest.Server
	calls   atomic.Int64
	sawWith atomic.Int64 // requests that carried the planted secret
	secret  string
}

func newEchoUpstream(t *testing.T, secret string) *echoUpstream {
	u := &echoUpstream{secret: secret}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *echoUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	var dump bytes.Buffer
	fmt.Fprintf(&dump, "%s %s %s\n", r.Method, r.RequestURI, r.Proto)
	r.Header.Write(&dump)
	dump.WriteString("\n")
	dump.Write(body)
	q, _ := url.QueryUnescape(r.URL.RawQuery)
	fmt.Fprintf(&dump, "\nquery decoded: %s\n", q)
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Basic ") {
		dec, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		fmt.Fprintf(&dump, "basic decoded: %s\n", dec)
	}
	if bytes.Contains(dump.Bytes(), []byte(u.secret)) {
		u.sawWith.Add(1)
	}
	var out bytes.Buffer
	for _, k := range []string{"raw", "json", "b64", "b64url", "b64raw", "b64rawurl", "urlq", "urlpath", "hex", "HEX"} {
		fmt.Fprintf(&out, "%s: %s\n", k, encodings(dump.Bytes())[k])
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	for name, vs := range r.Header {
		for k, v := range encodings([]byte(strings.Join(vs, ","))) {
			h.Add("X-Echo-"+name+"-"+k, v)
		}
	}
	for k, v := range encodings([]byte(r.RequestURI)) {
		h.Add("X-Echo-Uri-"+k, v)
	}
	h.Set("Set-Cookie", "session="+url.QueryEscape(r.Header.Get("Authorization")))
	h.Set("Link", "<"+r.RequestURI+">; rel=self")
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/redirect"):
		h.Set("Location", "http://127.0.0.1:1/next?uri="+url.QueryEscape(r.RequestURI)+"&auth="+url.QueryEscape(r.Header.Get("Authorization"))+
			"&b64="+base64.URLEncoding.EncodeToString(dump.Bytes()[:min(dump.Len(), 400)]))
		w.WriteHeader(http.StatusFound)
		w.Write(out.Bytes())
	case strings.Contains(p, "/status/"):
		var code int
		fmt.Sscan(p[strings.LastIndex(p, "/")+1:], &code)
		w.WriteHeader(code)
		w.Write(out.Bytes())
	case strings.HasSuffix(p, "/slow"):
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		w.Write(out.Bytes())
	case strings.HasSuffix(p, "/gzip"), strings.HasSuffix(p, "/brotli"):
		if strings.HasSuffix(p, "/gzip") {
			h.Set("Content-Encoding", "gzip")
		} else {
			h.Set("Content-Encoding", "br")
		}
		zw := gzip.NewWriter(w)
		zw.Write(out.Bytes())
		zw.Close()
	case strings.HasSuffix(p, "/big"):
		// Early hints and a trailer carry it too.
		h.Set("X-Hint", r.Header.Get("Authorization")+" "+r.RequestURI)
		w.WriteHeader(http.StatusEarlyHints)
		h.Del("X-Hint")
		h.Set("Trailer", "X-Echo-Trailer")
		defer h.Set("X-Echo-Trailer", r.Header.Get("Authorization")+" "+r.RequestURI)
		pad := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16 KB, so the echoes straddle the proxy's 32 KiB buffers
		for i := range 12 {
			w.Write(pad[:len(pad)-i*997])
			w.Write(out.Bytes())
		}
	default:
		w.Write(out.Bytes())
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestVaultSecretNeverReachesAgent plants a unique secret, lets an
// upstream echo it back in every way it can, drives every path an agent
// has to the proxy and its own views, and searches every byte the agent
// received, the server's debug log, the metrics, the audit export and
// the owner's vault views for the secret in every spelling: none may
// hold it. Once per injection: a bearer header, basic auth (the
// upstream echoes base64(user:secret)) and a query parameter (the
// upstream echoes its full URL).
func TestVaultSecretNeverReachesAgent(t *testing.T) {
	t.Parallel()
	for _, inj := range []string{"header:Authorization=Bearer {secret}", "basic:svc-user:{secret}", "query:api_key={secret}"} {
		t.Run(strings.SplitN(inj, ":", 2)[0], func(t *testing.T) {
			t.Parallel()
			testSecretNeverReachesAgent(t, inj)
		})
	}
}

func testSecretNeverReachesAgent(t *testing.T, inject string) {
	ctx := context.Background()
	rnd := make([]byte, 24)
	rand.Read(rnd)
	// + / & " make its URL escapes and its JSON escapes differ from it;
	// ??? puts a / in its base64.
	r := base64.RawURLEncoding.EncodeToString(rnd)
	secret := "sk_live_" + r[:12] + `/+&"???` + r[12:]
	logs := &lockedBuffer{}
	n := startApp(t, app.Config{LogLevel: "debug", Stderr: logs, Stdout: logs})
	up := newEchoUpstream(t, secret)
	agentKey := n.newAgent(t, "echoer", `{"per_tx_auto":"0.01","per_tx_max":"1","daily":"100"}`)
	ag := n.proxyAgent(t, agentKey)
	put := func(name, upstream, price string, paths ...string) {
		mustOwner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: name, Upstream: upstream, Inject: inject,
			Secret: secret, AllowPrivate: true, Timeout: "1s"}, 201, nil)
		mustOwner(t, n, "POST", "/v1/vault/"+name+"/grants", api.GrantRequest{Agent: "echoer",
			Methods: []string{"GET", "POST", "HEAD", "PUT"}, Paths: paths, Price: price}, 201, nil)
	}
	put("echo", up.srv.URL+"/base", "0.001", "/v1/*")
	put("dear", up.srv.URL, "0.05", "/v1/*") // above per_tx_auto: needs approval
	put("pricey", up.srv.URL, "2", "/v1/*")  // above per_tx_max: refused
	put("gone", "http://"+closedPort(t), "0.001", "/v1/*")
	// The owner rotates with a grace period: two versions are live, both
	// must stay hidden (the old one is the planted secret).
	spendIDs := map[string]bool{}
	expect := func(what string, a answer, h http.Header, status int, code string) {
		t.Helper()
		if id := h.Get(api.HeaderSpendID); id != "" {
			spendIDs[id] = true
		}
		if id, _ := a.details["spend_id"].(string); id != "" {
			spendIDs[id] = true
		}
		if a.status != status || h.Get(api.HeaderError) != code {
			t.Errorf("%s: %s (Purser-Error %q); want HTTP %d, Purser-Error %q", what, a, h.Get(api.HeaderError), status, code)
		}
	}
	hdr := http.Header{"X-Trace": {"t1"}, "Accept-Encoding": {"gzip"}, "Content-Type": {"application/json"}}
	a, h := ag.call(t, "GET", "/v1/proxy/echo/v1/search?q=cats&api_key=mine&x=%2F", nil, hdr)
	expect("GET with a query", a, h, 200, "")
	if !bytes.Contains(a.body, []byte("[REDACTED]")) || !bytes.Contains(a.body, []byte("cats")) {
		t.Fatalf("the echo is not an echo, or nothing was scrubbed: %s", a)
	}
	a, h = ag.call(t, "POST", "/v1/proxy/echo/v1/items", []byte(`{"name":"x","note":"`+strings.Repeat("y", 100)+`"}`), hdr)
	expect("POST with a body", a, h, 200, "")
	a, h = ag.call(t, "HEAD", "/v1/proxy/echo/v1/items/1", nil, nil)
	expect("HEAD", a, h, 200, "")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/redirect", nil, nil)
	expect("a redirect", a, h, 302, "")
	if loc := h.Get("Location"); !strings.HasPrefix(loc, "http://127.0.0.1:1/next?") {
		t.Errorf("redirect Location %q: want the upstream's, scrubbed", loc)
	}
	a, h = ag.call(t, "PUT", "/v1/proxy/echo/v1/status/500", []byte("boom"), nil)
	expect("an error status", a, h, 500, "")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/status/401", nil, nil)
	expect("a 401", a, h, 401, "")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/gzip?z=1", nil, http.Header{"Accept-Encoding": {"gzip"}})
	expect("a gzip answer", a, h, 200, "")
	if !bytes.Contains(a.body, []byte("raw: GET")) {
		t.Errorf("the gzip answer was not decoded: %.200q", a.body)
	}
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/brotli", nil, nil)
	expect("an encoding the proxy cannot check", a, h, a.status, "upstream_encoding_unsupported")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/big", nil, nil)
	expect("a streamed answer", a, h, 200, "")
	if c := bytes.Count(a.body, []byte("HEX: ")); c != 12 || len(a.body) < 120_000 {
		t.Errorf("the streamed answer is %d bytes with %d echoes; want it whole (12)", len(a.body), c)
	}
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/slow", nil, nil)
	expect("a timeout", a, h, a.status, "upstream_timeout")
	a, h = ag.call(t, "GET", "/v1/proxy/gone/v1/x?q=1", nil, nil)
	expect("an unreachable upstream", a, h, a.status, "upstream_unreachable")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/admin", nil, nil)
	expect("a path outside the grant", a, h, 403, "spend_denied")
	a, h = ag.call(t, "DELETE", "/v1/proxy/echo/v1/items/1", nil, nil)
	expect("a method outside the grant", a, h, 403, "spend_denied")
	a, h = ag.call(t, "GET", "/v1/proxy/pricey/v1/x", nil, nil)
	expect("a call the mandate refuses", a, h, 403, "spend_denied")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/../../etc", nil, nil)
	expect("a traversal", a, h, 400, "proxy_path_invalid")
	a, h = ag.call(t, "GET", "/v1/proxy/nosuch/v1/x", nil, nil)
	expect("an unknown credential", a, h, a.status, a.code)
	// Approval: 202, the owner approves, the same call with the same key
	// is carried out, once.
	idem := http.Header{api.HeaderIdempotencyKey: {"approve-1"}}
	a, h = ag.call(t, "POST", "/v1/proxy/dear/v1/report", []byte("r=1"), idem)
	expect("a call that needs approval", a, h, 202, "approval_required")
	if id, _ := a.details["spend_id"].(string); id == "" {
		t.Fatalf("approval_required without a spend id: %s", a)
	} else if _, err := n.owner.Approve(ctx, id); err != nil {
		t.Fatalf("approve: %v", err)
	}
	a, h = ag.call(t, "POST", "/v1/proxy/dear/v1/report", []byte("r=1"), idem)
	expect("the approved call", a, h, 200, "")
	a, h = ag.call(t, "POST", "/v1/proxy/dear/v1/report", []byte("r=1"), idem)
	expect("the approved call replayed", a, h, a.status, "call_already_made")
	// A replay of a paid call.
	idem = http.Header{api.HeaderIdempotencyKey: {"replay-1"}}
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/search?q=once", nil, idem)
	expect("a call with an idempotency key", a, h, 200, "")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/search?q=once", nil, idem)
	expect("its replay", a, h, a.status, "call_already_made")
	// A rotation with grace: the old secret (the planted one) stays in
	// use and must stay hidden as well as the new one.
	rnd2 := make([]byte, 24)
	rand.Read(rnd2)
	secret2 := "sk_live_" + base64.RawURLEncoding.EncodeToString(rnd2)
	mustOwner(t, n, "POST", "/v1/vault/echo/rotate", api.RotateCredentialRequest{Secret: secret2, Grace: "1h"}, 200, nil)
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/status/401", nil, nil) // refused with the new secret, replayed with the old
	expect("a 401 after the rotation", a, h, 401, "")
	a, h = ag.call(t, "GET", "/v1/proxy/echo/v1/after-rotation?q=2", nil, nil)
	expect("a call after the rotation", a, h, 200, "")
	if up.sawWith.Load() == 0 {
		t.Fatal("the upstream never received the planted secret: the injection did not happen, so the search proves nothing")
	}

	// The agent's own views.
	agentGet := func(path string) {
		a, _ := ag.call(t, "GET", path, nil, nil)
		if a.status != 200 {
			t.Errorf("GET %s: %s", path, a)
		}
	}
	agentGet("/v1/agent/grants")
	agentGet("/v1/agent/limits")
	if len(spendIDs) < 15 {
		t.Errorf("only %d spends seen; every proxied call makes one", len(spendIDs))
	}
	waitSettled(t, n)
	for id := range spendIDs {
		agentGet("/v1/agent/spends/" + id)
	}

	// What the owner and the operator see.
	haystacks := map[string][]byte{"agent's answers": ag.received(), "server log": logs.Bytes()}
	for _, p := range []string{"/v1/vault", "/v1/vault/echo", "/v1/vault/echo/grants", "/v1/vault/gone", "/v1/spends?limit=1000", "/v1/audit/tail?n=1000"} {
		haystacks["owner GET "+p] = mustOwner(t, n, "GET", p, nil, 200, nil).body
	}
	haystacks["GET /metrics"] = send(t, "GET", n.url+"/metrics", nil, nil).body
	if !bytes.Contains(haystacks["GET /metrics"], []byte("purser_proxy_calls_total")) {
		t.Error("the metrics have no proxy counter; are they the metrics?")
	}
	for _, f := range []string{"jsonl", "csv"} {
		rc, err := n.owner.AuditExport(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Contains(b, []byte("vault")) {
			t.Errorf("the %s audit export has no vault event: %.200s", f, b)
		}
		haystacks["audit export "+f] = b
	}
	if !bytes.Contains(haystacks["server log"], []byte(`"level":"DEBUG"`)) {
		t.Error("no debug line in the captured log")
	}
	var forms []string
	for _, s := range []string{secret, secret2} {
		forms = append(forms, leakForms([]byte(s))...)
		if user, ok := strings.CutPrefix(inject, "basic:"); ok {
			user, _, _ = strings.Cut(user, ":")
			forms = append(forms, leakForms([]byte(user+":"+s))...)
		}
	}
	slices.Sort(forms)
	forms = slices.Compact(forms)
	// The search finds what it looks for: the echo of a request that
	// carries the secret, straight from the upstream, holds it in every
	// form the upstream writes.
	direct := http.Header{"Authorization": {"Bearer " + secret}, "X-Basic": {"Basic " + base64.StdEncoding.EncodeToString([]byte("svc-user:"+secret))}}
	req, _ := http.NewRequest("GET", up.srv.URL+"/base/v1/x?api_key="+url.QueryEscape(secret), nil)
	req.Header = direct
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var hdrs bytes.Buffer
	resp.Header.Write(&hdrs)
	var found, missed []string
	for _, f := range leakForms([]byte(secret)) {
		if bytes.Contains(bytes.ToLower(append(raw, hdrs.Bytes()...)), []byte(strings.ToLower(f))) {
			found = append(found, f)
		} else {
			missed = append(missed, f)
		}
	}
	if len(found) < 8 {
		t.Fatalf("the search finds only %d forms in an unscrubbed echo (misses %q); it would miss leaks", len(found), missed)
	}
	findLeaks(t, forms, haystacks)
	n.verify(t)
}
