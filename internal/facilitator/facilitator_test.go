package facilitator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/x402"
)

type rig struct {
	dev    *devchain.Chain
	f      *Facilitator
	payer  *ecdsa.PrivateKey
	seller common.Address
	gas    common.Address // the relayer: pays gas
}

func newRig(t *testing.T) *rig { return newRigOn(t, 0, nil) }

// newRigOn runs the rig on a dev chain with the given chain id (0: the
// default; 84532 gives it Base Sepolia's v1 name) and mod applied to the
// facilitator's configuration.
func newRigOn(t *testing.T, chainID uint64, mod func(*rig, *Config)) *rig {
	t.Helper()
	dev, err := devchain.Start(devchain.Config{ChainID: chainID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ctx := context.Background()
	gas, _ := crypto.GenerateKey()
	if _, err := dev.FundETH(ctx, crypto.PubkeyToAddress(gas.PublicKey), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	payer, _ := crypto.GenerateKey()
	if _, err := dev.Mint(ctx, crypto.PubkeyToAddress(payer.PublicKey), big.NewInt(100_000)); err != nil {
		t.Fatal(err)
	}
	sk, _ := crypto.GenerateKey()
	r := &rig{dev: dev, payer: payer, seller: crypto.PubkeyToAddress(sk.PublicKey), gas: crypto.PubkeyToAddress(gas.PublicKey)}
	cfg := Config{Networks: map[string]Network{dev.Network(): {Client: dev.Client(), Relayer: evm.NewRelayer(dev.Client(), evm.KeySigner(gas))}}}
	if mod != nil {
		mod(r, &cfg)
	}
	if r.f, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

// offer is a v2 (or v1 with a v1 network name) requirements object.
func (r *rig) offer(t *testing.T, version int, amount string, mod func(map[string]any)) *x402.Requirements {
	t.Helper()
	o := map[string]any{"scheme": "exact", "network": r.dev.Network(), "asset": r.dev.Token().Hex(), "payTo": r.seller.Hex(),
		"maxTimeoutSeconds": 60, "extra": map[string]any{"name": devchain.TokenName, "version": devchain.TokenVersion}}
	if version == 1 {
		o["maxAmountRequired"], o["resource"], o["description"], o["mimeType"] = amount, "http://x/y", "", ""
	} else {
		o["amount"] = amount
	}
	if mod != nil {
		mod(o)
	}
	raw, _ := json.Marshal(o)
	req, err := x402.ParseRequirements(version, raw)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// pay signs an authorization for req; edit may change it before signing.
func (r *rig) pay(t *testing.T, req *x402.Requirements, edit func(*x402.Authorization)) *x402.PaymentPayload {
	t.Helper()
	var nonce [32]byte
	copy(nonce[:], crypto.Keccak256([]byte(fmt.Sprint(time.Now().UnixNano()))))
	a := x402.Authorization{From: crypto.PubkeyToAddress(r.payer.PublicKey).Hex(), To: req.PayTo, Value: new(big.Int).Set(req.Amount),
		ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(time.Now().Unix() + 60), Nonce: nonce}
	if edit != nil {
		edit(&a)
	}
	ds, _ := x402.DomainSeparator(devchain.TokenName, devchain.TokenVersion, r.dev.ChainID(), r.dev.Token().Hex())
	d, _ := a.Digest(ds)
	sig, _ := crypto.Sign(d[:], r.payer)
	sig[64] += 27
	p, err := x402.NewPaymentPayload(req, nil, x402.ExactPayload{Signature: "0x" + hex.EncodeToString(sig), Authorization: a})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyReasons(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	req := r.offer(t, 2, "10000", nil)
	other, _ := crypto.GenerateKey()
	cases := map[string]struct {
		req    *x402.Requirements
		p      *x402.PaymentPayload
		reason string
	}{
		"valid":            {req, r.pay(t, req, nil), ""},
		"missing domain":   {r.offer(t, 2, "10000", func(o map[string]any) { o["extra"] = map[string]any{} }), r.pay(t, req, nil), ReasonMissingDomain},
		"other scheme":     {r.offer(t, 2, "10000", func(o map[string]any) { o["scheme"] = "upto" }), r.pay(t, req, nil), ReasonScheme},
		"other network":    {r.offer(t, 2, "10000", func(o map[string]any) { o["network"] = "eip155:1" }), r.pay(t, req, nil), ReasonNetworkMismatch},
		"wrong signer":     {req, r.pay(t, req, func(a *x402.Authorization) { a.From = crypto.PubkeyToAddress(other.PublicKey).Hex() }), ReasonSignature},
		"recipient":        {req, r.pay(t, req, func(a *x402.Authorization) { a.To = a.From }), ReasonRecipient},
		"expires too soon": {req, r.pay(t, req, func(a *x402.Authorization) { a.ValidBefore = big.NewInt(time.Now().Unix() + 3) }), ReasonValidBefore},
		"not yet valid":    {req, r.pay(t, req, func(a *x402.Authorization) { a.ValidAfter = big.NewInt(time.Now().Unix() + 100) }), ReasonValidAfter},
		"value differs":    {req, r.pay(t, req, func(a *x402.Authorization) { a.Value = big.NewInt(9999) }), ReasonValueMismatch},
		"insufficient":     {r.offer(t, 2, "200000", nil), r.pay(t, r.offer(t, 2, "200000", nil), nil), ReasonInsufficient},
	}
	// The v1 path (v1 network names) is exercised against the official
	// v1 client in internal/interop: the dev chain has no v1 name.
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v := r.f.Verify(ctx, c.p, c.req)
			if c.reason == "" && !v.IsValid || c.reason != "" && v.InvalidReason != c.reason {
				t.Fatalf("verify = %+v; want %q", v, c.reason)
			}
		})
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	srv := httptest.NewServer(r.f.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/supported")
	if err != nil {
		t.Fatal(err)
	}
	var sup x402.SupportedResponse
	json.NewDecoder(resp.Body).Decode(&sup)
	resp.Body.Close()
	if len(sup.Kinds) != 1 || sup.Kinds[0].Network != r.dev.Network() || sup.Kinds[0].X402Version != 2 || len(sup.Signers["eip155:*"]) != 1 {
		t.Fatalf("supported: %+v", sup)
	}
	post := func(path string, body []byte) (int, map[string]any) {
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, _ := post("/verify", []byte("nope")); code != 400 {
		t.Fatalf("garbage verify: %d", code)
	}
	if code, out := post("/settle", []byte("{}")); code != 400 || out["transaction"] != "" || out["success"] != false {
		t.Fatalf("empty settle: %d %v", code, out)
	}
	req := r.offer(t, 2, "10000", nil)
	p := r.pay(t, req, func(a *x402.Authorization) { a.Value = big.NewInt(1) })
	body, _ := json.Marshal(x402.FacilitatorRequest{X402Version: 2, PaymentPayload: p.Raw, PaymentRequirements: req.Raw})
	if code, out := post("/verify", body); code != 200 || out["isValid"] != false || out["invalidReason"] != ReasonValueMismatch {
		t.Fatalf("invalid payment: %d %v", code, out)
	}
	p = r.pay(t, req, nil)
	body, _ = json.Marshal(x402.FacilitatorRequest{X402Version: 2, PaymentPayload: p.Raw, PaymentRequirements: req.Raw})
	if code, out := post("/settle", body); code != 200 || out["success"] != true || len(out["transaction"].(string)) != 66 {
		t.Fatalf("settle: %d %v", code, out)
	}
}

// TestV1 runs the v1 path: a v1 network name, maxAmountRequired, the v1
// value reason, a v1 settlement naming the v1 network.
func TestV1(t *testing.T) {
	t.Parallel()
	r := newRigOn(t, 84532, nil)
	ctx := context.Background()
	req := r.offer(t, 1, "10000", func(o map[string]any) { o["network"] = "base-sepolia" })
	if v := r.f.Verify(ctx, r.pay(t, req, func(a *x402.Authorization) { a.Value = big.NewInt(1) }), req); v.InvalidReason != ReasonValueMismatchV1 {
		t.Fatalf("v1 value mismatch: %+v", v)
	}
	p := r.pay(t, req, nil)
	if v := r.f.Verify(ctx, p, req); !v.IsValid {
		t.Fatalf("v1 verify: %+v", v)
	}
	if s := r.f.Settle(ctx, p, req); !s.Success || s.Network != "base-sepolia" {
		t.Fatalf("v1 settle: %+v", s)
	}
	sup := r.f.Supported()
	if len(sup.Kinds) != 2 || sup.Kinds[1].X402Version != 1 || sup.Kinds[1].Network != "base-sepolia" {
		t.Fatalf("supported: %+v", sup.Kinds)
	}
}
