package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/purserhq/purser/internal/devchain"
)

// leaks reports whether out holds any 12-character run of the key's hex
// digits, in either case.
func leaks(out, keyHex string) bool {
	low := strings.ToLower(out)
	k := strings.ToLower(keyHex)
	for i := 0; i+12 <= len(k); i++ {
		if strings.Contains(low, k[i:i+12]) {
			return true
		}
	}
	return false
}

// Attack (reproduced): a gas key given without 0x was taken for a file
// name, and the error quoted it. No malformed form of a key may appear in
// an error, whether it comes from PURSER_GAS_KEY, --gas-key or a file.
func TestGasKeyNeverEchoed(t *testing.T) {
	t.Parallel()
	const key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
	forms := map[string]string{
		"no 0x":           key,
		"no 0x, padded":   "  " + key + "\n",
		"0X":              "0X" + key,
		"short":           "0x" + key[:63],
		"long":            "0x" + key + "a",
		"no 0x, short":    key[:62],
		"not hex":         "0x" + key[:62] + "zz",
		"quoted":          `"0x` + key + `"`,
		"inner space":     "0x" + key[:32] + " " + key[32:],
		"with a prefix":   "key=0x" + key,
		"zero":            "0x" + strings.Repeat("0", 64),
		"above the order": "0x" + strings.Repeat("f", 64),
	}
	dir := t.TempDir()
	rpc := []string{"facilitator", "--rpc", "eip155:1337=http://127.0.0.1:1"}
	for name, v := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			keyHex := key
			if strings.Count(v, "0") == 66 || strings.Count(v, "f") == 64 {
				keyHex = strings.TrimPrefix(v, "0x")
			}
			check := func(how string, code int, stdout, stderr string) {
				t.Helper()
				if code == 0 || leaks(stderr, keyHex) || leaks(stdout, keyHex) {
					t.Errorf("%s: exit %d, the output shows the key:\nstdout: %s\nstderr: %s", how, code, stdout, stderr)
				}
			}
			code, out, errOut := runCLI(t, map[string]string{"PURSER_GAS_KEY": v}, rpc...)
			check("PURSER_GAS_KEY", code, out, errOut)
			code, out, errOut = runCLI(t, nil, append(rpc, "--gas-key", v)...)
			check("--gas-key", code, out, errOut)
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".key")
			if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut = runCLI(t, nil, append(rpc, "--gas-key", f)...)
			check("--gas-key FILE", code, out, errOut)
			code, out, errOut = runCLI(t, map[string]string{"PURSER_GAS_KEY": f}, rpc...)
			check("PURSER_GAS_KEY=FILE", code, out, errOut)
		})
	}
}

func TestFacilitatorFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	rpc := []string{"facilitator", "--rpc", "eip155:1337=http://127.0.0.1:1", "--gas-key", filepath.Join(dir, "none")}
	tests := []struct {
		args   []string
		env    map[string]string
		code   int
		stderr string
	}{
		{[]string{"--sellers", "0x1"}, nil, 2, "--sellers: entry 1 is not a 0x address"},
		{[]string{"--sellers", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C,s3cretvalue"}, nil, 2, "entry 2"},
		{[]string{"--sellers", "0x0000000000000000000000000000000000000000"}, nil, 2, "entry 1"},
		{[]string{"--rate-per-payer", "-1"}, nil, 2, "--rate-per-payer"},
		{[]string{"--secret-file", filepath.Join(dir, "s3cretvalue")}, nil, 1, "--secret-file names no readable file"},
		{[]string{"--secret-file", short}, nil, 1, "at least 16 characters"},
		{[]string{"--secret-file", empty}, nil, 1, "empty file"},
		{nil, map[string]string{"PURSER_FACILITATOR_SECRET": "s3cretvalue"}, 1, "at least 16 characters"},
	}
	for _, tt := range tests {
		code, _, errOut := runCLI(t, tt.env, append(rpc, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.stderr) || strings.Contains(errOut, "s3cretvalue") {
			t.Errorf("%v: exit %d (want %d), stderr %q", tt.args, code, tt.code, errOut)
		}
	}
}

// lineWriter signals when a line containing want was written.
type lineWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan string
	sent bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent && strings.Contains(w.buf.String(), w.want) {
		w.seen <- w.buf.String()
		w.sent = true
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// The flags reach the running facilitator: the secret is required, only
// the listed sellers are served.
func TestFacilitatorFlagsApply(t *testing.T) {
	t.Parallel()
	dev, err := devchain.Start(devchain.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	dir := t.TempDir()
	gas, _ := crypto.GenerateKey()
	gasFile := filepath.Join(dir, "gas.key")
	os.WriteFile(gasFile, []byte(hexutil.Encode(crypto.FromECDSA(gas))+"\n"), 0o600)
	const secret = "a-secret-of-sufficient-length"
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	seller, other := "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{want: "listening on ", seen: make(chan string, 1)}
	var errb bytes.Buffer
	e := &env{stdio: Stdio{In: strings.NewReader(""), Out: out, Err: &errb}, getenv: func(string) string { return "" }}
	done := make(chan int)
	go func() {
		done <- e.run(ctx, []string{"facilitator", "--rpc", dev.Network() + "=" + dev.RPCURL(), "--gas-key", gasFile,
			"--listen", "127.0.0.1:0", "--secret-file", secretFile, "--sellers", seller})
	}()
	var line string
	select {
	case line = <-out.seen:
	case code := <-done:
		t.Fatalf("purser facilitator exited %d: %s", code, errb.String())
	}
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
		if strings.Contains(errb.String(), secret) || strings.Contains(out.String(), secret) {
			t.Error("the secret was printed")
		}
	}()
	url := strings.Fields(line[strings.Index(line, "http://"):])[0]

	offer := func(payTo string) []byte {
		return []byte(`{"x402Version":2,"paymentPayload":{"x402Version":2,"accepted":{"scheme":"exact","network":"` + dev.Network() +
			`"},"payload":{"signature":"0x00","authorization":{"from":"` + other + `","to":"` + payTo +
			`","value":"1","validAfter":"0","validBefore":"99999999999","nonce":"0x` + strings.Repeat("ab", 32) + `"}}},` +
			`"paymentRequirements":{"scheme":"exact","network":"` + dev.Network() + `","amount":"1","asset":"` + dev.Token().Hex() +
			`","payTo":"` + payTo + `","maxTimeoutSeconds":60,"extra":{"name":"USD Coin","version":"2"}}}`)
	}
	call := func(auth string, b []byte) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, url+"/verify", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := call("", offer(seller)); code != http.StatusUnauthorized {
		t.Fatalf("without the secret: %d %v", code, m)
	}
	if code, m := call(secret, offer(other)); code != 200 || m["invalidReason"] != "payto_not_allowed" {
		t.Fatalf("another payTo: %d %v", code, m)
	}
	// The listed seller gets past the policy to the payment's own checks.
	if code, m := call(secret, offer(seller)); code != 200 || m["invalidReason"] != "invalid_exact_evm_signature" {
		t.Fatalf("the listed seller: %d %v", code, m)
	}
}
