package devchain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/log"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/evm/token"
)

// Config configures a dev chain. The zero value is usable.
type Config struct {
	// ChainID is the EIP-155 chain id. Default 1337.
	ChainID uint64
	// Listen is the JSON-RPC HTTP address. Default "127.0.0.1:0" (a free
	// loopback port; see Chain.RPCURL).
	Listen string
	// Logger receives start-up and mining errors. Default: discard.
	Logger *slog.Logger
	// MaxClockLead bounds how far the head's timestamp may run ahead of the
	// wall clock (whole seconds). Each block needs a timestamp above its
	// parent's, so beyond this lead the chain seals at most one block per
	// second, batching whatever arrived. A larger lead lets long runs of
	// dependent transactions mine faster, at the cost of chain time running
	// ahead of real time. Default 3s.
	MaxClockLead time.Duration
}

// Token parameters of the dev chain's DevUSD, matching Base mainnet USDC's
// EIP-712 domain name and version.
const (
	TokenName     = "USD Coin"
	TokenSymbol   = "USDC"
	TokenVersion  = "2"
	TokenDecimals = 6
)

const (
	defaultClockLead = 3 * time.Second
	// idlePoll is the fallback pool check in case a new-transaction event
	// was missed.
	idlePoll = 50 * time.Millisecond
	// heartbeat is the idle block interval in seconds (Base makes one every 2 s).
	heartbeat = 2
	// waitTimeout bounds Start's own transactions.
	waitTimeout = 30 * time.Second
)

// faucetETH is the faucet's genesis balance: 1e9 ETH.
var faucetETH = new(big.Int).Mul(big.NewInt(1e9), big.NewInt(params.Ether))

// Chain is a running dev chain. Its methods are safe for concurrent use.
type Chain struct {
	log     *slog.Logger
	chainID *big.Int
	lead    uint64 // MaxClockLead in seconds
	stack   *node.Node
	backend *eth.Ethereum
	beacon  *catalyst.SimulatedBeacon
	rpcURL  string
	client  *evm.Client
	ec      *ethclient.Client
	faucet  *evm.Relayer
	token   common.Address

	stop      chan struct{}
	mined     chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start starts a dev chain, deploys DevUSD and returns once the token is
// mined. Call Close to stop it.
func Start(cfg Config) (*Chain, error) {
	if cfg.ChainID == 0 {
		cfg.ChainID = 1337
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxClockLead == 0 {
		cfg.MaxClockLead = defaultClockLead
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("devchain: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("devchain: listen port %q: %w", portStr, err)
	}
	if host == "" {
		return nil, fmt.Errorf("devchain: listen address %q has no host", cfg.Listen)
	}

	key, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	c := &Chain{
		log:     cfg.Logger,
		chainID: new(big.Int).SetUint64(cfg.ChainID),
		lead:    uint64(max(cfg.MaxClockLead, 0) / time.Second),
		stop:    make(chan struct{}),
		mined:   make(chan struct{}),
	}
	if err := c.startNode(host, int(port), crypto.PubkeyToAddress(key.PublicKey)); err != nil {
		return nil, err
	}
	if err := c.setup(key); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.log.Info("dev chain started (in memory, not for production)",
		"rpc", c.rpcURL, "network", c.Network(), "token", c.token.Hex())
	return c, nil
}

func (c *Chain) startNode(host string, port int, faucet common.Address) error {
	nodeConf := node.DefaultConfig
	nodeConf.DataDir = "" // in memory
	nodeConf.P2P = p2p.Config{NoDiscovery: true, MaxPeers: 0}
	nodeConf.HTTPHost = host
	nodeConf.HTTPPort = port
	nodeConf.HTTPModules = []string{"eth", "net", "web3"}
	nodeConf.Logger = log.NewLogger(levelFilter{c.log.Handler(), slog.LevelWarn})

	// The chain runs every fork from genesis, so the system contracts those
	// forks call must be there too (as in go-ethereum's simulated backend).
	alloc := core.SystemContractAllocs()
	alloc[faucet] = types.Account{Balance: faucetETH}
	chainConf := *params.AllDevChainProtocolChanges
	chainConf.ChainID = c.chainID

	ethConf := ethconfig.Defaults
	ethConf.NetworkId = c.chainID.Uint64()
	ethConf.Genesis = &core.Genesis{Config: &chainConf, GasLimit: ethconfig.Defaults.Miner.GasCeil, Alloc: alloc}
	ethConf.SyncMode = ethconfig.FullSync
	ethConf.TxPool.NoLocals = true
	// Unindexed log search: the background log indexer lags the head, and a
	// dev chain is small enough to scan.
	ethConf.LogNoHistory = true

	stack, err := node.New(&nodeConf)
	if err != nil {
		return fmt.Errorf("devchain: node: %w", err)
	}
	backend, err := eth.New(stack, &ethConf)
	if err != nil {
		_ = stack.Close()
		return fmt.Errorf("devchain: eth: %w", err)
	}
	stack.RegisterAPIs([]rpc.API{{
		Namespace: "eth",
		Service:   filters.NewFilterAPI(filters.NewFilterSystem(backend.APIBackend, filters.Config{})),
	}})
	if err := stack.Start(); err != nil {
		_ = stack.Close()
		return fmt.Errorf("devchain: start: %w", err)
	}
	// Period 0: the beacon seals only when asked; mineLoop asks.
	beacon, err := catalyst.NewSimulatedBeacon(0, common.Address{}, backend)
	if err == nil {
		err = beacon.Fork(backend.BlockChain().GetCanonicalHash(0))
	}
	if err != nil {
		_ = stack.Close()
		return fmt.Errorf("devchain: beacon: %w", err)
	}
	c.stack, c.backend, c.beacon = stack, backend, beacon
	c.rpcURL = stack.HTTPEndpoint()
	go c.mineLoop()
	return nil
}

func (c *Chain) setup(key *ecdsa.PrivateKey) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c.ec = ethclient.NewClient(c.stack.Attach())
	cl, err := evm.NewClient(ctx, c.ec)
	if err != nil {
		return err
	}
	c.client = cl
	c.faucet = evm.NewRelayer(cl, evm.KeySigner(key))
	code := append(token.Bytecode(), token.Binding().PackConstructor(TokenName, TokenSymbol, TokenVersion, TokenDecimals, c.faucet.Address())...)
	h, addr, err := c.faucet.Deploy(ctx, code)
	if err != nil {
		return fmt.Errorf("devchain: deploy token: %w", err)
	}
	if _, err := c.waitOK(ctx, h); err != nil {
		return fmt.Errorf("devchain: deploy token: %w", err)
	}
	c.token = addr
	return nil
}

// mineLoop seals a block whenever the pool holds executable transactions.
func (c *Chain) mineLoop() {
	defer close(c.mined)
	events := make(chan core.NewTxsEvent, 1024)
	sub := c.backend.TxPool().SubscribeTransactions(events, true)
	defer sub.Unsubscribe()
	timer := time.NewTimer(idlePoll)
	defer timer.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-events:
		case <-timer.C:
		}
		wait := c.mineOnce()
		for drained := false; !drained; {
			select {
			case <-events:
			default:
				drained = true
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// mineOnce seals a block if transactions are pending and the next block's
// timestamp stays within the clock lead; it returns when to look again.
func (c *Chain) mineOnce() time.Duration {
	now := time.Now()
	if pending, _ := c.backend.TxPool().Stats(); pending == 0 {
		// A heartbeat block, as a real chain makes one every few
		// seconds: the head's clock is what proves an authorization
		// expired (validBefore passed), so it must not stand still.
		if head := c.backend.BlockChain().CurrentBlock().Time; uint64(now.Unix()) >= head+heartbeat {
			c.beacon.Commit()
		}
		return idlePoll
	}
	head := c.backend.BlockChain().CurrentBlock().Time
	if next := head + 1; next > uint64(now.Unix())+c.lead {
		// Let the clock catch up; pending transactions batch meanwhile.
		at := time.Unix(int64(next-c.lead), 0)
		return max(time.Until(at), time.Millisecond)
	}
	c.beacon.Commit()
	if pending, _ := c.backend.TxPool().Stats(); pending > 0 {
		return 0 // more than a block's worth, or arrivals during sealing
	}
	return idlePoll
}

// RPCURL returns the JSON-RPC HTTP endpoint, e.g. http://127.0.0.1:PORT.
func (c *Chain) RPCURL() string { return c.rpcURL }

// ChainID returns the chain id (a copy).
func (c *Chain) ChainID() *big.Int { return new(big.Int).Set(c.chainID) }

// Network returns the CAIP-2 name, e.g. "eip155:1337".
func (c *Chain) Network() string { return "eip155:" + c.chainID.String() }

// Token returns DevUSD's address.
func (c *Chain) Token() common.Address { return c.token }

// Client returns an in-process client on the chain. Chain.Close closes it.
func (c *Chain) Client() *evm.Client { return c.client }

// Faucet returns the address that deployed the token, mints, and pays for FundETH.
func (c *Chain) Faucet() common.Address { return c.faucet.Address() }

// Mint mints DevUSD atomic units to `to` and waits until it is mined.
func (c *Chain) Mint(ctx context.Context, to common.Address, amount *big.Int) (common.Hash, error) {
	if amount == nil || amount.Sign() <= 0 {
		return common.Hash{}, errors.New("devchain: mint amount must be positive")
	}
	data, err := token.Binding().TryPackMint(to, amount)
	if err != nil {
		return common.Hash{}, fmt.Errorf("devchain: mint: %w", err)
	}
	h, err := c.faucet.Send(ctx, c.token, data, nil)
	if err != nil {
		return common.Hash{}, fmt.Errorf("devchain: mint: %w", err)
	}
	if _, err := c.waitOK(ctx, h); err != nil {
		return h, fmt.Errorf("devchain: mint: %w", err)
	}
	return h, nil
}

// FundETH sends wei (for gas) from the faucet to `to` and waits until it is mined.
func (c *Chain) FundETH(ctx context.Context, to common.Address, wei *big.Int) (common.Hash, error) {
	if wei == nil || wei.Sign() <= 0 {
		return common.Hash{}, errors.New("devchain: fund amount must be positive")
	}
	h, err := c.faucet.Send(ctx, to, nil, wei)
	if err != nil {
		return common.Hash{}, fmt.Errorf("devchain: fund: %w", err)
	}
	if _, err := c.waitOK(ctx, h); err != nil {
		return h, fmt.Errorf("devchain: fund: %w", err)
	}
	return h, nil
}

func (c *Chain) waitOK(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	r, err := c.client.WaitReceipt(ctx, h)
	if err != nil {
		return nil, err
	}
	if r.Status != types.ReceiptStatusSuccessful {
		return r, fmt.Errorf("transaction %s reverted", h)
	}
	// The node can answer a receipt of a block it stored before it made
	// that block its head; a read of the latest state right after must
	// see the transaction, so wait for the head too (a balance read after
	// a mint found the old balance once under load).
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		head, err := c.client.BlockNumber(ctx)
		if err == nil && r.BlockNumber != nil && head >= r.BlockNumber.Uint64() {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("transaction %s mined but not at the head: %w", h, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Close stops mining and the node, frees the RPC port and discards all state.
func (c *Chain) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.mined
		if c.ec != nil {
			c.ec.Close()
		}
		c.closeErr = errors.Join(c.beacon.Stop(), c.stack.Close())
	})
	return c.closeErr
}

// levelFilter passes go-ethereum's records at or above min to h: its Info
// level narrates every block.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.h.WithAttrs(a), f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler { return levelFilter{f.h.WithGroup(n), f.min} }
