package mcpserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/purserhq/purser/sdk"
)

// TestTypeScriptToolsListChanged: the official TypeScript SDK's client,
// connected to the purser mcp binary over stdio, is told of a grant and
// of its revocation (notifications/tools/list_changed, which makes it
// list the tools again), sees the owner's tool appear and go, and calls
// it in between, its result checked against the tool's output schema.
// Skips without PURSER_INTEROP_JS.
func TestTypeScriptToolsListChanged(t *testing.T) {
	t.Parallel()
	dir := nodeScripts(t)
	c := newCatalogue(t, "ts")
	ctx := context.Background()
	key, _ := c.p.newAgent(t, c.m, "tsagent", `{"per_tx_max":"1","daily":"1"}`, 0)
	c.tool(t, "tssearch", sdk.ToolRequest{Name: "ts_search", Description: "Search.", Method: "GET", Path: "/v1/search", Schema: searchSchema})

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "node", "mcp-listchanged.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PURSER_BIN="+purserBin(t), "PURSER_AGENT_KEY="+writeKey(t, key), "PURSER_SERVER="+c.p.url,
		"WANT_CHANGES=2", "CALL_TOOL=ts_search", `CALL_ARGS={"q":"from typescript"}`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type event struct {
		Event       string   `json:"event"`
		Tools       []string `json:"tools"`
		ListChanged bool     `json:"listChanged"`
		Error       string   `json:"error"`
		Call        *struct {
			IsError    bool           `json:"isError"`
			Structured map[string]any `json:"structured"`
		} `json:"call"`
	}
	events := make(chan event, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("output %q: %v", sc.Bytes(), err)
				continue
			}
			events <- e
		}
		close(events)
	}()
	next := func(what string) event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("%s: the client ended", what)
			}
			if e.Event == "error" {
				t.Fatalf("%s: %s", what, e.Error)
			}
			return e
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: nothing from the client", what)
		}
		return event{}
	}
	e := next("connect")
	if e.Event != "listed" || !e.ListChanged || !slices.Equal(e.Tools, builtinTools) {
		t.Fatalf("at connect: %+v", e)
	}
	if _, err := c.p.owner.Grant(ctx, "tssearch", sdk.GrantRequest{Agent: "tsagent", Methods: []string{"GET"}, Paths: []string{"/v1/*"}, Price: "0.001"}); err != nil {
		t.Fatal(err)
	}
	e = next("grant")
	if e.Event != "changed" || !slices.Contains(e.Tools, "ts_search") || e.Call == nil || e.Call.IsError ||
		str(e.Call.Structured, "status") != "paid" || c.up.lastSeen().Query != "q=from+typescript" {
		t.Fatalf("after the grant: %+v (upstream saw %+v)", e, c.up.lastSeen())
	}
	if _, err := c.p.owner.RevokeGrant(ctx, "tssearch", "tsagent"); err != nil {
		t.Fatal(err)
	}
	e = next("revoke")
	if e.Event != "changed" || !slices.Equal(e.Tools, builtinTools) {
		t.Fatalf("after the revocation: %+v", e)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node mcp-listchanged.mjs: %v", err)
	}
}
