package app

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/facilitator"
)

// FacilitatorConfig is what `purser facilitator` accepts: a standalone
// x402 facilitator that settles on the given chains with one gas key.
type FacilitatorConfig struct {
	// Listen is the HTTP address.
	Listen string
	// RPC connects networks (CAIP-2) to JSON-RPC endpoints; at least one.
	// A chain whose id does not match its name is refused.
	RPC map[string]string
	// GasKey pays the gas of settlements on every network.
	GasKey *ecdsa.PrivateKey
	// Sellers, Secret, PayerRate and SourceRate are the facilitator's
	// policy (facilitator.Config documents them).
	Sellers               []common.Address
	Secret                string
	PayerRate, SourceRate int
	// Stderr receives the JSON log lines.
	Stderr io.Writer
}

// Facilitator is a running standalone facilitator.
type Facilitator struct {
	http    *http.Server
	ln      net.Listener
	settler string
	clients []*evm.Client
	served  chan error // Serve's result
}

// StartFacilitator dials the chains, then listens and serves; the caller
// must Run or Shutdown.
func StartFacilitator(ctx context.Context, cfg FacilitatorConfig) (_ *Facilitator, err error) {
	if cfg.GasKey == nil {
		return nil, errors.New("facilitator: no gas key")
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	f := &Facilitator{served: make(chan error, 1)}
	defer func() {
		if err != nil {
			f.closeClients()
		}
	}()
	signer := evm.KeySigner(cfg.GasKey)
	f.settler = signer.Address()
	nets := map[string]facilitator.Network{}
	for network, url := range cfg.RPC {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		cl, err := evm.Dial(dctx, url)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("rpc %s: %w", network, err)
		}
		f.clients = append(f.clients, cl)
		if got := "eip155:" + cl.ChainID().String(); got != network {
			return nil, fmt.Errorf("rpc %s: the endpoint serves %s", network, got)
		}
		nets[network] = facilitator.Network{Client: cl, Relayer: evm.NewRelayer(cl, signer)}
	}
	fac, err := facilitator.New(facilitator.Config{Networks: nets, Logger: slog.New(slog.NewJSONHandler(cfg.Stderr, nil)),
		Sellers: cfg.Sellers, Secret: cfg.Secret, PayerRate: cfg.PayerRate, SourceRate: cfg.SourceRate})
	if err != nil {
		return nil, err
	}
	f.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	f.http = facilitator.NewHTTPServer(fac.Handler())
	go func() { f.served <- f.http.Serve(f.ln) }()
	return f, nil
}

// Addr is the bound listen address.
func (f *Facilitator) Addr() string { return f.ln.Addr().String() }

// Settler is the gas key's address, which settles every payment.
func (f *Facilitator) Settler() string { return f.settler }

// Run serves until ctx ends, then shuts down (in-flight settlements get
// 30 s). It returns an error only if serving failed.
func (f *Facilitator) Run(ctx context.Context) error {
	select {
	case err := <-f.served:
		f.closeClients()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return f.Shutdown(context.Background())
	}
}

// Shutdown stops accepting, lets in-flight requests finish (up to 30 s)
// and closes the chain clients. A deadline missed is not an error: the
// process is leaving either way.
func (f *Facilitator) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = f.http.Shutdown(ctx)
	f.closeClients()
	return nil
}

func (f *Facilitator) closeClients() {
	for _, cl := range f.clients {
		cl.Close()
	}
	f.clients = nil
}
