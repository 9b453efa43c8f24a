package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/mandate"
)

type serveOpts struct {
	data, listen, db, logLevel, network string
	holdTTL, approvalTTL                time.Duration
	rpc                                 rpcFlags
	devChain                            bool
	devChainListen, assets              string
	maxOpenSpends                       int
	hostNames                           listFlag
	metricsAuth                         string
	publicURL                           string
	acceptUnbound                       bool
	agentRate                           string
}

// listFlag collects comma-separated values, the flag repeatable.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// rpcFlags collects repeated --rpc CAIP2=URL flags.
type rpcFlags map[string]string

func (r *rpcFlags) String() string { return "" }

func (r *rpcFlags) Set(v string) error {
	network, url, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(network, "eip155:") || url == "" {
		return fmt.Errorf("want CAIP2=URL, e.g. eip155:84532=http://127.0.0.1:8545")
	}
	if *r == nil {
		*r = rpcFlags{}
	}
	(*r)[network] = url
	return nil
}

func serveCommand() *command {
	return &command{
		name:    "serve",
		args:    "[--data DIR] [--listen ADDR] [--db URL]",
		summary: "run the Purser server",
		kind:    kindNone,
		flags: func(fs *flag.FlagSet, o *opts) {
			s := &o.serve
			data := DefaultDataDir
			if o.data != "" { // purser --data DIR serve
				data = o.data
			}
			fs.StringVar(&s.data, "data", data, "data `DIR`: SQLite database, sealed keys, owner.token, audit.pub")
			fs.StringVar(&s.listen, "listen", "127.0.0.1:8402", "listen `ADDR`ess; keep it on loopback unless a TLS proxy fronts it")
			fs.StringVar(&s.db, "db", "", "postgres://... `URL`; empty for SQLite in the data directory")
			fs.DurationVar(&s.holdTTL, "hold-ttl", 15*time.Minute, "how long an authorized spend holds budget before it expires unused")
			fs.DurationVar(&s.approvalTTL, "approval-ttl", time.Hour, "how long a spend waits for the owner's decision")
			fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
			fs.StringVar(&s.network, "default-network", "", "CAIP-2 `NETWORK` of spends that name none (default: the dev chain with --dev-chain, else eip155:8453)")
			fs.Var(&s.rpc, "rpc", "connect a network to a JSON-RPC endpoint: `CAIP2=URL` (repeatable)")
			fs.BoolVar(&s.devChain, "dev-chain", false, "run the embedded EVM dev chain (eip155:1337) with its USDC token; state is lost at exit")
			fs.StringVar(&s.devChainListen, "dev-chain-listen", "127.0.0.1:0", "the dev chain's JSON-RPC `ADDR`ess")
			fs.StringVar(&s.assets, "assets", "", "JSON `FILE` of further assets (docs/operations.md)")
			fs.IntVar(&s.maxOpenSpends, "max-open-spends", 100, "an agent's signed, unsettled spends (x402, payout) before it is refused too_many_open_spends; `N` 0: no cap")
			fs.StringVar(&s.agentRate, "agent-rate", "200/1s", "each agent's request `RATE` N/DURATION, checked before anything is written (bursts of 2N; 0 disables)")
			fs.BoolVar(&o.json, "json", o.json, "print the startup line as one JSON object {url, listen, store, data} on stdout (logs are JSON lines on stderr either way)")
			fs.Var(&s.hostNames, "host-names", "further `NAMES` (comma-separated) to answer to in the Host header, e.g. the proxy's public name; localhost, IP literals and the listen host always work; * turns the check off")
			fs.StringVar(&s.publicURL, "public-url", "", "the portal's origin as browsers reach it, `URL` http(s)://host[:port]: passkeys are bound to its host, enrolment links and webhook payloads point at it (default http://localhost:PORT; behind TLS e.g. https://wallet.example.com)")
			fs.StringVar(&s.metricsAuth, "metrics-auth", "none", "`none` (open /metrics) or owner (/metrics needs the owner token)")
			fs.BoolVar(&s.acceptUnbound, "accept-unbound-signatures", false, "also accept version 1 agent signatures, which bind no deployment, while agents upgrade (replayable to other Pursers that know the key)")
		},
		run: runServe,
	}
}

func runServe(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	s := o.serve
	var agentRate mandate.Rate
	if s.agentRate != "0" {
		r, err := mandate.ParseRate(s.agentRate)
		if err != nil {
			return usagef(o.path, "--agent-rate: %v", err)
		}
		agentRate = r
	}
	if e.getenv("GOGC") == "" {
		// The server's heap is small and short-lived (requests, batches);
		// collecting less often bought ~12% authorizations/s on 2 cores
		// (docs/performance.md). GOGC in the environment still wins.
		debug.SetGCPercent(400)
	}
	stdout, ready := e.stdio.Out, func(string) {}
	if o.json {
		// Scripts that listen on port 0 learn the address from this line.
		stdout = io.Discard
		ready = func(addr string) {
			store := "sqlite"
			if s.db != "" {
				store = "postgres"
			}
			writeJSON(e.stdio.Out, map[string]string{"url": "http://" + addr, "listen": addr, "store": store, "data": s.data}) //nolint:errcheck
		}
	}
	return app.Serve(ctx, app.Config{
		DataDir:        s.data,
		Listen:         s.listen,
		DB:             s.db,
		HoldTTL:        s.holdTTL,
		ApprovalTTL:    s.approvalTTL,
		AgentRate:      agentRate,
		NoAgentRate:    s.agentRate == "0",
		LogLevel:       s.logLevel,
		Passphrase:     e.getenv("PURSER_PASSPHRASE"),
		DefaultNetwork: s.network,
		RPC:            s.rpc,
		DevChain:       s.devChain,
		DevChainListen: s.devChainListen,
		AssetsFile:     s.assets,
		MaxOpenSpends:  openSpendsCap(s.maxOpenSpends),
		Stdout:         stdout,
		Stderr:         e.stdio.Err,
		Ready:          ready,
		HostNames:      s.hostNames,
		MetricsAuth:    s.metricsAuth,
		PublicURL:      s.publicURL,

		AcceptUnboundSignatures: s.acceptUnbound,
	})
}

// openSpendsCap maps --max-open-spends (0: no cap) to app.Config's
// MaxOpenSpends (0: the default, negative: no cap).
func openSpendsCap(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
