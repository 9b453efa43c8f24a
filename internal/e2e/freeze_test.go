package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"slices"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/sdk"
)

// TestFreezeStopsWhatWasApproved is the reproduced attack: an owner
// approved a payout and an x402 payment, then froze the agent; the agent
// confirmed and was paid. After the freeze, confirm and an idempotent
// replay must sign and execute nothing (spend_denied, agent_frozen), and
// with cancel_signed an authorization already signed and handed out is
// cancelled on chain before its hold is released.
func TestFreezeStopsWhatWasApproved(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	ctx := context.Background()
	m.fundRelayer(t, n)
	p, wallet := m.agentFor(t, n, "frosty", `{"per_tx_auto":"0.10","per_tx_max":"2","daily":"10","rails":["x402","payout"]}`, 5_000_000)
	payee := common.HexToAddress("0x000000000000000000000000000000000000bEEF")

	// 1. A signed x402 authorization the agent holds and has not used: the
	//    seller never answers the paid retry.
	seller := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("PAYMENT-REQUIRED", paymentRequired(t, map[string]any{"scheme": "exact", "network": m.dev.Network(),
			"amount": "50000", "asset": m.asset.Address, "payTo": m.seller.Hex(), "maxTimeoutSeconds": 600,
			"extra": map[string]any{"name": "USD Coin", "version": "2"}}))
		w.WriteHeader(http.StatusPaymentRequired)
	})
	held, err := p.Fetch(ctx, sdk.FetchRequest{URL: seller})
	if err != nil || held.Outcome != sdk.SellerFailed || held.Spend.Status != sdk.StatusAuthorized {
		t.Fatalf("signed, unused x402 payment: %+v %v", held, err)
	}
	heldNonce := nonceOf(t, held.Spend)

	// 2. A payout and an x402 payment above auto-approve, approved.
	payReq := sdk.AuthorizeRequest{Rail: "payout", Payee: payee.Hex(), Amount: "1", IdempotencyKey: "big-payout"}
	pay, err := p.Authorize(ctx, payReq)
	if !isPending(err) || pay.Status != sdk.StatusPendingApproval {
		t.Fatalf("payout above auto-approve: %+v %v", pay, err)
	}
	x, err := p.Fetch(ctx, sdk.FetchRequest{URL: m.sellerURL + "/pricey"})
	if err != nil || x.Outcome != sdk.Pending {
		t.Fatalf("x402 above auto-approve: %+v %v", x, err)
	}
	for _, id := range []string{pay.SpendID, x.Spend.SpendID} {
		if sp, err := n.owner.Approve(ctx, id); err != nil || sp.Status != sdk.StatusAuthorized {
			t.Fatalf("approve %s: %+v %v", id, sp, err)
		}
	}

	// 3. Freeze, cancelling what was signed.
	a, cancels, err := n.owner.FreezeCancelSigned(ctx, "frosty")
	if err != nil || a.Status != "frozen" {
		t.Fatalf("freeze --cancel-signed: %+v %v", a, err)
	}
	if len(cancels) != 1 || cancels[0].SpendID != held.Spend.SpendID || cancels[0].Status != sdk.StatusReleased ||
		!slices.Contains(cancels[0].Reasons, "authorization_cancelled") || cancels[0].Error != "" {
		t.Fatalf("cancellations: %+v; want the signed x402 spend released as authorization_cancelled", cancels)
	}
	if used, err := m.dev.Client().AuthorizationState(ctx, m.dev.Token(), wallet, heldNonce); err != nil || !used {
		t.Fatalf("authorizationState of the cancelled nonce = %v, %v; want used (cancelled)", used, err)
	}

	// 4. Nothing approved before the freeze is carried out after it.
	if _, err := p.Confirm(ctx, pay.SpendID); codeOf(err) != "spend_denied" || !hasReason(err, "agent_frozen") {
		t.Fatalf("confirm of the approved payout after freeze: %v; want spend_denied agent_frozen", err)
	}
	if res, err := p.ConfirmFetch(ctx, x.Spend.SpendID, sdk.FetchRequest{}); err != nil || res.Outcome != sdk.Refused || !slices.Contains(res.Reasons, "agent_frozen") {
		t.Fatalf("x402 confirm after freeze: %+v %v; want refused, agent_frozen", res, err)
	}
	if _, err := p.Authorize(ctx, payReq); codeOf(err) != "spend_denied" || !hasReason(err, "agent_frozen") {
		t.Fatalf("replay of the payout request after freeze: %v; want spend_denied agent_frozen", err)
	}
	for _, id := range []string{pay.SpendID, x.Spend.SpendID} {
		sp, err := n.owner.Spend(ctx, id)
		if err != nil || sp.Status != sdk.StatusReleased || sp.RailRef != "" || len(sp.RailData) != 0 {
			t.Fatalf("approved spend %s after the freeze: %+v %v; want released, never signed", id, sp, err)
		}
	}
	if got := m.balance(t, payee); got.Sign() != 0 {
		t.Fatalf("payee received %s after the freeze", got)
	}
	if got := m.balance(t, m.seller); got.Sign() != 0 {
		t.Fatalf("seller received %s after the freeze", got)
	}
	if l := n.limits(t, "frosty"); l.Daily == nil || l.Daily.Used != "0" {
		t.Fatalf("limits after freeze: %+v; want nothing held", l.Daily)
	}
	verifyChain(t, n)
}

// TestPayoutAuthorizationNeverShown: payouts refused before signing leave
// nothing a third party could submit later, and no payout response carries
// a signed authorization (the reproduced attack: three released payouts
// submitted after a top-up moved 15 USDC that limits never counted).
func TestPayoutAuthorizationNeverShown(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	n := m.purserOn(t, "")
	ctx := context.Background()
	m.fundRelayer(t, n)
	p, _ := m.agentFor(t, n, "poor", `{"per_tx_auto":"5","per_tx_max":"5","daily":"5","rails":["payout"]}`, 1_000_000)
	payee := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	for i := range 3 {
		sp, err := p.Authorize(ctx, sdk.AuthorizeRequest{Rail: "payout", Payee: payee.Hex(), Amount: "5"})
		if err != nil || sp.Status != sdk.StatusReleased || !slices.Contains(sp.Reasons, "insufficient_funds") {
			t.Fatalf("payout %d above the balance: %+v %v", i, sp, err)
		}
		if sp.RailRef != "" || len(sp.RailData) != 0 {
			t.Fatalf("payout %d was signed though it could not be paid: ref %q data %s", i, sp.RailRef, sp.RailData)
		}
	}
	ok, err := p.Authorize(ctx, sdk.AuthorizeRequest{Rail: "payout", Payee: payee.Hex(), Amount: "0.5"})
	if err != nil || ok.Status != sdk.StatusCaptured {
		t.Fatalf("covered payout: %+v %v", ok, err)
	}
	agentView, err := p.Spend(ctx, ok.SpendID)
	if err != nil {
		t.Fatal(err)
	}
	ownerView, err := n.owner.Spend(ctx, ok.SpendID)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]json.RawMessage{"authorize": ok.Raw, "agent get": agentView.Raw, "owner get": ownerView.Raw} {
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if _, has := v["rail_data"]; has {
			t.Fatalf("%s of a payout shows its signed authorization: %s", name, raw)
		}
	}
	if l := n.limits(t, "poor"); l.Daily == nil || l.Daily.Used != "0.5" {
		t.Fatalf("limits: %+v; want 0.5 used", l.Daily)
	}
	verifyChain(t, n)
}

func hasReason(err error, reason string) bool {
	var ae *sdk.Error
	return errors.As(err, &ae) && slices.Contains(ae.Reasons(), reason)
}

// fundRelayer gives n's relayer gas money on the dev chain, so payouts
// and cancellations can be sent.
func (m *market) fundRelayer(t *testing.T, n *node) {
	t.Helper()
	chains, err := n.owner.Chains(context.Background())
	if err != nil || chains.Relayer == "" {
		t.Fatalf("chains: %+v %v", chains, err)
	}
	if _, err := m.dev.FundETH(context.Background(), common.HexToAddress(chains.Relayer), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
}
