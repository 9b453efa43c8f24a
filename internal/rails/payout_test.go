package rails

import (
	"context"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
)

// payoutBench is a payout rail on a real dev chain: an agent wallet we
// hold the key of (so a test can act as the wallet elsewhere) and a funded
// relayer.
type payoutBench struct {
	dev    *devchain.Chain
	rail   *Payout
	wallet common.Address
	sign   evm.HashSigner
	asset  money.Asset
}

func newPayoutBench(t *testing.T, fundRelayer bool) *payoutBench {
	t.Helper()
	dev, err := devchain.Start(devchain.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	asset := money.Asset{Symbol: "USDC", Network: dev.Network(), Address: dev.Token().Hex(), Decimals: 6, USD: true,
		EIP712Name: "USD Coin", EIP712Version: "2"}
	reg, err := money.NewRegistry(asset)
	if err != nil {
		t.Fatal(err)
	}
	agentKey, _ := crypto.GenerateKey()
	relayKey, _ := crypto.GenerateKey()
	if fundRelayer {
		if _, err := dev.FundETH(context.Background(), crypto.PubkeyToAddress(relayKey.PublicKey), big.NewInt(1e18)); err != nil {
			t.Fatal(err)
		}
	}
	signer := evm.KeySigner(agentKey)
	b := &payoutBench{dev: dev, wallet: crypto.PubkeyToAddress(agentKey.PublicKey), sign: signer, asset: asset}
	b.rail = &Payout{Common: Common{Assets: reg, NonceKey: []byte("test nonce key"),
		Wallet:   func(context.Context, string) (evm.HashSigner, error) { return signer, nil },
		Chains:   Chains{dev.Network(): dev.Client()},
		Relayers: map[string]*evm.Relayer{dev.Network(): evm.NewRelayer(dev.Client(), evm.KeySigner(relayKey))}}}
	return b
}

func (b *payoutBench) spend(id string, amount int64, to common.Address) *spend.Spend {
	return &spend.Spend{ID: id, AgentID: "agt_1", Rail: "payout", Payee: to.Hex(), Asset: "USDC", Network: b.dev.Network(),
		Amount: big.NewInt(amount), Status: spend.StatusAuthorized}
}

func (b *payoutBench) mint(t *testing.T, to common.Address, amount int64) {
	t.Helper()
	if _, err := b.dev.Mint(context.Background(), to, big.NewInt(amount)); err != nil {
		t.Fatal(err)
	}
}

// TestPayoutRefusedBeforeSigning: a payout the wallet cannot cover, or
// whose gas the relayer cannot pay, is refused before anything is signed
// (the reproduced attack: released payouts whose signed authorizations a
// third party submitted after the wallet was topped up).
func TestPayoutRefusedBeforeSigning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newPayoutBench(t, true)
	b.mint(t, b.wallet, 1_000_000)
	var refused *spend.SignRefused
	_, data, _, err := b.rail.Sign(ctx, b.spend("spd_poor", 5_000_000, common.HexToAddress("0xbeef")))
	if !errors.As(err, &refused) || !slices.Equal(refused.Reasons, []string{"insufficient_funds"}) || data != nil {
		t.Fatalf("payout above the balance: data %s, err %v; want SignRefused(insufficient_funds) and nothing signed", data, err)
	}

	u := newPayoutBench(t, false)
	u.mint(t, u.wallet, 1_000_000)
	_, data, _, err = u.rail.Sign(ctx, u.spend("spd_nogas", 100_000, common.HexToAddress("0xbeef")))
	if !errors.As(err, &refused) || !slices.Equal(refused.Reasons, []string{"relayer_unfunded"}) || data != nil {
		t.Fatalf("payout with an unfunded relayer: data %s, err %v; want SignRefused(relayer_unfunded)", data, err)
	}
}

// TestPayoutFailedAfterSigningIsCancelled: the wallet is drained between
// signing and submission. The payout fails, and its authorization is
// cancelled on chain before the hold may go: after a top-up, submitting
// the authorization Purser signed moves nothing.
func TestPayoutFailedAfterSigningIsCancelled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newPayoutBench(t, true)
	b.mint(t, b.wallet, 1_000_000)
	payee := common.HexToAddress("0x000000000000000000000000000000000000bEEF")
	sp := b.spend("spd_drained", 1_000_000, payee)
	ref, data, _, err := b.rail.Sign(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	sp.RailRef, sp.RailData = ref, data

	// The wallet's funds leave by another authorization of its own.
	sink := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	a := evm.Authorization{From: b.wallet, To: sink, Value: big.NewInt(1_000_000), ValidAfter: new(big.Int),
		ValidBefore: big.NewInt(time.Now().Add(time.Hour).Unix()), Nonce: [32]byte{1}}
	ds := evm.DomainSeparator("USD Coin", "2", b.dev.ChainID(), b.dev.Token())
	sig, err := b.sign.SignHash(a.Digest(ds))
	if err != nil {
		t.Fatal(err)
	}
	drain, err := b.rail.Relayers[b.dev.Network()].TransferWithAuthorization(ctx, b.dev.Token(), a, sig)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := b.dev.Client().WaitReceipt(ctx, drain); err != nil || r.Status != 1 {
		t.Fatalf("drain: %v %v", r, err)
	}

	res, err := b.rail.Execute(ctx, sp)
	if err != nil || res.Outcome != spend.OutcomeFailed || !slices.Contains(res.Reasons, "insufficient_funds") ||
		!slices.Contains(res.Reasons, "authorization_cancelled") {
		t.Fatalf("execute of a drained payout: %+v, %v; want failed with insufficient_funds and authorization_cancelled", res, err)
	}
	// The chain now refuses the authorization Purser signed, also after a top-up.
	b.mint(t, b.wallet, 5_000_000)
	rec, err := loadRecord(sp)
	if err != nil {
		t.Fatal(err)
	}
	auth, _ := rec.authorization()
	osig := common.FromHex(rec.Signature)
	if _, err := b.rail.Relayers[b.dev.Network()].TransferWithAuthorization(ctx, b.dev.Token(), auth, osig); !evm.IsRevert(err) {
		t.Fatalf("the cancelled authorization was accepted after a top-up: %v", err)
	}
	if got, _ := b.dev.Client().BalanceOf(ctx, b.dev.Token(), payee); got.Sign() != 0 {
		t.Fatalf("payee received %s", got)
	}
	// What the reconciler sees: cancelled, not paid.
	if res, err := b.rail.Check(ctx, sp); err != nil || res.Outcome != spend.OutcomeFailed || !slices.Contains(res.Reasons, "authorization_cancelled") {
		t.Fatalf("check after cancel: %+v %v", res, err)
	}
}

// TestCancelUsedAuthorization: cancelling an authorization the payee
// already used answers captured: a hold is never released for money that
// moved.
func TestCancelUsedAuthorization(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newPayoutBench(t, true)
	b.mint(t, b.wallet, 1_000_000)
	sp := b.spend("spd_paid", 400_000, common.HexToAddress("0x000000000000000000000000000000000000bEEF"))
	ref, data, _, err := b.rail.Sign(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	sp.RailRef, sp.RailData = ref, data
	if res, err := b.rail.Execute(ctx, sp); err != nil || res.Outcome != spend.OutcomeCaptured {
		t.Fatalf("execute: %+v %v", res, err)
	}
	res, err := b.rail.Cancel(ctx, sp)
	if err != nil || res.Outcome != spend.OutcomeCaptured || res.Captured.Int64() != 400_000 {
		t.Fatalf("cancel of a used authorization: %+v %v; want captured 400000", res, err)
	}
}
