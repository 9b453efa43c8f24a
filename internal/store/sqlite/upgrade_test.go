package sqlite_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/store/sqlite"
)

// TestUpgradeTo0005: a database at schema 4 with an agent and a denied
// spend opens at schema 5: the spend reads back (no deny reason), and the
// owner tables work.
func TestUpgradeTo0005(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "purser.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%.80s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
	names, _ := fs.Glob(sqlite.Migrations(), "*.up.sql")
	for i, name := range names[:4] {
		body, _ := fs.ReadFile(sqlite.Migrations(), name)
		for _, stmt := range strings.Split(string(body), ";\n") {
			if strings.TrimSpace(stmt) != "" {
				exec(stmt)
			}
		}
		exec(`INSERT INTO schema_migrations VALUES (?, ?, 0)`, i+1, name)
	}
	now := time.Now().UnixMicro()
	exec(`INSERT INTO agents (id, name, status, identity_address, wallet_index, created_at, updated_at) VALUES ('agt_1', 'a', 'active', '0x01', 0, ?, ?)`, now, now)
	exec(`INSERT INTO spends (id, agent_id, rail, host, payee, asset, network, amount, amount_usd, status, reasons, mandate_version,
		day_key, memo, intent_sig, intent_nonce, rail_ref, created_at, updated_at, expires_at)
		VALUES ('spd_1', 'agt_1', 'custom', '', '0xdead', 'USDC', 'eip155:8453', '5', '5', 'denied', '["owner_denied"]', 1, '2026-12-02', 'm', '0x', '0x', '', ?, ?, 0)`, now, now)
	db.Close()

	s, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != 8 {
		t.Fatalf("schema version %d, %v; want 8", v, err)
	}
	err = s.InTx(ctx, func(tx spend.Tx) error {
		sp, err := tx.SpendGet(ctx, "spd_1")
		if err != nil || sp.DenyReason != "" || sp.Status != spend.StatusDenied || sp.Memo != "m" {
			t.Errorf("old spend: %+v, %v", sp, err)
		}
		return tx.OwnerCreate(ctx, &spend.Owner{ID: "own_1", Name: "alice", CreatedAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
}
