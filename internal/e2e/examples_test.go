package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/sdk"
)

// TestBudgetedAgentExample builds examples/budgeted-agent and runs it
// against a real Purser, dev chain and seller: with a daily budget of
// five prices it pays exactly five calls, stops at the mandate's refusal
// and prints its limits.
func TestBudgetedAgentExample(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	_, wallet := m.agentFor(t, n, "budgeted", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"0.05","rails":["x402"]}`, 1_000_000)
	k, _ := m.keys.Load("budgeted")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "agent.key")
	if err := agentauth.WriteKeyFile(keyFile, k.(*ecdsa.PrivateKey)); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "budgeted-agent")
	build := exec.Command("go", "build", "-o", bin, "./examples/budgeted-agent")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/budgeted-agent: %v\n%s", err, out)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, m.sellerURL+"/item")
	cmd.Env = append(os.Environ(), "PURSER_SERVER="+n.url, sdk.EnvAgentKey+"="+keyFile)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("budgeted-agent: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("budgeted-agent printed:\n%s", out)
	for _, want := range []string{
		"call 5: HTTP 200, 16 bytes\n",
		"call 6 refused by the mandate: daily_budget_exceeded\n",
		"5 calls paid\n",
		"daily budget: 0.05 USD used of 0.05, 0 remaining\n",
		"lifetime budget: none\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if got := strings.Count(out, "paid 0.01 USDC (spend "); got != 5 {
		t.Errorf("%d payments printed, want 5", got)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	// On chain: exactly five prices moved, and Purser agrees.
	if got := m.balance(t, m.seller); got.Int64() != 5*price {
		t.Errorf("the seller received %s, want %d", got, 5*price)
	}
	if got := m.balance(t, wallet); got.Int64() != 1_000_000-5*price {
		t.Errorf("the agent's wallet holds %s", got)
	}
	spends, err := sdk.Collect(n.owner.Spends(context.Background(), sdk.SpendFilter{Agent: "budgeted", Status: sdk.StatusCaptured}))
	if err != nil || len(spends) != 5 {
		t.Fatalf("captured spends: %d %v; want 5", len(spends), err)
	}
	if l := n.limits(t, "budgeted"); l.Daily == nil || l.Daily.Used != "0.05" || l.Daily.Remaining != "0" {
		t.Errorf("limits %+v", l.Daily)
	}
}
