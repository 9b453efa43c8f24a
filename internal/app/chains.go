package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/rails"
	"github.com/purserhq/purser/internal/spend"
)

// RelayerIndex is the BIP-32 index of the relayer wallet (the gas payer
// of payouts), kept far from the agents' indexes, which count up from 0.
const RelayerIndex = 1<<31 - 1

// devRelayerETH is the gas money the relayer gets on the dev chain at start.
var devRelayerETH = new(big.Int).Mul(big.NewInt(1000), big.NewInt(1e18))

// assetFile is one entry of the --assets JSON file.
type assetFile struct {
	Symbol        string `json:"symbol"`
	Network       string `json:"network"`
	Address       string `json:"address"`
	Decimals      uint8  `json:"decimals"`
	USD           bool   `json:"usd"`
	EIP712Name    string `json:"eip712_name"`
	EIP712Version string `json:"eip712_version"`
}

// loadAssets reads the --assets file (a JSON array; unknown fields are
// refused, so a misspelt field never silently drops a setting).
func loadAssets(path string) ([]money.Asset, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("assets: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var in []assetFile
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("assets %s: %w", path, err)
	}
	out := make([]money.Asset, len(in))
	for i, a := range in {
		if a.Decimals == 0 || a.Decimals > 36 {
			return nil, fmt.Errorf("assets %s: %s on %s: decimals must be 1-36", path, a.Symbol, a.Network)
		}
		out[i] = money.Asset{Symbol: a.Symbol, Network: a.Network, Address: a.Address, Decimals: a.Decimals, USD: a.USD,
			EIP712Name: a.EIP712Name, EIP712Version: a.EIP712Version}
	}
	return out, nil
}

// chainSet is what the server knows of EVM chains: clients by network,
// relayers, the embedded dev chain if any.
type chainSet struct {
	clients  rails.Chains
	relayers map[string]*evm.Relayer
	dev      *devchain.Chain
	relayer  string // the relayer's address (the same on every network)
}

func (c *chainSet) networks() []string {
	out := make([]string, 0, len(c.clients))
	for n := range c.clients {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (c *chainSet) close() {
	for _, cl := range c.clients {
		cl.Close()
	}
	if c.dev != nil {
		c.dev.Close()
	}
}

// openChains starts the dev chain (if asked) and dials every --rpc
// endpoint; a chain whose id does not match its CAIP-2 name is refused.
func openChains(ctx context.Context, cfg Config, ks *keystore.Keystore, log *slog.Logger) (*chainSet, []money.Asset, error) {
	cs := &chainSet{clients: rails.Chains{}, relayers: map[string]*evm.Relayer{}}
	relayerWallet, err := ks.Wallet(RelayerIndex)
	if err != nil {
		return nil, nil, err
	}
	cs.relayer = relayerWallet.Address()
	var extra []money.Asset
	fail := func(err error) (*chainSet, []money.Asset, error) {
		cs.close()
		return nil, nil, err
	}
	if cfg.DevChain {
		dev, err := devchain.Start(devchain.Config{Listen: cfg.DevChainListen, Logger: log})
		if err != nil {
			return fail(fmt.Errorf("dev chain: %w", err))
		}
		cs.dev = dev
		cs.clients[dev.Network()] = dev.Client()
		extra = append(extra, money.Asset{Symbol: "USDC", Network: dev.Network(), Address: dev.Token().Hex(), Decimals: 6, USD: true,
			EIP712Name: "USD Coin", EIP712Version: "2"})
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = dev.FundETH(fctx, common.HexToAddress(cs.relayer), devRelayerETH)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("dev chain: fund relayer: %w", err))
		}
	}
	for network, url := range cfg.RPC {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		cl, err := evm.Dial(dctx, url)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("rpc %s: %w", network, err))
		}
		if want := "eip155:" + cl.ChainID().String(); want != network {
			cl.Close()
			return fail(fmt.Errorf("rpc %s: the endpoint serves chain %s", network, want))
		}
		if old := cs.clients[network]; old != nil {
			old.Close()
		}
		cs.clients[network] = cl
	}
	for network, cl := range cs.clients {
		cs.relayers[network] = evm.NewRelayer(cl, relayerWallet)
	}
	return cs, extra, nil
}

// agentWallets returns the rails' view of agents' wallets.
func agentWallets(svc func() *spend.Service, ks *keystore.Keystore) rails.WalletFunc {
	return func(ctx context.Context, agentID string) (evm.HashSigner, error) {
		s := svc()
		if s == nil {
			return nil, errors.New("app: service not ready")
		}
		a, cosigned, err := s.WalletOf(ctx, agentID)
		if err != nil {
			return nil, err
		}
		if cosigned != "" {
			// A co-signed wallet has no server-held key; deriving one
			// would hand out an address nobody funds, or worse.
			return nil, &rails.CosignedWallet{Address: cosigned}
		}
		if a.Custody != spend.CustodyServer {
			return nil, fmt.Errorf("app: agent %s has a %s wallet: the server holds no key for it", a.ID, a.Custody)
		}
		return ks.Wallet(a.WalletIndex)
	}
}

// chainInfo serves the API's on-chain reads.
type chainInfo struct{ cs *chainSet }

func (c chainInfo) Networks() []string { return c.cs.networks() }

func (c chainInfo) Balance(ctx context.Context, network, token, owner string) (*big.Int, error) {
	cl := c.cs.clients[network]
	if cl == nil {
		return nil, fmt.Errorf("no chain for %s", network)
	}
	return cl.BalanceOf(ctx, common.HexToAddress(token), common.HexToAddress(owner))
}

// devFaucet mints the dev chain's USDC.
type devFaucet struct{ dev *devchain.Chain }

func (f devFaucet) Network() string { return f.dev.Network() }

func (f devFaucet) Fund(ctx context.Context, to string, amount *big.Int) (string, error) {
	tx, err := f.dev.Mint(ctx, common.HexToAddress(to), amount)
	if err != nil {
		return "", err
	}
	return tx.Hex(), nil
}
