package interop

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"github.com/purserhq/purser/internal/evm"
	"github.com/purserhq/purser/internal/evm/token"
	"github.com/purserhq/purser/sdk"
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
	networkV1      = "base-sepolia"
	price          = 10000 // $0.01 in atomic units (6 decimals)
)

var (
	// usdc is Base Sepolia's USDC address; our DevUSD runs there on anvil,
	// so the official packages treat it as the default asset.
	usdc = common.HexToAddress("0x036CbD53842c5426634e7929541eC2318f3dCF7e")
	// multicall3 is Multicall3's canonical address, where viem (inside the
	// official facilitator) looks for it.
	multicall3 = common.HexToAddress("0xcA11bde05977b3631167028862bE2a173976CA11")
)

// The purser binary, built once per test process.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..")
}

// purserBin builds ./cmd/purser once and returns its path.
func purserBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "purser-interop-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "purser")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/purser")
		build.Dir = repoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/purser: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type env struct {
	js     string // where js/package.json is installed (holds node_modules)
	dir    string // this test's copy of the scripts, node_modules linked in
	rpc    string
	client *evm.Client
}

func key(t *testing.T, hex string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.HexToECDSA(hex)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func addr(t *testing.T, hex string) common.Address {
	return crypto.PubkeyToAddress(key(t, hex).PublicKey)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a command in its own process group and kills the group at
// cleanup; with ready it waits for the {"ready":true,"port":N} line and
// returns the port.
func start(t *testing.T, dir string, env []string, ready bool, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	// Its own process group, killed whole at cleanup, in case it starts
	// children; and killed by the kernel if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	label := filepath.Base(name)
	if len(args) > 0 {
		label += " " + args[0]
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", label, stderr.String())
		}
	})
	if !ready {
		go func() { _, _ = io.Copy(io.Discard, out) }()
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
		t.Fatalf("%s did not get ready: %s", label, stderr.String())
	}
	return 0
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Len() }

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setup starts anvil (chain id 84532) and installs our DevUSD token at
// Base Sepolia's USDC address as "USDC" version "2", and Multicall3.
func setup(t *testing.T) *env {
	t.Helper()
	js := os.Getenv("PURSER_INTEROP_JS")
	if js == "" {
		t.Skip("PURSER_INTEROP_JS is not set: see internal/interop/README.md (.ci/run installs the official x402 packages and sets it)")
	}
	// The platform package's binary itself rather than .bin/anvil's node
	// wrapper: one process, which dies with the test process.
	anvil := filepath.Join(js, "node_modules", ".bin", "anvil")
	if m, _ := filepath.Glob(filepath.Join(js, "node_modules", "@foundry-rs", "anvil-*", "bin", "anvil")); len(m) == 1 {
		anvil = m[0]
	}
	if _, err := os.Stat(anvil); err != nil {
		t.Fatalf("PURSER_INTEROP_JS=%s has no installed anvil (npm install there first): %v", js, err)
	}
	e := &env{js: js, dir: t.TempDir()}
	// The scripts are the repository's, the packages the installed ones:
	// copy the scripts to a fresh directory and link node_modules beside them.
	scripts, err := filepath.Glob(filepath.Join(repoRoot(), "internal", "interop", "js", "*.mjs"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts in js/: %v", err)
	}
	for _, f := range scripts {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(js, "node_modules"), filepath.Join(e.dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	start(t, e.dir, nil, false, anvil, "--chain-id", "84532", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--silent")
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
	rc, err := rpc.DialContext(ctx, e.rpc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Our token's runtime code (it has no constructor), then initialize, as
	// the spec's recipe does with FiatToken.
	if err := rc.CallContext(ctx, nil, "anvil_setCode", usdc, hexutil.Encode(token.RuntimeBytecode())); err != nil {
		t.Fatal(err)
	}
	deployer := evm.NewRelayer(e.client, evm.KeySigner(key(t, keyDeployer)))
	e.send(t, deployer, token.Binding().PackInitialize("USDC", "USDC", "2", 6, deployer.Address()))
	if n, v, err := e.client.TokenDomain(ctx, usdc); err != nil || n != "USDC" || v != "2" {
		t.Fatalf("token domain %q %q %v, want USDC 2", n, v, err)
	}
	e.installMulticall3(t, rc)
	return e
}

// installMulticall3 puts Multicall3's runtime code at its canonical address.
// Without it the official facilitator reports every failed simulation as
// invalid_exact_evm_transaction_simulation_failed instead of the specific
// reason. The creation code is viem's (from the installed package, never
// committed); an eth_call of creation code returns the runtime code.
func (e *env) installMulticall3(t *testing.T, rc *rpc.Client) {
	t.Helper()
	src := filepath.Join(e.js, "node_modules", "viem", "_esm", "constants", "contracts.js")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`multicall3Bytecode\s*=\s*['"](0x[0-9a-fA-F]+)['"]`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no multicall3Bytecode in %s (is viem pinned as in js/package.json?)", src)
	}
	ctx := context.Background()
	var code hexutil.Bytes
	if err := rc.CallContext(ctx, &code, "eth_call", map[string]string{"data": string(m[1])}, "latest"); err != nil || len(code) == 0 {
		t.Fatalf("multicall3 creation: %v (%d bytes)", err, len(code))
	}
	if err := rc.CallContext(ctx, nil, "anvil_setCode", multicall3, code); err != nil {
		t.Fatal(err)
	}
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
		t.Fatalf("tx %s: %v (receipt %+v)", h, err, rcpt)
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

func newSeller() common.Address {
	k, _ := crypto.GenerateKey()
	return crypto.PubkeyToAddress(k.PublicKey)
}

// paid is what one paid request should have done on chain.
type paid struct {
	payer, seller common.Address
	payerBefore   int64
	nonce         common.Hash // the EIP-3009 authorization nonce that was signed
	settlement    *x402.SettleResponse
	network       string // expected in the settlement: eip155:84532 or base-sepolia
}

// checkPaid proves the payment on chain: the settlement names a mined
// transaction that moved exactly price from payer to seller and used the
// signed nonce; balances moved by exactly price.
func (e *env) checkPaid(t *testing.T, p paid) {
	t.Helper()
	ctx := context.Background()
	s := p.settlement
	if s == nil || !s.Success || s.Network != p.network || s.Transaction == "" {
		t.Fatalf("settlement header: %+v, want success on %s with a transaction", s, p.network)
	}
	if s.Payer != "" && !strings.EqualFold(s.Payer, p.payer.Hex()) {
		t.Fatalf("settlement payer %s, want %s", s.Payer, p.payer)
	}
	tx := common.HexToHash(s.Transaction)
	rcpt, err := e.client.WaitReceipt(ctx, tx)
	if err != nil || rcpt.Status != 1 {
		t.Fatalf("settlement tx %s: %v %+v", tx, err, rcpt)
	}
	if !evm.TransferLogged(rcpt, usdc, p.payer, p.seller, big.NewInt(price)) {
		t.Fatalf("settlement tx %s logs no Transfer(%s, %s, %d)", tx, p.payer, p.seller, price)
	}
	if got := e.balance(t, p.seller); got != price {
		t.Fatalf("seller holds %d, want %d", got, price)
	}
	if got := p.payerBefore - e.balance(t, p.payer); got != price {
		t.Fatalf("payer paid %d, want %d", got, price)
	}
	used, err := e.client.AuthorizationState(ctx, usdc, p.payer, p.nonce)
	if err != nil || !used {
		t.Fatalf("authorizationState(%s, %s) = %v, %v; want true", p.payer, p.nonce, used, err)
	}
	by, found, err := e.client.FindAuthorizationUsed(ctx, usdc, p.payer, p.nonce, 0)
	if err != nil || !found || by != tx {
		t.Fatalf("AuthorizationUsed(%s, %s) in tx %s (found %v, %v), want %s", p.payer, p.nonce, by, found, err, tx)
	}
}

// replay sends a payment header that was already settled once more and
// checks it is refused with 402 while no balance moves; it returns the
// refusal reason (PAYMENT-REQUIRED's error for v2, the body's for v1).
func (e *env) replay(t *testing.T, url, header, value string, p paid) string {
	t.Helper()
	payerBefore, sellerBefore := e.balance(t, p.payer), e.balance(t, p.seller)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPaymentRequired {
		t.Fatalf("replayed %s: status %d, want 402; body %s", header, resp.StatusCode, body)
	}
	if strings.Contains(string(body), "sunny") {
		t.Fatalf("replayed %s got the paid content: %s", header, body)
	}
	var reason struct {
		Error string `json:"error"`
	}
	if h := resp.Header.Get(x402.HeaderPaymentRequired); h != "" {
		if b, err := base64.StdEncoding.DecodeString(h); err == nil {
			_ = json.Unmarshal(b, &reason)
		}
	} else {
		_ = json.Unmarshal(body, &reason)
	}
	// Give a wrongly accepted settlement the time to land before looking.
	time.Sleep(200 * time.Millisecond)
	if e.balance(t, p.payer) != payerBefore || e.balance(t, p.seller) != sellerBefore {
		t.Fatalf("replayed %s moved balances: payer %d→%d, seller %d→%d", header,
			payerBefore, e.balance(t, p.payer), sellerBefore, e.balance(t, p.seller))
	}
	t.Logf("replayed %s refused: 402 %q", header, reason.Error)
	return reason.Error
}

// officialFacilitator starts the reference facilitator (v2 eip155:84532 and
// v1 base-sepolia) and returns its URL.
func (e *env) officialFacilitator(t *testing.T) string {
	p := start(t, e.dir, []string{"RPC_URL=" + e.rpc, "FACILITATOR_KEY=0x" + keyFacilitator}, true, "node", "facilitator.mjs")
	return fmt.Sprintf("http://127.0.0.1:%d", p)
}

// officialServer starts an official paid server (server-v2.mjs or
// server-v1.mjs) selling GET /weather for $0.01 and returns that URL.
func (e *env) officialServer(t *testing.T, script, facilitator string, payTo common.Address) string {
	port := start(t, e.dir, []string{"RPC_URL=" + e.rpc, "FACILITATOR_URL=" + facilitator, "PAY_TO=" + payTo.Hex(), "PRICE=$0.01"}, true, "node", script)
	return fmt.Sprintf("http://127.0.0.1:%d/weather", port)
}

// purserFacilitator runs `purser facilitator` on anvil and returns its URL.
func (e *env) purserFacilitator(t *testing.T) string {
	t.Helper()
	bin := purserBin(t)
	dir := t.TempDir()
	gasKey := filepath.Join(dir, "gas.key")
	if err := os.WriteFile(gasKey, []byte("0x"+keyPurserGas+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	start(t, dir, nil, false, bin, "facilitator", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--rpc", network+"="+e.rpc, "--gas-key", gasKey)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, url+"/supported")
	return url
}

// purserSeller serves GET /weather for $0.01 through Purser's middleware,
// verifying and settling with the facilitator at facURL; it returns the URL.
func (e *env) purserSeller(t *testing.T, facURL string, payTo common.Address) string {
	t.Helper()
	mw, err := middleware.New(middleware.Config{Facilitator: &x402.FacilitatorClient{URL: facURL}, Routes: []middleware.Route{{
		Pattern: "GET /weather", Amount: fmt.Sprint(price), Asset: usdc.Hex(), Network: network, PayTo: payTo.Hex(),
		EIP712Name: "USDC", EIP712Version: "2", Description: "Weather", MimeType: "application/json"}}})
	if err != nil {
		t.Fatal(err)
	}
	ss := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"weather":"sunny","seller":"purser"}`)
	})))
	t.Cleanup(ss.Close)
	return ss.URL + "/weather"
}

// clientResult is what client-v2.mjs and client-v1.mjs print.
type clientResult struct {
	Status     int                  `json:"status"`
	Body       string               `json:"body"`
	Settlement *x402.SettleResponse `json:"settlement"`
	Payment    struct {
		Payload x402.ExactPayload `json:"payload"`
	} `json:"payment"`
	Header string `json:"header"` // the raw payment header it sent
}

func (e *env) officialClient(t *testing.T, script, url string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, url)
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "RPC_URL="+e.rpc, "PAYER_KEY=0x"+keyPayer)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderrOf(err))
	}
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s printed %s", script, out)
	}
	return r
}

// payOfficially has the official client script pay url and checks the
// payment on chain; it returns the client's result.
func (e *env) payOfficially(t *testing.T, script, url string, seller common.Address, wantNetwork string) (clientResult, paid) {
	t.Helper()
	payerAddr := addr(t, keyPayer)
	before := e.balance(t, payerAddr)
	r := e.officialClient(t, script, url)
	if r.Status != http.StatusOK || !strings.Contains(r.Body, "sunny") || r.Header == "" {
		t.Fatalf("%s paying %s: %+v", script, url, r)
	}
	p := paid{payer: payerAddr, seller: seller, payerBefore: before, nonce: r.Payment.Payload.Authorization.Nonce,
		settlement: r.Settlement, network: wantNetwork}
	if got := r.Payment.Payload.Authorization.Value; got == nil || got.Int64() != price {
		t.Fatalf("signed value %v, want %d", got, price)
	}
	e.checkPaid(t, p)
	return r, p
}

// TestOfficialToOfficial runs the reference packages against each other
// on our chain setup: it proves the harness (token, Multicall3, scripts)
// independently of Purser's code.
func TestOfficialToOfficial(t *testing.T) {
	e := setup(t)
	e.mint(t, addr(t, keyPayer), 1_000_000)
	fac := e.officialFacilitator(t)
	for _, c := range []struct{ name, server, client, network, header string }{
		{"v2", "server-v2.mjs", "client-v2.mjs", network, x402.HeaderPaymentSignature},
		{"v1", "server-v1.mjs", "client-v1.mjs", networkV1, x402.HeaderXPayment},
	} {
		t.Run(c.name, func(t *testing.T) {
			seller := newSeller()
			url := e.officialServer(t, c.server, fac, seller)
			r, p := e.payOfficially(t, c.client, url, seller, c.network)
			reason := e.replay(t, url, c.header, r.Header, p)
			if c.name == "v2" && reason != "invalid_exact_evm_nonce_already_used" {
				// With Multicall3 installed the official facilitator names the reason.
				t.Fatalf("replay refused with %q, want invalid_exact_evm_nonce_already_used", reason)
			}
		})
	}
}

// TestOfficialClientsPayPurserSeller: (c) the official v2 client and (d) the
// official v1 client pay a Go seller behind Purser's middleware, which
// verifies and settles through `purser facilitator`.
func TestOfficialClientsPayPurserSeller(t *testing.T) {
	e := setup(t)
	e.mint(t, addr(t, keyPayer), 1_000_000)
	fac := e.purserFacilitator(t)
	for _, c := range []struct{ name, client, network, header string }{
		{"v2", "client-v2.mjs", network, x402.HeaderPaymentSignature},
		{"v1", "client-v1.mjs", networkV1, x402.HeaderXPayment},
	} {
		t.Run(c.name, func(t *testing.T) {
			seller := newSeller()
			url := e.purserSeller(t, fac, seller)
			r, p := e.payOfficially(t, c.client, url, seller, c.network)
			e.replay(t, url, c.header, r.Header, p)
		})
	}
}

// purserNode is a `purser serve` connected to anvil with one agent.
type purserNode struct {
	url     string         // the server
	data    string         // its data directory (the owner's commands read the owner key there)
	keyFile string         // the agent's key file
	wallet  common.Address // the agent's wallet on network
}

// purser starts `purser serve` connected to anvil and creates an agent
// with the given mandate flags, its wallet funded with 1 USDC; it returns
// the server URL, the agent key file and the agent's wallet.
func (e *env) purser(t *testing.T, mandate ...string) (string, string, common.Address) {
	t.Helper()
	p := e.purserNode(t, nil, mandate...)
	return p.url, p.keyFile, p.wallet
}

// purserNode is purser with extra agent create flags (create, e.g.
// --custody 2of2) before the mandate flags.
func (e *env) purserNode(t *testing.T, create []string, mandate ...string) purserNode {
	t.Helper()
	bin := purserBin(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	start(t, dir, nil, false, bin, "serve", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--rpc", network+"="+e.rpc, "--default-network", network)
	waitHTTP(t, url+"/healthz")
	keyFile := filepath.Join(dir, "agent.key")
	args := append([]string{"agent", "create", "interop", "--key-out", keyFile, "--server", url, "--data", data, "--json"}, create...)
	out, err := exec.Command(bin, append(args, mandate...)...).Output()
	if err != nil {
		t.Fatalf("agent create: %v %s %s", err, out, stderrOf(err))
	}
	wallet := walletOf(t, out)
	e.mint(t, wallet, 1_000_000)
	return purserNode{url: url, data: data, keyFile: keyFile, wallet: wallet}
}

// agentJSON is what `agent create --json` and `agent show --json` print.
type agentJSON struct {
	Custody string `json:"custody"`
	Wallets []struct {
		Network, Address, Custody string
	} `json:"wallets"`
}

// walletOf returns the agent's wallet on network from agent JSON.
func walletOf(t *testing.T, out []byte) common.Address {
	t.Helper()
	var a agentJSON
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("agent JSON %s: %v", out, err)
	}
	var wallet common.Address
	for _, w := range a.Wallets {
		if w.Network == network {
			wallet = common.HexToAddress(w.Address)
		}
	}
	if wallet == (common.Address{}) {
		t.Fatalf("agent JSON has no %s wallet: %s", network, out)
	}
	return wallet
}

// owner runs an owner command of the purser CLI against p and returns its
// standard output.
func (p purserNode) owner(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(purserBin(t), append(args, "--server", p.url, "--data", p.data)...).Output()
	if err != nil {
		t.Fatalf("purser %s: %v %s %s", strings.Join(args, " "), err, out, stderrOf(err))
	}
	return out
}

// fetchResult is what `purser x402 fetch --json` prints.
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, purserBin(t), append([]string{"x402", "fetch", url, "--json"}, args...)...)
	cmd.WaitDelay = 5 * time.Second
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

// TestPurserPaysOfficialServers: Purser's client (`purser x402 fetch`)
// pays (a) an official v2 server and (b) an official v1 server, both settling
// through the official facilitator.
func TestPurserPaysOfficialServers(t *testing.T) {
	e := setup(t)
	fac := e.officialFacilitator(t)
	p := e.purserNode(t, nil, "--per-tx-auto", "0.10", "--per-tx-max", "1", "--daily", "5")
	e.payOfficialServers(t, p, fac, nil)
}

// TestCosignedWalletPaysOfficialServers: the same payments from a
// co-signed (2of2) wallet, whose key neither the agent nor the server holds
// alone: `purser x402 fetch` runs the signing protocol with the server, and
// the official facilitator must take the joint signature as any wallet's.
// Each payment's audit trail holds a spend.sign with cosign true for the
// nonce that was used on chain.
func TestCosignedWalletPaysOfficialServers(t *testing.T) {
	e := setup(t)
	fac := e.officialFacilitator(t)
	recovery := filepath.Join(t.TempDir(), "recovery.key")
	if out, err := exec.Command(purserBin(t), "owner", "recovery-key", "--out", recovery).CombinedOutput(); err != nil {
		t.Fatalf("owner recovery-key: %v %s", err, out)
	}
	t0 := time.Now()
	p := e.purserNode(t, []string{"--custody", "2of2", "--recovery-key", recovery + ".pub"},
		"--per-tx-auto", "0.10", "--per-tx-max", "1", "--daily", "5")
	t.Logf("purser serve + co-signed agent create (key generation) + funding: %v", time.Since(t0).Round(time.Millisecond))
	// The funded wallet is the co-signed one, as the server itself says.
	show := p.owner(t, "agent", "show", "interop", "--json")
	var a agentJSON
	if err := json.Unmarshal(show, &a); err != nil {
		t.Fatal(err)
	}
	if a.Custody != "2of2" {
		t.Fatalf("agent show: custody %q, want 2of2: %s", a.Custody, show)
	}
	cosigned := false
	for _, w := range a.Wallets {
		if w.Network == network && common.HexToAddress(w.Address) == p.wallet && w.Custody == "cosign-2of2" {
			cosigned = true
		}
	}
	if !cosigned {
		t.Fatalf("agent show: no %s wallet %s with custody cosign-2of2: %s", network, p.wallet, show)
	}
	// The key file holds the agent's share (and the server is not told it).
	if b, err := os.ReadFile(p.keyFile); err != nil || !strings.Contains(string(b), "\ncosign-share: ") {
		t.Fatalf("the agent key file holds no co-signing share (%v)", err)
	}
	e.payOfficialServers(t, p, fac, func(t *testing.T, r fetchResult) {
		t.Helper()
		// The owner's audit export: one spend.sign for this spend, co-signed.
		n := 0
		for line := range strings.Lines(string(p.owner(t, "audit", "export", "--format", "jsonl"))) {
			var ev struct {
				Action  string          `json:"action"`
				Subject string          `json:"subject"`
				Details json.RawMessage `json:"details"`
			}
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Action != "spend.sign" || ev.Subject != "spend:"+r.Spend.SpendID {
				continue
			}
			n++
			var d struct {
				Cosign  bool   `json:"cosign"`
				SpendID string `json:"spend_id"`
				RailRef string `json:"rail_ref"` // the EIP-3009 nonce authorizationState saw used
			}
			if err := json.Unmarshal(ev.Details, &d); err != nil || !d.Cosign || d.SpendID != r.Spend.SpendID ||
				!strings.EqualFold(d.RailRef, r.Spend.RailData.Nonce) {
				t.Fatalf("spend.sign for %s is not co-signed: %s", r.Spend.SpendID, line)
			}
		}
		if n != 1 {
			t.Fatalf("%d spend.sign events for spend %s in the audit export, want 1", n, r.Spend.SpendID)
		}
	})
}

// payOfficialServers has p's agent pay an official v2 and an official v1
// server through the official facilitator at fac, checks each payment on
// chain, then checks that a fetch above --max moves nothing. check, if
// set, looks further at each paid fetch.
func (e *env) payOfficialServers(t *testing.T, p purserNode, fac string, check func(*testing.T, fetchResult)) {
	t.Helper()
	for _, s := range []struct{ name, script, network string }{{"v2", "server-v2.mjs", network}, {"v1", "server-v1.mjs", networkV1}} {
		t.Run(s.name, func(t *testing.T) {
			seller := newSeller()
			url := e.officialServer(t, s.script, fac, seller)
			before := e.balance(t, p.wallet)
			t0 := time.Now()
			r, code := e.fetch(t, p.url, p.keyFile, url, "--max", "0.05")
			took := time.Since(t0)
			if code != 0 || r.Outcome != "paid" || !strings.Contains(r.Body, "sunny") {
				t.Fatalf("purser x402 fetch of the official %s server: exit %d %+v", s.name, code, r)
			}
			t.Logf("purser x402 fetch, paid: %v", took.Round(time.Millisecond))
			if r.Spend.Status != "captured" {
				t.Fatalf("spend %s is %s after settlement, want captured", r.Spend.SpendID, r.Spend.Status)
			}
			if len(common.FromHex(r.Spend.RailData.Nonce)) != 32 {
				t.Fatalf("spend %s has no 32-byte nonce: %q", r.Spend.SpendID, r.Spend.RailData.Nonce)
			}
			e.checkPaid(t, paid{payer: p.wallet, seller: seller, payerBefore: before,
				nonce: common.HexToHash(r.Spend.RailData.Nonce), settlement: r.Settlement, network: s.network})
			if check != nil {
				check(t, r)
			}
			// Above --max: refused before anything is signed; nothing moves.
			before = e.balance(t, p.wallet)
			if _, code := e.fetch(t, p.url, p.keyFile, url, "--max", "0.001"); code != 4 {
				t.Fatalf("fetch above --max exited %d, want 4", code)
			}
			if e.balance(t, p.wallet) != before || e.balance(t, seller) != price {
				t.Fatal("a refused fetch moved balances")
			}
		})
	}
}

// TestLatency measures the median latency of a paid request, both paying
// the same official v2 server: the official v2 client signing with a raw
// key, against Purser (policy check, hold, signing, audit and settlement
// report included). Warm: one process making n requests (bench-client.mjs;
// the Go SDK's Agent.Fetch, which the CLI runs). Cold: a new process per request
// (node client-v2.mjs; purser x402 fetch). Run with PURSER_INTEROP_BENCH=N.
func TestLatency(t *testing.T) {
	n := 0
	fmt.Sscan(os.Getenv("PURSER_INTEROP_BENCH"), &n)
	if n <= 0 {
		t.Skip("set PURSER_INTEROP_BENCH=N to measure")
	}
	e := setup(t)
	fac := e.officialFacilitator(t)
	server, keyFile, wallet := e.purser(t, "--per-tx-auto", "1", "--per-tx-max", "1", "--daily", "1000")
	e.mint(t, wallet, 100_000_000)
	e.mint(t, addr(t, keyPayer), 100_000_000)
	url := e.officialServer(t, "server-v2.mjs", fac, newSeller())
	node := func(script string, extra ...string) *exec.Cmd {
		cmd := exec.Command("node", script, url)
		cmd.Dir, cmd.Env = e.dir, append(os.Environ(), append([]string{"RPC_URL=" + e.rpc, "PAYER_KEY=0x" + keyPayer}, extra...)...)
		return cmd
	}
	timed := func(fn func()) float64 {
		t0 := time.Now()
		fn()
		return float64(time.Since(t0).Microseconds()) / 1000
	}
	// Warm baseline: one node process paying n times (after a warm-up).
	out, err := node("bench-client.mjs", fmt.Sprintf("COUNT=%d", n)).Output()
	if err != nil {
		t.Fatalf("baseline: %v %s", err, stderrOf(err))
	}
	var base struct {
		Latencies []float64 `json:"latencies_ms"`
	}
	if err := json.Unmarshal(out, &base); err != nil || len(base.Latencies) != n {
		t.Fatalf("bench-client.mjs printed %s", out)
	}
	// Warm Purser: the SDK's Agent.Fetch in this process (after a warm-up).
	k, err := agentauth.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := sdk.NewKey(k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sdk.NewAgent(server, sk)
	if err != nil {
		t.Fatal(err)
	}
	p := c
	pay := func() {
		if r, err := p.Fetch(context.Background(), sdk.FetchRequest{URL: url}); err != nil || r.Outcome != sdk.Paid {
			t.Fatalf("payer: %+v %v", r, err)
		}
	}
	pay()
	var warm, coldBase, coldOurs []float64
	for range n {
		warm = append(warm, timed(pay))
	}
	for range n {
		coldBase = append(coldBase, timed(func() {
			if out, err := node("client-v2.mjs").Output(); err != nil || !strings.Contains(string(out), `"status":200`) {
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
