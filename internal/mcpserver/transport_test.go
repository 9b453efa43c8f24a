package mcpserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// startProcess starts the purser binary with args in its own process
// group, killed at cleanup; with ready it returns the first line of its
// stdout.
func startProcess(t testing.TB, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(purserBin(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("purser %s stderr:\n%s", args[0], stderr.Bytes())
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		return cmd, l
	case <-time.After(60 * time.Second):
		t.Fatalf("purser %v did not start: %s", args, stderr.Bytes())
	}
	return nil, ""
}

// startMCPHTTP runs `purser mcp --http 127.0.0.1:0` and returns its URL.
func startMCPHTTP(t testing.TB, keyFile, server string, extra ...string) string {
	t.Helper()
	_, line := startProcess(t, append([]string{"mcp", "--http", "127.0.0.1:0", "--json", "--agent-key", keyFile, "--server", server}, extra...)...)
	var ready struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil || !strings.HasPrefix(ready.URL, "http://127.0.0.1:") {
		t.Fatalf("startup line %q: %v", line, err)
	}
	return ready.URL
}

// session exercises a client session: the tools are listed, limits read
// and an x402 payment made on the dev chain.
func session(t *testing.T, m *market, cs *mcp.ClientSession, key string) {
	t.Helper()
	lt, err := cs.ListTools(context.Background(), nil)
	if err != nil || len(lt.Tools) != 7 {
		t.Fatalf("tools: %d %v", len(lt.Tools), err)
	}
	res, out := call(t, cs, "limits", nil)
	if res.IsError || str(out, "status") != "ok" {
		t.Fatalf("limits: %v", out)
	}
	before := m.balance(t, m.seller)
	res, out = call(t, cs, "x402_fetch", map[string]any{"url": m.sellerURL + "/item", "idempotency_key": key})
	if res.IsError || str(out, "status") != "paid" || out["body"].(map[string]any)["content"] != "content of /item" {
		t.Fatalf("x402_fetch: %v", out)
	}
	if got := m.balance(t, m.seller) - before; got != price {
		t.Fatalf("the seller received %d, want %d", got, price)
	}
}

// TestGoClientOverTransports: the Go SDK's client, talking to the real
// `purser mcp` process over stdio and over streamable HTTP.
func TestGoClientOverTransports(t *testing.T) {
	t.Parallel()
	m := newMarket(t)
	p := startPurser(t, m, m.config(t.TempDir()))
	key, _ := p.newAgent(t, m, "wired", `{"per_tx_auto":"0.10","per_tx_max":"1","daily":"5","rails":["x402"]}`, 1_000_000)
	keyFile := writeKey(t, key)
	client := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "v0"}, nil)
	ctx := context.Background()

	t.Run("stdio", func(t *testing.T) {
		cmd := exec.Command(purserBin(t), "mcp", "--agent-key", keyFile, "--server", p.url)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		session(t, m, cs, "stdio-1")
		if err := cs.Close(); err != nil {
			t.Logf("close: %v", err)
		}
		// The process logs a line per tool call on stderr, and never the key.
		logs := stderr.Bytes()
		if !bytes.Contains(logs, []byte(`"tool":"x402_fetch"`)) {
			t.Fatalf("stderr: %s", logs)
		}
		for _, form := range keyForms(crypto.FromECDSA(key)) {
			if bytes.Contains(bytes.ToLower(logs), bytes.ToLower([]byte(form))) {
				t.Fatal("the agent key is in the stdio server's stderr")
			}
		}
	})
	t.Run("http", func(t *testing.T) {
		u := startMCPHTTP(t, keyFile, p.url)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: u}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		session(t, m, cs, "http-1")
	})
}

// TestHTTPGuard: the HTTP transport answers only requests addressed to a
// loopback host with its own port, from no Origin or a loopback one (DNS
// rebinding: a web page reaching 127.0.0.1 under its own name).
func TestHTTPGuard(t *testing.T) {
	t.Parallel()
	key, _ := newTestKey(t)
	// No Purser is needed to answer initialize.
	u := startMCPHTTP(t, writeKey(t, key), "http://127.0.0.1:1")
	port := strings.TrimSuffix(strings.TrimPrefix(u, "http://127.0.0.1:"), "/")
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}`
	cases := []struct {
		host, origin string
		ok           bool
	}{
		{"127.0.0.1:" + port, "", true},
		{"localhost:" + port, "", true},
		{"[::1]:" + port, "", true},
		{"127.0.0.1:" + port, "http://localhost:3000", true},
		{"127.0.0.1:" + port, "http://127.0.0.1:" + port, true},
		{"evil.example:" + port, "", false},
		{"127.0.0.1.nip.io:" + port, "", false},
		{"127.0.0.1", "", false},
		{"127.0.0.1:1", "", false},
		{"localhost.evil.example:" + port, "", false},
		{"127.0.0.1:" + port, "http://evil.example", false},
		{"127.0.0.1:" + port, "https://evil.example:" + port, false},
		{"127.0.0.1:" + port, "null", false},
		{"127.0.0.1:" + port, "file://", false},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(init))
		req.Host = c.host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if c.ok && resp.StatusCode != http.StatusOK {
			t.Errorf("Host %s Origin %q: %d %s, want 200", c.host, c.origin, resp.StatusCode, body)
		}
		if !c.ok && (resp.StatusCode < 400 || resp.StatusCode > 499) {
			t.Errorf("Host %s Origin %q: %d, want a 4xx", c.host, c.origin, resp.StatusCode)
		}
	}
	// A non-loopback listen address is refused at start.
	cmd := exec.Command(purserBin(t), "mcp", "--http", "0.0.0.0:0", "--agent-key", writeKey(t, key), "--server", "http://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback") {
		t.Fatalf("--http 0.0.0.0:0: %v %s", err, out)
	}
}
