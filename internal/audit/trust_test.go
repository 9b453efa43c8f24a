package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rewrite changes the details of event seq and re-seals every event from
// there on, as someone who can write the database could.
func rewrite(t *testing.T, evs []*Event, seq int64) []*Event {
	t.Helper()
	out := make([]*Event, len(evs))
	var prev [32]byte
	for i, e := range evs {
		c := *e
		if c.Seq == seq {
			c.Details = json.RawMessage(`{"amount":"7"}`)
		}
		if c.Seq >= seq {
			if err := c.Seal(prev); err != nil {
				t.Fatal(err)
			}
		}
		prev = c.Hash
		out[i] = &c
	}
	return out
}

func wantSeq(t *testing.T, what string, err error, seq int64) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != seq {
		t.Fatalf("%s: %v; want a broken chain at seq %d", what, err, seq)
	}
}

// TestVerifyExportExtending: a later export verifies against an earlier
// one only when it extends the earlier export's signed head. The forged
// exports are what a server signed after a database writer cut or
// rewrote its chain: each verifies on its own.
func TestVerifyExportExtending(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 12)
	e1 := export(t, evs[:6], k, 3)
	trusted, err := ReadTrustedExport(bytes.NewReader(e1), nil, "e1.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if trusted.Checkpoint.Seq != 6 || !bytes.Equal(trusted.Key(), k.Public()) {
		t.Fatalf("trusted head %d, key %x", trusted.Checkpoint.Seq, trusted.Key())
	}
	cases := map[string]struct {
		export  []byte
		pinned  bool
		wantSeq int64 // 0: verifies
	}{
		"honest later export":           {export: export(t, evs, k, 4)},
		"honest later export, pinned":   {export: export(t, evs, k, 5), pinned: true},
		"the same export":               {export: e1},
		"cut before the trusted head":   {export: export(t, evs[:4], k, 2), wantSeq: 5},
		"rewritten before trusted head": {export: export(t, rewrite(t, evs, 5), k, 12), wantSeq: 5},
		"rewritten at the trusted head": {export: export(t, rewrite(t, evs, 6), k, 12), wantSeq: 6},
		"another key":                   {export: export(t, evs, testKey(2), 12), wantSeq: -1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if c.wantSeq > 0 { // on its own, the forgery verifies: only the anchor catches it
				if _, err := VerifyExport(bytes.NewReader(c.export), k.Public()); err != nil {
					t.Fatalf("the forged export does not even verify alone: %v", err)
				}
			}
			var pinned []byte
			if c.pinned {
				pinned = k.Public()
			}
			res, err := VerifyExportExtending(bytes.NewReader(c.export), pinned, trusted)
			switch {
			case c.wantSeq == 0 && err != nil:
				t.Fatalf("an honest later export fails: %v", err)
			case c.wantSeq == 0 && res.HeadSeq < 6:
				t.Fatalf("head %d", res.HeadSeq)
			case c.wantSeq > 0:
				wantSeq(t, name, err, c.wantSeq)
				if !strings.Contains(err.Error(), "e1.jsonl") {
					t.Fatalf("%v does not name the trusted export", err)
				}
			case c.wantSeq < 0 && err == nil:
				t.Fatal("an export under another key extends the trusted one")
			}
		})
	}
	// A trusted export that does not verify is not trusted.
	bad := bytes.Replace(e1, []byte(`"n":2`), []byte(`"n":3`), 1)
	if _, err := ReadTrustedExport(bytes.NewReader(bad), nil, "bad"); err == nil {
		t.Fatal("a tampered earlier export was accepted as the trusted anchor")
	}
	if _, err := ReadTrustedExport(bytes.NewReader(e1), testKey(3).Public(), "e1"); err == nil {
		t.Fatal("an earlier export under another key than the pinned one was trusted")
	}
}

// TestVerifierTrustedCheckpoint: with only a checkpoint (the copy kept in
// the data directory), a cut names the first missing event and a rewrite
// the first event after the last checkpoint that still matches.
func TestVerifierTrustedCheckpoint(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 10)
	anchor, err := SignCheckpoint(k, 8, evs[7].Hash, t0)
	if err != nil {
		t.Fatal(err)
	}
	cp3, _ := SignCheckpoint(k, 3, evs[2].Hash, t0)
	run := func(evs []*Event, tr *Trusted) error {
		v := NewVerifier(k.Public())
		if err := v.Trust(tr); err != nil {
			return err
		}
		for _, e := range evs {
			if err := v.Event(e); err != nil {
				return err
			}
			if e.Seq == 3 {
				if err := v.Checkpoint(cp3); err != nil {
					return err
				}
			}
		}
		_, err := v.Finish()
		return err
	}
	tr := TrustCheckpoint(anchor, "audit.checkpoints")
	if err := run(evs, tr); err != nil {
		t.Fatalf("the honest chain: %v", err)
	}
	wantSeq(t, "cut", run(evs[:6], tr), 7)
	wantSeq(t, "rewrite", run(rewrite(t, evs, 5), tr), 4)
	forged := anchor
	forged.Signature = bytes.Repeat([]byte{1}, 64)
	wantSeq(t, "forged anchor", run(evs, TrustCheckpoint(forged, "x")), 8)
}

// TestExtension: what the checkpointer checks before it signs a head.
func TestExtension(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 10)
	sign := func(evs []*Event, seq int64, src string) *Trusted {
		c, err := SignCheckpoint(k, seq, evs[seq-1].Hash, t0)
		if err != nil {
			t.Fatal(err)
		}
		return TrustCheckpoint(c, src)
	}
	check := func(evs []*Event, headSeq int64, marks ...*Trusted) error {
		x := NewExtension(marks...)
		if err := x.Cut(headSeq); err != nil {
			return err
		}
		for _, e := range evs {
			if e.Seq >= x.From() && e.Seq <= headSeq {
				if err := x.Event(e); err != nil {
					return err
				}
			}
		}
		return x.End(headSeq, evs[headSeq-1].Hash)
	}
	file, db := sign(evs, 8, "file"), sign(evs, 4, "db")
	if err := check(evs, 10, file, db); err != nil {
		t.Fatalf("honest: %v", err)
	}
	if err := check(evs, 10); err != nil {
		t.Fatalf("from genesis: %v", err)
	}
	if x := NewExtension(file, db); x.From() != 4 {
		t.Fatalf("from %d, want the lowest mark", x.From())
	}
	wantSeq(t, "cut", check(evs, 6, file, db), 7)
	wantSeq(t, "rewritten after the db mark", check(rewrite(t, evs, 6), 10, file, db), 5)
	wantSeq(t, "rewritten before every mark", check(rewrite(t, evs, 2), 10, file, db), 4)
	broken := rewrite(t, evs, 9)
	broken[8].Hash = evs[8].Hash // the stored hash no longer matches its event
	wantSeq(t, "hash mismatch", check(broken, 10, file), 9)
	gap := append(append([]*Event{}, evs[:8]...), evs[9:]...)
	x := NewExtension(db)
	for _, e := range gap[3:] {
		if x.Event(e) != nil {
			break
		}
	}
	wantSeq(t, "gap", x.End(10, evs[9].Hash), 9)
}

// TestAnchorFile: append-only, 0600, monotonic, the last complete line
// wins, a torn line is ignored, a forged line is an error.
func TestAnchorFile(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 5)
	path := filepath.Join(t.TempDir(), "audit.checkpoints")
	a := NewAnchorFile(path, k.Public())
	if c, err := a.Last(); c != nil || err != nil {
		t.Fatalf("no file: %v, %v", c, err)
	}
	cp := func(seq int64) Checkpoint {
		c, err := SignCheckpoint(k, seq, evs[seq-1].Hash, t0)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, seq := range []int64{2, 4, 3, 4} { // 3 comes late: kept out; 4 again: once
		if err := a.Append(cp(seq)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	if n := bytes.Count(b, []byte("\n")); n != 2 {
		t.Fatalf("%d lines, want 2 (seq 2 and 4):\n%s", n, b)
	}
	if c, err := a.Last(); err != nil || c.Seq != 4 || c.Hash != evs[3].Hash {
		t.Fatalf("last = %+v, %v", c, err)
	}
	fork := cp(4)
	fork.Hash = evs[0].Hash
	if err := a.Append(fork); err == nil {
		t.Fatal("a different head at the same seq was appended")
	}
	// A crash cut the last line short: it is ignored, and the next line
	// starts on its own.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"type":"checkpoint","seq":5,"ha`)
	f.Close()
	if c, err := a.Last(); err != nil || c.Seq != 4 {
		t.Fatalf("after a torn line: %+v, %v", c, err)
	}
	if err := a.Append(cp(5)); err != nil {
		t.Fatal(err)
	}
	if c, err := a.Last(); err != nil || c.Seq != 5 {
		t.Fatalf("after the torn line was followed: %+v, %v", c, err)
	}
	// A line signed by another key is an error, not an anchor.
	other := NewAnchorFile(path, testKey(2).Public())
	if _, err := other.Last(); err == nil {
		t.Fatal("a checkpoint under another key was accepted")
	}
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("not json\n")
	f.Close()
	if _, err := a.Last(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a garbage last line: %v; want an error naming the file", err)
	}
}
