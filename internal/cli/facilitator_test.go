package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
