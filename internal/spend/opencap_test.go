package spend_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/spend/spendtest"
)

type keyWallets struct{ ks *keystore.Keystore }

func (w keyWallets) Wallets(index uint32) ([]spend.Wallet, error) {
	sg, err := w.ks.Wallet(index)
	if err != nil {
		return nil, err
	}
	return []spend.Wallet{{Network: "eip155:8453", Address: sg.Address(), Custody: "keystore", Path: sg.Path()}}, nil
}

// TestOpenSignedSpendsAreCapped: an agent with MaxOpenSigned signed
// spends still open is denied too_many_open_spends on signing rails (not
// on rails that never sign), until one of them settles.
func TestOpenSignedSpendsAreCapped(t *testing.T) {
	t.Parallel()
	e, pr := probeEnv(t)
	assets, _ := money.NewRegistry(money.DefaultAssets()...)
	svc, err := spend.NewService(spend.Config{Store: e.Store, Assets: assets, Wallets: keyWallets{e.Keys}, Clock: e.Clock,
		Rails: []spend.Rail{pr}, DefaultNetwork: "eip155:8453", MaxOpenSigned: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.Svc = svc
	a := e.NewAgent("capped", `{"per_tx_auto":"1","per_tx_max":"1","daily":"100"}`)
	probe := func() *spend.Spend {
		r := spendtest.Custom("0.01")
		r.Rail = "probe"
		return a.MustAuthorize(r)
	}
	var open []*spend.Spend
	for range 3 {
		sp := probe()
		if sp.Status != spend.StatusAuthorized || sp.RailRef == "" {
			t.Fatalf("below the cap: %s", spendtest.Describe(sp))
		}
		open = append(open, sp)
	}
	sp := probe()
	if sp.Status != spend.StatusDenied || !slices.Equal(sp.Reasons, []string{spend.ReasonTooManyOpenSpends}) || sp.RailRef != "" {
		t.Fatalf("at the cap: %s; want denied too_many_open_spends, unsigned", spendtest.Describe(sp))
	}
	r := spendtest.Custom("0.01")
	r.Rail, r.DryRun = "probe", true
	if out, err := a.Authorize(r); err != nil || out.Spend.Status != spend.StatusDenied {
		t.Fatalf("dry run at the cap: %+v %v", out, err)
	}
	if sp := a.MustAuthorize(spendtest.Custom("0.01")); sp.Status != spend.StatusAuthorized {
		t.Fatalf("a rail that never signs is not capped: %s", spendtest.Describe(sp))
	}
	if _, err := e.Svc.Settle(context.Background(), open[0].ID, spend.ExecResult{Outcome: spend.OutcomeCaptured, Captured: open[0].Amount}, spend.SystemActor); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(time.Second)
	if sp := probe(); sp.Status != spend.StatusAuthorized {
		t.Fatalf("after one settled: %s", spendtest.Describe(sp))
	}
}
