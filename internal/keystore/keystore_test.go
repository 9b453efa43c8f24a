package keystore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openFile(t testing.TB, dir string) *Keystore {
	t.Helper()
	ks, err := Open(dir, FileKEK{Path: filepath.Join(dir, "kek")})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestBIP32Vector1 checks every step of BIP-32 test vector 1,
// m/0'/1/2'/2/1000000000.
func TestBIP32Vector1(t *testing.T) {
	t.Parallel()
	steps := []struct {
		index       uint32
		priv, chain string
	}{
		{0 | hardened, "edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea", "47fdacbd0f1097043b78c63c20c34ef4ed9a111d980047ad16282c7ae6236141"},
		{1, "3c6cb8d0f6a264c91ea8b5030fadaa8e538b020f0a387421a12de9319dc93368", "2a7857631386ba23dacac34180dd1983734e444fdbf774041578e9b6adb37c19"},
		{2 | hardened, "cbce0d719ecf7431d88e6a89fa1483e02e35092af60c042b1df2ff59fa424dca", "04466b9cc8e161e966409ca52986c584f07e9dc81f735db683c3ff6ec7b1503f"},
		{2, "0f479245fb19a38a1954c5c7c0ebab2f9bdfd96a17563ef28a6a4b1a2a764ef4", "cfb71883f01676f587d023cc53a35bc7f88f724b1f8c2892ac1275ac822a3edd"},
		{1000000000, "471b76e389e528d6de6d816857e012c5455051cad6660850e58372a6c3e6e7c8", "c783e67b921d2beb8f6b389cc646d7263b4145701dadd2161548a8b078e65e9e"},
	}
	seed := mustHex(t, "000102030405060708090a0b0c0d0e0f")
	x, err := masterKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(x.key[:]); got != "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35" {
		t.Fatalf("m: key %s", got)
	}
	if got := hex.EncodeToString(x.chain[:]); got != "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508" {
		t.Fatalf("m: chain %s", got)
	}
	var path []uint32
	for _, s := range steps {
		if err := x.child(s.index); err != nil {
			t.Fatal(err)
		}
		path = append(path, s.index)
		if got := hex.EncodeToString(x.key[:]); got != s.priv {
			t.Fatalf("%v: key %s, want %s", path, got, s.priv)
		}
		if got := hex.EncodeToString(x.chain[:]); got != s.chain {
			t.Fatalf("%v: chain %s, want %s", path, got, s.chain)
		}
	}
	key, err := derivePath(seed, path)
	if err != nil || hex.EncodeToString(key[:]) != steps[len(steps)-1].priv {
		t.Fatalf("derivePath: %v", err)
	}
}

// TestBIP44Addresses: the well-known development mnemonic "test … junk"
// gives the well-known addresses at m/44'/60'/0'/0/i, which pins the
// whole path and the address encoding.
func TestBIP44Addresses(t *testing.T) {
	t.Parallel()
	mnemonic := strings.TrimSpace(strings.Repeat("test ", 11)) + " junk"
	seed, err := pbkdf2.Key(sha512.New, mnemonic, []byte("mnemonic"), 2048, 64)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := newKeystore(seed, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"} {
		w, err := ks.Wallet(uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if w.Address() != want || w.Path() != fmt.Sprintf("m/44'/60'/0'/0/%d", i) {
			t.Errorf("wallet %d: %s %s, want %s", i, w.Address(), w.Path(), want)
		}
	}
}

func TestSignRecovers(t *testing.T) {
	t.Parallel()
	ks := openFile(t, t.TempDir())
	for _, index := range []uint32{0, 1, 7, hardened - 1} {
		t.Run(fmt.Sprint(index), func(t *testing.T) {
			t.Parallel()
			w, err := ks.Wallet(index)
			if err != nil {
				t.Fatal(err)
			}
			hash := sha256.Sum256([]byte(fmt.Sprint("message ", index)))
			sig, err := w.SignHash(hash)
			if err != nil {
				t.Fatal(err)
			}
			if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
				t.Fatalf("signature %x", sig)
			}
			adj := bytes.Clone(sig)
			adj[64] -= 27
			pub, err := crypto.SigToPub(hash[:], adj)
			if err != nil {
				t.Fatal(err)
			}
			if got := crypto.PubkeyToAddress(*pub).Hex(); got != w.Address() {
				t.Fatalf("signature recovers to %s, wallet is %s", got, w.Address())
			}
		})
	}
	if _, err := ks.Wallet(hardened); err == nil {
		t.Fatal("a hardened index was accepted")
	}
}

// TestReopen: the same data dir and KEK give the same keys.
func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := openFile(t, dir), openFile(t, dir)
	for i := range uint32(3) {
		wa, _ := a.Wallet(i)
		wb, _ := b.Wallet(i)
		if wa.Address() != wb.Address() {
			t.Fatalf("wallet %d: %s then %s", i, wa.Address(), wb.Address())
		}
	}
	if !a.AuditSigner().Public().Equal(b.AuditSigner().Public()) {
		t.Fatal("audit key changed on reopen")
	}
	if !bytes.Equal(a.DeriveKey("test/v1"), b.DeriveKey("test/v1")) {
		t.Fatal("derived key changed on reopen")
	}
	ct, err := a.Encrypt([]byte("secret"), []byte("vault:1"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := b.Decrypt(ct, []byte("vault:1")); err != nil || string(pt) != "secret" {
		t.Fatalf("decrypt after reopen: %q, %v", pt, err)
	}
	// Another data dir is another seed.
	c := openFile(t, t.TempDir())
	wa, _ := a.Wallet(0)
	wc, _ := c.Wallet(0)
	if wa.Address() == wc.Address() {
		t.Fatal("two fresh keystores share a seed")
	}
}

// TestConcurrentFirstOpen: processes starting together on an empty dir
// agree on one seed and one KEK.
func TestConcurrentFirstOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addrs := make([]string, 4)
	var wg sync.WaitGroup
	for i := range addrs {
		wg.Go(func() {
			ks, err := Open(dir, FileKEK{Path: filepath.Join(dir, "kek")})
			if err != nil {
				t.Error(err)
				return
			}
			w, _ := ks.Wallet(0)
			addrs[i] = w.Address()
		})
	}
	wg.Wait()
	for _, a := range addrs[1:] {
		if a != addrs[0] {
			t.Fatalf("addresses differ: %v", addrs)
		}
	}
}

func TestPassphrase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := Open(dir, PassphraseKEK{Passphrase: []byte("correct horse")})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, seedFile))
	var s sealedSeed
	if err := json.Unmarshal(raw, &s); err != nil || s.KDF != kdfArgon2id || s.KDFParams == nil || s.KDFParams.MemoryKiB != 64*1024 {
		t.Fatalf("seed.enc header %+v, %v", s, err)
	}
	cases := []struct {
		name   string
		kek    KEKSource
		sealed bool // want ErrSealed; false: want success
	}{
		{"same passphrase", PassphraseKEK{Passphrase: []byte("correct horse")}, false},
		{"wrong passphrase", PassphraseKEK{Passphrase: []byte("correct horsf")}, true},
		{"key file instead", FileKEK{Path: filepath.Join(t.TempDir(), "kek")}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ks, err := Open(dir, c.kek)
			if c.sealed {
				var coded interface{ Code() string }
				if !errors.Is(err, ErrSealed) || !errors.As(err, &coded) || coded.Code() != "keystore_sealed" {
					t.Fatalf("err = %v, want ErrSealed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !ks.AuditSigner().Public().Equal(first.AuditSigner().Public()) {
				t.Fatal("reopened with another seed")
			}
		})
	}
	if _, err := Open(t.TempDir(), PassphraseKEK{}); err == nil {
		t.Fatal("an empty passphrase was accepted")
	}
}

func TestMissingKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openFile(t, dir)
	if err := os.Remove(filepath.Join(dir, "kek")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, FileKEK{Path: filepath.Join(dir, "kek")}); !errors.Is(err, ErrSealed) {
		t.Fatalf("err = %v, want ErrSealed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kek")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a new key file was created next to an existing seed")
	}
}

func TestTamperedSeedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openFile(t, dir)
	raw, err := os.ReadFile(filepath.Join(dir, seedFile))
	if err != nil {
		t.Fatal(err)
	}
	var good sealedSeed
	if err := json.Unmarshal(raw, &good); err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	cases := []struct {
		name   string
		mutate func(s *sealedSeed)
	}{
		{"ciphertext", func(s *sealedSeed) { s.Ciphertext = flip(s.Ciphertext, 3) }},
		{"tag", func(s *sealedSeed) { s.Ciphertext = flip(s.Ciphertext, len(s.Ciphertext)-1) }},
		{"nonce", func(s *sealedSeed) { s.Nonce = flip(s.Nonce, 0) }},
		{"salt", func(s *sealedSeed) { s.Salt = flip(s.Salt, 5) }},
		{"term", func(s *sealedSeed) { s.Term = 2 }},
		{"version", func(s *sealedSeed) { s.Version = 2 }},
		{"kdf", func(s *sealedSeed) { s.KDF = kdfArgon2id }},
		{"kdf params", func(s *sealedSeed) { s.KDFParams = &kdfParams{Time: 1} }},
		{"truncated", func(s *sealedSeed) { s.Ciphertext = s.Ciphertext[:40] }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := good
			c.mutate(&s)
			b, _ := json.Marshal(s)
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, seedFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
			kek, _ := os.ReadFile(filepath.Join(dir, "kek"))
			if err := os.WriteFile(filepath.Join(d, "kek"), kek, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(d, FileKEK{Path: filepath.Join(d, "kek")}); err == nil {
				t.Fatal("opened a tampered seed.enc")
			}
		})
	}
	for name, doc := range map[string]string{"not json": "{", "unknown field": strings.Replace(string(raw), "{", `{"extra":1,`, 1)} {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, seedFile), []byte(doc), 0o600)
		if _, err := Open(d, FileKEK{Path: filepath.Join(dir, "kek")}); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

func TestFileModes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	openFile(t, dir)
	for name, want := range map[string]os.FileMode{".": 0o700, seedFile: 0o600, "kek": 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", name, st.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("data dir holds %d files; temporary files left behind?", len(entries))
	}
	// A key file others can read is refused, not trusted.
	if err := os.Chmod(filepath.Join(dir, "kek"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, FileKEK{Path: filepath.Join(dir, "kek")}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable KEK file: %v", err)
	}
}

func TestHexKEKFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x5a}, 32)
	cases := []struct {
		name    string
		content []byte
		ok      bool
	}{
		{"raw", key, true},
		{"hex with newline", []byte(hex.EncodeToString(key) + "\n"), true},
		{"short", key[:16], false},
		{"bad hex", []byte(strings.Repeat("zz", 32)), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := FileKEK{Path: p}.KEK(nil)
			if c.ok != (err == nil) || c.ok && !bytes.Equal(got, key) {
				t.Fatalf("KEK = %x, %v", got, err)
			}
		})
	}
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	ks := openFile(t, t.TempDir())
	aad := []byte("vault:cred_1")
	ct, err := ks.Encrypt([]byte("api-key-123"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if ct[0] != 0 || ct[3] != 1 || ct[4] != envelopeVersion {
		t.Fatalf("header %x: want term 1, version 1", ct[:5])
	}
	again, _ := ks.Encrypt([]byte("api-key-123"), aad)
	if bytes.Equal(ct, again) {
		t.Fatal("two encryptions are equal: nonce reuse")
	}
	flip := func(i int) []byte { c := bytes.Clone(ct); c[i] ^= 0x80; return c }
	cases := []struct {
		name string
		ct   []byte
		aad  []byte
		ok   bool
	}{
		{"round trip", ct, aad, true},
		{"wrong aad", ct, []byte("vault:cred_2"), false},
		{"no aad", ct, nil, false},
		{"term", flip(3), aad, false},
		{"version", flip(4), aad, false},
		{"nonce", flip(6), aad, false},
		{"body", flip(envelopeHeader), aad, false},
		{"tag", flip(len(ct) - 1), aad, false},
		{"truncated", ct[:envelopeHeader+5], aad, false},
		{"empty", nil, aad, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pt, err := ks.Decrypt(c.ct, c.aad)
			if c.ok != (err == nil) || c.ok && string(pt) != "api-key-123" {
				t.Fatalf("Decrypt = %q, %v", pt, err)
			}
		})
	}
	empty, err := ks.Encrypt(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := ks.Decrypt(empty, nil); err != nil || len(pt) != 0 {
		t.Fatalf("empty plaintext: %q, %v", pt, err)
	}
}

func TestDeriveKey(t *testing.T) {
	t.Parallel()
	ks := openFile(t, t.TempDir())
	a, b := ks.DeriveKey("audit-id-hmac/v1"), ks.DeriveKey("other/v1")
	if len(a) != 32 || bytes.Equal(a, b) || !bytes.Equal(a, ks.DeriveKey("audit-id-hmac/v1")) {
		t.Fatalf("DeriveKey: %x %x", a, b)
	}
	for _, p := range []string{"", "audit-key/v1", "envelope-key/v1/1", "seed-dek/v1"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Fatalf("DeriveKey(%q) did not panic", p)
				}
			}()
			ks.DeriveKey(p)
		})
	}
}

func TestAuditSigner(t *testing.T) {
	t.Parallel()
	s := openFile(t, t.TempDir()).AuditSigner()
	msg := []byte("purser/audit-checkpoint/v1 test")
	sig, err := s.Sign(msg)
	if err != nil || !ed25519.Verify(s.Public(), msg, sig) {
		t.Fatalf("audit signature does not verify: %v", err)
	}
	s.Public()[0] ^= 1 // callers get a copy
	if !ed25519.Verify(s.Public(), msg, sig) {
		t.Fatal("Public returned the keystore's own slice")
	}
}

func TestRandomToken(t *testing.T) {
	t.Parallel()
	a, err := RandomToken("pso_")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RandomToken("pso_")
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(a, "pso_"))
	if !strings.HasPrefix(a, "pso_") || err != nil || len(raw) != 32 || a == b {
		t.Fatalf("tokens %q %q", a, b)
	}
}

// TestRedaction: no way of printing or logging a secret-bearing value
// shows the seed or the passphrase.
func TestRedaction(t *testing.T) {
	t.Parallel()
	seed := bytes.Repeat([]byte{0xa7, 0x3c, 0x51, 0xe9}, 16)
	ks, err := newKeystore(bytes.Clone(seed), 1)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := ks.Wallet(3)
	pass := PassphraseKEK{Passphrase: []byte("hunter2-hunter2")}
	forbidden := []string{hex.EncodeToString(seed[:8]), base64.StdEncoding.EncodeToString(seed[:12]),
		strings.Trim(fmt.Sprint(seed[:4]), "[]"), fmt.Sprintf("%#v", seed[:4])[8:20], "hunter2", "104 117 110"}
	values := map[string]any{"keystore": ks, "signer": w, "audit signer": ks.AuditSigner(), "passphrase": pass, "passphrase ptr": &pass}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var outs []string
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
				outs = append(outs, fmt.Sprintf(verb, v))
			}
			outs = append(outs, fmt.Sprintf("%v", struct{ V any }{v}), fmt.Sprintf("%+v", []any{v}))
			for _, mk := range []func(*bytes.Buffer) slog.Handler{
				func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
				func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			} {
				var buf bytes.Buffer
				slog.New(mk(&buf)).Info("x", "v", v, slog.Any("any", v), slog.Group("g", "v", v))
				outs = append(outs, buf.String())
			}
			for _, out := range outs {
				if !strings.Contains(out, redacted) {
					t.Errorf("%q does not say %s", out, redacted)
				}
				for _, f := range forbidden {
					if strings.Contains(out, f) {
						t.Errorf("%q contains secret %q", out, f)
					}
				}
			}
		})
	}
}

func BenchmarkSignHash(b *testing.B) {
	ks := openFile(b, b.TempDir())
	w, err := ks.Wallet(7)
	if err != nil {
		b.Fatal(err)
	}
	hash := sha256.Sum256([]byte("bench"))
	for b.Loop() {
		if _, err := w.SignHash(hash); err != nil {
			b.Fatal(err)
		}
	}
}
