package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/mcpserver"
)

// mcpOpts are the flags of purser mcp.
type mcpOpts struct {
	http        string
	approvalURL string
	toolsPoll   time.Duration
}

func mcpCommand() *command {
	return &command{
		name: "mcp", args: "[--http 127.0.0.1:PORT] [--approval-url URL] [--tools-poll 5s]",
		summary: "serve this agent's tools (limits, balance, x402_fetch, pay, spend_status, confirm, dry_run, and the owner's API tools granted to it) to an MCP client over stdio, or streamable HTTP on loopback with --http",
		kind:    kindAgent,
		// No --data: nothing here reads a data directory (bodyData drops
		// the global flag).
		bodyData: true,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.mcp.http, "http", "", "serve streamable HTTP on `ADDR` (127.0.0.1:PORT; loopback only) instead of stdio")
			fs.StringVar(&o.mcp.approvalURL, "approval-url", "", "`URL` where the owner approves a spend, {spend_id} replaced; offered to clients that support URL elicitation")
			fs.DurationVar(&o.mcp.toolsPoll, "tools-poll", 5*time.Second, "check the owner's tools granted to this agent every `DURATION`, announcing changes to clients (0: only at start)")
		},
		run: runMCP,
	}
}

func runMCP(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if o.mcp.toolsPoll < 0 {
		return usagef(o.path, "--tools-poll must not be negative")
	}
	if o.mcp.approvalURL != "" && !strings.Contains(o.mcp.approvalURL, "{spend_id}") {
		return usagef(o.path, "--approval-url must contain {spend_id}")
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	// stdout carries the protocol on stdio: logs go to stderr only.
	log := slog.New(slog.NewJSONHandler(e.stdio.Err, nil))
	s := mcpserver.New(mcpserver.NewSDKAgent(c), mcpserver.Options{Logger: log, ApprovalURL: o.mcp.approvalURL})
	// The owner's tools granted to this agent, before the first
	// tools/list; then polled, so grants and revocations show without a
	// restart. A Purser that cannot be reached now leaves the built-in
	// tools, and the next poll tries again.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = s.SyncTools(sctx)
	cancel()
	if err != nil {
		log.Warn("could not fetch the tool catalogue; serving the built-in tools", "error", err.Error())
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.WatchTools(wctx, o.mcp.toolsPoll)
	if o.mcp.http == "" {
		// One client, whose calls mostly wait on Purser and sellers: one P
		// keeps the hand-offs between the stdin reader, the tool handler
		// and the HTTP client's goroutines on one thread instead of waking
		// another, which halves the median of a limits call on a busy
		// machine (docs/performance.md). GOMAXPROCS in the environment wins.
		if e.getenv("GOMAXPROCS") == "" {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		}
		return s.RunIO(ctx, e.stdio.In, e.stdio.Out)
	}
	return s.ServeHTTP(ctx, o.mcp.http, func(a net.Addr) {
		if o.json {
			// One line: a supervisor reads it to find the port.
			b, _ := json.Marshal(map[string]string{"url": "http://" + a.String() + "/", "listen": a.String()})
			fmt.Fprintf(e.stdio.Out, "%s\n", b)
		} else {
			fmt.Fprintf(e.stdio.Out, "purser mcp: streamable HTTP at http://%s/ (agent %s)\n", a, c.Address())
		}
	})
}
