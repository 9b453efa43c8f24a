package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/facilitator"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

// DemoListen is Purser's default address in `purser demo`: when it is
// taken, StartDemo takes a free port instead.
const DemoListen = "127.0.0.1:8402"

// DemoConfig is what `purser demo` starts.
type DemoConfig struct {
	// DataDir holds Purser's files (SQLite, keys, owner.token); required:
	// the caller owns it, and removes it if it made it temporary.
	DataDir string
	// Listen is Purser's address. DemoListen, if taken (a server of the
	// user's may hold it), becomes a free port.
	Listen string
	// FacilitatorListen and SellerListen are the facilitator's and the
	// sample paid API's addresses (default 127.0.0.1:0).
	FacilitatorListen, SellerListen string
	// Stderr receives Purser's warnings and the demo servers' errors.
	Stderr io.Writer
}

// demoPrices are the sample API's routes: green, yellow and red under the
// demo mandate (auto-approve up to 0.10, hard cap 1.00).
var demoPrices = []struct{ path, amount, desc string }{
	{"/weather", "10000", "today's weather (0.01 USDC)"},
	{"/report", "250000", "a market report (0.25 USDC)"},
	{"/premium", "5000000", "the premium dataset (5.00 USDC)"},
}

// Demo is a running `purser demo`: Purser on SQLite with the embedded dev
// chain, an x402 facilitator settling on that chain with its own gas key,
// and a sample API that charges for its routes through that facilitator.
// It is a playground: the chain's state is lost at Shutdown.
type Demo struct {
	// PurserURL, FacilitatorURL and SellerURL are the servers' base URLs.
	PurserURL, FacilitatorURL, SellerURL string
	// OwnerToken is the owner's API token (from DataDir/owner.token).
	OwnerToken string
	// Network, RPCURL and Token describe the dev chain: its CAIP-2 id,
	// its JSON-RPC URL and its USDC contract.
	Network, RPCURL, Token string
	// Seller is the address the sample API is paid to.
	Seller string

	srv     *Server
	dev     *devchain.Chain
	seller  common.Address
	closers []func() // in start order; Shutdown runs them in reverse
}

// demoGasETH is the facilitator's gas money on the dev chain.
var demoGasETH = new(big.Int).Mul(big.NewInt(100), big.NewInt(1e18))

// StartDemo starts the demo's servers; the caller must Shutdown. On error
// whatever had started is stopped.
func StartDemo(ctx context.Context, cfg DemoConfig) (_ *Demo, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("demo: no data directory")
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.FacilitatorListen == "" {
		cfg.FacilitatorListen = "127.0.0.1:0"
	}
	if cfg.SellerListen == "" {
		cfg.SellerListen = "127.0.0.1:0"
	}
	if cfg.Listen == DemoListen {
		if ln, err := net.Listen("tcp", cfg.Listen); err != nil {
			cfg.Listen = "127.0.0.1:0"
		} else {
			ln.Close()
		}
	}
	d := &Demo{}
	defer func() {
		if err != nil {
			d.Shutdown(context.Background())
		}
	}()
	srv, err := Start(ctx, Config{DataDir: cfg.DataDir, Listen: cfg.Listen, DevChain: true, LogLevel: "warn",
		HoldTTL: 15 * time.Minute, Stdout: io.Discard, Stderr: cfg.Stderr})
	if err != nil {
		return nil, fmt.Errorf("start purser: %w", err)
	}
	d.closers = append(d.closers, func() { srv.Shutdown(context.Background()) })
	d.srv, d.dev = srv, srv.DevChain()
	d.PurserURL = "http://" + srv.Addr()
	d.Network, d.RPCURL, d.Token = d.dev.Network(), d.dev.RPCURL(), d.dev.Token().Hex()

	// The facilitator settles with its own gas key, funded on the dev
	// chain, as a third party's would: Purser's relayer is not involved.
	gasKey, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	if _, err := d.dev.FundETH(ctx, crypto.PubkeyToAddress(gasKey.PublicKey), demoGasETH); err != nil {
		return nil, err
	}
	fac, err := facilitator.New(facilitator.Config{Networks: map[string]facilitator.Network{
		d.Network: {Client: d.dev.Client(), Relayer: evm.NewRelayer(d.dev.Client(), evm.KeySigner(gasKey))}}})
	if err != nil {
		return nil, err
	}
	d.FacilitatorURL, err = d.serve(cfg.FacilitatorListen, fac.Handler(), cfg.Stderr)
	if err != nil {
		return nil, err
	}

	sellerKey, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	d.seller = crypto.PubkeyToAddress(sellerKey.PublicKey)
	d.Seller = d.seller.Hex()
	h, err := demoSeller(d.FacilitatorURL, d.Network, d.Token, d.Seller)
	if err != nil {
		return nil, err
	}
	if d.SellerURL, err = d.serve(cfg.SellerListen, h, cfg.Stderr); err != nil {
		return nil, err
	}

	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "owner.token"))
	if err != nil {
		return nil, err
	}
	d.OwnerToken = strings.TrimSpace(string(tok))
	return d, nil
}

// Checkpoint signs a checkpoint of Purser's audit chain now.
func (d *Demo) Checkpoint(ctx context.Context) error { return d.srv.Checkpoint(ctx) }

// SellerBalance is what the seller holds on the dev chain, in USDC
// (e.g. "0.26").
func (d *Demo) SellerBalance(ctx context.Context) (string, error) {
	bal, err := d.dev.Client().BalanceOf(ctx, d.dev.Token(), d.seller)
	if err != nil {
		return "", err
	}
	return money.FormatAmount(bal, 6), nil
}

// Shutdown stops the sample API, the facilitator and Purser (with its dev
// chain), in that order: each stops before what it calls.
func (d *Demo) Shutdown(ctx context.Context) {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// serve serves h on addr until Shutdown, and returns its base URL.
func (d *Demo) serve(addr string, h http.Handler, stderr io.Writer) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "demo server:", err)
		}
	}()
	d.closers = append(d.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String(), nil
}

// demoSeller is the sample paid API, charged with Purser's middleware.
func demoSeller(facURL, network, token, payTo string) (http.Handler, error) {
	var routes []middleware.Route
	for _, p := range demoPrices {
		routes = append(routes, middleware.Route{Pattern: "GET " + p.path, Amount: p.amount, Asset: token, Network: network,
			PayTo: payTo, EIP712Name: "USD Coin", EIP712Version: "2", Description: p.desc, MimeType: "application/json"})
	}
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: facURL}, Routes: routes})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /weather", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"city":"Lisbon","forecast":"sunny","high_c":19}`)
	})
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"report":"stablecoin volumes up 4% week on week"}`)
	})
	mux.HandleFunc("GET /premium", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"dataset":"premium"}`)
	})
	return mw(mux), nil
}
