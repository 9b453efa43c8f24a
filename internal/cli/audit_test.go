package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/audit"
)

type testSigner struct{ priv ed25519.PrivateKey }

func (s testSigner) Public() ed25519.PublicKey       { return s.priv.Public().(ed25519.PublicKey) }
func (s testSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.priv, msg), nil }

// writeExport writes events 1..n as a signed export, the amount of event
// rewrite (if any) changed from 77 to 7 with every later hash recomputed:
// what a server signs after a database writer rewrote its chain.
func writeExport(t *testing.T, path string, k testSigner, n, rewrite int64) {
	t.Helper()
	var buf bytes.Buffer
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	w, err := audit.NewWriter(&buf, k.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	for seq := int64(1); seq <= n; seq++ {
		amount := "1"
		if seq == 3 {
			amount = "77"
			if rewrite == 3 {
				amount = "7"
			}
		}
		e := &audit.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Actor: audit.Actor{Type: "owner", ID: "owner"},
			Action: "agent.fund", Subject: "agent:agt_x", Details: json.RawMessage(fmt.Sprintf(`{"amount":%q}`, amount))}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		if err := w.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
		if seq%2 == 0 || seq == n {
			cp, err := audit.SignCheckpoint(k, seq, e.Hash, t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteCheckpoint(cp); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAuditVerifyTrusted: `audit verify E2 --trusted E1` passes for an
// honest later export and fails, naming the sequence, for one that was cut
// or rewritten behind E1's signed head, though each of those verifies on
// its own.
func TestAuditVerifyTrusted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := testSigner{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))}
	other := testSigner{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))}
	path := func(name string) string { return filepath.Join(dir, name) }
	writeExport(t, path("e1.jsonl"), k, 4, 0)
	writeExport(t, path("e2.jsonl"), k, 8, 0)
	writeExport(t, path("cut.jsonl"), k, 2, 0)
	writeExport(t, path("rewritten.jsonl"), k, 8, 3)
	writeExport(t, path("other.jsonl"), other, 8, 0)
	keyHex := hex.EncodeToString(k.Public())
	data := []string{"--data", dir} // no audit.pub there: nothing pinned unless asked

	for _, f := range []string{"cut.jsonl", "rewritten.jsonl"} {
		if code, out, _ := runCLI(t, nil, append([]string{"audit", "verify", path(f), "--audit-key", keyHex}, data...)...); code != 0 {
			t.Fatalf("%s should verify on its own (that is the attack): exit %d %s", f, code, out)
		}
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"honest", []string{path("e2.jsonl"), "--trusted", path("e1.jsonl")}, 0, "extends " + path("e1.jsonl") + " (signed head seq 4)"},
		{"honest, pinned", []string{"--audit-key", keyHex, path("e2.jsonl"), "--trusted", path("e1.jsonl")}, 0, "pinned by --audit-key"},
		{"pinned by the trusted export", []string{path("e2.jsonl"), "--trusted", path("e1.jsonl")}, 0, "pinned by --trusted"},
		{"cut", []string{path("cut.jsonl"), "--trusted", path("e1.jsonl")}, 1, "BROKEN at seq 3"},
		{"rewritten", []string{path("rewritten.jsonl"), "--trusted", path("e1.jsonl")}, 1, "BROKEN at seq 3"},
		{"another key", []string{path("other.jsonl"), "--trusted", path("e1.jsonl")}, 1, "not the pinned key"},
		{"trusted export under another pinned key", []string{"--audit-key", hex.EncodeToString(other.Public()), path("other.jsonl"), "--trusted", path("e1.jsonl")}, 1, "the trusted export"},
		{"missing trusted export", []string{path("e2.jsonl"), "--trusted", path("nope.jsonl")}, 2, ""},
	}
	for _, c := range cases {
		code, out, errOut := runCLI(t, nil, append(append([]string{"audit", "verify"}, c.args...), data...)...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", c.name, code, out, errOut, c.code, c.want)
		}
	}
	code, out, _ := runCLI(t, nil, append([]string{"audit", "verify", path("rewritten.jsonl"), "--trusted", path("e1.jsonl"), "--json"}, data...)...)
	var res struct {
		OK  bool  `json:"ok"`
		Seq int64 `json:"seq"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.OK || res.Seq != 3 {
		t.Errorf("--json: exit %d, %s; want ok false, seq 3", code, out)
	}
}

// TestAuditVerifyOnlineCut: after a database writer cut the server's chain
// back behind its last signed head, the online `audit verify` fails and
// names the first missing sequence number, and `--trusted` an export made
// before the cut fails too.
func TestAuditVerifyOnlineCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx) //nolint:errcheck // the test is over
	base := []string{"--server", "http://" + srv.Addr(), "--data", dir}
	cli := func(args ...string) (int, string) {
		code, out, errOut := runCLI(t, nil, append(args, base...)...)
		return code, out + errOut
	}
	for _, name := range []string{"ann", "bob"} {
		if code, out := cli("agent", "create", name, "--key-out", filepath.Join(dir, name+".key"), "--daily", "5"); code != 0 {
			t.Fatalf("agent create %s: %d %s", name, code, out)
		}
	}
	e1 := filepath.Join(dir, "e1.jsonl")
	if code, out := cli("audit", "export", "--out", e1); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	keep, err := audit.VerifyExport(mustOpen(t, e1), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ann", "bob"} {
		if code, out := cli("agent", "freeze", name); code != 0 {
			t.Fatalf("freeze: %d %s", code, out)
		}
	}
	e2 := filepath.Join(dir, "e2.jsonl")
	if code, out := cli("audit", "export", "--out", e2); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	if code, out := cli("audit", "verify", "--trusted", e1); code != 0 || !strings.Contains(out, "extends") {
		t.Fatalf("online verify --trusted of the honest chain: %d %s", code, out)
	}

	raw, err := sql.Open("sqlite", "file:"+url.PathEscape(filepath.Join(dir, "purser.db"))+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{"DELETE FROM audit_events WHERE seq > ?", "DELETE FROM audit_checkpoints WHERE seq > ?"} {
		if _, err := raw.ExecContext(ctx, q, keep.HeadSeq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.ExecContext(ctx, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", keep.HeadSeq, hex.EncodeToString(keep.HeadHash[:])); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("BROKEN at seq %d", keep.HeadSeq+1)
	if code, out := cli("audit", "verify"); code != 1 || !strings.Contains(out, want) {
		t.Errorf("online verify of the cut chain: exit %d, %s; want 1 and %q", code, out, want)
	}
	if code, out := cli("audit", "verify", "--trusted", e2); code != 1 || !strings.Contains(out, want) {
		t.Errorf("online verify --trusted of the cut chain: exit %d, %s; want 1 and %q", code, out, want)
	}
	if code, out := cli("audit", "export", "--out", filepath.Join(dir, "e3.jsonl")); code == 0 {
		t.Errorf("the cut chain was exported: %s", out)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
