package cli

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/app"
)

type facilitatorOpts struct {
	listen             string
	rpc                rpcFlags
	gasKey             string
	sellers            string
	secretFile         string
	payerRate, srcRate int
}

func facilitatorCommand() *command {
	return &command{
		name: "facilitator", args: "--rpc CAIP2=URL [--rpc ...] --gas-key FILE [--listen ADDR] [--sellers ADDR,...] [--secret-file FILE] [--rate-per-payer N] [--rate-per-source N]",
		summary: "run an x402 facilitator (/verify, /settle, /supported; exact EVM, v1 and v2) that settles with a gas key",
		kind:    kindNone,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.fac.listen, "listen", "127.0.0.1:8403", "listen `ADDR`ess")
			fs.Var(&o.fac.rpc, "rpc", "settle on a network through a JSON-RPC endpoint: `CAIP2=URL` (repeatable, at least one)")
			fs.StringVar(&o.fac.gasKey, "gas-key", "", "`FILE` holding the 0x-hex private key that pays gas (env PURSER_GAS_KEY: the file, or the key itself)")
			fs.StringVar(&o.fac.sellers, "sellers", "", "settle only for these payTo `ADDR`esses (comma-separated); default any")
			fs.StringVar(&o.fac.secretFile, "secret-file", "", "`FILE` holding a shared secret sellers must send as Authorization: Bearer (env PURSER_FACILITATOR_SECRET: the secret itself)")
			fs.IntVar(&o.fac.payerRate, "rate-per-payer", 20, "/verify and /settle calls per second per payer address (`N`, bursts of N; 0 unlimited)")
			fs.IntVar(&o.fac.srcRate, "rate-per-source", 200, "/verify and /settle calls per second per source IP (`N`, bursts of N; 0 unlimited)")
		},
		run: runFacilitator,
	}
}

// hexKeyRE is a secp256k1 private key as hex, with or without 0x.
var hexKeyRE = regexp.MustCompile(`^(0[xX])?[0-9a-fA-F]{64}$`)

// maxSecretFile bounds what is read from a key or secret file.
const maxSecretFile = 4 << 10

// readSecretFile reads a small file; its errors never name the file:
// the "name" may be a mistyped key or secret.
func readSecretFile(what, name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s names no readable file (%v)", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil || len(b) > maxSecretFile {
		return nil, fmt.Errorf("the file %s names is unreadable or larger than %d bytes", what, maxSecretFile)
	}
	return b, nil
}

// readGasKey loads the settlement key from the file that --gas-key names,
// or from PURSER_GAS_KEY: a file, or the hex key itself. No error quotes
// the value or the file: either may be the key, mistyped.
func readGasKey(v, source string, inline bool) (*ecdsa.PrivateKey, error) {
	s := strings.TrimSpace(v)
	if !hexKeyRE.MatchString(s) {
		b, err := readSecretFile(source, v)
		if err != nil {
			return nil, fmt.Errorf("gas key: %w", err)
		}
		s = strings.TrimSpace(string(b))
		if !hexKeyRE.MatchString(s) {
			return nil, fmt.Errorf("gas key: the file %s names does not hold a hex secp256k1 private key", source)
		}
	} else if !inline {
		// A key in argv shows in the process list.
		return nil, fmt.Errorf("gas key: %s takes a FILE, not the key itself; use a file or PURSER_GAS_KEY", source)
	}
	k, err := crypto.HexToECDSA(s[len(s)-64:])
	if err != nil {
		return nil, fmt.Errorf("gas key: %s: not a valid secp256k1 private key", source)
	}
	return k, nil
}

// facilitatorConfig turns the flags into the facilitator's policy.
func facilitatorConfig(e *env, o *opts) (app.FacilitatorConfig, error) {
	var cfg app.FacilitatorConfig
	if o.fac.payerRate < 0 || o.fac.srcRate < 0 {
		return cfg, usagef(o.path, "--rate-per-payer and --rate-per-source must be 0 (unlimited) or more")
	}
	cfg.PayerRate, cfg.SourceRate = o.fac.payerRate, o.fac.srcRate
	if o.fac.sellers != "" {
		for i, a := range strings.Split(o.fac.sellers, ",") {
			a = strings.TrimSpace(a)
			if !common.IsHexAddress(a) || common.HexToAddress(a) == (common.Address{}) {
				// By position: a value pasted here by mistake may be a secret.
				return cfg, usagef(o.path, "--sellers: entry %d is not a 0x address", i+1)
			}
			cfg.Sellers = append(cfg.Sellers, common.HexToAddress(a))
		}
	}
	secret := e.getenv("PURSER_FACILITATOR_SECRET")
	if o.fac.secretFile != "" {
		b, err := readSecretFile("--secret-file", o.fac.secretFile)
		if err != nil {
			return cfg, fmt.Errorf("secret: %w", err)
		}
		secret = string(b)
	}
	if secret = strings.TrimSpace(secret); secret != "" {
		if len(secret) < 16 || strings.ContainsAny(secret, " \t\r\n") {
			return cfg, errors.New("secret: the shared secret must be at least 16 characters, without spaces or line breaks")
		}
		cfg.Secret = secret
	} else if o.fac.secretFile != "" {
		return cfg, errors.New("secret: --secret-file names an empty file")
	}
	return cfg, nil
}

func runFacilitator(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if len(o.fac.rpc) == 0 {
		return usagef(o.path, "at least one --rpc CAIP2=URL is required")
	}
	cfg, err := facilitatorConfig(e, o)
	if err != nil {
		return err
	}
	keySrc, source, inline := o.fac.gasKey, "--gas-key", false
	if keySrc == "" {
		keySrc, source, inline = e.getenv("PURSER_GAS_KEY"), "PURSER_GAS_KEY", true
	}
	if keySrc == "" {
		return usagef(o.path, "no gas key: pass --gas-key FILE or set PURSER_GAS_KEY")
	}
	if cfg.GasKey, err = readGasKey(keySrc, source, inline); err != nil {
		return err
	}
	cfg.Listen, cfg.RPC, cfg.Stderr = o.fac.listen, o.fac.rpc, e.stdio.Err
	f, err := app.StartFacilitator(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdio.Out, "purser facilitator listening on http://%s (settling as %s)\n", f.Addr(), f.Settler())
	return f.Run(ctx)
}
