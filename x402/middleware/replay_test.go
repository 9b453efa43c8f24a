package middleware_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	fac "github.com/purserhq/purser/internal/facilitator"
	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

// shop is a seller on a real dev chain, settling with Purser's real
// facilitator over HTTP.
type shop struct {
	dev     *devchain.Chain
	url     string
	payTo   common.Address
	buyer   *ecdsa.PrivateKey
	served  atomic.Int32 // handler runs
	status  atomic.Int32 // what the handler answers
	release chan struct{}
}

func newShop(t *testing.T) *shop {
	t.Helper()
	dev, err := devchain.Start(devchain.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	ctx := context.Background()
	gas, _ := crypto.GenerateKey()
	if _, err := dev.FundETH(ctx, crypto.PubkeyToAddress(gas.PublicKey), big.NewInt(1e18)); err != nil {
		t.Fatal(err)
	}
	buyer, _ := crypto.GenerateKey()
	if _, err := dev.Mint(ctx, crypto.PubkeyToAddress(buyer.PublicKey), big.NewInt(1_000_000)); err != nil {
		t.Fatal(err)
	}
	f, err := fac.New(fac.Config{Networks: map[string]fac.Network{
		dev.Network(): {Client: dev.Client(), Relayer: evm.NewRelayer(dev.Client(), evm.KeySigner(gas))}}})
	if err != nil {
		t.Fatal(err)
	}
	fs := httptest.NewServer(f.Handler())
	t.Cleanup(fs.Close)
	sk, _ := crypto.GenerateKey()
	s := &shop{dev: dev, payTo: crypto.PubkeyToAddress(sk.PublicKey), buyer: buyer}
	s.status.Store(200)
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: fs.URL}, Routes: []middleware.Route{{
		Pattern: "GET /item", Amount: "10000", Asset: dev.Token().Hex(), Network: dev.Network(), PayTo: s.payTo.Hex(),
		EIP712Name: devchain.TokenName, EIP712Version: devchain.TokenVersion, MimeType: "text/plain"}}})
	if err != nil {
		t.Fatal(err)
	}
	ss := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.served.Add(1) == 1 && s.release != nil {
			select { // hold the first run until the test lets it go
			case <-s.release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(int(s.status.Load()))
		io.WriteString(w, "SECRET CONTENT")
	})))
	t.Cleanup(ss.Close)
	s.url = ss.URL + "/item"
	return s
}

// payHeader answers the shop's 402 with a signed payment.
func (s *shop) payHeader(t *testing.T) (string, string) {
	t.Helper()
	resp, _ := get(t, s.url, nil)
	pr, err := x402.ParsePaymentRequired(resp.Header, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := pr.Accepts[0]
	var nonce [32]byte
	copy(nonce[:], crypto.Keccak256([]byte(time.Now().String())))
	a := x402.Authorization{From: crypto.PubkeyToAddress(s.buyer.PublicKey).Hex(), To: req.PayTo, Value: req.Amount,
		ValidAfter: big.NewInt(0), ValidBefore: big.NewInt(time.Now().Unix() + 120), Nonce: nonce}
	ds, _ := x402.DomainSeparator(devchain.TokenName, devchain.TokenVersion, s.dev.ChainID(), req.Asset)
	d, _ := a.Digest(ds)
	sig, _ := crypto.Sign(d[:], s.buyer)
	sig[64] += 27
	p, err := x402.NewPaymentPayload(&req, pr.Resource, x402.ExactPayload{Signature: "0x" + hex.EncodeToString(sig), Authorization: a})
	if err != nil {
		t.Fatal(err)
	}
	name, value, _ := p.HeaderValue()
	return name, value
}

func (s *shop) earned(t *testing.T) int64 {
	b, err := s.dev.Client().BalanceOf(context.Background(), s.dev.Token(), s.payTo)
	if err != nil {
		t.Fatal(err)
	}
	return b.Int64()
}

type answer struct {
	code int
	body string
}

// Attack (reproduced): one payment header sent in several concurrent
// requests got the seller's content five times. One payment buys one
// service: the handler runs once; the others are refused without it.
func TestConcurrentReplayServedOnce(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	name, value := s.payHeader(t)
	s.release = make(chan struct{})
	const n = 5
	answers := make(chan answer, n)
	for range n {
		go func() {
			resp, body := get(t, s.url, map[string]string{name: value})
			answers <- answer{resp.StatusCode, body}
		}()
	}
	// The first request to reach the handler is held there; every other
	// one must be answered without it.
	var got []answer
	for range n - 1 {
		got = append(got, <-answers)
	}
	close(s.release)
	got = append(got, <-answers)
	served := 0
	for _, a := range got {
		switch {
		case a.code == 200 && strings.Contains(a.body, "SECRET"):
			served++
		case a.code != http.StatusPaymentRequired || strings.Contains(a.body, "SECRET"):
			t.Errorf("replayed request: %d %q", a.code, a.body)
		}
	}
	if served != 1 || s.served.Load() != 1 {
		t.Fatalf("one payment served %d responses and ran the handler %d times; want 1 and 1", served, s.served.Load())
	}
	if e := s.earned(t); e != 10000 {
		t.Fatalf("the seller earned %d; want 10000", e)
	}
	// Sequential replays after the settlement: refused, handler untouched.
	for range 2 {
		if resp, body := get(t, s.url, map[string]string{name: value}); resp.StatusCode != http.StatusPaymentRequired || strings.Contains(body, "SECRET") {
			t.Fatalf("replay after settlement: %d %q", resp.StatusCode, body)
		}
	}
	if s.served.Load() != 1 {
		t.Fatalf("the handler ran %d times for one payment", s.served.Load())
	}
}

// A payment whose handler failed was not charged, so it is not spent: the
// buyer may send it again and be served.
func TestFailedHandlerFreesPayment(t *testing.T) {
	t.Parallel()
	s := newShop(t)
	name, value := s.payHeader(t)
	s.status.Store(500)
	if resp, _ := get(t, s.url, map[string]string{name: value}); resp.StatusCode != 500 {
		t.Fatalf("failing handler: %d", resp.StatusCode)
	}
	s.status.Store(200)
	if resp, body := get(t, s.url, map[string]string{name: value}); resp.StatusCode != 200 || !strings.Contains(body, "SECRET") {
		t.Fatalf("retry after a failed handler: %d %q", resp.StatusCode, body)
	}
	if e := s.earned(t); e != 10000 {
		t.Fatalf("the seller earned %d; want 10000", e)
	}
}
