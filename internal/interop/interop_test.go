package interop

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/purserhq/purser/internal/agentauth"
	"github.com/purserhq/purser/internal/client"
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/evm/token"
	"github.com/purserhq/purser/internal/facilitator"
	"github.com/purserhq/purser/internal/payer"
	"github.com/purserhq/purser/x402"
	"github.com/purserhq/purser/x402/middleware"
)

// Anvil's well-known development keys (public knowledge, test only).
const (
	keyDeployer    = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
	keyPayer       = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
	keyFacilitator = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
	keyPurserGas   = "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
	network        = "eip155:84532"
	price          = 10000 // $0.01
)

// usdc is Base Sepolia's USDC address; our DevUSD runs there on anvil, so
// the official packages treat it as the default asset.
var usdc = common.HexToAddress("0x036CbD53842c5426634e7929541eC2318f3dCF7e")

type env struct {
	js     string // the installed js directory
	rpc    string
	client *evm.Client
	bin    string // the purser binary
}

func key(t *testing.T, hex string) *ecdsa.PrivateKey {
	k, err := crypto.HexToECDSA(hex)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a command and stops it at cleanup; with ready it waits for
// the {"ready":true,"port":N} line and returns the port.
func start(t *testing.T, dir string, env []string, ready bool, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	// Its own process group: node wrappers (anvil's) start children that
	// must die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", filepath.Base(args[len(args)-1]), stderr.String())
		}
	})
	if !ready {
		go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()
		return 0
	}
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r struct {
				Ready bool `json:"ready"`
				Port  int  `json:"port"`
			}
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Ready {
				port <- r.Port
			}
		}
	}()
	select {
	case p := <-port:
		return p
	case <-time.After(60 * time.Second):
		t.Fatalf("%s %v did not get ready: %s", name, args, stderr.String())
	}
	return 0
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func setup(t *testing.T) *env {
	t.Helper()
	js := os.Getenv("PURSER_INTEROP_JS")
	if js == "" {
		t.Skip("PURSER_INTEROP_JS is not set (.ci/run installs the official x402 packages and sets it)")
	}
	e := &env{js: js}
	// The scripts are the repository's; the packages are the installed ones.
	_, self, _, _ := runtime.Caller(0)
	scripts := filepath.Join(filepath.Dir(self), "js")
	for _, f := range []string{"common.mjs", "facilitator.mjs", "server-v2.mjs", "server-v1.mjs", "client-v2.mjs", "client-v1.mjs"} {
		b, err := os.ReadFile(filepath.Join(scripts, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(js, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	start(t, js, nil, false, filepath.Join(js, "node_modules", ".bin", "anvil"),
		"--chain-id", "84532", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--silent")
	e.rpc = fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := evm.Dial(ctx, e.rpc)
		if err == nil {
			e.client = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("anvil did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(e.client.Close)
	// Our token's runtime code at Base Sepolia's USDC address, set up as
	// "USDC" version "2", as the spec's recipe does with FiatToken.
	rc, err := rpc.DialContext(ctx, e.rpc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.CallContext(ctx, nil, "anvil_setCode", usdc, hexutil.Encode(token.RuntimeBytecode())); err != nil {
		t.Fatal(err)
	}
	deployer := evm.NewRelayer(e.client, evm.KeySigner(key(t, keyDeployer)))
	e.send(t, deployer, token.Binding().PackInitialize("USDC", "USDC", "2", 6, deployer.Address()))
	return e
}

func (e *env) send(t *testing.T, r *evm.Relayer, data []byte) {
	t.Helper()
	ctx := context.Background()
	h, err := r.Send(ctx, usdc, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := e.client.WaitReceipt(ctx, h)
	if err != nil || rcpt.Status != 1 {
		t.Fatalf("tx %s: %v (status %v)", h, err, rcpt)
	}
}

func (e *env) mint(t *testing.T, to common.Address, amount int64) {
	t.Helper()
	e.send(t, evm.NewRelayer(e.client, evm.KeySigner(key(t, keyDeployer))), token.Binding().PackMint(to, big.NewInt(amount)))
}

func (e *env) balance(t *testing.T, who common.Address) int64 {
	t.Helper()
	b, err := e.client.BalanceOf(context.Background(), usdc, who)
	if err != nil {
		t.Fatal(err)
	}
	return b.Int64()
}

func (e *env) used(t *testing.T, from common.Address, nonceHex string) bool {
	t.Helper()
	var n [32]byte
	copy(n[:], common.FromHex(nonceHex))
	u, err := e.client.AuthorizationState(context.Background(), usdc, from, n)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newSeller(t *testing.T) common.Address {
	k, _ := crypto.GenerateKey()
	return crypto.PubkeyToAddress(k.PublicKey)
}

// officialFacilitator starts the reference facilitator and returns its URL.
func (e *env) officialFacilitator(t *testing.T) string {
	p := start(t, e.js, []string{"RPC_URL=" + e.rpc, "FACILITATOR_KEY=0x" + keyFacilitator}, true, "node", "facilitator.mjs")
	return fmt.Sprintf("http://127.0.0.1:%d", p)
}

// purserFacilitatorAndSeller runs Purser's facilitator and a Go seller
// charging with Purser's middleware; it returns the seller's URL and a
// function giving the payment headers it received.
func (e *env) purserSeller(t *testing.T, payTo common.Address) (string, func() []string) {
	f, err := facilitator.New(facilitator.Config{Networks: map[string]facilitator.Network{
		network: {Client: e.client, Relayer: evm.NewRelayer(e.client, evm.KeySigner(key(t, keyPurserGas)))}}})
	if err != nil {
		t.Fatal(err)
	}
	fs := httptest.NewServer(f.Handler())
	t.Cleanup(fs.Close)
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: fs.URL}, Routes: []middleware.Route{{
		Pattern: "GET /weather", Amount: fmt.Sprint(price), Asset: usdc.Hex(), Network: network, PayTo: payTo.Hex(),
		EIP712Name: "USDC", EIP712Version: "2", Description: "Weather", MimeType: "application/json"}}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"weather":"sunny","seller":"purser"}`)
	}))
	ss := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, n := range []string{x402.HeaderPaymentSignature, x402.HeaderXPayment} {
			if v := r.Header.Get(n); v != "" {
				mu.Lock()
				seen = append(seen, v)
				mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ss.Close)
	return ss.URL + "/weather", func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

type clientResult struct {
	Status     int                  `json:"status"`
	Body       string               `json:"body"`
	Settlement *x402.SettleResponse `json:"settlement"`
	Payment    struct {
		Payload x402.ExactPayload `json:"payload"`
	} `json:"payment"`
	Header string `json:"header"`
}

func (e *env) officialClient(t *testing.T, script, url string, extra ...string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, url)
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = e.js
	cmd.Env = append(os.Environ(), append([]string{"RPC_URL=" + e.rpc, "PAYER_KEY=0x" + keyPayer}, extra...)...)
	out, err := cmd.Output()
	if err != nil {
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			t.Fatalf("%s: %v\n%s", script, err, xe.Stderr)
		}
		t.Fatal(err)
	}
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s printed %s", script, out)
	}
	return r
}

func TestOfficialClientsPayPurserSeller(t *testing.T) {
	e := setup(t)
	payer := crypto.PubkeyToAddress(key(t, keyPayer).PublicKey)
	e.mint(t, payer, 1_000_000)
	for _, c := range []struct{ name, script string }{{"v2", "client-v2.mjs"}, {"v1", "client-v1.mjs"}} {
		t.Run(c.name, func(t *testing.T) {
			seller := newSeller(t)
			url, _ := e.purserSeller(t, seller)
			before := e.balance(t, payer)
			t.Logf("paying %s with the official %s client", url, c.name)
			r := e.officialClient(t, c.script, url)
			if r.Status != 200 || !strings.Contains(r.Body, "sunny") || r.Settlement == nil || !r.Settlement.Success {
				t.Fatalf("official %s client through Purser's middleware: %+v", c.name, r)
			}
			if got := e.balance(t, seller); got != price {
				t.Fatalf("seller received %d, want %d", got, price)
			}
			if got := before - e.balance(t, payer); got != price {
				t.Fatalf("payer paid %d, want %d", got, price)
			}
			nonce := fmt.Sprintf("0x%x", r.Payment.Payload.Authorization.Nonce)
			if !e.used(t, payer, nonce) {
				t.Fatalf("authorization %s is not used on chain", nonce)
			}
			if c.name == "v1" {
				// The same X-PAYMENT again: refused, nothing moves.
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set(x402.HeaderXPayment, r.Header)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusPaymentRequired || e.balance(t, seller) != price {
					t.Fatalf("replayed payment: status %d, seller %d", resp.StatusCode, e.balance(t, seller))
				}
			}
		})
	}
}

// purser builds and starts `purser serve` connected to anvil and creates
// a funded agent; it returns the server URL, the data dir, the agent key
// file and the agent's wallet.
func (e *env) purser(t *testing.T, mandate ...string) (string, string, string, common.Address) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "purser")
	build := exec.Command("go", "build", "-o", bin, "./cmd/purser")
	_, self, _, _ := runtime.Caller(0)
	build.Dir = filepath.Join(filepath.Dir(self), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	e.bin = bin
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	start(t, dir, nil, false, bin, "serve", "--data", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--rpc", network+"="+e.rpc, "--default-network", network)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("purser serve did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	keyFile := filepath.Join(dir, "agent.key")
	args := append([]string{"agent", "create", "interop", "--key-out", keyFile, "--server", url, "--data", filepath.Join(dir, "data"), "--json"}, mandate...)
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("agent create: %v %s", err, out)
	}
	var a struct {
		Wallets []struct{ Network, Address string } `json:"wallets"`
	}
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatal(err)
	}
	var wallet common.Address
	for _, w := range a.Wallets {
		if w.Network == network {
			wallet = common.HexToAddress(w.Address)
		}
	}
	e.mint(t, wallet, 1_000_000)
	return url, filepath.Join(dir, "data"), keyFile, wallet
}

type fetchResult struct {
	Outcome    string               `json:"outcome"`
	Status     string               `json:"status"`
	Body       string               `json:"body"`
	Settlement *x402.SettleResponse `json:"settlement"`
	Spend      struct {
		SpendID  string `json:"spend_id"`
		Status   string `json:"status"`
		RailData struct {
			Nonce string `json:"nonce"`
		} `json:"rail_data"`
	} `json:"spend"`
}

func (e *env) fetch(t *testing.T, server, keyFile, url string, args ...string) (fetchResult, int) {
	t.Helper()
	cmd := exec.Command(e.bin, append([]string{"x402", "fetch", url, "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "PURSER_SERVER="+server, "PURSER_AGENT_KEY="+keyFile)
	out, err := cmd.Output()
	code := 0
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		code = xe.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r fetchResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("x402 fetch printed %q (exit %d, %s)", out, code, stderrOf(err))
	}
	return r, code
}

func stderrOf(err error) string {
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return string(xe.Stderr)
	}
	return ""
}

func TestPurserPaysOfficialServers(t *testing.T) {
	e := setup(t)
	fac := e.officialFacilitator(t)
	server, _, keyFile, wallet := e.purser(t, "--per-tx-auto", "0.10", "--per-tx-max", "1", "--daily", "5")
	for _, s := range []struct{ name, script string }{{"v2", "server-v2.mjs"}, {"v1", "server-v1.mjs"}} {
		t.Run(s.name, func(t *testing.T) {
			seller := newSeller(t)
			port := start(t, e.js, []string{"RPC_URL=" + e.rpc, "FACILITATOR_URL=" + fac, "PAY_TO=" + seller.Hex()}, true, "node", s.script)
			url := fmt.Sprintf("http://127.0.0.1:%d/weather", port)
			before := e.balance(t, wallet)
			r, code := e.fetch(t, server, keyFile, url, "--max", "0.05")
			if code != 0 || r.Outcome != "paid" || !strings.Contains(r.Body, "sunny") || r.Settlement == nil || !r.Settlement.Success {
				t.Fatalf("purser x402 fetch of the official %s server: exit %d %+v", s.name, code, r)
			}
			if got := e.balance(t, seller); got != price {
				t.Fatalf("seller received %d, want %d", got, price)
			}
			if got := before - e.balance(t, wallet); got != price {
				t.Fatalf("agent paid %d, want %d", got, price)
			}
			if !e.used(t, wallet, r.Spend.RailData.Nonce) {
				t.Fatalf("nonce %s unused on chain", r.Spend.RailData.Nonce)
			}
			if r.Spend.Status != "captured" {
				t.Fatalf("spend %s is %s after settlement", r.Spend.SpendID, r.Spend.Status)
			}
			// Above --max: refused before anything is signed.
			if _, code := e.fetch(t, server, keyFile, url, "--max", "0.001"); code != 4 {
				t.Fatalf("fetch above --max exited %d, want 4", code)
			}
		})
	}
}

// TestLatency measures the median latency of a paid request, both paying
// the same official v2 server: the official v2 client signing with a raw
// key, against Purser (policy check, hold, signing, audit and settlement
// report included). Warm: one process making n requests (node's
// wrapFetchWithPayment; Go's payer package, which the CLI runs). Cold: a
// new process per request (node client-v2.mjs; purser x402 fetch). Run
// with PURSER_INTEROP_BENCH=N.
func TestLatency(t *testing.T) {
	n := 0
	fmt.Sscan(os.Getenv("PURSER_INTEROP_BENCH"), &n)
	if n == 0 {
		t.Skip("set PURSER_INTEROP_BENCH=N to measure")
	}
	e := setup(t)
	fac := e.officialFacilitator(t)
	server, _, keyFile, wallet := e.purser(t, "--per-tx-auto", "1", "--per-tx-max", "1", "--daily", "1000")
	e.mint(t, wallet, 100_000_000)
	payerAddr := crypto.PubkeyToAddress(key(t, keyPayer).PublicKey)
	e.mint(t, payerAddr, 100_000_000)
	seller := newSeller(t)
	port := start(t, e.js, []string{"RPC_URL=" + e.rpc, "FACILITATOR_URL=" + fac, "PAY_TO=" + seller.Hex()}, true, "node", "server-v2.mjs")
	url := fmt.Sprintf("http://127.0.0.1:%d/weather", port)
	node := func(extra ...string) *exec.Cmd {
		cmd := exec.Command("node", "client-v2.mjs", url)
		cmd.Dir, cmd.Env = e.js, append(os.Environ(), append([]string{"RPC_URL=" + e.rpc, "PAYER_KEY=0x" + keyPayer}, extra...)...)
		return cmd
	}
	timed := func(fn func()) float64 {
		t0 := time.Now()
		fn()
		return float64(time.Since(t0).Microseconds()) / 1000
	}
	// Warm baseline: one node process paying n times.
	out, err := node(fmt.Sprintf("REPEAT=%d", n)).Output()
	if err != nil {
		t.Fatalf("baseline: %v %s", err, stderrOf(err))
	}
	var base struct {
		Latencies []float64 `json:"latencies_ms"`
	}
	json.Unmarshal(out, &base)
	// Warm Purser: the payer package in this process.
	k, err := agentauth.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(server, client.WithAgentKey(k))
	if err != nil {
		t.Fatal(err)
	}
	p := payer.New(c)
	var warm, coldBase, coldOurs []float64
	for range n {
		warm = append(warm, timed(func() {
			if r, err := p.Fetch(context.Background(), payer.Request{URL: url}); err != nil || r.Outcome != payer.Paid {
				t.Fatalf("payer: %+v %v", r, err)
			}
		}))
	}
	for range n {
		coldBase = append(coldBase, timed(func() {
			if out, err := node().Output(); err != nil || !strings.Contains(string(out), `"status":200`) {
				t.Fatalf("node client: %s %v", out, err)
			}
		}))
		coldOurs = append(coldOurs, timed(func() {
			if _, code := e.fetch(t, server, keyFile, url); code != 0 {
				t.Fatalf("purser x402 fetch exited %d", code)
			}
		}))
	}
	wb, wo, cb, co := median(base.Latencies), median(warm), median(coldBase), median(coldOurs)
	t.Logf("warm (one process, n=%d): official client %.1f ms, Purser %.1f ms, ratio %.2f", n, wb, wo, wo/wb)
	t.Logf("cold (a process per request): node client-v2.mjs %.1f ms, purser x402 fetch %.1f ms, ratio %.2f", cb, co, co/cb)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
