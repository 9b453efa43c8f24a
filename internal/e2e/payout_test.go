package e2e

import (
	"context"
	"math/big"
	"slices"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/sdk"
)

// TestPayout: a payout is signed from the agent's wallet, relayed with
// Purser's gas key, and captured from the receipt; a retry pays nothing
// more; a payout the wallet cannot cover is released with its reason.
func TestPayout(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	ctx := context.Background()
	chains, err := n.owner.Chains(ctx)
	if err != nil || chains.Relayer == "" {
		t.Fatalf("chains: %+v %v", chains, err)
	}
	p, wallet := m.agentFor(t, n, "payer", `{"per_tx_auto":"2","per_tx_max":"5","daily":"10","rails":["payout"]}`, 2_000_000)
	to := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	// The relayer has no gas yet: nothing is sent, the hold is released.
	unfunded, err := p.Authorize(ctx, sdk.AuthorizeRequest{Rail: "payout", Payee: to.Hex(), Amount: "0.10"})
	if err != nil || unfunded.Status != sdk.StatusReleased || !slices.Contains(unfunded.Reasons, "relayer_unfunded") {
		t.Fatalf("payout with an unfunded relayer: %+v %v", unfunded, err)
	}
	if _, err := m.dev.FundETH(ctx, common.HexToAddress(chains.Relayer), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	req := sdk.AuthorizeRequest{Rail: "payout", Payee: to.Hex(), Amount: "0.75", IdempotencyKey: "payout-1"}
	sp, err := p.Authorize(ctx, req)
	if err != nil || sp.Status != sdk.StatusCaptured || len(sp.RailRef) != 66 {
		t.Fatalf("payout: %+v %v", sp, err)
	}
	again, err := p.Authorize(ctx, req)
	if err != nil || again.SpendID != sp.SpendID || again.Status != sdk.StatusCaptured {
		t.Fatalf("retried payout: %+v %v", again, err)
	}
	if got := m.balance(t, to); got.Int64() != 750_000 {
		t.Fatalf("payee received %s, want exactly 750000", got)
	}
	if got := m.balance(t, wallet); got.Int64() != 1_250_000 {
		t.Fatalf("agent wallet holds %s", got)
	}
	// The payout's authorization is never shown (anyone holding it could
	// submit it); its transaction is the spend's rail_ref.
	if len(sp.RailData) != 0 {
		t.Fatalf("payout answer carries its signed authorization: %s", sp.RailData)
	}
	rcpt, err := m.dev.Client().WaitReceipt(ctx, common.HexToHash(sp.RailRef))
	if err != nil || rcpt.Status != 1 || !evm.TransferLogged(rcpt, m.dev.Token(), wallet, to, big.NewInt(750_000)) {
		t.Fatalf("payout tx %s: %+v %v", sp.RailRef, rcpt, err)
	}
	// More than the wallet holds: nothing moves, the hold is released.
	poor, err := p.Authorize(ctx, sdk.AuthorizeRequest{Rail: "payout", Payee: to.Hex(), Amount: "1.50"})
	if err != nil || poor.Status != sdk.StatusReleased || !slices.Contains(poor.Reasons, "insufficient_funds") {
		t.Fatalf("uncovered payout: %+v %v", poor, err)
	}
	if got := m.balance(t, to); got.Int64() != 750_000 {
		t.Fatalf("payee balance moved to %s", got)
	}
	// Not an address: refused before anything is stored.
	if _, err := p.Authorize(ctx, sdk.AuthorizeRequest{Rail: "payout", Payee: "acct_1", Amount: "0.10"}); codeOf(err) != "invalid_request" {
		t.Fatalf("payout to a non-address: %v", err)
	}
	verifyChain(t, n)
}
