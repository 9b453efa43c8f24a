package e2e

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/agentauth"
)

// TestX402CLIExitCodes drives `purser x402 fetch`, `x402 confirm` and
// `pay` as a user's script would: the body on stdout, and the exit codes
// of the contract (0 paid, 3 waiting, 4 refused, 5 the seller failed).
func TestX402CLIExitCodes(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	bin := purserBinary(t)
	keyFile := filepath.Join(t.TempDir(), "cli.key")
	m.agentFor(t, n, "cli", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5"}`, 2_000_000)
	k, _ := m.keys.Load("cli")
	if err := agentauth.WriteKeyFile(keyFile, k.(*ecdsa.PrivateKey)); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PURSER_SERVER="+n.url, "PURSER_AGENT_KEY="+keyFile)
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
	if out, errs, code := run("x402", "fetch", m.sellerURL+"/item"); code != 0 || out != "content of /item" {
		t.Fatalf("green: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	out, errs, code := run("x402", "fetch", m.sellerURL+"/pricey", "--json")
	var res map[string]any
	if code != 3 || json.Unmarshal([]byte(out), &res) != nil || res["outcome"] != "pending_approval" || res["spend_id"] == "" {
		t.Fatalf("yellow: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	id := res["spend_id"].(string)
	if _, err := n.owner.Approve(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := run("x402", "confirm", id); code != 0 || out != "content of /pricey" {
		t.Fatalf("confirm: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if out, _, code := run("x402", "fetch", m.sellerURL+"/item", "--max", "0.001"); code != 4 || !strings.Contains(out, "x402_amount_above_max") {
		t.Fatalf("above --max: exit %d, %q", code, out)
	}
	if _, err := n.owner.SetMandate(context.Background(), "cli", json.RawMessage(`{"per_tx_max":"0.005"}`), nil); err != nil {
		t.Fatal(err)
	}
	if out, _, code := run("x402", "fetch", m.sellerURL+"/item"); code != 4 || !strings.Contains(out, "per_tx_cap_exceeded") {
		t.Fatalf("red: exit %d, %q", code, out)
	}
	if out, _, code := run("x402", "fetch", m.sellerURL+"/item", "--dry-run"); code != 4 || !strings.Contains(out, "per_tx_cap_exceeded") {
		t.Fatalf("dry run: exit %d, %q", code, out)
	}
	if _, err := n.owner.SetMandate(context.Background(), "cli", json.RawMessage(`{"per_tx_max":"1","per_tx_auto":"1"}`), nil); err != nil {
		t.Fatal(err)
	}
	// A seller that takes the payment header and then fails: exit 5.
	broken := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PAYMENT-SIGNATURE") != "" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		forward(t, w, r, m.sellerURL+"/item")
	})
	if _, errs, code := run("x402", "fetch", broken); code != 5 || !strings.Contains(errs, "settled from the chain") {
		t.Fatalf("failing seller: exit %d, stderr %q", code, errs)
	}
	// A seller that hangs up on the paid retry: exit 5 as well.
	hangup := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PAYMENT-SIGNATURE") != "" {
			panic(http.ErrAbortHandler)
		}
		forward(t, w, r, m.sellerURL+"/item")
	})
	if _, errs, code := run("x402", "fetch", hangup); code != 5 || !strings.Contains(errs, "seller_request_failed") {
		t.Fatalf("seller hanging up: exit %d, stderr %q", code, errs)
	}
	if _, _, code := run("x402", "fetch"); code != 2 {
		t.Fatalf("usage: exit %d", code)
	}
}
