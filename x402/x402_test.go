package x402

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// The spec's test vector (shared/specs/x402.md §5.2).
func TestEIP3009Vector(t *testing.T) {
	sepolia, err := DomainSeparator("USDC", "2", big.NewInt(84532), "0x036CbD53842c5426634e7929541eC2318f3dCF7e")
	if err != nil || hex.EncodeToString(sepolia[:]) != "71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818" {
		t.Fatalf("Base Sepolia domain %x, %v", sepolia, err)
	}
	base, _ := DomainSeparator("USD Coin", "2", big.NewInt(8453), "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
	if hex.EncodeToString(base[:]) != "02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f" {
		t.Fatalf("Base domain %x", base)
	}
	var nonce [32]byte
	for i := range nonce {
		nonce[i] = 0x11
	}
	a := Authorization{From: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", To: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
		Value: big.NewInt(10000), ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(1800000000), Nonce: nonce}
	d, err := a.Digest(sepolia)
	if err != nil || hex.EncodeToString(d[:]) != "8b544c5a60580d36004b454c46f98d024a596db9a1b0e3e431911be2ee715abd" {
		t.Fatalf("digest %x, %v", d, err)
	}
	key, _ := crypto.HexToECDSA("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
	sig, _ := crypto.Sign(d[:], key)
	sig[64] += 27
	const want = "86f13afbc90e2af15d11532d0f61a8d70551d9c84191e5e68a74174ed6415a392648f904912da560f06c38df1bfb284ae91b091e805db552095050f483211a371b"
	if hex.EncodeToString(sig) != want {
		t.Fatalf("signature %x", sig)
	}
	who, err := RecoverAuthorizer(d, sig)
	if err != nil || who != common.HexToAddress(a.From) {
		t.Fatalf("recovered %s, %v", who, err)
	}
	sig[64] -= 27
	if _, err := RecoverAuthorizer(d, sig); err == nil {
		t.Fatal("v = 0/1 accepted")
	}
}

// The official server's 402, byte for byte from the spec (§4.3).
const v2Required = `{"x402Version":2,"error":"Payment required","resource":{"url":"http://127.0.0.1:4021/weather","description":"Weather","mimeType":"application/json"},"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0xce339764A24a5DfcF903dC9dE03017F2D38D40E1","maxTimeoutSeconds":300,"extra":{}}]}`

const v1Body = `{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"http://127.0.0.1:4021/weather","description":"","mimeType":"","payTo":"0xce339764A24a5DfcF903dC9dE03017F2D38D40E1","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}]}`

func header(doc string) http.Header {
	h := http.Header{}
	h.Set(HeaderPaymentRequired, base64.StdEncoding.EncodeToString([]byte(doc)))
	return h
}

func TestParseAndEcho(t *testing.T) {
	pr, err := ParsePaymentRequired(header(v2Required), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	r := pr.Accepts[0]
	if pr.Version != 2 || r.Amount.Int64() != 10000 || r.MaxTimeoutSeconds != 300 || string(r.Extra) != "{}" {
		t.Fatalf("parsed %+v", r)
	}
	if n, err := r.CAIP2(); err != nil || n != "eip155:84532" {
		t.Fatalf("CAIP2 %q %v", n, err)
	}
	p, err := NewPaymentPayload(&r, pr.Resource, ExactPayload{Signature: "0x00", Authorization: Authorization{
		From: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", To: r.PayTo, Value: r.Amount, ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(1)}})
	if err != nil {
		t.Fatal(err)
	}
	name, val, _ := p.HeaderValue()
	if name != HeaderPaymentSignature {
		t.Fatalf("v2 header %s", name)
	}
	raw, _ := base64.StdEncoding.DecodeString(val)
	wantAccepted := `"accepted":{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0xce339764A24a5DfcF903dC9dE03017F2D38D40E1","maxTimeoutSeconds":300,"extra":{}}`
	if !bytes.Contains(raw, []byte(wantAccepted)) {
		t.Fatalf("accepted not echoed verbatim: %s", raw)
	}
	back, err := DecodePaymentPayload(val)
	if err != nil || back.Version != 2 || back.Network != "eip155:84532" || back.Payload.Authorization.Value.Int64() != 10000 {
		t.Fatalf("decoded %+v %v", back, err)
	}

	pr1, err := ParsePaymentRequired(http.Header{}, []byte(v1Body))
	if err != nil || pr1.Version != 1 || pr1.Accepts[0].Resource == "" {
		t.Fatalf("v1: %+v %v", pr1, err)
	}
	if n, v, ok := pr1.Accepts[0].EIP712Domain(); !ok || n != "USDC" || v != "2" {
		t.Fatal("v1 domain")
	}
	p1, _ := NewPaymentPayload(&pr1.Accepts[0], nil, ExactPayload{Signature: "0x00", Authorization: p.Payload.Authorization})
	if name, _, _ := p1.HeaderValue(); name != HeaderXPayment {
		t.Fatalf("v1 header %s", name)
	}
}

func TestHostile402(t *testing.T) {
	off := func(mod string) string {
		return strings.Replace(v2Required, `"amount":"10000"`, mod, 1)
	}
	cases := map[string]struct {
		h    http.Header
		body string
		code string
	}{
		"url-safe base64":     {rawHeader("-_-_"), "", "x402_malformed"},
		"not base64":          {rawHeader("%%%"), "", "x402_malformed"},
		"base64 of garbage":   {header("nope"), "", "x402_malformed"},
		"huge header":         {rawHeader(strings.Repeat("A", MaxHeaderBytes+4)), "", "x402_too_large"},
		"huge body":           {http.Header{}, `{"x":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, "x402_too_large"},
		"no x402":             {http.Header{}, `{"hello":1}`, "x402_no_requirements"},
		"version 3":           {header(strings.Replace(v2Required, `"x402Version":2`, `"x402Version":3`, 1)), "", "x402_version_unsupported"},
		"empty accepts":       {header(`{"x402Version":2,"accepts":[]}`), "", "x402_no_requirements"},
		"negative amount":     {header(off(`"amount":"-1"`)), "", "x402_malformed"},
		"decimal amount":      {header(off(`"amount":"0.01"`)), "", "x402_malformed"},
		"exponent":            {header(off(`"amount":"1e6"`)), "", "x402_malformed"},
		"leading zero":        {header(off(`"amount":"01"`)), "", "x402_malformed"},
		"space":               {header(off(`"amount":" 1"`)), "", "x402_malformed"},
		"number amount":       {header(off(`"amount":10000`)), "", "x402_malformed"},
		"overflow":            {header(off(`"amount":"` + strings.Repeat("9", 79) + `"`)), "", "x402_malformed"},
		"timeout zero":        {header(strings.Replace(v2Required, `"maxTimeoutSeconds":300`, `"maxTimeoutSeconds":0`, 1)), "", "x402_malformed"},
		"timeout float":       {header(strings.Replace(v2Required, `"maxTimeoutSeconds":300`, `"maxTimeoutSeconds":1.5`, 1)), "", "x402_malformed"},
		"timeout negative":    {header(strings.Replace(v2Required, `"maxTimeoutSeconds":300`, `"maxTimeoutSeconds":-5`, 1)), "", "x402_malformed"},
		"missing payTo":       {header(strings.Replace(v2Required, `"payTo":"0xce339764A24a5DfcF903dC9dE03017F2D38D40E1",`, "", 1)), "", "x402_malformed"},
		"extra not object":    {header(strings.Replace(v2Required, `"extra":{}`, `"extra":"x"`, 1)), "", "x402_malformed"},
		"v1 in v2 header":     {header(v1Body), "", "x402_version_unsupported"},
		"resource not object": {header(strings.Replace(v2Required, `"resource":{"url"`, `"resource":"x","r":{"url"`, 1)), "", "x402_malformed"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePaymentRequired(c.h, []byte(c.body))
			var xe *Error
			if err == nil || !asError(err, &xe) || xe.Code() != c.code {
				t.Fatalf("err %v; want %s", err, c.code)
			}
		})
	}
}

func rawHeader(v string) http.Header {
	h := http.Header{}
	h.Set(HeaderPaymentRequired, v)
	return h
}

func asError(err error, xe **Error) bool {
	e, ok := err.(*Error)
	*xe = e
	return ok
}

func TestFacilitatorClient(t *testing.T) {
	answers := map[string]string{
		"/verify": `{"isValid":false,"invalidReason":"invalid_exact_evm_signature","payer":"0x1"}`,
		"/settle": `{"success":true}`, // no transaction, no network: malformed
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		if r.URL.Path == "/big/verify" {
			w.Write(bytes.Repeat([]byte(" "), 2<<20))
			return
		}
		var in FacilitatorRequest
		if r.Method == http.MethodPost && (json.NewDecoder(r.Body).Decode(&in) != nil || in.X402Version != 2) {
			w.WriteHeader(400)
			return
		}
		w.Write([]byte(answers[r.URL.Path]))
	}))
	defer srv.Close()
	pr, _ := ParsePaymentRequired(header(v2Required), nil)
	p, _ := NewPaymentPayload(&pr.Accepts[0], pr.Resource, ExactPayload{Signature: "0x", Authorization: Authorization{
		From: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", To: pr.Accepts[0].PayTo, Value: big.NewInt(1), ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(1)}})
	fc := &FacilitatorClient{URL: srv.URL}
	v, err := fc.Verify(context.Background(), p, &pr.Accepts[0])
	if err != nil || v.IsValid || v.InvalidReason != "invalid_exact_evm_signature" {
		t.Fatalf("verify %+v %v", v, err)
	}
	if _, err := fc.Settle(context.Background(), p, &pr.Accepts[0]); err == nil {
		t.Fatal("a settle reply without transaction and network was accepted")
	}
	answers["/settle"] = `{"success":false,"errorReason":"x","transaction":"","network":"eip155:84532"}`
	if s, err := fc.Settle(context.Background(), p, &pr.Accepts[0]); err != nil || s.Success || s.ErrorReason != "x" {
		t.Fatalf("settle %+v %v", s, err)
	}
	if _, err := (&FacilitatorClient{URL: srv.URL + "/big"}).Verify(context.Background(), p, &pr.Accepts[0]); err == nil {
		t.Fatal("oversized reply accepted")
	}
}

func FuzzParsePaymentRequired(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString([]byte(v2Required)), "")
	f.Add("", v1Body)
	f.Add("e30=", "{}")
	f.Fuzz(func(t *testing.T, h, body string) {
		hd := http.Header{}
		if h != "" {
			hd.Set(HeaderPaymentRequired, h)
		}
		pr, err := ParsePaymentRequired(hd, []byte(body))
		if err == nil {
			for _, r := range pr.Accepts {
				if r.Amount == nil || r.Amount.Sign() < 0 || r.MaxTimeoutSeconds <= 0 || len(r.Raw) == 0 {
					t.Fatalf("accepted bad requirements %+v", r)
				}
			}
		}
	})
}

func FuzzDecodePaymentPayload(f *testing.F) {
	pr, _ := ParsePaymentRequired(header(v2Required), nil)
	p, _ := NewPaymentPayload(&pr.Accepts[0], pr.Resource, ExactPayload{Signature: "0x00", Authorization: Authorization{
		From: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", To: pr.Accepts[0].PayTo, Value: big.NewInt(1), ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(1)}})
	_, v, _ := p.HeaderValue()
	f.Add(v)
	f.Add("e30=")
	f.Fuzz(func(t *testing.T, v string) {
		p, err := DecodePaymentPayload(v)
		if err == nil && (p.Payload.Authorization.Value == nil || (p.Version != 1 && p.Version != 2)) {
			t.Fatalf("accepted %+v", p)
		}
		_, _ = DecodeSettleResponse(v)
	})
}
