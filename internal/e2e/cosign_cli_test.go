package e2e

import (
	"context"
	"encoding/json"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/agentauth"
)

// TestCosignCLI drives the binary as an owner and an agent would with a
// co-signed (2of2) wallet: owner recovery-key, agent create --custody 2of2
// --recovery-key writes a key file with a share, agent show says 2of2,
// x402 fetch and pay are co-signed and move money on the dev chain, and
// agent recover restores a lost key file that pays again.
func TestCosignCLI(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	bin := purserBinary(t)
	dir := t.TempDir()
	ctx := context.Background()
	run := func(keyFile string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PURSER_SERVER="+n.url, "PURSER_OWNER_TOKEN="+n.token, "PURSER_AGENT_KEY="+keyFile)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if xe, ok := err.(*exec.ExitError); ok {
			code = xe.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	rk := filepath.Join(dir, "owner.recovery")
	if out, errs, code := run("", "owner", "recovery-key", "--out", rk); code != 0 {
		t.Fatalf("recovery-key: exit %d %s %s", code, out, errs)
	}
	keyFile := filepath.Join(dir, "cosigner.key")
	out, errs, code := run("", "agent", "create", "cosigner", "--key-out", keyFile, "--custody", "2of2", "--recovery-key", rk+".pub",
		"--per-tx-auto", "1", "--daily", "5", "--rails", "x402,payout", "--json")
	if code != 0 {
		t.Fatalf("agent create: exit %d %s %s", code, out, errs)
	}
	var a struct {
		Custody string `json:"custody"`
		Wallets []struct{ Network, Address, Custody string }
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil || a.Custody != "2of2" || len(a.Wallets) == 0 || a.Wallets[0].Custody != "cosign-2of2" {
		t.Fatalf("agent create --json: %s (%v)", out, err)
	}
	wallet := common.HexToAddress(a.Wallets[0].Address)
	_, share, err := agentauth.ReadKeyFileShare(keyFile)
	if err != nil || len(share) == 0 {
		t.Fatalf("key file has no share: %v", err)
	}
	if out, _, code := run("", "agent", "show", "cosigner"); code != 0 || !strings.Contains(out, "2of2") {
		t.Fatalf("agent show: %s", out)
	}
	if _, err := m.dev.Mint(ctx, wallet, big.NewInt(3_000_000)); err != nil {
		t.Fatal(err)
	}

	// x402 fetch: co-signed, settled by the facilitator.
	before := m.balance(t, m.seller).Int64()
	if out, errs, code := run(keyFile, "x402", "fetch", m.sellerURL+"/item"); code != 0 || out != "content of /item" {
		t.Fatalf("x402 fetch: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := m.balance(t, m.seller).Int64() - before; got != price {
		t.Fatalf("the seller received %d, want %d", got, price)
	}

	// pay: a co-signed payout relayed with Purser's gas.
	chains, err := n.owner.Chains(ctx)
	if err != nil || chains.Relayer == "" {
		t.Fatalf("chains: %+v %v", chains, err)
	}
	if _, err := m.dev.FundETH(ctx, common.HexToAddress(chains.Relayer), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	to := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	if out, errs, code := run(keyFile, "pay", to.Hex(), "0.50"); code != 0 {
		t.Fatalf("pay: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := m.balance(t, to).Int64(); got != 500_000 {
		t.Fatalf("payee received %d, want 500000", got)
	}

	// The key file is lost: recover in place, then pay again with the new file.
	os.Remove(keyFile)
	newFile := filepath.Join(dir, "cosigner-recovered.key")
	if out, errs, code := run("", "agent", "recover", "cosigner", "--recovery-key", rk, "--key-out", newFile); code != 0 {
		t.Fatalf("recover: exit %d %s %s", code, out, errs)
	}
	if out, errs, code := run(newFile, "x402", "fetch", m.sellerURL+"/item"); code != 0 || out != "content of /item" {
		t.Fatalf("x402 fetch after recovery: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if got := m.balance(t, m.seller).Int64() - before; got != 2*price {
		t.Fatalf("after recovery the seller received %d in all, want %d", got, 2*price)
	}
}
