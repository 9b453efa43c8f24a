package app

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

// The demo's servers are connected as the story needs (the seller charges
// through the facilitator, on the dev chain), a standalone facilitator
// serves that chain, and every server stops at Shutdown.
func TestStartDemoAndFacilitator(t *testing.T) {
	t.Parallel()
	d, err := StartDemo(bg, DemoConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(bg)
	if d.OwnerToken == "" || d.Network != "eip155:1337" || !strings.HasPrefix(d.Seller, "0x") {
		t.Fatalf("demo: token %t, network %q, seller %q", d.OwnerToken != "", d.Network, d.Seller)
	}
	get := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(d.SellerURL + "/weather"); code != http.StatusPaymentRequired {
		t.Errorf("unpaid /weather: %d, want 402", code)
	}
	if code := get(d.FacilitatorURL + "/supported"); code != http.StatusOK {
		t.Errorf("facilitator /supported: %d", code)
	}
	if bal, err := d.SellerBalance(bg); err != nil || bal != "0" {
		t.Errorf("seller balance %q, %v", bal, err)
	}
	if err := d.Checkpoint(bg); err != nil {
		t.Error(err)
	}

	gas, _ := crypto.GenerateKey()
	if _, err := StartFacilitator(bg, FacilitatorConfig{Listen: "127.0.0.1:0", GasKey: gas,
		RPC: map[string]string{"eip155:8453": d.RPCURL}}); err == nil || !strings.Contains(err.Error(), "the endpoint serves eip155:1337") {
		t.Errorf("a chain under another name: %v", err)
	}
	f, err := StartFacilitator(bg, FacilitatorConfig{Listen: "127.0.0.1:0", GasKey: gas, RPC: map[string]string{d.Network: d.RPCURL}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Settler() != crypto.PubkeyToAddress(gas.PublicKey).Hex() {
		t.Errorf("settler %s", f.Settler())
	}
	if code := get("http://" + f.Addr() + "/supported"); code != http.StatusOK {
		t.Errorf("standalone /supported: %d", code)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("run until cancelled: %v", err)
	}
	if _, err := http.Get("http://" + f.Addr() + "/supported"); err == nil {
		t.Error("the facilitator still serves after Run returned")
	}

	seller := d.SellerURL
	d.Shutdown(bg)
	if _, err := http.Get(seller + "/weather"); err == nil {
		t.Error("the seller still serves after Shutdown")
	}
}
