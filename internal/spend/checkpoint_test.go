package spend_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/keystore"
	"github.com/purserhq/purser/internal/money"
	"github.com/purserhq/purser/internal/spend"
	"github.com/purserhq/purser/internal/store/sqlite"
)

type oneWallet struct{}

func (oneWallet) Wallets(index uint32) ([]spend.Wallet, error) {
	return []spend.Wallet{{Network: "eip155:8453", Address: "0x000000000000000000000000000000000000bEEF", Custody: "keystore"}}, nil
}

// TestCheckpointPeers: two processes share one database and one audit key,
// each with its own anchor file (its own copy of the data directory). They
// sign each other's heads without a false alarm, and a process that has
// seen a head another one signed keeps it, so a later cut behind that head
// is refused by both.
func TestCheckpointPeers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "purser.db")
	st, err := sqlite.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := keystore.Open(filepath.Join(dir, "keys"), keystore.FileKEK{Path: filepath.Join(dir, "kek")})
	if err != nil {
		t.Fatal(err)
	}
	assets, err := money.NewRegistry(money.DefaultAssets()...)
	if err != nil {
		t.Fatal(err)
	}
	signer := ks.AuditSigner()
	peer := func(name string) *spend.Service {
		svc, err := spend.NewService(spend.Config{Store: st, Assets: assets, Wallets: oneWallet{}, Checkpoints: signer,
			Anchor: audit.NewAnchorFile(filepath.Join(dir, name+".checkpoints"), signer.Public())})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	a, b := peer("a"), peer("b")
	if _, err := a.CreateAgent(ctx, spend.CreateAgentRequest{Name: "peer", IdentityAddress: "0x000000000000000000000000000000000000abcd"}); err != nil {
		t.Fatal(err)
	}
	fund := func(svc *spend.Service) {
		t.Helper()
		if err := svc.RecordFunding(ctx, "peer", map[string]any{"amount": "1"}); err != nil {
			t.Fatal(err)
		}
	}
	mustCP := func(svc *spend.Service) *audit.Checkpoint {
		t.Helper()
		cp, err := svc.Checkpoint(ctx)
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		return cp
	}
	for i := range 6 {
		fund([]*spend.Service{a, b}[i%2])
		mustCP([]*spend.Service{b, a}[i%2])
	}
	keep := mustCP(a)
	fund(b)
	fund(a)
	last := mustCP(b) // only b signed this head
	if cp := mustCP(a); cp.Seq != last.Seq {
		t.Fatalf("a's checkpoint at %d, want b's head %d", cp.Seq, last.Seq)
	}
	for _, svc := range []*spend.Service{a, b} {
		if _, err := svc.VerifyAudit(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The database writer cuts back to keep and removes every trace of
	// the later head from the database.
	raw, err := sql.Open("sqlite", "file:"+url.PathEscape(dbPath)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{"DELETE FROM audit_events WHERE seq > ?", "DELETE FROM audit_checkpoints WHERE seq > ?"} {
		if _, err := raw.ExecContext(ctx, q, keep.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.ExecContext(ctx, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", keep.Seq, hex.EncodeToString(keep.Hash[:])); err != nil {
		t.Fatal(err)
	}
	for name, svc := range map[string]*spend.Service{"a": a, "b": b} {
		_, err := svc.Checkpoint(ctx)
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.Seq != keep.Seq+1 {
			t.Errorf("%s signed the cut chain: %v", name, err)
		}
		_, err = svc.VerifyAudit(ctx)
		if !errors.As(err, &ve) || ve.Seq != keep.Seq+1 {
			t.Errorf("%s verifies the cut chain: %v", name, err)
		}
	}
}
