package app

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/store/storetest"
)

// These tests play a database writer who holds no key (SQL in tests only):
// they cut or rewrite the audit chain in the database and expect the
// server to refuse to sign the result, verify to name the sequence, and a
// restart to report the mismatch with the checkpoint kept in the data
// directory.

var bg = context.Background()

// syncBuffer collects a server's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// attackBed is one server on one engine, with raw access to its database.
type attackBed struct {
	t   *testing.T
	cfg Config
	srv *Server
	raw *sql.DB
	pg  bool
	log *syncBuffer
}

// engines runs fn on SQLite, and on PostgreSQL when PURSER_TEST_POSTGRES
// is set.
func engines(t *testing.T, fn func(t *testing.T, b *attackBed)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newAttackBed(t, ""))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, newAttackBed(t, storetest.PostgresDSN(t)))
	})
}

func newAttackBed(t *testing.T, dsn string) *attackBed {
	t.Helper()
	dir := t.TempDir()
	b := &attackBed{t: t, pg: dsn != "", log: &syncBuffer{}}
	b.cfg = Config{DataDir: dir, Listen: "127.0.0.1:0", DB: dsn, LogLevel: "warn", Stderr: b.log}
	var err error
	if dsn == "" {
		b.raw, err = sql.Open("sqlite", "file:"+url.PathEscape(filepath.Join(dir, "purser.db"))+"?_pragma=busy_timeout(10000)")
	} else {
		b.raw, err = sql.Open("pgx", dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.raw.Close() })
	b.start()
	t.Cleanup(func() {
		if b.srv != nil {
			b.srv.Shutdown(bg) //nolint:errcheck // the test is over
		}
	})
	return b
}

func (b *attackBed) start() {
	b.t.Helper()
	srv, err := Start(bg, b.cfg)
	if err != nil {
		b.t.Fatalf("start: %v", err)
	}
	b.srv = srv
}

func (b *attackBed) stop() {
	b.t.Helper()
	if err := b.srv.Shutdown(bg); err != nil {
		b.t.Fatal(err)
	}
	b.srv = nil
}

// exec runs SQL written with ? placeholders on either engine.
func (b *attackBed) exec(q string, args ...any) {
	b.t.Helper()
	if b.pg {
		var sb strings.Builder
		n := 0
		for _, r := range q {
			if r == '?' {
				n++
				fmt.Fprintf(&sb, "$%d", n)
				continue
			}
			sb.WriteRune(r)
		}
		q = sb.String()
	}
	if _, err := b.raw.ExecContext(bg, q, args...); err != nil {
		b.t.Fatalf("%s: %v", q, err)
	}
}

// fund appends one funding event per amount and returns the head.
func (b *attackBed) fund(agent string, amounts ...string) int64 {
	b.t.Helper()
	for _, a := range amounts {
		if err := b.srv.svc.RecordFunding(bg, agent, map[string]any{"amount": a, "asset": "USD"}); err != nil {
			b.t.Fatal(err)
		}
	}
	seq, _, err := b.srv.store.AuditHead(bg)
	if err != nil {
		b.t.Fatal(err)
	}
	return seq
}

func (b *attackBed) agent(name string) {
	b.t.Helper()
	var addr [20]byte
	copy(addr[:], name)
	if _, err := b.srv.svc.CreateAgent(bg, spend.CreateAgentRequest{Name: name, IdentityAddress: "0x" + hex.EncodeToString(addr[:])}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *attackBed) checkpoint() *audit.Checkpoint {
	b.t.Helper()
	cp, err := b.srv.svc.Checkpoint(bg)
	if err != nil {
		b.t.Fatalf("checkpoint: %v", err)
	}
	return cp
}

func (b *attackBed) events() []*audit.Event {
	b.t.Helper()
	evs, err := b.srv.store.AuditEvents(bg, 0, 10000)
	if err != nil {
		b.t.Fatal(err)
	}
	return evs
}

// wantBroken fails unless err is a chain break at seq.
func wantBroken(t *testing.T, what string, err error, seq int64) {
	t.Helper()
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("%s: got %v, want a broken chain at seq %d", what, err, seq)
	}
	if ve.Seq != seq {
		t.Fatalf("%s: broken at seq %d (%s), want seq %d", what, ve.Seq, ve.Reason, seq)
	}
}

// wantRestartRefused stops the server and expects the next start to fail,
// naming seq and the checkpoint file in the data directory.
func (b *attackBed) wantRestartRefused(seq int64) {
	b.t.Helper()
	b.stop()
	srv, err := Start(bg, b.cfg)
	if err == nil {
		srv.Shutdown(bg) //nolint:errcheck
		b.t.Fatalf("the server started on a chain cut or rewritten behind seq %d", seq)
	}
	msg := err.Error()
	b.t.Logf("start refused: %s", msg)
	if !strings.Contains(msg, fmt.Sprintf("seq %d", seq)) || !strings.Contains(msg, filepath.Join(b.cfg.DataDir, "audit.checkpoints")) {
		b.t.Fatalf("start refused with %q; want it to name seq %d and %s", msg, seq, filepath.Join(b.cfg.DataDir, "audit.checkpoints"))
	}
}

// TestAuditAttackTruncate: deleting the last events and their checkpoints
// and moving audit_head back is refused by the checkpointer, verify and
// the next start.
func TestAuditAttackTruncate(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, b *attackBed) {
		b.agent("trunc")
		b.fund("trunc", "1", "2")
		keep := b.checkpoint()
		b.fund("trunc", "3", "77", "5")
		last := b.checkpoint()
		if last.Seq <= keep.Seq {
			t.Fatalf("checkpoints at %d then %d", keep.Seq, last.Seq)
		}
		b.stop() // an honest restart passes the check
		b.start()
		b.exec("DELETE FROM audit_events WHERE seq > ?", keep.Seq)
		b.exec("DELETE FROM audit_checkpoints WHERE seq > ?", keep.Seq)
		b.exec("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", keep.Seq, hex.EncodeToString(keep.Hash[:]))

		_, err := b.srv.svc.Checkpoint(bg)
		wantBroken(t, "checkpoint after the cut", err, keep.Seq+1)
		_, err = b.srv.svc.VerifyAudit(bg)
		wantBroken(t, "verify after the cut", err, keep.Seq+1)
		// The export, which signs the head first, is refused with the seq.
		req, _ := http.NewRequest("GET", "http://"+b.srv.Addr()+"/v1/audit/export", nil)
		tok, err := os.ReadFile(filepath.Join(b.cfg.DataDir, "owner.token"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Code    string `json:"code"`
			Details struct {
				Seq int64 `json:"seq"`
			} `json:"details"`
		}
		json.NewDecoder(resp.Body).Decode(&body) //nolint:errcheck // checked below
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict || body.Code != "audit_chain_broken" || body.Details.Seq != keep.Seq+1 {
			t.Fatalf("export of the cut chain: HTTP %d %+v; want 409 audit_chain_broken at seq %d", resp.StatusCode, body, keep.Seq+1)
		}
		b.wantRestartRefused(keep.Seq + 1)
	})
}

// TestAuditAttackRewrite: changing a signed event's amount (77 → 7),
// recomputing every hash after it and deleting the later checkpoints is
// refused by the checkpointer, verify and the next start.
func TestAuditAttackRewrite(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, b *attackBed) {
		b.agent("rewr")
		b.fund("rewr", "1")
		before := b.checkpoint()
		target := b.fund("rewr", "77")
		b.fund("rewr", "3")
		b.checkpoint() // signs the 77
		b.fund("rewr", "4", "5")
		b.checkpoint()

		evs := b.events()
		prev := evs[target-2].Hash
		for _, e := range evs[target-1:] {
			if e.Seq == target {
				var d map[string]any
				if err := json.Unmarshal(e.Details, &d); err != nil || d["amount"] != "77" {
					t.Fatalf("event %d: %s", e.Seq, e.Details)
				}
				d["amount"] = "7"
				e.Details, _ = json.Marshal(d)
			}
			if err := e.Seal(prev); err != nil {
				t.Fatal(err)
			}
			prev = e.Hash
			b.exec("UPDATE audit_events SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
				string(e.Details), hex.EncodeToString(e.PrevHash[:]), hex.EncodeToString(e.Hash[:]), e.Seq)
		}
		head := evs[len(evs)-1]
		b.exec("UPDATE audit_head SET hash = ? WHERE id = 1", hex.EncodeToString(head.Hash[:]))
		b.exec("DELETE FROM audit_checkpoints WHERE seq > ?", before.Seq)

		// The rewritten event lies after the last checkpoint left in the
		// database: that is the first sequence number that can be wrong.
		_, err := b.srv.svc.Checkpoint(bg)
		wantBroken(t, "checkpoint after the rewrite", err, before.Seq+1)
		_, err = b.srv.svc.VerifyAudit(bg)
		wantBroken(t, "verify after the rewrite", err, before.Seq+1)
		b.wantRestartRefused(before.Seq + 1)
	})
}

// TestAuditCheckpointBeyondHead: a checkpoint above the head means events
// were cut, even when the data directory's copy is gone too.
func TestAuditCheckpointBeyondHead(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, b *attackBed) {
		b.agent("beyond")
		b.fund("beyond", "1")
		keep := b.checkpoint()
		b.fund("beyond", "2", "3")
		b.checkpoint()
		b.stop()
		if err := os.Remove(filepath.Join(b.cfg.DataDir, "audit.checkpoints")); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		b.exec("DELETE FROM audit_events WHERE seq > ?", keep.Seq)
		b.exec("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", keep.Seq, hex.EncodeToString(keep.Hash[:]))
		if srv, err := Start(bg, b.cfg); err == nil {
			b.srv = srv
			_, err := srv.svc.VerifyAudit(bg)
			wantBroken(t, "verify with a checkpoint beyond the head", err, keep.Seq+1)
			_, err = srv.svc.Checkpoint(bg)
			wantBroken(t, "checkpoint with a checkpoint beyond the head", err, keep.Seq+1)
			t.Fatal("the server started with a signed checkpoint beyond the chain head")
		} else if !strings.Contains(err.Error(), fmt.Sprintf("seq %d", keep.Seq+1)) {
			t.Fatalf("start refused with %q; want it to name seq %d", err, keep.Seq+1)
		}
	})
}
