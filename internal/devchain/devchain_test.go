package devchain_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
)

// testLogger sends records to t.Log and keeps them for inspection.
type testLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf strings.Builder
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func start(t *testing.T, cfg devchain.Config) (*devchain.Chain, *testLogger) {
	t.Helper()
	tl := &testLogger{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(tl, nil))
	c, err := devchain.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, tl
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestDevChainRelayedPayment(t *testing.T) {
	t.Parallel()
	c, _ := start(t, devchain.Config{})
	ctx := ctxT(t, 30*time.Second)

	if c.Network() != "eip155:1337" || c.ChainID().Int64() != 1337 {
		t.Fatalf("network %s", c.Network())
	}
	u, err := url.Parse(c.RPCURL())
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "0" {
		t.Fatalf("rpc url %q", c.RPCURL())
	}

	// Everything below goes over the JSON-RPC URL, as Purser's rails do.
	cl, err := evm.Dial(ctx, c.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.ChainID().Cmp(c.ChainID()) != 0 {
		t.Fatalf("chain id over RPC %s", cl.ChainID())
	}
	name, version, err := cl.TokenDomain(ctx, c.Token())
	if err != nil || name != "USD Coin" || version != "2" {
		t.Fatalf("token domain %q %q %v", name, version, err)
	}

	payer, _ := crypto.GenerateKey()
	relayerKey, _ := crypto.GenerateKey()
	payee := common.HexToAddress("0x209693Bc6afc0C5328bA36FaF03C514EF312287C")
	if _, err := c.Mint(ctx, crypto.PubkeyToAddress(payer.PublicKey), big.NewInt(5_000_000)); err != nil {
		t.Fatal(err)
	}
	relayer := evm.NewRelayer(cl, evm.KeySigner(relayerKey))
	if _, err := c.FundETH(ctx, relayer.Address(), big.NewInt(params.Ether)); err != nil {
		t.Fatal(err)
	}
	if bal, err := cl.ETHBalance(ctx, relayer.Address()); err != nil || bal.Cmp(big.NewInt(params.Ether)) != 0 {
		t.Fatalf("relayer ETH %v %v", bal, err)
	}

	a := evm.Authorization{
		From: crypto.PubkeyToAddress(payer.PublicKey), To: payee, Value: big.NewInt(10_000),
		ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(time.Now().Add(5 * time.Minute).Unix()),
	}
	_, _ = rand.Read(a.Nonce[:])
	ds := evm.DomainSeparator(name, version, cl.ChainID(), c.Token())
	sig, err := evm.KeySigner(payer).SignHash(a.Digest(ds))
	if err != nil {
		t.Fatal(err)
	}
	from, _ := cl.BlockNumber(ctx)
	if err := cl.SimulateTransferWithAuthorization(ctx, relayer.Address(), c.Token(), a, sig); err != nil {
		t.Fatal(err)
	}
	h, err := relayer.TransferWithAuthorization(ctx, c.Token(), a, sig)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.WaitReceipt(ctx, h)
	if err != nil || r.Status != types.ReceiptStatusSuccessful || !evm.TransferLogged(r, c.Token(), a.From, a.To, a.Value) {
		t.Fatalf("receipt %+v %v", r, err)
	}
	if got, found, err := cl.FindAuthorizationUsed(ctx, c.Token(), a.From, a.Nonce, from); err != nil || !found || got != h {
		t.Fatalf("FindAuthorizationUsed %s %v %v", got, found, err)
	}
	if bal, _ := cl.BalanceOf(ctx, c.Token(), payee); bal.Int64() != 10_000 {
		t.Fatalf("payee balance %s", bal)
	}
	// A replay is refused with FiatToken's reason, over RPC too.
	if _, err := relayer.TransferWithAuthorization(ctx, c.Token(), a, sig); !evm.IsRevert(err) ||
		!strings.Contains(err.Error(), "FiatTokenV2: authorization is used or canceled") {
		t.Fatalf("replay: %v", err)
	}
	// The in-process client sees the same chain.
	if bal, err := c.Client().BalanceOf(ctx, c.Token(), payee); err != nil || bal.Int64() != 10_000 {
		t.Fatalf("in-process balance %v %v", bal, err)
	}
}

// 200 transactions from 20 accounts arrive at once over JSON-RPC: all are
// mined within seconds, and block timestamps stay near the wall clock.
func TestDevChainBurst(t *testing.T) {
	t.Parallel()
	c, _ := start(t, devchain.Config{ChainID: 84532})
	ctx := ctxT(t, 60*time.Second)
	ec, err := ethclient.DialContext(ctx, c.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()

	const senders, perSender = 20, 10
	keys := make([]*ecdsa.PrivateKey, senders)
	var fund sync.WaitGroup
	fundErrs := make([]error, senders)
	for i := range keys {
		keys[i], _ = crypto.GenerateKey()
		fund.Go(func() {
			_, fundErrs[i] = c.FundETH(ctx, crypto.PubkeyToAddress(keys[i].PublicKey), big.NewInt(params.Ether))
		})
	}
	fund.Wait()
	for _, err := range fundErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	head, err := ec.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	startBlock := head.Number.Uint64()
	tip, err := ec.SuggestGasTipCap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(4)))
	signer := types.LatestSignerForChainID(c.ChainID())
	sink := common.HexToAddress("0x00000000000000000000000000000000000000cc")

	var txs []*types.Transaction
	for _, k := range keys {
		for n := range uint64(perSender) {
			tx, err := types.SignNewTx(k, signer, &types.DynamicFeeTx{ChainID: c.ChainID(), Nonce: n,
				GasTipCap: tip, GasFeeCap: feeCap, Gas: 21000, To: &sink, Value: big.NewInt(1)})
			if err != nil {
				t.Fatal(err)
			}
			txs = append(txs, tx)
		}
	}
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(txs))
	for _, tx := range txs {
		wg.Go(func() {
			if err := ec.SendTransaction(ctx, tx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("send: %v", err)
	}
	cl := c.Client()
	for _, tx := range txs {
		r, err := cl.WaitReceipt(ctx, tx.Hash())
		if err != nil || r.Status != types.ReceiptStatusSuccessful {
			t.Fatalf("tx %s: %v", tx.Hash(), err)
		}
	}
	// How long the burst takes is the machine's business (a loaded CI
	// runner is slow): what must hold is that every transaction is mined
	// and that blocks keep the clock. Its speed is measured by benchmarks.
	took := time.Since(began)
	if bal, _ := ec.BalanceAt(ctx, sink, nil); bal.Int64() != senders*perSender {
		t.Fatalf("sink received %s", bal)
	}
	end, _ := ec.BlockNumber(ctx)
	for n := startBlock; n <= end; n++ {
		h, err := ec.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
		if err != nil {
			t.Fatal(err)
		}
		bt := time.Unix(int64(h.Time), 0)
		if bt.Before(began.Add(-5*time.Second)) || bt.After(time.Now().Add(3*time.Second)) {
			t.Errorf("block %d time %v is off the clock (burst began %v)", n, bt, began)
		}
	}
	t.Logf("%d txs mined in %v across %d blocks", len(txs), took, end-startBlock)
}

func TestDevChainCloseFreesPort(t *testing.T) {
	t.Parallel()
	c, logs := start(t, devchain.Config{Listen: "127.0.0.1:0"})
	u, _ := url.Parse(c.RPCURL())
	addr := net.JoinHostPort(u.Hostname(), u.Port())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	_ = l.Close()
	// The fixed-port form works on the freed port.
	c2, _ := start(t, devchain.Config{Listen: addr})
	if c2.RPCURL() != "http://"+addr {
		t.Fatalf("rpc url %s, want http://%s", c2.RPCURL(), addr)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if !strings.Contains(logs.buf.String(), "dev chain started") {
		t.Fatal("start not logged")
	}
}

func TestDevChainBadListen(t *testing.T) {
	t.Parallel()
	for _, l := range []string{"nonsense", ":8545", "127.0.0.1:notaport"} {
		if c, err := devchain.Start(devchain.Config{Listen: l}); err == nil {
			_ = c.Close()
			t.Errorf("Start(%q) succeeded", l)
		}
	}
}
