// Package app is Purser's composition root: it turns a Config into a
// running server (keystore, store, spend service, HTTP API, background
// sweepers) and shuts it down cleanly. It wires the other long-running
// commands too: StartDemo (Purser, the dev chain, a facilitator and a
// sample paid API) and StartFacilitator (a standalone x402 facilitator).
// Only internal/cli imports it; cli parses flags and prints, app decides
// what runs and how it is connected.
package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/apiproxy"
	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/cosignsrv"
	"github.com/purserhq/purser/internal/devchain"
	"github.com/purserhq/purser/internal/httpapi"
	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/mandate"
	"github.com/purserhq/purser/internal/metrics"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/owners"
	"github.com/purserhq/purser/internal/portal"
	"github.com/purserhq/purser/internal/rails"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/store/postgres"
	"github.com/purserhq/purser/internal/store/sqlite"
	"github.com/purserhq/purser/internal/store/sqlstore"
	"github.com/purserhq/purser/internal/webhook"
)

// Config is what `purser serve` accepts. Every field is documented in
// docs/operations.md.
type Config struct {
	// DataDir holds the SQLite database, the encrypted master seed, the
	// key-encryption key file (unless PURSER_PASSPHRASE is set), the owner
	// token and the audit public key. Created with mode 0700.
	DataDir string
	// Listen is the HTTP address; keep it on loopback unless a TLS proxy
	// fronts it.
	Listen string
	// DB is "" for SQLite in DataDir, or a postgres:// URL.
	DB string
	// HoldTTL is how long an authorized spend holds budget before it
	// expires unused.
	HoldTTL time.Duration
	// ApprovalTTL is how long a spend waits for an owner's decision.
	ApprovalTTL time.Duration
	// AgentRate bounds each agent's requests before anything is written
	// (default 200 per second, bursts of twice that). "--agent-rate
	// N/DURATION"; NoAgentRate ("--agent-rate 0") turns it off.
	AgentRate   mandate.Rate
	NoAgentRate bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Passphrase, when set, derives the key-encryption key with argon2id
	// instead of the key file in DataDir (from PURSER_PASSPHRASE).
	Passphrase string
	// DefaultNetwork is the CAIP-2 network of spends that name none
	// (default: the dev chain when it runs, else eip155:8453).
	DefaultNetwork string
	// RPC connects networks (CAIP-2) to JSON-RPC endpoints, for payouts,
	// reconciliation and balances.
	RPC map[string]string
	// DevChain runs the embedded EVM dev chain with its USDC token.
	DevChain bool
	// DevChainListen is the dev chain's JSON-RPC address (default
	// 127.0.0.1:0, a free port).
	DevChainListen string
	// AssetsFile names a JSON file of further assets.
	AssetsFile string
	// MaxOpenSpends caps an agent's open signed spends (signed x402 and
	// payout authorizations not settled yet, and unknown outcomes): at
	// the cap, its authorizations on those rails are refused
	// too_many_open_spends. 0: 100; negative: no cap.
	MaxOpenSpends int
	// Assets are further assets (for embedding and tests).
	Assets []money.Asset
	// HostNames are further names the server answers to in the Host
	// header (behind a proxy: its public name). localhost, IP literals
	// and the host of Listen are always served; "*" turns the check off.
	// Any other name is refused (host_not_served), which defeats DNS
	// rebinding.
	HostNames []string
	// PublicURL is the portal's origin as browsers reach it
	// (scheme://host[:port]): the passkeys' origin and relying-party id,
	// and the host of enrolment links. Default http://localhost:PORT (RP
	// id localhost, a secure context without TLS); behind a TLS proxy,
	// https://wallet.example.com. Webhook payloads link to its pages.
	PublicURL string
	// MetricsAuth is "none" (default: /metrics is open) or "owner"
	// (/metrics needs the owner token).
	MetricsAuth string
	// WebhookRetry is how failed webhook deliveries back off (defaults in
	// webhook.RetryPolicy; tests shorten it).
	WebhookRetry webhook.RetryPolicy
	// WebhookPoll is how often the webhook dispatcher looks for work
	// (default 1 s).
	WebhookPoll time.Duration
	// AcceptUnboundSignatures also accepts version 1 agent signatures,
	// which bind no deployment, while agents upgrade (docs/api.md).
	AcceptUnboundSignatures bool
	Stdout, Stderr          io.Writer
	// Ready, if set, receives the bound address once the server accepts
	// requests (tests listen on port 0).
	Ready func(addr string)
}

// WithDefaults fills in unset fields.
func (c Config) WithDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = "purser-data"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8402"
	}
	if c.HoldTTL == 0 {
		c.HoldTTL = 15 * time.Minute
	}
	if c.ApprovalTTL == 0 {
		c.ApprovalTTL = time.Hour
	}
	if c.AgentRate == (mandate.Rate{}) {
		c.AgentRate = mandate.Rate{Count: 200, Per: time.Second}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	return c
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.HoldTTL < time.Second {
		errs = append(errs, errors.New("hold-ttl must be at least 1s"))
	}
	if c.ApprovalTTL < time.Second {
		errs = append(errs, errors.New("approval-ttl must be at least 1s"))
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		errs = append(errs, errors.New("db must be empty (SQLite) or a postgres:// URL"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	switch c.MetricsAuth {
	case "", "none", "owner":
	default:
		errs = append(errs, fmt.Errorf("metrics-auth %q: use none or owner", c.MetricsAuth))
	}
	if c.PublicURL != "" {
		if _, _, _, err := owners.ParsePublicURL(c.PublicURL); err != nil {
			errs = append(errs, fmt.Errorf("public-url: %w", err))
		}
	}
	for _, h := range c.HostNames {
		if h == "" || strings.ContainsAny(h, "/:@ ") && !strings.HasPrefix(h, "[") {
			errs = append(errs, fmt.Errorf("host-names: %q is not a host name (give names without scheme or port)", h))
		}
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// Networks served by the wallet deriver: one EVM address per agent on
// every configured EVM network.
var defaultNetworks = []string{"eip155:8453", "eip155:84532"}

// walletProvider derives agents' wallets from the keystore.
type walletProvider struct {
	ks       *keystore.Keystore
	networks []string
}

func (p walletProvider) Wallets(index uint32) ([]spend.Wallet, error) {
	sg, err := p.ks.Wallet(index)
	if err != nil {
		return nil, err
	}
	out := make([]spend.Wallet, len(p.networks))
	for i, n := range p.networks { // one secp256k1 key: the same address on every EVM network
		out[i] = spend.Wallet{Network: n, Address: sg.Address(), Custody: "keystore", Path: sg.Path()}
	}
	return out, nil
}

// Server is a running Purser.
type Server struct {
	log    *slog.Logger
	store  *sqlstore.Store
	svc    *spend.Service
	chains *chainSet
	http   *http.Server
	ln     net.Listener
	owners *owners.Auth
	vault  *apiproxy.Vault
	bgWG   sync.WaitGroup
	stopBG context.CancelFunc
}

// Serve runs Purser until ctx ends, then shuts down: in-flight requests
// finish (up to 30 s), background work stops, the database is closed.
func Serve(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Shutdown(context.Background())
}

// Start opens everything and starts serving; the caller must Shutdown.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewJSONHandler(cfg.Stderr, &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := secureDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	// Take the port first: a second server on the same address fails
	// before it touches the keys or the database.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			ln.Close()
		}
	}()
	var kek keystore.KEKSource = keystore.FileKEK{Path: filepath.Join(cfg.DataDir, "kek")}
	if cfg.Passphrase != "" {
		kek = keystore.PassphraseKEK{Passphrase: []byte(cfg.Passphrase)}
	}
	ks, err := keystore.Open(cfg.DataDir, kek)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	token, err := ownerToken(filepath.Join(cfg.DataDir, "owner.token"))
	if err != nil {
		return nil, err
	}
	auditSigner := ks.AuditSigner()
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, "audit.pub"), []byte(hex.EncodeToString(auditSigner.Public())+"\n"), 0o644); err != nil {
		return nil, err
	}
	var st *sqlstore.Store
	if cfg.DB == "" {
		dbPath := filepath.Join(cfg.DataDir, "purser.db")
		if err := createPrivate(dbPath); err != nil {
			return nil, err
		}
		st, err = sqlite.Open(ctx, dbPath, log)
		if err == nil {
			err = secureDataDir(cfg.DataDir, log) // SQLite created -wal and -shm
			if err != nil {
				st.Close()
			}
		}
	} else {
		st, err = postgres.Open(ctx, cfg.DB, log)
	}
	if err != nil {
		return nil, err
	}
	chains, devAssets, err := openChains(ctx, cfg, ks, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	fileAssets, err := loadAssets(cfg.AssetsFile)
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	assets, err := money.NewRegistry(slices.Concat(money.DefaultAssets(), devAssets, fileAssets, cfg.Assets)...)
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	if cfg.DefaultNetwork == "" {
		cfg.DefaultNetwork = "eip155:8453"
		if chains.dev != nil {
			cfg.DefaultNetwork = chains.dev.Network()
		}
	}
	networks := slices.Clone(defaultNetworks)
	for _, a := range assets.Assets() {
		if strings.HasPrefix(a.Network, "eip155:") && !slices.Contains(networks, a.Network) {
			networks = append(networks, a.Network)
		}
	}
	var svc *spend.Service
	common := rails.Common{Assets: assets, Wallet: agentWallets(func() *spend.Service { return svc }, ks),
		NonceKey: ks.DeriveKey("eip3009-nonce"), Chains: chains.clients, Relayers: chains.relayers}
	x402Rail := &rails.X402{Common: common}
	payout := &rails.Payout{Common: common}
	reg := metrics.NewRegistry()
	vault, err := apiproxy.New(apiproxy.Config{Sealer: ks, Assets: assets, Logger: log, Network: cfg.DefaultNetwork, Metrics: reg})
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	anchor := audit.NewAnchorFile(filepath.Join(cfg.DataDir, "audit.checkpoints"), auditSigner.Public())
	svc, err = spend.NewService(spend.Config{
		Store: st, Assets: assets, Wallets: walletProvider{ks: ks, networks: networks},
		Checkpoints: auditSigner, Anchor: anchor, Logger: log, DefaultNetwork: cfg.DefaultNetwork,
		HoldTTL: cfg.HoldTTL, ApprovalTTL: cfg.ApprovalTTL, Rails: []spend.Rail{x402Rail, payout, vault},
		MaxOpenSigned: cfg.MaxOpenSpends, Sealer: ks, Cosign: cosignsrv.Engine{}, CosignNetworks: networks,
		RequestRate: requestRate(cfg.AgentRate, cfg.NoAgentRate),
	})
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	if err := checkAuditAtStart(ctx, svc, anchor.Path()); err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	vault.Bind(svc)
	observeStore(reg, st)
	publicURL := cfg.PublicURL
	if publicURL == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		publicURL = "http://localhost:" + port
	}
	_, publicHost, _, _ := owners.ParsePublicURL(publicURL)
	hostNames := append(slices.Clone(cfg.HostNames), listenHost(cfg.Listen), publicHost)
	auth, err := owners.New(owners.Config{Service: svc, PublicURL: publicURL, HostNames: hostNames, Logger: log})
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	hooks, err := newWebhooks(cfg, auth.PublicURL(), svc, assets, ks, log, reg)
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	var chainsRead portal.Chains
	if len(chains.networks()) > 0 {
		chainsRead = chainInfo{chains}
	}
	owner, err := newPortal(svc, assets, chainsRead, auth, hooks, log)
	if err != nil {
		chains.close()
		st.Close()
		return nil, err
	}
	hcfg := httpapi.Config{Service: svc, Assets: assets, OwnerToken: token, Logger: log, Metrics: reg,
		Chains: chainInfo{chains}, Relayer: chains.relayer, Deployment: deploymentID(ks),
		AcceptUnboundSignatures: cfg.AcceptUnboundSignatures, MetricsAuth: cfg.MetricsAuth,
		HostNames: hostNames, PublicURL: auth.PublicURL(), Webhooks: hooks, Vault: vault,
		Portal: owner.Handler(),
		Ready: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return st.Ping(ctx)
		}}
	if chains.dev != nil {
		hcfg.Faucet = devFaucet{chains.dev}
	}
	api := httpapi.New(hcfg)
	holds := newHoldsGauge(svc)
	reg.NewGaugeFunc("purser_holds_outstanding", "Spends holding budget (pending approval, authorized or unknown), refreshed every few seconds.", holds.value)
	srv := &Server{log: log, store: st, svc: svc, ln: ln, chains: chains, owners: auth, vault: vault,
		http: &http.Server{Handler: rootHandler(api.Handler(), auth), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	srv.stopBG = stop
	srv.background(bg, holds)
	srv.runWebhooks(bg, hooks)
	go func() {
		if err := srv.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	engine := "sqlite " + filepath.Join(cfg.DataDir, "purser.db")
	if cfg.DB != "" {
		engine = "postgres"
	}
	if cfg.AcceptUnboundSignatures {
		log.Warn("accepting version 1 agent signatures, which bind no deployment: a request signed for another Purser that knows the same agent key can be replayed here; remove --accept-unbound-signatures once agents sign version 2")
	}
	log.Info("purser serving", "addr", ln.Addr().String(), "store", engine, "networks", chains.networks(), "relayer", chains.relayer)
	fmt.Fprintf(cfg.Stdout, "purser listening on http://%s (store: %s, data: %s)\n", ln.Addr(), engine, cfg.DataDir)
	fmt.Fprintf(cfg.Stdout, "owner portal at %s (enrol a passkey with: purser owner invite)\n", auth.PublicURL())
	if chains.dev != nil {
		fmt.Fprintf(cfg.Stdout, "dev chain %s at %s, USDC %s\n", chains.dev.Network(), chains.dev.RPCURL(), chains.dev.Token().Hex())
	}
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	ok = true
	return srv, nil
}

// Checkpoint signs a checkpoint of the audit chain's head now (the
// background loop does it every 10 seconds).
func (s *Server) Checkpoint(ctx context.Context) error {
	_, err := s.svc.Checkpoint(ctx)
	return err
}

// checkAuditAtStart refuses to serve on a chain that no longer extends
// the last head signed (kept in the database and in the data directory's
// anchor file): the first checkpoint re-hashes what was appended since.
func checkAuditAtStart(ctx context.Context, svc *spend.Service, anchorPath string) error {
	_, err := svc.Checkpoint(ctx)
	if _, broken := spend.IsChainBroken(err); broken {
		return fmt.Errorf("audit chain check at start (the last signed checkpoint is kept in the database and in %s): %w; "+
			"if the database was restored from a backup on purpose, see \"Restoring a backup\" in docs/security.md", anchorPath, err)
	}
	if err != nil {
		return fmt.Errorf("audit chain check at start: %w", err)
	}
	return nil
}

// DevChain is the embedded dev chain, nil unless Config.DevChain.
func (s *Server) DevChain() *devchain.Chain { return s.chains.dev }

// Addr is the bound listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting, lets in-flight requests finish, stops the
// background loops and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	s.vault.Wait() // proxied calls answered, not settled yet
	s.stopBG()
	s.bgWG.Wait()
	if ferr := s.svc.FlushRefusals(ctx, true); ferr != nil {
		s.log.Warn("refusal counts not written", "err", ferr)
	}
	if cerr := s.store.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	s.chains.close()
	s.log.Info("purser stopped")
	return err
}

// background runs the expiry sweeper, the nonce pruner and the audit
// checkpointer. Each is safe to run on every node of a cluster at once.
func (s *Server) background(ctx context.Context, holds *holdsGauge) {
	loop := func(every time.Duration, name string, fn func(context.Context) error) {
		s.bgWG.Add(1)
		go func() {
			defer s.bgWG.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				if err := fn(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("background task failed", "task", name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	loop(time.Second, "expire", func(ctx context.Context) error {
		for {
			n, err := s.svc.ExpireDue(ctx, 200)
			if err != nil || n < 200 {
				return err
			}
		}
	})
	loop(time.Minute, "prune-nonces", func(ctx context.Context) error {
		// Kept for MaxTTL after expiry by the database's clock: safe while
		// no server's clock lags the database's by that much.
		_, err := s.svc.PruneNonces(ctx, agentauth.MaxTTL)
		return err
	})
	loop(10*time.Second, "checkpoint", func(ctx context.Context) error {
		_, err := s.svc.Checkpoint(ctx)
		return err
	})
	loop(5*time.Second, "holds-gauge", holds.refresh)
	loop(5*time.Second, "refusals", func(ctx context.Context) error { return s.svc.FlushRefusals(ctx, false) })
	// Signed authorizations and unknown outcomes: at start, then every
	// few seconds, ask the chains what became of those due: a few at a
	// time, each spend backing off while it has no news.
	recon := s.svc.NewReconcileScheduler(spend.ReconcileOptions{})
	loop(5*time.Second, "reconcile", func(ctx context.Context) error {
		_, err := recon.Pass(ctx, 200)
		return err
	})
}

// ownerToken reads the owner token file, creating it on first start.
func ownerToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tok, err := keystore.RandomToken("pso_")
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another process created it first
		return ownerToken(path)
	}
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// requestRate turns "N per DURATION" into the service's token bucket:
// the rate, and bursts of twice N (at least 1).
func requestRate(r mandate.Rate, off bool) spend.RequestRate {
	if off || r.Count <= 0 || r.Per <= 0 {
		return spend.RequestRate{}
	}
	return spend.RequestRate{PerSecond: float64(r.Count) / r.Per.Seconds(), Burst: max(2*r.Count, 1)}
}
