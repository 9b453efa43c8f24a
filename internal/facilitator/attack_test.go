package facilitator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/x402"
)

// post sends body to the facilitator with the given Content-Type ("" for
// none) and returns the status and the decoded JSON reply.
func post(t *testing.T, url, contentType string, body []byte, header ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Errorf("%s: the reply (%d, %s) is not JSON: %v", url, resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	return resp.StatusCode, out
}

func body(p *x402.PaymentPayload, req *x402.Requirements) []byte {
	b, _ := json.Marshal(x402.FacilitatorRequest{X402Version: p.Version, PaymentPayload: p.Raw, PaymentRequirements: req.Raw})
	return b
}

// relayerSpent is what the relayer has spent on gas since before.
func (r *rig) relayerNonce(t *testing.T) uint64 {
	t.Helper()
	n, err := r.dev.Client().Backend().PendingNonceAt(context.Background(), r.gas)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Attack: the same payment sent to /settle by several callers at once
// (a seller's middleware serving concurrent requests, or a buyer racing
// it). One payment buys one settlement: exactly one caller is told it
// succeeded; the others fail as the chain would.
func TestSettleConcurrentOnlyOneSucceeds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	srv := httptest.NewServer(r.f.Handler())
	defer srv.Close()
	req := r.offer(t, 2, "10000", nil)
	b := body(r.pay(t, req, nil), req)
	const n = 6
	var wg sync.WaitGroup
	codes := make([]int, n)
	outs := make([]map[string]any, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], outs[i] = post(t, srv.URL+"/settle", "application/json", b)
		}()
	}
	wg.Wait()
	wins := 0
	for i, out := range outs {
		switch {
		case codes[i] != 200:
			t.Errorf("settle %d: status %d %v", i, codes[i], out)
		case out["success"] == true:
			wins++
		case out["errorReason"] != ReasonNonceUsed || out["transaction"] != "" || out["network"] != r.dev.Network():
			t.Errorf("settle %d: %v; want %s", i, out, ReasonNonceUsed)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent settles of one payment succeeded; want exactly 1", wins, n)
	}
	if b, _ := r.dev.Client().BalanceOf(context.Background(), r.dev.Token(), r.seller); b.Int64() != 10000 {
		t.Fatalf("seller balance %s; want exactly one payment", b)
	}
}

// Attack: the same payment settled again after it settled. The second
// settle fails with the chain's reason, at once, and sends nothing.
func TestSettleAgainFailsNonceUsed(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	req := r.offer(t, 2, "10000", nil)
	p := r.pay(t, req, nil)
	if s := r.f.Settle(ctx, p, req); !s.Success {
		t.Fatalf("first settle: %+v", s)
	}
	sent := r.relayerNonce(t)
	for i := range 3 {
		if s := r.f.Settle(ctx, p, req); s.Success || s.ErrorReason != ReasonNonceUsed || s.Transaction != "" || s.Network != r.dev.Network() {
			t.Fatalf("settle %d after success: %+v; want %s", i+2, s, ReasonNonceUsed)
		}
	}
	// The same authorization under other (still matching) requirements:
	// the authorization is what was spent, not the request.
	other := r.offer(t, 2, "10000", func(o map[string]any) { o["maxTimeoutSeconds"] = 30 })
	if s := r.f.Settle(ctx, p, other); s.Success || s.ErrorReason != ReasonNonceUsed {
		t.Fatalf("settle under other requirements: %+v", s)
	}
	if got := r.relayerNonce(t); got != sent {
		t.Fatalf("the relayer sent %d transaction(s) for an authorization already used", got-sent)
	}
	if v := r.f.Verify(ctx, p, req); v.IsValid || v.InvalidReason != ReasonNonceUsed {
		t.Fatalf("verify of a used authorization: %+v", v)
	}
}

// A settle refused before sending (here: a forged signature over the
// victim's authorization) must not block the genuine payment.
func TestForgedSettleDoesNotBlockGenuine(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	req := r.offer(t, 2, "10000", nil)
	p := r.pay(t, req, nil)
	forged := *p
	forged.Payload.Signature = "0x" + strings.Repeat("11", 64) + "1b"
	if s := r.f.Settle(ctx, &forged, req); s.Success || s.ErrorReason != ReasonSignature {
		t.Fatalf("forged settle: %+v", s)
	}
	if s := r.f.Settle(ctx, p, req); !s.Success {
		t.Fatalf("genuine settle after a forged one: %+v", s)
	}
}

// Attack (reproduced): a zero-value authorization from an unfunded key,
// for zero-priced requirements, sent as text/plain. The relayer paid its
// gas. Zero is refused by verify and settle before anything is sent.
func TestZeroValueRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	unfunded, _ := crypto.GenerateKey()
	r.payer = unfunded
	srv := httptest.NewServer(r.f.Handler())
	defer srv.Close()
	before := r.relayerNonce(t)
	for _, v := range []int{2, 1} {
		req := r.offer(t, v, "0", func(o map[string]any) {
			if v == 1 {
				o["network"] = "eip155:1337" // v1 parsing, CAIP-2 network: the dev chain has no v1 name
			}
		})
		p := r.pay(t, req, nil)
		if got := r.f.Verify(ctx, p, req); got.IsValid || got.InvalidReason != ReasonRequiredAmount {
			t.Errorf("v%d verify of a zero-value payment: %+v", v, got)
		}
		if got := r.f.Settle(ctx, p, req); got.Success || got.ErrorReason != ReasonRequiredAmount || got.Transaction != "" {
			t.Errorf("v%d settle of a zero-value payment: %+v", v, got)
		}
		for _, ct := range []string{"application/json", "text/plain"} {
			code, out := post(t, srv.URL+"/settle", ct, body(p, req))
			if out["success"] != false || out["transaction"] != "" {
				t.Errorf("v%d HTTP settle (%s) of a zero-value payment: %d %v", v, ct, code, out)
			}
		}
	}
	if after := r.relayerNonce(t); after != before {
		t.Fatalf("the relayer sent %d transaction(s) for zero-value payments", after-before)
	}
	if bal, _ := r.dev.Client().ETHBalance(ctx, r.gas); bal.Cmp(big.NewInt(1e18)) != 0 {
		t.Fatalf("the relayer paid gas: balance %s", bal)
	}
}

// Attack: a cross-site form post (text/plain, no preflight) or any other
// non-JSON body. /verify and /settle take application/json only (415,
// JSON error), and nothing is settled.
func TestNonJSONRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	srv := httptest.NewServer(r.f.Handler())
	defer srv.Close()
	req := r.offer(t, 2, "10000", nil)
	b := body(r.pay(t, req, nil), req)
	for _, path := range []string{"/verify", "/settle"} {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonp", "text/json"} {
			code, out := post(t, srv.URL+path, ct, b)
			if code != http.StatusUnsupportedMediaType || out["code"] != "unsupported_media_type" || out["message"] == "" {
				t.Errorf("%s with Content-Type %q: %d %v; want 415 unsupported_media_type", path, ct, code, out)
			}
		}
	}
	if bal, _ := r.dev.Client().BalanceOf(context.Background(), r.dev.Token(), r.seller); bal.Sign() != 0 {
		t.Fatalf("a non-JSON settle moved %s", bal)
	}
	// Parameters are fine.
	if code, out := post(t, srv.URL+"/settle", "Application/JSON; charset=utf-8", b); code != 200 || out["success"] != true {
		t.Fatalf("JSON with a charset: %d %v", code, out)
	}
}

// Bodies are bounded: a larger one is a 413 with a JSON error.
func TestBodyBounded(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	srv := httptest.NewServer(r.f.Handler())
	defer srv.Close()
	big := []byte(`{"x402Version":2,"pad":"` + strings.Repeat("a", MaxRequestBytes) + `"}`)
	for _, path := range []string{"/verify", "/settle"} {
		if code, out := post(t, srv.URL+path, "application/json", big); code != http.StatusRequestEntityTooLarge || out["code"] != "body_too_large" {
			t.Errorf("%s with %d bytes: %d %v", path, len(big), code, out)
		}
	}
}

// A facilitator may serve only its own sellers: a payment to any other
// payTo is refused by verify and settle, and the relayer sends nothing.
func TestSellersOnly(t *testing.T) {
	t.Parallel()
	stranger, _ := crypto.GenerateKey()
	r := newRigOn(t, 0, func(r *rig, c *Config) { c.Sellers = []common.Address{r.seller} })
	ctx := context.Background()
	before := r.relayerNonce(t)
	other := r.offer(t, 2, "10000", func(o map[string]any) { o["payTo"] = crypto.PubkeyToAddress(stranger.PublicKey).Hex() })
	p := r.pay(t, other, nil)
	if v := r.f.Verify(ctx, p, other); v.IsValid || v.InvalidReason != ReasonPayToNotAllowed {
		t.Fatalf("verify for a stranger: %+v", v)
	}
	if s := r.f.Settle(ctx, p, other); s.Success || s.ErrorReason != ReasonPayToNotAllowed || s.Transaction != "" {
		t.Fatalf("settle for a stranger: %+v", s)
	}
	if got := r.relayerNonce(t); got != before {
		t.Fatalf("the relayer sent %d transaction(s) for a stranger", got-before)
	}
	req := r.offer(t, 2, "10000", nil)
	if s := r.f.Settle(ctx, r.pay(t, req, nil), req); !s.Success {
		t.Fatalf("settle for the configured seller: %+v", s)
	}
	if _, err := New(Config{Networks: map[string]Network{r.dev.Network(): {Client: r.dev.Client(), Relayer: evm.NewRelayer(r.dev.Client(), evm.KeySigner(stranger))}},
		Sellers: []common.Address{{}}}); err == nil {
		t.Fatal("the zero address was accepted as a seller")
	}
}

// With a secret, /verify and /settle need it as a bearer (401 and a JSON
// error otherwise); the x402 client sends it.
func TestSecretRequired(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-shared-with-sellers"
	r := newRigOn(t, 0, func(_ *rig, c *Config) { c.Secret = secret })
	srv := httptest.NewServer(r.f.Handler())
	defer srv.Close()
	req := r.offer(t, 2, "10000", nil)
	p := r.pay(t, req, nil)
	b := body(p, req)
	for _, path := range []string{"/verify", "/settle"} {
		for name, h := range map[string][]string{
			"none":       nil,
			"wrong":      {"Authorization", "Bearer nope"},
			"prefix":     {"Authorization", "Bearer " + secret[:5]},
			"longer":     {"Authorization", "Bearer " + secret + "x"},
			"not bearer": {"Authorization", "Basic " + secret},
			"bare":       {"Authorization", secret},
		} {
			code, out := post(t, srv.URL+path, "application/json", b, h...)
			if code != http.StatusUnauthorized || out["code"] != CodeUnauthorized || strings.Contains(fmt.Sprint(out), secret) {
				t.Errorf("%s with %s credentials: %d %v", path, name, code, out)
			}
		}
	}
	if bal, _ := r.dev.Client().BalanceOf(context.Background(), r.dev.Token(), r.seller); bal.Sign() != 0 {
		t.Fatalf("an unauthenticated settle moved %s", bal)
	}
	fc := &x402.FacilitatorClient{URL: srv.URL, Secret: secret}
	if v, err := fc.Verify(context.Background(), p, req); err != nil || !v.IsValid {
		t.Fatalf("verify with the secret: %+v %v", v, err)
	}
	if s, err := fc.Settle(context.Background(), p, req); err != nil || !s.Success {
		t.Fatalf("settle with the secret: %+v %v", s, err)
	}
	// /supported and /health stay open.
	if resp, err := http.Get(srv.URL + "/supported"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("supported: %v %v", resp, err)
	}
}

// Calls are rate limited per source IP and per payer; a limited call is a
// 429 with Retry-After and a JSON error. Time is frozen: no sleeps.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	t.Run("per payer", func(t *testing.T) {
		t.Parallel()
		r := newRigOn(t, 0, func(_ *rig, c *Config) { c.PayerRate, c.Now = 2, clock })
		srv := httptest.NewServer(r.f.Handler())
		defer srv.Close()
		req := r.offer(t, 2, "10000", nil)
		p := r.pay(t, req, nil)
		// Forged payments in the payer's name do not spend its allowance.
		forged := *p
		forged.Payload.Signature = "0x" + strings.Repeat("11", 64) + "1b"
		forgedReq, _ := x402.NewPaymentPayload(req, nil, forged.Payload)
		for i := range 3 {
			if code, out := post(t, srv.URL+"/verify", "application/json", body(forgedReq, req)); code != 200 || out["invalidReason"] != ReasonSignature {
				t.Fatalf("forged verify %d: %d %v", i, code, out)
			}
		}
		b := body(p, req)
		for i := range 2 {
			if code, out := post(t, srv.URL+"/verify", "application/json", b); code != 200 || out["isValid"] != true {
				t.Fatalf("verify %d: %d %v", i, code, out)
			}
		}
		if code, out := post(t, srv.URL+"/settle", "application/json", b); code != http.StatusTooManyRequests || out["code"] != CodeRateLimited || out["success"] != false {
			t.Fatalf("third call for one payer: %d %v", code, out)
		}
		other, _ := crypto.GenerateKey()
		r.payer = other
		if code, out := post(t, srv.URL+"/verify", "application/json", body(r.pay(t, req, nil), req)); code != 200 || out["isValid"] != false {
			t.Fatalf("another payer (unfunded): %d %v", code, out)
		}
	})
	t.Run("per source", func(t *testing.T) {
		t.Parallel()
		r := newRigOn(t, 0, func(_ *rig, c *Config) { c.SourceRate, c.Now = 3, clock })
		srv := httptest.NewServer(r.f.Handler())
		defer srv.Close()
		for i := range 3 {
			if code, _ := post(t, srv.URL+"/verify", "application/json", []byte("{}")); code != 400 {
				t.Fatalf("call %d: %d", i, code)
			}
		}
		resp, err := http.Post(srv.URL+"/verify", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("fourth call from one source: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

func TestLimiterRefills(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l := newLimiter(2, func() time.Time { return now })
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("a"); ok != want {
			t.Fatalf("call %d: %v", i, ok)
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another key shares a's bucket")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("no refill after half a second at 2/s")
	}
	if ok, wait := l.allow("a"); ok || wait != 500*time.Millisecond {
		t.Fatalf("empty again: %v, wait %v", ok, wait)
	}
	// The table is bounded: refilled buckets are dropped, and when none
	// has refilled a new key waits.
	now = now.Add(time.Hour)
	for i := range maxLimited {
		l.allow(fmt.Sprint(i))
	}
	if ok, _ := l.allow("new"); ok || len(l.buckets) != maxLimited {
		t.Fatalf("a full table took a new key: %v, %d buckets", ok, len(l.buckets))
	}
	now = now.Add(time.Second)
	if ok, _ := l.allow("new"); !ok || len(l.buckets) != 1 {
		t.Fatalf("after a refill: %v, %d buckets", ok, len(l.buckets))
	}
}

// The server a facilitator runs in has every deadline set.
func TestHTTPServerDeadlines(t *testing.T) {
	t.Parallel()
	s := NewHTTPServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 || s.WriteTimeout <= SettleTimeout || s.MaxHeaderBytes <= 0 {
		t.Fatalf("deadlines: %+v", s)
	}
}
