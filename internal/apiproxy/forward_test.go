package apiproxy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/apiproxy"
)

const secret = "sk_live_Zq9x7PurserSecret42"

// echo answers with everything it received, in raw, base64, URL-escaped
// and hex forms, in its body, its headers, a cookie and (on /redirect) a
// Location; ?gzip=1 compresses the body, ?big=1 pads it past one buffer.
func echo(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL.RequestURI())
	r.Header.Write(&b)
	io.Copy(&b, r.Body)
	all := b.String()
	var out bytes.Buffer
	if r.URL.Query().Get("big") == "1" {
		out.WriteString(strings.Repeat("padding ", 10000))
	}
	out.WriteString(all)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		out.WriteString("\n" + enc.EncodeToString([]byte(all)))
		out.WriteString("\n" + enc.EncodeToString([]byte("x"+all)))
		out.WriteString("\n" + enc.EncodeToString([]byte("xy"+all)))
	}
	out.WriteString("\n" + url.QueryEscape(all) + "\n" + url.PathEscape(all) + "\n" + hex.EncodeToString([]byte(all)) + "\n" + strings.ToUpper(hex.EncodeToString([]byte(all))))
	flat := strings.NewReplacer("\r", " ", "\n", " ").Replace(all)
	w.Header().Set("X-Echo", flat)
	w.Header().Set("X-Echo-B64", base64.StdEncoding.EncodeToString([]byte(all)))
	w.Header().Set("X-Cost", "0.001")
	http.SetCookie(w, &http.Cookie{Name: "s", Value: url.QueryEscape(flat)})
	status := http.StatusOK
	if strings.HasSuffix(r.URL.Path, "/redirect") {
		w.Header().Set("Location", "https://elsewhere.example/?k="+url.QueryEscape(flat))
		status = http.StatusFound
	}
	if r.URL.Query().Get("gzip") == "1" {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(status)
		zw := gzip.NewWriter(w)
		zw.Write(out.Bytes())
		zw.Close()
		return
	}
	w.WriteHeader(status)
	w.Write(out.Bytes())
}

func forms(s string) []string {
	f := []string{s, url.QueryEscape(s), hex.EncodeToString([]byte(s)), strings.ToUpper(hex.EncodeToString([]byte(s)))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		for off := 0; off < 3; off++ {
			e := enc.EncodeToString([]byte(strings.Repeat("\x00", off) + s))
			f = append(f, e[(8*off+5)/6:8*(off+len(s))/6])
		}
	}
	return f
}

func target(t testing.TB, upstream string, spec string) *apiproxy.Target {
	t.Helper()
	u, err := apiproxy.ParseUpstream(upstream)
	if err != nil {
		t.Fatal(err)
	}
	in, err := apiproxy.ParseInject(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &apiproxy.Target{Upstream: u, Inject: in, Secret: []byte(secret), AllowPrivate: true, Timeout: 5 * time.Second}
}

func agentBytes(rec *httptest.ResponseRecorder) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d\n", rec.Code)
	rec.Header().Write(&b)
	b.Write(rec.Body.Bytes())
	return b.String()
}

// TestForwardNeverLeaksSecret plants a secret, has an upstream echo it
// every way it can, and searches every byte the agent received for every
// form of it.
func TestForwardNeverLeaksSecret(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(echo))
	defer up.Close()
	f := apiproxy.NewForwarder(apiproxy.Options{})
	defer f.Close()
	for _, spec := range []string{"header:Authorization=Bearer {secret}", "header:X-Api-Key={secret}", "query:api_key={secret}", "basic:acct_1:{secret}"} {
		tg := target(t, up.URL+"/base", spec)
		for _, q := range []string{"", "gzip=1", "big=1", "api_key=mine&x=1"} {
			for _, path := range []string{"/v1/echo", "/v1/redirect"} {
				rec := httptest.NewRecorder()
				res := f.Do(context.Background(), tg, &apiproxy.Call{Method: "POST", Path: path, RawQuery: q,
					Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("body"), PriceHeader: "X-Cost"}, rec)
				if res.Reason != "" || !res.Wrote || !res.Answered || !res.Sent {
					t.Fatalf("%s %s?%s: %+v", spec, path, q, res)
				}
				got := agentBytes(rec)
				for _, form := range append(forms(secret), forms("acct_1:"+secret)...) {
					if strings.Contains(got, form) {
						t.Fatalf("%s %s?%s: the agent got %q", spec, path, q, form)
					}
				}
				if !strings.Contains(got, apiproxy.Redacted) || !strings.Contains(got, "/base/v1/") {
					t.Fatalf("%s %s?%s: the echo did not come back: %.300s", spec, path, q, got)
				}
				if rec.Header().Get("Set-Cookie") != "" || res.Price != "0.001" {
					t.Fatalf("cookie %q, price %q", rec.Header().Get("Set-Cookie"), res.Price)
				}
				if path == "/v1/redirect" && (rec.Code != http.StatusFound || !strings.HasPrefix(rec.Header().Get("Location"), "https://elsewhere.example/")) {
					t.Fatalf("redirect: %d %q", rec.Code, rec.Header().Get("Location"))
				}
			}
		}
	}
}

// TestForwardHeaders: what the agent forges never reaches the upstream.
func TestForwardHeaders(t *testing.T) {
	t.Parallel()
	var seen atomic.Pointer[http.Request]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Store(r) }))
	defer up.Close()
	f := apiproxy.NewForwarder(apiproxy.Options{})
	defer f.Close()
	h := http.Header{"Host": {"evil.example"}, "Proxy-Authorization": {"Basic eA=="}, "X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Host": {"evil"},
		"Forwarded": {"for=1.2.3.4"}, "X-Real-Ip": {"1.2.3.4"}, "Purser-Signature": {"0xsig"}, "Purser-Agent": {"0xa"}, "Cookie": {"a=b"},
		"Authorization": {"Bearer agents-own"}, "Connection": {"X-Hop"}, "X-Hop": {"1"}, "Te": {"trailers"}, "Upgrade": {"h2c"},
		"Accept-Encoding": {"br"}, "X-Keep": {"yes"}}
	tg := target(t, up.URL, "header:Authorization=Bearer {secret}")
	res := f.Do(context.Background(), tg, &apiproxy.Call{Method: "GET", Path: "/x", Header: h}, httptest.NewRecorder())
	r := seen.Load()
	if res.Reason != "" || r == nil {
		t.Fatalf("%+v", res)
	}
	if r.Host != strings.TrimPrefix(up.URL, "http://") {
		t.Errorf("Host %q", r.Host)
	}
	for _, k := range []string{"Proxy-Authorization", "X-Forwarded-For", "X-Forwarded-Host", "Forwarded", "X-Real-Ip", "Purser-Signature", "Purser-Agent", "Cookie", "X-Hop", "Te", "Upgrade"} {
		if v := r.Header.Get(k); v != "" {
			t.Errorf("the upstream got %s: %q", k, v)
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+secret || len(r.Header["Authorization"]) != 1 || r.Header.Get("X-Keep") != "yes" {
		t.Errorf("headers %v", r.Header)
	}
	if ae := r.Header.Get("Accept-Encoding"); ae != "gzip" {
		t.Errorf("Accept-Encoding %q, want the transport's gzip", ae)
	}
}

func TestForwardRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer other.Close()
	up := httptest.NewServer(http.RedirectHandler(other.URL+"/steal", http.StatusTemporaryRedirect))
	defer up.Close()
	f := apiproxy.NewForwarder(apiproxy.Options{})
	defer f.Close()
	rec := httptest.NewRecorder()
	res := f.Do(context.Background(), target(t, up.URL, "header:X-Api-Key={secret}"), &apiproxy.Call{Method: "POST", Path: "/", Body: []byte("x")}, rec)
	if res.Status != http.StatusTemporaryRedirect || hits.Load() != 0 || rec.Header().Get("Location") != other.URL+"/steal" {
		t.Fatalf("%+v hits=%d", res, hits.Load())
	}
}

func TestForwardEgressRefused(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(echo))
	defer up.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	f := apiproxy.NewForwarder(apiproxy.Options{DialTimeout: time.Second})
	defer f.Close()
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::ffff:127.0.0.1]:" + port, "[::1]:" + port, "169.254.169.254", "10.1.2.3"} {
		tg := target(t, "http://"+host, "header:X-Api-Key={secret}")
		tg.AllowPrivate, tg.Timeout = false, 2*time.Second
		rec := httptest.NewRecorder()
		res := f.Do(context.Background(), tg, &apiproxy.Call{Method: "GET", Path: "/"}, rec)
		if res.Reason != apiproxy.FailEgressRefused || res.Wrote || res.Sent || rec.Body.Len() != 0 {
			t.Errorf("%s: %+v", host, res)
		}
		if res.Err != nil && strings.Contains(res.Err.Error(), secret) {
			t.Errorf("the error holds the secret")
		}
	}
}

func TestForwardLimitsAndTimeouts(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	defer close(block)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			io.Copy(io.Discard, r.Body)
			select {
			case <-block:
			case <-r.Context().Done():
			}
		case "/small":
			w.Write(bytes.Repeat([]byte("a"), 200))
		case "/huge":
			for range 100 {
				w.Write(bytes.Repeat([]byte("a"), 10000))
			}
		case "/br":
			w.Header().Set("Content-Encoding", "br")
			w.Write([]byte("xx"))
		}
	}))
	defer up.Close()
	f := apiproxy.NewForwarder(apiproxy.Options{})
	defer f.Close()
	tg := target(t, up.URL, "header:X-Api-Key={secret}")
	tg.MaxRequest, tg.MaxResponse, tg.Timeout = 100, 100_000, 300*time.Millisecond
	do := func(path string, body []byte) (apiproxy.Result, *httptest.ResponseRecorder) {
		rec := httptest.NewRecorder()
		return f.Do(context.Background(), tg, &apiproxy.Call{Method: "POST", Path: path, Body: body}, rec), rec
	}
	if res, _ := do("/small", make([]byte, 101)); res.Reason != apiproxy.FailRequestTooLarge || res.Wrote {
		t.Errorf("request too large: %+v", res)
	}
	if res, _ := do("/hang", []byte("x")); res.Reason != apiproxy.FailTimeout || !res.Wrote || res.Answered {
		t.Errorf("hang: %+v", res)
	}
	if res, rec := do("/br", nil); res.Reason != apiproxy.FailEncodingUnsupported || res.Sent || rec.Body.Len() != 0 {
		t.Errorf("br: %+v", res)
	}
	if res, rec := do("/huge", nil); res.Reason != apiproxy.FailResponseTooLarge || !res.Sent || rec.Body.Len() > 100_000 {
		t.Errorf("huge: %+v (%d bytes)", res, rec.Body.Len())
	}
	tg2 := &apiproxy.Target{Upstream: tg.Upstream, Inject: tg.Inject, Secret: tg.Secret, AllowPrivate: true, MaxResponse: 100}
	rec := httptest.NewRecorder()
	if res := f.Do(context.Background(), tg2, &apiproxy.Call{Method: "GET", Path: "/small"}, rec); res.Reason != apiproxy.FailResponseTooLarge || res.Sent || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("small over limit: %+v %v", res, rec.Header())
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	tg3 := target(t, "http://"+closed, "header:X-Api-Key={secret}")
	if res := f.Do(context.Background(), tg3, &apiproxy.Call{Method: "POST", Path: "/", Body: []byte("x")}, httptest.NewRecorder()); res.Reason != apiproxy.FailUnreachable || res.Wrote {
		t.Errorf("closed port: %+v", res)
	}
}

func TestForwardPreviousSecretOn401(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer sk_old_previous_1" || string(b) != "payload" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	f := apiproxy.NewForwarder(apiproxy.Options{})
	defer f.Close()
	tg := target(t, up.URL, "header:Authorization=Bearer {secret}")
	tg.Previous = []byte("sk_old_previous_1")
	rec := httptest.NewRecorder()
	res := f.Do(context.Background(), tg, &apiproxy.Call{Method: "POST", Path: "/", Body: []byte("payload")}, rec)
	if res.Status != 200 || !res.UsedPrevious || calls.Load() != 2 || rec.Body.String() != "ok" {
		t.Fatalf("%+v calls=%d", res, calls.Load())
	}
	tg2 := target(t, up.URL, "header:Authorization=Bearer {secret}")
	if res := f.Do(context.Background(), tg2, &apiproxy.Call{Method: "POST", Path: "/", Body: []byte("payload")}, httptest.NewRecorder()); res.Status != 401 || res.UsedPrevious {
		t.Fatalf("without previous: %+v", res)
	}
}
