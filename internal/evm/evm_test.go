package evm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient/simulated"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/evm/token"
)

// The spec's test vector (docs: shared/specs/x402.md §5.2).
func TestDigestVector(t *testing.T) {
	t.Parallel()
	key, err := crypto.HexToECDSA("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
	if err != nil {
		t.Fatal(err)
	}
	s := evm.KeySigner(key)
	if s.Address() != "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" {
		t.Fatalf("address %s", s.Address())
	}
	ds := evm.DomainSeparator("USDC", "2", big.NewInt(84532), common.HexToAddress("0x036CbD53842c5426634e7929541eC2318f3dCF7e"))
	if got, want := hex.EncodeToString(ds[:]), "71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"; got != want {
		t.Fatalf("domain separator %s, want %s", got, want)
	}
	base := evm.DomainSeparator("USD Coin", "2", big.NewInt(8453), common.HexToAddress("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"))
	if got, want := hex.EncodeToString(base[:]), "02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f"; got != want {
		t.Fatalf("base domain separator %s, want %s", got, want)
	}
	var nonce [32]byte
	for i := range nonce {
		nonce[i] = 0x11
	}
	a := evm.Authorization{
		From: crypto.PubkeyToAddress(key.PublicKey), To: common.HexToAddress("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
		Value: big.NewInt(10000), ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(1800000000), Nonce: nonce,
	}
	d := a.Digest(ds)
	if got, want := hex.EncodeToString(d[:]), "8b544c5a60580d36004b454c46f98d024a596db9a1b0e3e431911be2ee715abd"; got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	sig, err := s.SignHash(d)
	if err != nil {
		t.Fatal(err)
	}
	want := "86f13afbc90e2af15d11532d0f61a8d70551d9c84191e5e68a74174ed6415a392648f904912da560f06c38df1bfb284ae91b091e805db552095050f483211a371b"
	if got := hex.EncodeToString(sig); got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	// A nil ValidAfter encodes as zero.
	a.ValidAfter = nil
	if a.Digest(ds) != d {
		t.Fatal("nil ValidAfter changed the digest")
	}
}

func TestRevertErrors(t *testing.T) {
	t.Parallel()
	err := error(&evm.RevertError{Reason: "FiatTokenV2: authorization is expired"})
	wrapped := errors.Join(errors.New("settle"), err)
	if !evm.IsRevert(wrapped) || evm.RevertReason(wrapped) != "FiatTokenV2: authorization is expired" {
		t.Fatalf("IsRevert/RevertReason on %v", wrapped)
	}
	if evm.IsRevert(errors.New("connection refused")) {
		t.Fatal("transport error taken for a revert")
	}
	if got := (&evm.RevertError{}).Error(); got != "execution reverted" {
		t.Fatal(got)
	}
}

func TestKeySignerHidesKey(t *testing.T) {
	t.Parallel()
	key, _ := crypto.GenerateKey()
	s := evm.KeySigner(key)
	secret := hex.EncodeToString(crypto.FromECDSA(key))
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, secret) || strings.Contains(out, new(big.Int).SetBytes(crypto.FromECDSA(key)).String()) {
			t.Fatalf("%s printed the key", f)
		}
	}
}

// bundle is a simulated chain with DevUSD deployed and a funded relayer.
type bundle struct {
	sim        *simulated.Backend
	client     *evm.Client
	relayer    *evm.Relayer
	token      common.Address
	payer      *ecdsa.PrivateKey
	relayerKey *ecdsa.PrivateKey
	ds         [32]byte
}

func setup(t *testing.T) *bundle {
	t.Helper()
	relayerKey, _ := crypto.GenerateKey()
	payer, _ := crypto.GenerateKey()
	eth := new(big.Int).Mul(big.NewInt(1000), big.NewInt(1e18))
	sim := simulated.NewBackend(types.GenesisAlloc{crypto.PubkeyToAddress(relayerKey.PublicKey): {Balance: eth}})
	t.Cleanup(func() { _ = sim.Close() })
	autoMine(t, sim, crypto.PubkeyToAddress(relayerKey.PublicKey))

	ctx := t.Context()
	c, err := evm.NewClient(ctx, sim.Client())
	if err != nil {
		t.Fatal(err)
	}
	r := evm.NewRelayer(c, evm.KeySigner(relayerKey))
	code := append(token.Bytecode(), token.Binding().PackConstructor("USD Coin", "USDC", "2", 6, r.Address())...)
	h, addr, err := r.Deploy(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	mustMine(t, c, h)
	h, err = r.Send(ctx, addr, token.Binding().PackMint(crypto.PubkeyToAddress(payer.PublicKey), big.NewInt(1_000_000_000)), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustMine(t, c, h)
	return &bundle{sim: sim, client: c, relayer: r, token: addr, payer: payer, relayerKey: relayerKey,
		ds: evm.DomainSeparator("USD Coin", "2", c.ChainID(), addr)}
}

// autoMine commits a block whenever sender has transactions in the pool, as a
// dev chain does. It compares the pool's nonce with the chain's: the pending
// block that PendingTransactionCount reads is cached and lags the pool.
func autoMine(t *testing.T, sim *simulated.Backend, sender common.Address) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		ctx := context.Background()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				pending, err1 := sim.Client().PendingNonceAt(ctx, sender)
				mined, err2 := sim.Client().NonceAt(ctx, sender, nil)
				if err1 == nil && err2 == nil && pending > mined {
					sim.Commit()
				}
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
}

func mustMine(t *testing.T, c *evm.Client, h common.Hash) *types.Receipt {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r, err := c.WaitReceipt(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatalf("tx %s reverted", h)
	}
	return r
}

func (b *bundle) authorize(t *testing.T, to common.Address, value int64) (evm.Authorization, []byte) {
	t.Helper()
	a := evm.Authorization{
		From: crypto.PubkeyToAddress(b.payer.PublicKey), To: to, Value: big.NewInt(value),
		ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(time.Now().Add(time.Hour).Unix()),
	}
	_, _ = rand.Read(a.Nonce[:])
	sig, err := evm.KeySigner(b.payer).SignHash(a.Digest(b.ds))
	if err != nil {
		t.Fatal(err)
	}
	return a, sig
}

func TestClientReads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if b.client.ChainID().Int64() != 1337 || b.client.Network() != "eip155:1337" {
		t.Fatalf("chain %s", b.client.Network())
	}
	name, version, err := b.client.TokenDomain(ctx, b.token)
	if err != nil || name != "USD Coin" || version != "2" {
		t.Fatalf("domain %q %q %v", name, version, err)
	}
	if ok, err := b.client.HasCode(ctx, b.token); err != nil || !ok {
		t.Fatalf("token code %v %v", ok, err)
	}
	if ok, err := b.client.HasCode(ctx, b.relayer.Address()); err != nil || ok {
		t.Fatalf("EOA code %v %v", ok, err)
	}
	bal, err := b.client.BalanceOf(ctx, b.token, crypto.PubkeyToAddress(b.payer.PublicKey))
	if err != nil || bal.Int64() != 1_000_000_000 {
		t.Fatalf("balance %v %v", bal, err)
	}
	head, err := b.client.HeadTime(ctx)
	if err != nil || time.Since(head).Abs() > 10*time.Second {
		t.Fatalf("head time %v %v", head, err)
	}
	// A token that is not there: the call fails, it does not read as zero.
	if _, err := b.client.BalanceOf(ctx, common.HexToAddress("0x01"), b.relayer.Address()); err == nil {
		t.Fatal("balanceOf on an account without code succeeded")
	}
}

func TestRelayedTransferWithAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	payee := common.HexToAddress("0x209693Bc6afc0C5328bA36FaF03C514EF312287C")
	a, sig := b.authorize(t, payee, 10_000)

	from, _ := b.client.BlockNumber(ctx)
	if used, err := b.client.AuthorizationState(ctx, b.token, a.From, a.Nonce); err != nil || used {
		t.Fatalf("state before: %v %v", used, err)
	}
	if err := b.client.SimulateTransferWithAuthorization(ctx, b.relayer.Address(), b.token, a, sig); err != nil {
		t.Fatalf("simulate: %v", err)
	}
	h, err := b.relayer.TransferWithAuthorization(ctx, b.token, a, sig)
	if err != nil {
		t.Fatal(err)
	}
	r := mustMine(t, b.client, h)
	if !evm.TransferLogged(r, b.token, a.From, a.To, a.Value) {
		t.Fatal("no Transfer log")
	}
	if evm.TransferLogged(r, b.token, a.From, a.To, big.NewInt(9_999)) || evm.TransferLogged(r, payee, a.From, a.To, a.Value) {
		t.Fatal("TransferLogged matched the wrong value or token")
	}
	if used, err := b.client.AuthorizationState(ctx, b.token, a.From, a.Nonce); err != nil || !used {
		t.Fatalf("state after: %v %v", used, err)
	}
	got, found, err := b.client.FindAuthorizationUsed(ctx, b.token, a.From, a.Nonce, from)
	if err != nil || !found || got != h {
		t.Fatalf("FindAuthorizationUsed = %s %v %v, want %s", got, found, err, h)
	}
	if _, found, err := b.client.FindAuthorizationUsed(ctx, b.token, a.From, [32]byte{1}, 0); err != nil || found {
		t.Fatalf("found an unused nonce: %v %v", found, err)
	}
	if bal, _ := b.client.BalanceOf(ctx, b.token, payee); bal.Int64() != 10_000 {
		t.Fatalf("payee balance %s", bal)
	}

	// Replay: refused at estimation, nothing sent, reason in the error text.
	_, err = b.relayer.TransferWithAuthorization(ctx, b.token, a, sig)
	if !evm.IsRevert(err) || !strings.Contains(err.Error(), "FiatTokenV2: authorization is used or canceled") {
		t.Fatalf("replay: %v", err)
	}
	err = b.client.SimulateTransferWithAuthorization(ctx, b.relayer.Address(), b.token, a, sig)
	if !evm.IsRevert(err) || evm.RevertReason(err) != "FiatTokenV2: authorization is used or canceled" {
		t.Fatalf("simulate replay: %v", err)
	}

	// Other refusals surface their FiatToken reason the same way.
	cases := map[string]func() (evm.Authorization, []byte){
		"FiatTokenV2: authorization is expired": func() (evm.Authorization, []byte) {
			a, _ := b.authorize(t, payee, 1)
			a.ValidBefore = big.NewInt(time.Now().Add(-time.Hour).Unix())
			s, _ := evm.KeySigner(b.payer).SignHash(a.Digest(b.ds))
			return a, s
		},
		"FiatTokenV2: invalid signature": func() (evm.Authorization, []byte) {
			a, s := b.authorize(t, payee, 1)
			a.Value = big.NewInt(2)
			return a, s
		},
		"ECRecover: invalid signature 'v' value": func() (evm.Authorization, []byte) {
			a, s := b.authorize(t, payee, 1)
			s[64] -= 27
			return a, s
		},
		"ECRecover: invalid signature length": func() (evm.Authorization, []byte) {
			a, s := b.authorize(t, payee, 1)
			return a, append(s, 0) // 66 bytes: the bytes overload
		},
		"ERC20: transfer amount exceeds balance": func() (evm.Authorization, []byte) {
			return b.authorize(t, payee, 2_000_000_000)
		},
	}
	for reason, mk := range cases {
		a, s := mk()
		_, err := b.relayer.TransferWithAuthorization(ctx, b.token, a, s)
		if !evm.IsRevert(err) || evm.RevertReason(err) != reason {
			t.Errorf("%s: got %v", reason, err)
		}
	}
}

func TestRelayerConcurrentSends(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	const n = 50
	payee := common.HexToAddress("0x00000000000000000000000000000000000000aa")
	type sent struct {
		a evm.Authorization
		h common.Hash
	}
	results := make([]sent, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		a, sig := b.authorize(t, payee, int64(i+1))
		wg.Go(func() {
			h, err := b.relayer.TransferWithAuthorization(ctx, b.token, a, sig)
			results[i], errs[i] = sent{a, h}, err
		})
	}
	wg.Wait()
	var total int64
	for i, s := range results {
		if errs[i] != nil {
			t.Fatalf("send %d: %v", i, errs[i])
		}
		r := mustMine(t, b.client, s.h)
		if !evm.TransferLogged(r, b.token, s.a.From, s.a.To, s.a.Value) {
			t.Fatalf("send %d: no transfer", i)
		}
		total += s.a.Value.Int64()
	}
	t.Logf("%d relayed transfers mined in %v", n, time.Since(start))
	if bal, _ := b.client.BalanceOf(ctx, b.token, payee); bal.Int64() != total {
		t.Fatalf("payee has %s, want %d", bal, total)
	}
}

// A second sender on the same account makes the relayer's local nonce stale;
// the relayer resynchronises and resends instead of failing.
func TestRelayerResyncsNonce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	to := common.HexToAddress("0x00000000000000000000000000000000000000bb")
	h, err := b.relayer.Send(ctx, to, nil, big.NewInt(1))
	if err != nil {
		t.Fatal(err)
	}
	mustMine(t, b.client, h)

	// Same key, separate relayer: it sends with the nonce b.relayer expects next.
	other := evm.NewRelayer(b.client, evm.KeySigner(b.relayerKey))
	h, err = other.Send(ctx, to, nil, big.NewInt(1))
	if err != nil {
		t.Fatal(err)
	}
	mustMine(t, b.client, h)

	h, err = b.relayer.Send(ctx, to, nil, big.NewInt(1))
	if err != nil {
		t.Fatalf("send after external nonce use: %v", err)
	}
	mustMine(t, b.client, h)
	if bal, _ := b.client.ETHBalance(ctx, to); bal.Int64() != 3 {
		t.Fatalf("balance %s", bal)
	}
}

func TestWaitReceiptHonoursContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := b.client.WaitReceipt(ctx, common.Hash{1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}
