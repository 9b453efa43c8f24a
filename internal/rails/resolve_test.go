package rails_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/rails"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
	"github.com/purserhq/purser/internal/store/sqlite"
)

// resolveEnv is a spend service with the x402 rail over the dev chain,
// whose chain client can be connected later (a server restarted with
// --rpc), and a clock the rail and the service share.
type resolveEnv struct {
	t      *testing.T
	dev    *devchain.Chain
	svc    *spend.Service
	rail   *rails.X402
	clock  *spendtest.Clock
	ks     *keystore.Keystore
	agent  *spendtest.Agent
	env    *spendtest.Env
	seller common.Address
}

func newResolveEnv(t *testing.T) *resolveEnv {
	t.Helper()
	dev, err := devchain.Start(devchain.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "purser.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ks, err := keystore.Open(filepath.Join(t.TempDir(), "keys"), keystore.FileKEK{Path: filepath.Join(t.TempDir(), "kek")})
	if err != nil {
		t.Fatal(err)
	}
	assets, err := money.NewRegistry(append(money.DefaultAssets(), money.Asset{Symbol: "USDC", Network: dev.Network(),
		Address: dev.Token().Hex(), Decimals: 6, USD: true, EIP712Name: devchain.TokenName, EIP712Version: devchain.TokenVersion})...)
	if err != nil {
		t.Fatal(err)
	}
	e := &resolveEnv{t: t, dev: dev, ks: ks, clock: spendtest.NewClock(time.Now().UTC().Truncate(time.Second)),
		seller: common.HexToAddress("0x209693Bc6afc0C5328bA36FaF03C514EF312287C")}
	e.rail = &rails.X402{Common: rails.Common{Assets: assets, NonceKey: []byte("resolve-test-nonce-key"), Chains: rails.Chains{}, Now: e.clock.Now,
		Wallet: func(ctx context.Context, agentID string) (evm.HashSigner, error) {
			a, err := e.svc.GetAgent(ctx, agentID)
			if err != nil {
				return nil, err
			}
			return ks.Wallet(a.WalletIndex)
		}}}
	e.svc, err = spend.NewService(spend.Config{Store: st, Assets: assets, Wallets: walletsOf{ks, dev.Network()}, Clock: e.clock,
		Rails: []spend.Rail{e.rail}, DefaultNetwork: dev.Network()})
	if err != nil {
		t.Fatal(err)
	}
	e.env = &spendtest.Env{T: t, Svc: e.svc, Store: st, Clock: e.clock, Keys: ks}
	e.agent = e.env.NewAgent("buyer", `{"per_tx_auto":"1","per_tx_max":"1","daily":"10"}`)
	wallet := common.HexToAddress(e.agent.Wallets[0].Address)
	if _, err := dev.Mint(context.Background(), wallet, big.NewInt(10_000_000)); err != nil {
		t.Fatal(err)
	}
	return e
}

type walletsOf struct {
	ks      *keystore.Keystore
	network string
}

func (w walletsOf) Wallets(index uint32) ([]spend.Wallet, error) {
	sg, err := w.ks.Wallet(index)
	if err != nil {
		return nil, err
	}
	return []spend.Wallet{{Network: w.network, Address: sg.Address(), Custody: "keystore", Path: sg.Path()}}, nil
}

// unknownSpend signs an x402 spend at signedAt (valid for 60 s from
// then) while no chain is connected, and lets the reconciler give up on
// it (past validBefore and the report grace): unknown.
func (e *resolveEnv) unknownSpend(signedAt time.Time) *spend.Spend {
	e.t.Helper()
	e.clock.Advance(signedAt.Sub(e.clock.Now()))
	offer, _ := json.Marshal(map[string]any{"scheme": "exact", "network": e.dev.Network(), "amount": "10000",
		"asset": e.dev.Token().Hex(), "payTo": e.seller.Hex(), "maxTimeoutSeconds": 60,
		"extra": map[string]any{"name": devchain.TokenName, "version": devchain.TokenVersion}})
	rr, _ := json.Marshal(map[string]any{"url": "https://api.seller.com/item", "x402_version": 2, "offer": json.RawMessage(offer)})
	sp := e.agent.MustAuthorize(spend.AuthorizeRequest{Rail: "x402", RailRequest: rr})
	if sp.Status != spend.StatusAuthorized || sp.RailRef == "" {
		e.t.Fatalf("x402 spend: %s", spendtest.Describe(sp))
	}
	e.clock.Advance(time.Hour)
	if _, err := e.svc.Reconcile(context.Background(), sp.ID); err != nil {
		e.t.Fatal(err)
	}
	got, err := e.svc.GetSpend(context.Background(), sp.ID)
	if err != nil || got.Status != spend.StatusUnknown {
		e.t.Fatalf("without a chain, past its grace: %s %v; want unknown", spendtest.Describe(got), err)
	}
	e.clock.Advance(time.Since(e.clock.Now())) // back to real time: the chain's
	return got
}

func (e *resolveEnv) connect() { e.rail.Chains[e.dev.Network()] = e.dev.Client() }

// pay settles sp's authorization on chain, as a seller would.
func (e *resolveEnv) pay(sp *spend.Spend) common.Hash {
	e.t.Helper()
	var rec struct {
		From, To, Value, Nonce, Signature string
		ValidAfter                        int64 `json:"valid_after"`
		ValidBefore                       int64 `json:"valid_before"`
	}
	if err := json.Unmarshal(sp.RailData, &rec); err != nil {
		e.t.Fatal(err)
	}
	v, _ := new(big.Int).SetString(rec.Value, 10)
	a := evm.Authorization{From: common.HexToAddress(rec.From), To: common.HexToAddress(rec.To), Value: v,
		ValidAfter: big.NewInt(rec.ValidAfter), ValidBefore: big.NewInt(rec.ValidBefore)}
	n, _ := hex.DecodeString(strings.TrimPrefix(rec.Nonce, "0x"))
	copy(a.Nonce[:], n)
	sig, _ := hex.DecodeString(strings.TrimPrefix(rec.Signature, "0x"))
	gas, err := e.ks.Wallet(1 << 30)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.dev.FundETH(ctx, common.HexToAddress(gas.Address()), big.NewInt(1e18)); err != nil {
		e.t.Fatal(err)
	}
	tx, err := evm.NewRelayer(e.dev.Client(), gas).TransferWithAuthorization(ctx, common.HexToAddress(e.dev.Token().Hex()), a, sig)
	if err != nil {
		e.t.Fatal(err)
	}
	if r, err := e.dev.Client().WaitReceipt(ctx, tx); err != nil || r.Status != 1 {
		e.t.Fatalf("settlement %s: %+v %v", tx, r, err)
	}
	return tx
}

func wantCode(t *testing.T, what string, err error, code, chain string) {
	t.Helper()
	var se *spend.Error
	if !errors.As(err, &se) || se.Code != code || se.Details["chain"] != chain {
		t.Fatalf("%s: err %v (details %v), want %s with chain %s", what, err, se, code, chain)
	}
}

// TestResolveAsksTheChainFirst: an owner resolving an unknown x402 spend
// is held to what the chain shows, once one is connected: no release of
// an authorization that is still usable or was used, no capture that
// names a transaction without the spend's transfer; without a chain the
// owner's word is recorded, audited with the reason.
func TestResolveAsksTheChainFirst(t *testing.T) {
	t.Parallel()
	e := newResolveEnv(t)
	bg := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	offline := e.unknownSpend(now)                     // resolved before any chain is connected
	live := e.unknownSpend(now)                        // valid on chain for another minute
	expired := e.unknownSpend(now.Add(-2 * time.Hour)) // its validBefore passed long ago

	if _, err := e.svc.Resolve(bg, offline.ID, spend.ResolveRequest{Released: true}); spend.CodeOf(err) != spend.CodeInvalidRequest {
		t.Fatalf("release without a reason: %v", err)
	}
	sp, err := e.svc.Resolve(bg, offline.ID, spend.ResolveRequest{Released: true, Reason: "seller confirmed by email: not settled"})
	if err != nil || sp.Status != spend.StatusReleased {
		t.Fatalf("release with no chain connected: %s %v", spendtest.Describe(sp), err)
	}
	if _, err := e.svc.Resolve(bg, offline.ID, spend.ResolveRequest{Released: true, Reason: "again"}); spend.CodeOf(err) != spend.CodeInvalidState {
		t.Fatalf("second resolution: %v", err)
	}

	e.connect()
	_, err = e.svc.Resolve(bg, live.ID, spend.ResolveRequest{Released: true, Reason: "looks unused"})
	wantCode(t, "release of a usable authorization", err, spend.CodeChainDisagrees, "unused_valid")
	_, err = e.svc.Resolve(bg, live.ID, spend.ResolveRequest{CapturedTx: "0x" + strings.Repeat("ab", 32)})
	wantCode(t, "capture of an unused authorization", err, spend.CodeChainDisagrees, "unused")

	tx := e.pay(live)
	_, err = e.svc.Resolve(bg, live.ID, spend.ResolveRequest{Released: true, Reason: "looks unused"})
	wantCode(t, "release of a used authorization", err, spend.CodeChainDisagrees, "used")
	_, err = e.svc.Resolve(bg, live.ID, spend.ResolveRequest{CapturedTx: "0x" + strings.Repeat("ab", 32)})
	wantCode(t, "capture naming another transaction", err, spend.CodeChainDisagrees, "used")
	sp, err = e.svc.Resolve(bg, live.ID, spend.ResolveRequest{CapturedTx: tx.Hex(), Reason: "settled"})
	if err != nil || sp.Status != spend.StatusCaptured || sp.Captured.Int64() != 10000 || sp.RailRef != tx.Hex() {
		t.Fatalf("capture with the settling transaction: %s %v", spendtest.Describe(sp), err)
	}

	_, err = e.svc.Resolve(bg, expired.ID, spend.ResolveRequest{CapturedTx: tx.Hex()})
	wantCode(t, "capture of an expired, unused authorization", err, spend.CodeChainDisagrees, "expired_unused")
	if sp, err = e.svc.Resolve(bg, expired.ID, spend.ResolveRequest{Released: true, Reason: "expired"}); err != nil || sp.Status != spend.StatusReleased {
		t.Fatalf("release of an expired, unused authorization: %s %v", spendtest.Describe(sp), err)
	}

	// Audit: every resolution is the owner's, with its reason and what
	// the chain showed.
	evs, err := e.env.Store.AuditEvents(bg, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{offline.ID: "not_connected", live.ID: "used", expired.ID: "expired_unused"}
	for _, ev := range evs {
		var d struct {
			SpendID    string `json:"spend_id"`
			Resolution *struct {
				By, Reason, Chain string
			} `json:"resolution"`
		}
		if err := json.Unmarshal(ev.Details, &d); err != nil || d.Resolution == nil {
			continue
		}
		if ev.Actor.Type != "owner" || d.Resolution.Chain != want[d.SpendID] || d.Resolution.Reason == "" {
			t.Fatalf("resolution event %s %+v %+v", ev.Action, ev.Actor, d.Resolution)
		}
		delete(want, d.SpendID)
	}
	if len(want) != 0 {
		t.Fatalf("no resolution event for %v", want)
	}
	if u, err := e.svc.OwnerLimits(bg, "buyer"); err != nil || u.DailyUsedUSD.Int64() != 10000 {
		t.Fatalf("used %v (%v), want only the captured 0.01", u.DailyUsedUSD, err)
	}
}
