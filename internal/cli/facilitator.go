package cli

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/facilitator"
)

type facilitatorOpts struct {
	listen string
	rpc    rpcFlags
	gasKey string
}

func facilitatorCommand() *command {
	return &command{
		name: "facilitator", args: "--rpc CAIP2=URL [--rpc ...] --gas-key FILE [--listen ADDR]",
		summary: "run an x402 facilitator (/verify, /settle, /supported; exact EVM, v1 and v2) that settles with a gas key",
		kind:    kindNone,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.fac.listen, "listen", "127.0.0.1:8403", "listen `ADDR`ess")
			fs.Var(&o.fac.rpc, "rpc", "settle on a network through a JSON-RPC endpoint: `CAIP2=URL` (repeatable, at least one)")
			fs.StringVar(&o.fac.gasKey, "gas-key", "", "`FILE` holding the 0x-hex private key that pays gas (env PURSER_GAS_KEY: the file, or the key itself)")
		},
		run: runFacilitator,
	}
}

// readGasKey loads the settlement key from a file or, for PURSER_GAS_KEY,
// from the value itself when it is a hex key.
func readGasKey(v string) (*ecdsa.PrivateKey, error) {
	s := strings.TrimSpace(v)
	if !strings.HasPrefix(s, "0x") || len(s) != 66 {
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("gas key: %w", err)
		}
		s = strings.TrimSpace(string(b))
	}
	k, err := crypto.HexToECDSA(strings.TrimPrefix(s, "0x"))
	if err != nil {
		return nil, errors.New("gas key: not a 0x-hex secp256k1 private key")
	}
	return k, nil
}

func runFacilitator(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if len(o.fac.rpc) == 0 {
		return usagef(o.path, "at least one --rpc CAIP2=URL is required")
	}
	keySrc := o.fac.gasKey
	if keySrc == "" {
		keySrc = e.getenv("PURSER_GAS_KEY")
	}
	if keySrc == "" {
		return usagef(o.path, "no gas key: pass --gas-key FILE or set PURSER_GAS_KEY")
	}
	key, err := readGasKey(keySrc)
	if err != nil {
		return err
	}
	signer := evm.KeySigner(key)
	log := slog.New(slog.NewJSONHandler(e.stdio.Err, nil))
	nets := map[string]facilitator.Network{}
	for network, url := range o.fac.rpc {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		cl, err := evm.Dial(dctx, url)
		cancel()
		if err != nil {
			return fmt.Errorf("rpc %s: %w", network, err)
		}
		defer cl.Close()
		if got := "eip155:" + cl.ChainID().String(); got != network {
			return fmt.Errorf("rpc %s: the endpoint serves %s", network, got)
		}
		nets[network] = facilitator.Network{Client: cl, Relayer: evm.NewRelayer(cl, signer)}
	}
	f, err := facilitator.New(facilitator.Config{Networks: nets, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.fac.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 3 * time.Minute}
	fmt.Fprintf(e.stdio.Out, "purser facilitator listening on http://%s (settling as %s)\n", ln.Addr(), signer.Address())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
