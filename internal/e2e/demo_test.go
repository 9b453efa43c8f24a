package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `purser demo --exit` as a user would and checks that the
// story played through: green paid, yellow approved and paid, red and
// frozen refused, the audit chain verified.
func TestDemo(t *testing.T) {
	t.Parallel()
	bin := purserBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo", "--exit", "--listen", "127.0.0.1:0", "--data", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("purser demo: %v\n%s", err, out)
	}
	for _, want := range []string{"paid at once", "waiting for approval", "paid, tx 0x", "refused, nothing signed: per_tx_cap_exceeded",
		"refused: agent_frozen", "audit verify: the chain of", "purser x402 fetch http://127.0.0.1:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
