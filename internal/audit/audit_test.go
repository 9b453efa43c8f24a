package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

type keySigner struct{ priv ed25519.PrivateKey }

func (k keySigner) Public() ed25519.PublicKey       { return k.priv.Public().(ed25519.PublicKey) }
func (k keySigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(k.priv, msg), nil }

func testKey(seed byte) keySigner {
	return keySigner{ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))}
}

var t0 = time.Date(2026, 11, 23, 21, 16, 32, 123456789, time.UTC)

// chain builds n sealed events.
func chain(t testing.TB, n int) []*Event {
	t.Helper()
	var prev [32]byte
	out := make([]*Event, n)
	for i := range n {
		e := &Event{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Actor: Actor{Type: "owner", ID: "owner"},
			Action: "agent.create", Subject: fmt.Sprintf("agent:agt_%d", i), Details: json.RawMessage(fmt.Sprintf(`{"name": "bob%d", "n": %d}`, i, i))}
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
		out[i] = e
	}
	return out
}

func export(t testing.TB, evs []*Event, k keySigner, every int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, k.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if err := w.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
		if (i+1)%every == 0 || i == len(evs)-1 {
			cp, err := SignCheckpoint(k, e.Seq, e.Hash, t0)
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
	return buf.Bytes()
}

func TestSealCompactsAndTruncates(t *testing.T) {
	t.Parallel()
	e := chain(t, 1)[0]
	if string(e.Details) != `{"name":"bob0","n":0}` {
		t.Fatalf("details = %s", e.Details)
	}
	if e.Time.Nanosecond()%1000 != 0 {
		t.Fatalf("time not truncated to µs: %v", e.Time)
	}
	bad := &Event{Seq: 1, Time: t0, Actor: Actor{Type: "owner"}, Action: "x", Details: json.RawMessage(`{nope`)}
	if err := bad.Seal([32]byte{}); err == nil {
		t.Fatal("sealed non-JSON details")
	}
}

func TestChainVerifies(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 100)
	res, err := VerifyExport(bytes.NewReader(export(t, evs, k, 10)), k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 100 || res.Checkpoints != 10 || res.HeadSeq != 100 || res.HeadHash != evs[99].Hash {
		t.Fatalf("result %+v", res)
	}
}

// TestMutationsDetected: each single change to any field of any event,
// fed to the streaming verifier, is caught at the right seq.
func TestMutationsDetected(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	fields := []struct {
		name   string
		mutate func(e *Event)
	}{
		{"seq", func(e *Event) { e.Seq += 1000 }},
		{"time", func(e *Event) { e.Time = e.Time.Add(time.Microsecond) }},
		{"actor type", func(e *Event) { e.Actor.Type = "agent" }},
		{"actor id", func(e *Event) { e.Actor.ID = "mallory" }},
		{"action", func(e *Event) { e.Action = "agent.freeze" }},
		{"subject", func(e *Event) { e.Subject = "agent:x" }},
		{"details", func(e *Event) { e.Details = json.RawMessage(`{"name":"eve","n":0}`) }},
		{"details not object", func(e *Event) { e.Details = json.RawMessage(`[]`) }},
		{"prev hash", func(e *Event) { e.PrevHash[0] ^= 1 }},
		{"hash", func(e *Event) { e.Hash[31] ^= 1 }},
	}
	type tc struct {
		name    string
		mutate  func(evs []*Event) []*Event
		wantSeq int64
	}
	var cases []tc
	for _, f := range fields {
		for _, i := range []int{0, 16, 99} {
			cases = append(cases, tc{fmt.Sprintf("%s of seq %d", f.name, i+1), func(evs []*Event) []*Event { f.mutate(evs[i]); return evs }, int64(i + 1)})
		}
	}
	cases = append(cases,
		tc{"deleted middle", func(evs []*Event) []*Event { return append(evs[:40:40], evs[41:]...) }, 41},
		tc{"deleted first", func(evs []*Event) []*Event { return evs[1:] }, 1},
		tc{"reordered", func(evs []*Event) []*Event { evs[7], evs[8] = evs[8], evs[7]; return evs }, 8},
		tc{"duplicated", func(evs []*Event) []*Event { return append(evs[:51:51], evs[50:]...) }, 51},
		// Resealing an edited event fixes its own hash but breaks the next link.
		tc{"resealed in place", func(evs []*Event) []*Event {
			evs[60].Subject = "x"
			if err := evs[60].Seal(evs[59].Hash); err != nil {
				panic(err)
			}
			return evs
		}, 62},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			evs := c.mutate(chain(t, 100))
			v := NewVerifier(k.Public())
			for _, e := range evs {
				if v.Event(e) != nil {
					break
				}
			}
			_, err := v.Finish()
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Seq != c.wantSeq {
				t.Fatalf("err = %v, want a VerifyError at seq %d", err, c.wantSeq)
			}
		})
	}
}

func TestVerifyErrorFormat(t *testing.T) {
	t.Parallel()
	err := error(&VerifyError{Seq: 17, Reason: "hash mismatch"})
	if err.Error() != "audit chain broken at seq 17: hash mismatch" {
		t.Fatalf("Error() = %q", err)
	}
	if c := err.(interface{ Code() string }).Code(); c != "audit_chain_broken" {
		t.Fatalf("Code() = %q", c)
	}
}

func TestSealValidates(t *testing.T) {
	t.Parallel()
	ok := Event{Seq: 1, Time: t0, Actor: Actor{Type: "system"}, Action: "x"}
	cases := []struct {
		name   string
		mutate func(e *Event)
	}{
		{"seq 0", func(e *Event) { e.Seq = 0 }},
		{"no action", func(e *Event) { e.Action = "" }},
		{"unknown actor", func(e *Event) { e.Actor.Type = "robot" }},
		{"zero time", func(e *Event) { e.Time = time.Time{} }},
		{"not json", func(e *Event) { e.Details = json.RawMessage(`{nope`) }},
		{"array details", func(e *Event) { e.Details = json.RawMessage(`[1]`) }},
		{"string details", func(e *Event) { e.Details = json.RawMessage(`"x"`) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := ok
			c.mutate(&e)
			if err := e.Seal([32]byte{}); err == nil {
				t.Fatal("sealed an invalid event")
			}
		})
	}
	e := ok
	if err := e.Seal([32]byte{}); err != nil || string(e.Details) != "{}" {
		t.Fatalf("nil details: %v, %s", err, e.Details)
	}
}

// TestVerifierCheckpoints: a checkpoint must be signed by the verifier's
// key and match the hash of an event already seen.
func TestVerifierCheckpoints(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 5)
	sign := func(s keySigner, seq int64, h [32]byte) Checkpoint {
		cp, err := SignCheckpoint(s, seq, h, t0)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	forged := sign(k, 3, evs[2].Hash)
	forged.Signature[0] ^= 1
	cases := []struct {
		name    string
		pub     ed25519.PublicKey
		cp      Checkpoint
		wantSeq int64 // 0: verifies
	}{
		{"head", k.Public(), sign(k, 5, evs[4].Hash), 0},
		{"earlier event", k.Public(), sign(k, 2, evs[1].Hash), 0},
		{"forged signature", k.Public(), forged, 3},
		{"other key", k.Public(), sign(testKey(2), 5, evs[4].Hash), 5},
		{"wrong hash", k.Public(), sign(k, 4, evs[4].Hash), 4},
		{"future seq", k.Public(), sign(k, 9, evs[4].Hash), 9},
		{"no key", nil, sign(k, 5, evs[4].Hash), 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := NewVerifier(c.pub)
			for _, e := range evs {
				if err := v.Event(e); err != nil {
					t.Fatal(err)
				}
			}
			err := v.Checkpoint(c.cp)
			if c.wantSeq == 0 {
				if err != nil {
					t.Fatal(err)
				}
				res, err := v.Finish()
				if err != nil || res.Checkpoints != 1 || res.SignedSeq != c.cp.Seq {
					t.Fatalf("Finish = %+v, %v", res, err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Seq != c.wantSeq {
				t.Fatalf("err = %v, want a VerifyError at seq %d", err, c.wantSeq)
			}
			if _, ferr := v.Finish(); ferr != err {
				t.Fatalf("Finish did not keep the first error: %v", ferr)
			}
		})
	}
	if _, err := SignCheckpoint(k, 0, [32]byte{}, t0); err == nil {
		t.Fatal("signed a checkpoint at seq 0")
	}
}

// TestExportTampering edits the lines of a 20-event export (a checkpoint
// after every 5th event) one change at a time.
func TestExportTampering(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	evs := chain(t, 20)
	good := string(export(t, evs, k, 5))
	lines := strings.Split(strings.TrimSuffix(good, "\n"), "\n")
	// lines[0] is the header; event s is at lines[at(s)]; the checkpoint of
	// seq 5m follows its event.
	at := func(seq int) int { return seq + (seq-1)/5 }
	join := func(ls []string) string { return strings.Join(ls, "\n") + "\n" }
	edit := func(i int, from, to string) string {
		c := append([]string(nil), lines...)
		if !strings.Contains(c[i], from) {
			t.Fatalf("line %d has no %q", i, from)
		}
		c[i] = strings.Replace(c[i], from, to, 1)
		return join(c)
	}
	drop := func(i int) string {
		c := append([]string(nil), lines[:i]...)
		return join(append(c, lines[i+1:]...))
	}
	insert := func(i int, l string) string {
		c := append([]string(nil), lines[:i]...)
		return join(append(append(c, l), lines[i:]...))
	}
	swap := func(i, j int) string {
		c := append([]string(nil), lines...)
		c[i], c[j] = c[j], c[i]
		return join(c)
	}
	h4 := hex.EncodeToString(evs[3].Hash[:])
	cases := []struct {
		name    string
		doc     string
		wantSeq int64 // 0: a malformed-line error, not a chain error
	}{
		{"edited details", edit(at(3), "bob2", "eve2"), 3},
		{"edited action", edit(at(7), "agent.create", "agent.revoke"), 7},
		{"edited actor", edit(at(12), `"id":"owner"`, `"id":"0wner"`), 12},
		{"edited time", edit(at(9), ".123456Z", ".123457Z"), 9},
		{"sub-µs time", edit(at(9), ".123456Z", ".123456000Z"), 9},
		{"offset time", edit(at(9), `Z"`, `+00:00"`), 9},
		{"uppercase hash", edit(at(4), `"hash":"`+h4, `"hash":"`+strings.ToUpper(h4)), 4},
		{"edited seq", edit(at(6), `"seq":6`, `"seq":66`), 6},
		{"deleted middle event", drop(at(11)), 11},
		{"deleted first event", drop(at(1)), 1},
		{"deleted last event", drop(at(20)), 20},
		{"deleted last line", drop(len(lines) - 1), 16},
		{"reordered events", swap(at(2), at(3)), 2},
		{"duplicated event", insert(at(8), lines[at(8)]), 8},
		{"duplicated checkpoint", insert(at(5)+1, lines[at(5)+1]), 5},
		{"moved checkpoint", swap(at(10), at(10)+1), 10},
		{"forged signature", edit(at(15)+1, `"signature":"`, `"signature":"00`), 15},
		{"forged checkpoint hash", edit(at(15)+1, `"hash":"`, `"hash":"00`), 15},
		{"trailing event", join(append(append([]string(nil), lines...), lines[at(20)])), 20},
		{"renamed key", edit(at(3), `"subject"`, `"subjekt"`), 0},
		{"unknown field", edit(at(3), `{"type":"event",`, `{"type":"event","extra":1,`), 0},
		{"unknown line type", insert(3, `{"type":"note"}`), 0},
		{"not json", edit(at(4), "{", "{{"), 0},
		{"no header", join(lines[1:]), 0},
		{"header key id", edit(0, `"key_id":"ed25519:`, `"key_id":"ed25519:0`), 0},
		{"empty line", insert(2, ""), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := VerifyExport(strings.NewReader(c.doc), k.Public())
			var ve *VerifyError
			var le *LineError
			switch {
			case err == nil:
				t.Fatal("verified")
			case c.wantSeq == 0 && !errors.As(err, &le):
				t.Fatalf("err = %v (%T), want a LineError", err, err)
			case c.wantSeq != 0 && (!errors.As(err, &ve) || ve.Seq != c.wantSeq):
				t.Fatalf("err = %v, want a VerifyError at seq %d", err, c.wantSeq)
			}
		})
	}
}

func TestExportWhitespaceAndKeys(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	good := string(export(t, chain(t, 20), k, 5))
	// Whitespace inside details is not tampering: hashes cover compact JSON.
	spaced := strings.Replace(good, `{"name":"bob2","n":2}`, "{ \"name\": \"bob2\",\t \"n\": 2 }", 1)
	if spaced == good {
		t.Fatal("test did not change the export")
	}
	cases := []struct {
		name    string
		doc     string
		trusted ed25519.PublicKey
		ok      bool
	}{
		{"pinned", good, k.Public(), true},
		{"unpinned", good, nil, true},
		{"whitespace in details", spaced, k.Public(), true},
		{"other pinned key", good, testKey(2).Public(), false},
		{"short pinned key", good, k.Public()[:5], false},
		{"header only", strings.SplitAfter(good, "\n")[0], k.Public(), true},
		{"empty", "", k.Public(), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := VerifyExport(strings.NewReader(c.doc), c.trusted)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
		})
	}
	// A chain rewritten and re-signed with another key passes only unpinned.
	evs := chain(t, 4)
	evs[1].Subject = "agent:forged"
	var prev [32]byte
	for _, e := range evs {
		if err := e.Seal(prev); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	rewritten := export(t, evs, testKey(3), 2)
	if _, err := VerifyExport(bytes.NewReader(rewritten), nil); err != nil {
		t.Fatalf("unpinned rewrite: %v", err)
	}
	if _, err := VerifyExport(bytes.NewReader(rewritten), k.Public()); err == nil {
		t.Fatal("a rewrite under another key verified against the pinned key")
	}
}

func TestLongLine(t *testing.T) {
	t.Parallel()
	k := testKey(1)
	big := &Event{Seq: 1, Time: t0, Actor: Actor{Type: "system"}, Action: "x",
		Details: json.RawMessage(`{"blob":"` + strings.Repeat("a", MaxLine) + `"}`)}
	if err := big.Seal([32]byte{}); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyExport(bytes.NewReader(export(t, []*Event{big}, k, 1)), k.Public())
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 {
		t.Fatalf("err = %v, want a LineError at line 2", err)
	}
}

func TestKeyIDAndHMAC(t *testing.T) {
	t.Parallel()
	id := KeyID(testKey(7).Public())
	if !strings.HasPrefix(id, "ed25519:") || len(id) != len("ed25519:")+16 || id != KeyID(testKey(7).Public()) {
		t.Fatalf("KeyID = %q", id)
	}
	// Known answer for HMAC-SHA256.
	got := IdentifierHMAC([]byte("key"), "The quick brown fox jumps over the lazy dog")
	if got != "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Fatalf("IdentifierHMAC = %s", got)
	}
}

func TestGoldenExport(t *testing.T) {
	t.Parallel()
	got := export(t, chain(t, 5), testKey(7), 2)
	const path = "testdata/export.golden.jsonl"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("export encoding changed; if intended, run go test -update\n got: %s\nwant: %s", got, want)
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteCSV(&buf, chain(t, 2), true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "seq,time,actor_type") || !strings.HasPrefix(lines[1], "1,2026-11-23T21:16:32.123456Z,owner") {
		t.Fatalf("csv:\n%s", buf.String())
	}
}

func FuzzVerifyExport(f *testing.F) {
	k := testKey(1)
	f.Add(export(f, chain(f, 3), k, 1))
	f.Add([]byte(`{"type":"header"}`))
	f.Add([]byte("{}\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Never panics; whatever it accepts is a whole, signed chain.
		res, err := VerifyExport(bytes.NewReader(data), nil)
		if err == nil && (res.SignedSeq != res.HeadSeq || int64(res.Events) != res.HeadSeq) {
			t.Fatalf("accepted an inconsistent export: %+v", res)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	e := &Event{Seq: 1, Time: t0, Actor: Actor{Type: "agent", ID: "agt_x"}, Action: "spend.authorize", Subject: "spend:spd_x",
		Details: json.RawMessage(`{"spend_id":"spd_x","amount":"50000","reasons":[],"intent":{"signature":"0x00"}}`)}
	for b.Loop() {
		if err := e.Seal([32]byte{}); err != nil {
			b.Fatal(err)
		}
	}
}
