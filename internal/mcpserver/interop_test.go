package mcpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nodeScripts copies internal/interop/js/*.mjs into a fresh directory
// with the installed node_modules linked beside them (the cache set up
// by .ci/run, PURSER_INTEROP_JS), or skips the test without it.
func nodeScripts(t *testing.T) string {
	t.Helper()
	js := os.Getenv("PURSER_INTEROP_JS")
	if js == "" {
		t.Skip("PURSER_INTEROP_JS is not set: see internal/interop/README.md (.ci/run installs the official npm packages and sets it)")
	}
	if _, err := os.Stat(filepath.Join(js, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		t.Fatalf("PURSER_INTEROP_JS=%s has no @modelcontextprotocol/sdk installed (npm install there from internal/interop/js/package.json): %v", js, err)
	}
	dir := t.TempDir()
	scripts, _ := filepath.Glob(filepath.Join(repoRoot(), "internal", "interop", "js", "*.mjs"))
	for _, f := range scripts {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(js, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTypeScriptClient: the official MCP TypeScript SDK's client, from
// npm, over stdio and streamable HTTP: it lists the tools (and checks every
// result against its tool's output schema, refusals and invalid input
// included), reads the limits and pays an x402 seller on the dev chain; a
// payment above the auto-approve threshold offers the owner's approval
// page (URL elicitation, answered by the client's own handler), sends
// progress notifications while it waits, and pays once approved.
func TestTypeScriptClient(t *testing.T) {
	t.Parallel()
	dir := nodeScripts(t)
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	key, _ := p.newAgent(t, m, "ts", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 5_000_000)
	keyFile := writeKey(t, key)
	for _, mode := range []string{"stdio", "http"} {
		t.Run(mode, func(t *testing.T) {
			const approvalURL = "http://127.0.0.1:1/approvals/{spend_id}"
			env := []string{"MCP_TRANSPORT=" + mode, "SELLER_URL=" + m.sellerURL, "IDEMPOTENCY_KEY=ts-" + mode}
			if mode == "stdio" {
				env = append(env, "PURSER_BIN="+purserBin(t), "PURSER_AGENT_KEY="+keyFile, "PURSER_SERVER="+p.url, "APPROVAL_URL="+approvalURL)
			} else {
				env = append(env, "MCP_URL="+startMCPHTTP(t, keyFile, p.url, "--approval-url", approvalURL))
			}
			approved := approveWhenAsked(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "mcp-client.mjs")
			cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			before := m.balance(t, m.seller)
			if err := cmd.Run(); err != nil {
				t.Fatalf("node mcp-client.mjs (%s): %v\nstdout: %s\nstderr: %s", mode, err, stdout.Bytes(), stderr.Bytes())
			}
			var out struct {
				Tools []struct {
					Name            string         `json:"name"`
					Annotations     map[string]any `json:"annotations"`
					HasOutputSchema bool           `json:"hasOutputSchema"`
				} `json:"tools"`
				Limits, Fetch, Refused, Invalid, Waited struct {
					IsError    bool           `json:"isError"`
					Structured map[string]any `json:"structured"`
					Text       string         `json:"text"`
					Progress   int            `json:"progress"`
				}
				Elicitations []map[string]any `json:"elicitations"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("output %q: %v", stdout.Bytes(), err)
			}
			if len(out.Tools) != 7 {
				t.Fatalf("tools: %+v", out.Tools)
			}
			for _, tool := range out.Tools {
				if !tool.HasOutputSchema || tool.Annotations["readOnlyHint"] == nil || tool.Annotations["destructiveHint"] == nil {
					t.Fatalf("tool %s as the TS client sees it: %+v", tool.Name, tool)
				}
			}
			if out.Limits.IsError || str(out.Limits.Structured, "status") != "ok" {
				t.Fatalf("limits: %+v", out.Limits)
			}
			if out.Fetch.IsError || str(out.Fetch.Structured, "status") != "paid" || !strings.Contains(out.Fetch.Text, "content of /item") {
				t.Fatalf("x402_fetch: %+v", out.Fetch)
			}
			if !out.Refused.IsError || str(out.Refused.Structured, "status") != "refused" {
				t.Fatalf("refused: %+v", out.Refused)
			}
			if !out.Invalid.IsError || errCode(out.Invalid.Structured) != "url_scheme_not_allowed" {
				t.Fatalf("invalid: %+v", out.Invalid)
			}
			id := <-approved
			if out.Waited.IsError || str(out.Waited.Structured, "status") != "paid" || str(out.Waited.Structured, "spend_id") != id || id == "" {
				t.Fatalf("approved payment: %+v (approved %q)", out.Waited, id)
			}
			if out.Waited.Progress == 0 {
				t.Fatal("no progress notification reached the client while it waited")
			}
			if len(out.Elicitations) != 1 || out.Elicitations[0]["mode"] != "url" || out.Elicitations[0]["elicitationId"] != id ||
				out.Elicitations[0]["url"] != strings.ReplaceAll(approvalURL, "{spend_id}", id) {
				t.Fatalf("elicitations %+v", out.Elicitations)
			}
			if got := m.balance(t, m.seller) - before; got != price+500000 {
				t.Fatalf("the seller received %d on chain, want %d", got, price+500000)
			}
		})
	}
}
