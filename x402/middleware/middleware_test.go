package middleware_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

const (
	asset = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
	payTo = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
	from  = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
)

// facilitator answers /verify and /settle as scripted and counts calls.
type facilitator struct {
	verify, settle string
	verifies       atomic.Int32
	settles        atomic.Int32
}

func (f *facilitator) server(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/verify":
			f.verifies.Add(1)
			io.WriteString(w, f.verify)
		case "/settle":
			f.settles.Add(1)
			io.WriteString(w, f.settle)
		}
	}))
	t.Cleanup(s.Close)
	return s.URL
}

func seller(t *testing.T, f *facilitator, status int) string {
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: f.server(t)}, Routes: []middleware.Route{{
		Pattern: "GET /paid", Amount: "10000", Asset: asset, Network: "eip155:84532", PayTo: payTo,
		EIP712Name: "USDC", EIP712Version: "2", Description: "paid", MimeType: "text/plain"}}})
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, "SECRET CONTENT of "+r.URL.Path+" for "+middleware.Payer(r.Context()))
	})))
	t.Cleanup(s.Close)
	return s.URL
}

func get(t *testing.T, url string, h map[string]string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// payment builds the payment for the seller's offer (v2: echoing
// accepted; v1: scheme and network), with edit applied to the offer.
func payment(t *testing.T, resp *http.Response, body string, version int, edit func(map[string]any)) (string, string) {
	pr, err := x402.ParsePaymentRequired(resp.Header, nil)
	if version == 1 {
		pr, err = x402.ParsePaymentRequired(http.Header{}, []byte(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	req := pr.Accepts[0]
	if edit != nil {
		var m map[string]any
		json.Unmarshal(req.Raw, &m)
		edit(m)
		req.Raw, _ = json.Marshal(m)
	}
	p, err := x402.NewPaymentPayload(&req, pr.Resource, x402.ExactPayload{Signature: "0x00", Authorization: x402.Authorization{
		From: from, To: payTo, Value: big.NewInt(10000), ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(1 << 40)}})
	if err != nil {
		t.Fatal(err)
	}
	name, value, _ := p.HeaderValue()
	return name, value
}

func TestRequirementsBothWays(t *testing.T) {
	f := &facilitator{}
	url := seller(t, f, 200)
	if resp, body := get(t, url+"/free", nil); resp.StatusCode != 200 || resp.Header.Get(x402.HeaderPaymentRequired) != "" {
		t.Fatalf("unpriced route: %d %q", resp.StatusCode, body)
	}
	resp, body := get(t, url+"/paid", nil)
	if resp.StatusCode != 402 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("unpaid: %d %v", resp.StatusCode, resp.Header)
	}
	raw, _ := base64.StdEncoding.DecodeString(resp.Header.Get(x402.HeaderPaymentRequired))
	want := fmt.Sprintf(`"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":%q,"payTo":%q,"maxTimeoutSeconds":300,"extra":{"name":"USDC","version":"2"}}]`, asset, payTo)
	if !strings.Contains(string(raw), want) || !strings.Contains(string(raw), `"error":"Payment required"`) || !strings.Contains(string(raw), `"resource":{`) {
		t.Fatalf("v2 header: %s", raw)
	}
	var v1 struct {
		X402Version int              `json:"x402Version"`
		Error       string           `json:"error"`
		Accepts     []map[string]any `json:"accepts"`
	}
	if err := json.Unmarshal([]byte(body), &v1); err != nil || v1.X402Version != 1 || v1.Error != "X-PAYMENT header is required" ||
		v1.Accepts[0]["network"] != "base-sepolia" || v1.Accepts[0]["maxAmountRequired"] != "10000" || !strings.HasSuffix(v1.Accepts[0]["resource"].(string), "/paid") {
		t.Fatalf("v1 body: %s", body)
	}
}

func TestPaidFlow(t *testing.T) {
	ok := `{"isValid":true,"payer":"` + from + `"}`
	settled := `{"success":true,"transaction":"0x` + strings.Repeat("ab", 32) + `","network":"eip155:84532","payer":"` + from + `"}`
	t.Run("v2 paid and settled", func(t *testing.T) {
		f := &facilitator{verify: ok, settle: settled}
		url := seller(t, f, 200)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 2, nil)
		resp, body = get(t, url+"/paid", map[string]string{name: value})
		s, err := x402.SettlementFromResponse(resp.Header)
		if resp.StatusCode != 200 || !strings.Contains(body, "SECRET") || !strings.Contains(body, from) || err != nil || s == nil || !s.Success ||
			resp.Header.Get(x402.HeaderPaymentResponse) == "" || resp.Header.Get("Cache-Control") != "private" {
			t.Fatalf("paid: %d %q %+v", resp.StatusCode, body, s)
		}
	})
	t.Run("v1 paid and settled", func(t *testing.T) {
		f := &facilitator{verify: ok, settle: settled}
		url := seller(t, f, 200)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 1, nil)
		if name != x402.HeaderXPayment {
			t.Fatal(name)
		}
		resp, body = get(t, url+"/paid", map[string]string{name: value})
		if resp.StatusCode != 200 || resp.Header.Get(x402.HeaderXPaymentResponse) == "" || !strings.Contains(body, "SECRET") {
			t.Fatalf("v1 paid: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("accepted differs", func(t *testing.T) {
		for _, edit := range []func(map[string]any){
			func(m map[string]any) { m["amount"] = "1" },
			func(m map[string]any) { m["payTo"] = from },
			func(m map[string]any) { m["extra"] = map[string]any{"name": "USDC"} },
		} {
			f := &facilitator{verify: ok, settle: settled}
			url := seller(t, f, 200)
			resp, body := get(t, url+"/paid", nil)
			name, value := payment(t, resp, body, 2, edit)
			resp, body = get(t, url+"/paid", map[string]string{name: value})
			raw, _ := base64.StdEncoding.DecodeString(resp.Header.Get(x402.HeaderPaymentRequired))
			if resp.StatusCode != 402 || !strings.Contains(string(raw), "No matching payment requirements") || f.verifies.Load() != 0 || strings.Contains(body, "SECRET") {
				t.Fatalf("mismatched accepted: %d %s (verifies %d)", resp.StatusCode, raw, f.verifies.Load())
			}
		}
	})
	t.Run("extra keys added by the client are fine", func(t *testing.T) {
		f := &facilitator{verify: ok, settle: settled}
		url := seller(t, f, 200)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 2, func(m map[string]any) { m["extra"].(map[string]any)["note"] = "x" })
		if resp, _ := get(t, url+"/paid", map[string]string{name: value}); resp.StatusCode != 200 {
			t.Fatalf("client-added extra key: %d", resp.StatusCode)
		}
	})
	t.Run("verify refuses", func(t *testing.T) {
		f := &facilitator{verify: `{"isValid":false,"invalidReason":"invalid_exact_evm_signature"}`, settle: settled}
		url := seller(t, f, 200)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 2, nil)
		resp, body = get(t, url+"/paid", map[string]string{name: value})
		raw, _ := base64.StdEncoding.DecodeString(resp.Header.Get(x402.HeaderPaymentRequired))
		if resp.StatusCode != 402 || !strings.Contains(string(raw), "invalid_exact_evm_signature") || strings.Contains(body, "SECRET") || f.settles.Load() != 0 {
			t.Fatalf("verify refused: %d %s", resp.StatusCode, raw)
		}
	})
	t.Run("handler fails: not settled", func(t *testing.T) {
		f := &facilitator{verify: ok, settle: settled}
		url := seller(t, f, 500)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 2, nil)
		if resp, _ := get(t, url+"/paid", map[string]string{name: value}); resp.StatusCode != 500 || f.settles.Load() != 0 {
			t.Fatalf("handler 500: %d, settles %d", resp.StatusCode, f.settles.Load())
		}
	})
	t.Run("settle fails: no content", func(t *testing.T) {
		f := &facilitator{verify: ok, settle: `{"success":false,"errorReason":"invalid_exact_evm_nonce_already_used","transaction":"","network":"eip155:84532"}`}
		url := seller(t, f, 200)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 2, nil)
		resp, body = get(t, url+"/paid", map[string]string{name: value})
		s, _ := x402.SettlementFromResponse(resp.Header)
		if resp.StatusCode != 402 || strings.Contains(body, "SECRET") || s == nil || s.Success || s.ErrorReason != "invalid_exact_evm_nonce_already_used" {
			t.Fatalf("settle failed: %d %q %+v", resp.StatusCode, body, s)
		}
	})
	t.Run("malformed facilitator: 502", func(t *testing.T) {
		f := &facilitator{verify: `{"ok":1}`, settle: settled}
		url := seller(t, f, 200)
		resp, body := get(t, url+"/paid", nil)
		name, value := payment(t, resp, body, 2, nil)
		if resp, body := get(t, url+"/paid", map[string]string{name: value}); resp.StatusCode != 502 || strings.Contains(body, "SECRET") {
			t.Fatalf("malformed verify reply: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("garbage header: 402", func(t *testing.T) {
		f := &facilitator{verify: ok, settle: settled}
		url := seller(t, f, 200)
		if resp, body := get(t, url+"/paid", map[string]string{x402.HeaderPaymentSignature: "!!"}); resp.StatusCode != 402 || strings.Contains(body, "SECRET") {
			t.Fatalf("garbage: %d", resp.StatusCode)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	fc := &x402.FacilitatorClient{URL: "http://127.0.0.1:1"}
	good := middleware.Route{Pattern: "GET /x", Amount: "1", Asset: asset, Network: "eip155:8453", PayTo: payTo, EIP712Name: "USD Coin", EIP712Version: "2"}
	for name, edit := range map[string]func(*middleware.Route){
		"zero amount":    func(r *middleware.Route) { r.Amount = "0" },
		"decimal amount": func(r *middleware.Route) { r.Amount = "0.01" },
		"bad asset":      func(r *middleware.Route) { r.Asset = "usdc" },
		"bad network":    func(r *middleware.Route) { r.Network = "base" },
		"no domain":      func(r *middleware.Route) { r.EIP712Name = "" },
		"bad pattern":    func(r *middleware.Route) { r.Pattern = "GET" },
	} {
		r := good
		edit(&r)
		if _, err := middleware.New(middleware.Config{Facilitator: fc, Routes: []middleware.Route{r}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
