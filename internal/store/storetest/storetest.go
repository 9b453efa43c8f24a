// Package storetest is the one definition of correct spend.Store
// behaviour. internal/store/sqlite and internal/store/postgres both run
// Run; a change to the store starts with a change here.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

// NewStore opens a fresh, empty, migrated store for one test and closes
// it in t.Cleanup.
type NewStore func(t *testing.T) spend.Store

// PostgresDSN returns a DSN for a fresh schema in the database named by
// PURSER_TEST_POSTGRES, dropped at cleanup, or skips the test when the
// variable is unset.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("PURSER_TEST_POSTGRES")
	if base == "" {
		t.Skip("PURSER_TEST_POSTGRES not set; skipping PostgreSQL test")
	}
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck
	schema := "t_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP SCHEMA " + schema + " CASCADE") //nolint:errcheck
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("PURSER_TEST_POSTGRES must be a postgres:// URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema) // lets the suite find the test's sessions (awaitLockWaiter)
	u.RawQuery = q.Encode()
	registerLockProbe(t, base, schema)
	return u.String()
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	tests := map[string]func(t *testing.T, s spend.Store){
		"AgentLifecycle":         testAgentLifecycle,
		"MandatesAndUsage":       testMandatesAndUsage,
		"Nonces":                 testNonces,
		"Spends":                 testSpends,
		"TxRollback":             testTxRollback,
		"ReadIsReadOnly":         testReadIsReadOnly,
		"AuditChain":             testAuditChain,
		"ConcurrentTxs":          testConcurrentTxs,
		"FailedCallerIsIsolated": testFailedCallerIsolated,
		"Checkpoints":            testCheckpoints,
		"CheckpointLastEmpty":    testCheckpointLastEmpty,
		"CanceledCallerSkipped":  testCanceledCaller,
		"PrefetchedBatch":        testPrefetchedBatch,
		"PrefetchSeesPlainTx":    testPrefetchSeesPlainTx,
		"FailedFinalWrite":       testFailedFinalWrite,
		"KeyRevokedWhileWaiting": testKeyRevokedWhileWaiting,
		"OpenSignedCount":        testOpenSigned,
		"Owners":                 testOwners,
		"OwnerSecretsSingleUse":  testOwnerSingleUse,
		"DenyReason":             testDenyReason,
		"Webhooks":               testWebhooks,
		"WebhookLease":           testWebhookLease,
		"VaultCredentials":       testVaultCredentials,
		"VaultGrants":            testVaultGrants,
		"VaultTools":             testVaultTools,
		"VaultDelete":            testVaultDelete,
		"VaultGrantInBatch":      testVaultGrantInBatch,
		"Cosign":                 testCosign,
	}
	RunParallel(t, tests, func(t *testing.T) spend.Store { return newStore(t) })
}

// RunParallel runs each named test as a parallel subtest, in name order,
// on a fresh fixture from setup.
func RunParallel[T any](t *testing.T, tests map[string]func(*testing.T, T), setup func(*testing.T) T) {
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tests[name](t, setup(t))
		})
	}
}

var ctx = context.Background()

// at is a fixed instant at microsecond precision, the stores' precision.
var at = time.Date(2026, 11, 23, 12, 0, 0, 123456000, time.UTC)

func mustTx(t *testing.T, s spend.Store, fn func(tx spend.Tx) error) {
	t.Helper()
	if err := s.InTx(ctx, fn); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

func newAgent(id, name string, idx uint32) *spend.Agent {
	return &spend.Agent{ID: id, Name: name, Status: spend.AgentActive, Custody: spend.CustodyServer, IdentityAddress: "0x" + fmt.Sprintf("%040x", idx+1),
		WalletIndex: idx, CreatedAt: at, UpdatedAt: at}
}

func createAgent(t *testing.T, s spend.Store, id, name string, idx uint32) *spend.Agent {
	t.Helper()
	a := newAgent(id, name, idx)
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.AgentCreate(ctx, a); err != nil {
			return err
		}
		return tx.AgentKeyAdd(ctx, &spend.AgentKey{Address: a.IdentityAddress, AgentID: a.ID, CreatedAt: at})
	})
	return a
}

func testAgentLifecycle(t *testing.T, s spend.Store) {
	mustTx(t, s, func(tx spend.Tx) error {
		idx, err := tx.AgentMaxWalletIndex(ctx)
		if err != nil || idx != -1 {
			return fmt.Errorf("max wallet index of an empty store = %d, %v; want -1", idx, err)
		}
		return nil
	})
	a := createAgent(t, s, "agt_1", "alice", 0)
	createAgent(t, s, "agt_2", "bob", 1)
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.WalletAdd(ctx, &spend.Wallet{AgentID: a.ID, Network: "eip155:8453", Address: "0xabc", Custody: "keystore", Path: "m/44'/60'/0'/0/0"}); err != nil {
			return err
		}
		// Duplicate name must fail.
		return nil
	})
	err := s.InTx(ctx, func(tx spend.Tx) error { return tx.AgentCreate(ctx, newAgent("agt_3", "alice", 2)) })
	if err == nil {
		t.Fatal("a second agent named alice was accepted")
	}
	err = s.Read(ctx, func(tx spend.Tx) error {
		for _, ref := range []string{"agt_1", "alice"} {
			got, err := tx.AgentGet(ctx, ref)
			if err != nil {
				return fmt.Errorf("AgentGet(%s): %w", ref, err)
			}
			if got.ID != a.ID || got.Name != "alice" || got.Status != spend.AgentActive || !got.CreatedAt.Equal(at) || got.WalletIndex != 0 {
				return fmt.Errorf("AgentGet(%s) = %+v", ref, got)
			}
		}
		if _, err := tx.AgentGet(ctx, "nobody"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("AgentGet(nobody) err = %v, want ErrNotFound", err)
		}
		list, err := tx.AgentList(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "alice" || list[1].Name != "bob" {
			return fmt.Errorf("AgentList = %v, %v", list, err)
		}
		ws, err := tx.WalletList(ctx, a.ID)
		if err != nil || len(ws) != 1 || ws[0].Address != "0xabc" || ws[0].Path != "m/44'/60'/0'/0/0" {
			return fmt.Errorf("WalletList = %v, %v", ws, err)
		}
		idx, err := tx.AgentMaxWalletIndex(ctx)
		if err != nil || idx != 1 {
			return fmt.Errorf("max wallet index = %d, %v; want 1", idx, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Lock by key, revoke keys, update status.
	mustTx(t, s, func(tx spend.Tx) error {
		got, k, prev, err := tx.AgentLockByKey(ctx, a.IdentityAddress, "no-such-key")
		if err != nil {
			return err
		}
		if got.ID != a.ID || k.AgentID != a.ID || k.RevokedAt != nil || prev != "" {
			return fmt.Errorf("AgentLockByKey = %+v %+v %q", got, k, prev)
		}
		if err := tx.AgentKeysRevoke(ctx, a.ID, at.Add(time.Second)); err != nil {
			return err
		}
		got.Status, got.RateCount, got.RateWindowStart, got.MandateVersion = spend.AgentFrozen, 7, 1234, 3
		return tx.AgentUpdate(ctx, got)
	})
	err = s.Read(ctx, func(tx spend.Tx) error {
		k, err := tx.AgentKeyGet(ctx, a.IdentityAddress)
		if err != nil || k.RevokedAt == nil || !k.RevokedAt.Equal(at.Add(time.Second)) {
			return fmt.Errorf("revoked key = %+v, %v", k, err)
		}
		got, err := tx.AgentGet(ctx, a.ID)
		if err != nil || got.Status != spend.AgentFrozen || got.RateCount != 7 || got.RateWindowStart != 1234 || got.MandateVersion != 3 {
			return fmt.Errorf("updated agent = %+v, %v", got, err)
		}
		if _, err := tx.AgentKeyGet(ctx, "0xunknown"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("AgentKeyGet(unknown) err = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustTx(t, s, func(tx spend.Tx) error {
		if _, _, _, err := tx.AgentLockByKey(ctx, "0xunknown", ""); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("AgentLockByKey(unknown) err = %v", err)
		}
		return nil
	})
}

func testMandatesAndUsage(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_m", "m", 0)
	big1 := new(big.Int).Lsh(big.NewInt(1), 200) // far beyond int64
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.MandatePut(ctx, &spend.MandateRecord{AgentID: a.ID, Version: 1, Body: []byte(`{"daily":"10"}`), CreatedAt: at}); err != nil {
			return err
		}
		if err := tx.UsageAdd(ctx, a.ID, []string{"day:2026-11-23"}, big.NewInt(500)); err != nil {
			return err
		}
		if err := tx.UsageAdd(ctx, a.ID, []string{"day:2026-11-23"}, big.NewInt(-200)); err != nil {
			return err
		}
		return tx.UsageAdd(ctx, a.ID, []string{"lifetime"}, big1)
	})
	err := s.InTx(ctx, func(tx spend.Tx) error {
		return tx.UsageAdd(ctx, a.ID, []string{"lifetime"}, new(big.Int).Neg(new(big.Int).Add(big1, big.NewInt(1))))
	})
	if err == nil {
		t.Fatal("a budget counter went negative")
	}
	err = s.Read(ctx, func(tx spend.Tx) error {
		m, err := tx.MandateGet(ctx, a.ID, 1)
		if err != nil || string(m.Body) != `{"daily":"10"}` {
			return fmt.Errorf("MandateGet = %+v, %v", m, err)
		}
		if _, err := tx.MandateGet(ctx, a.ID, 2); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("MandateGet(v2) err = %v", err)
		}
		u, err := tx.UsageGet(ctx, a.ID, []string{"day:2026-11-23", "lifetime", "day:2026-11-24"})
		if err != nil {
			return err
		}
		if u[0].Int64() != 300 || u[1].Cmp(big1) != 0 || u[2].Sign() != 0 {
			return fmt.Errorf("UsageGet = %v", u)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustTx(t, s, func(tx spend.Tx) error {
		known, err := tx.PayeeKnown(ctx, a.ID, "0xp")
		if err != nil || known {
			return fmt.Errorf("PayeeKnown before add = %v, %v", known, err)
		}
		if err := tx.PayeeAdd(ctx, a.ID, "0xp"); err != nil {
			return err
		}
		if err := tx.PayeeAdd(ctx, a.ID, "0xp"); err != nil {
			return fmt.Errorf("second PayeeAdd must be a no-op: %w", err)
		}
		if pin, err := tx.HostPinGet(ctx, a.ID, "api.x.com"); err != nil || pin != "" {
			return fmt.Errorf("HostPinGet before add = %q, %v", pin, err)
		}
		for _, p := range []string{"0xp1", "0xp2"} { // the first pin stays
			if err := tx.HostPinAdd(ctx, a.ID, "api.x.com", p); err != nil {
				return err
			}
		}
		if pin, err := tx.HostPinGet(ctx, a.ID, "api.x.com"); err != nil || pin != "0xp1" {
			return fmt.Errorf("HostPinGet after adds = %q, %v; want the first", pin, err)
		}
		known, err = tx.PayeeKnown(ctx, a.ID, "0xp")
		if err != nil || !known {
			return fmt.Errorf("PayeeKnown after add = %v, %v", known, err)
		}
		return nil
	})
}

func testNonces(t *testing.T, s spend.Store) {
	mustTx(t, s, func(tx spend.Tx) error {
		fresh, err := tx.NonceUse(ctx, "agt_n", "0x01", at)
		if err != nil || !fresh {
			return fmt.Errorf("first NonceUse = %v, %v", fresh, err)
		}
		fresh, err = tx.NonceUse(ctx, "agt_n", "0x01", at)
		if err != nil || fresh {
			return fmt.Errorf("replayed NonceUse = %v, %v; want not fresh", fresh, err)
		}
		fresh, err = tx.NonceUse(ctx, "agt_n", "0x01", at.Add(time.Second))
		if err != nil || !fresh {
			return fmt.Errorf("same nonce with another expiry (another signed request) = %v, %v; want fresh", fresh, err)
		}
		_, err = tx.NonceUse(ctx, "agt_n", "0x02", at.Add(time.Hour))
		return err
	})
	mustTx(t, s, func(tx spend.Tx) error {
		n, err := tx.NoncesPrune(ctx, at.Add(time.Minute))
		if err != nil || n != 2 {
			return fmt.Errorf("NoncesPrune = %d, %v; want 2", n, err)
		}
		fresh, err := tx.NonceUse(ctx, "agt_n", "0x02", at.Add(time.Hour))
		if err != nil || fresh {
			return fmt.Errorf("unexpired nonce was pruned: fresh=%v err=%v", fresh, err)
		}
		// The database's clock (the test's database runs on this
		// machine: it reads this machine's time, to a margin).
		before := time.Now()
		now, err := tx.DBNow(ctx)
		if err != nil || now.Before(before.Add(-time.Minute)) || now.After(time.Now().Add(time.Minute)) {
			return fmt.Errorf("DBNow = %v, %v; want about %v", now, err, before)
		}
		return nil
	})
}

func newSpend(id, agentID, key string, created time.Time, st spend.Status) *spend.Spend {
	return &spend.Spend{ID: id, AgentID: agentID, IdempotencyKey: key, Rail: "custom", Host: "api.example.com", Payee: "0xdead",
		Asset: "USDC", Network: "eip155:8453", Amount: big.NewInt(50000), AmountUSD: big.NewInt(50000), Status: st,
		Reasons: []string{}, MandateVersion: 1, DayKey: "2026-11-23", IntentSig: "0xsig",
		IntentNonce: "0xn", CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(time.Minute)}
}

func testSpends(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_s", "s", 0)
	mustTx(t, s, func(tx spend.Tx) error {
		for i, st := range []spend.Status{spend.StatusAuthorized, spend.StatusPendingApproval, spend.StatusDenied} {
			sp := newSpend(fmt.Sprintf("spd_%d", i), a.ID, fmt.Sprintf("k%d", i), at.Add(time.Duration(i)*time.Second), st)
			if st == spend.StatusDenied {
				sp.IdempotencyKey, sp.ExpiresAt, sp.Reasons = "", time.Time{}, []string{"per_tx_cap_exceeded"}
			}
			if err := tx.SpendCreate(ctx, sp); err != nil {
				return err
			}
		}
		return nil
	})
	if err := s.InTx(ctx, func(tx spend.Tx) error {
		return tx.SpendCreate(ctx, newSpend("spd_dup", a.ID, "k0", at, spend.StatusAuthorized))
	}); err == nil {
		t.Fatal("a second spend with the same idempotency key was stored")
	}
	mustTx(t, s, func(tx spend.Tx) error {
		_, _, prev, err := tx.AgentLockByKey(ctx, a.IdentityAddress, "k1")
		if err != nil || prev != "spd_1" {
			return fmt.Errorf("AgentLockByKey with idempotency key k1 = %q, %v; want spd_1", prev, err)
		}
		_, _, id0, err := tx.AgentLockByKey(ctx, a.IdentityAddress, "k0")
		if err != nil {
			return err
		}
		sp, err := tx.SpendGet(ctx, id0)
		if err != nil || sp.ID != "spd_0" || sp.Amount.Int64() != 50000 || sp.IntentSig != "0xsig" || !sp.ExpiresAt.Equal(at.Add(time.Minute)) {
			return fmt.Errorf("spend under key k0 = %+v, %v", sp, err)
		}
		sp.Status, sp.Captured, sp.CapturedUSD, sp.ExpiresAt, sp.RailRef = spend.StatusCaptured, big.NewInt(40000), big.NewInt(40000), time.Time{}, "0xtx"
		return tx.SpendUpdate(ctx, sp)
	})
	err := s.Read(ctx, func(tx spend.Tx) error {
		sp, err := tx.SpendGet(ctx, "spd_0")
		if err != nil || sp.Status != spend.StatusCaptured || sp.Captured.Int64() != 40000 || !sp.ExpiresAt.IsZero() || sp.RailRef != "0xtx" {
			return fmt.Errorf("updated spend = %+v, %v", sp, err)
		}
		d, err := tx.SpendGet(ctx, "spd_2")
		if err != nil || d.IdempotencyKey != "" || len(d.Reasons) != 1 || d.Reasons[0] != "per_tx_cap_exceeded" || d.Captured != nil {
			return fmt.Errorf("denied spend = %+v, %v", d, err)
		}
		if _, err := tx.SpendGet(ctx, "spd_none"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("SpendGet(missing) err = %v", err)
		}
		list, err := tx.SpendList(ctx, &spend.SpendListParams{AgentID: a.ID, NewestFirst: true})
		if err != nil || len(list) != 3 || list[0].ID != "spd_2" {
			return fmt.Errorf("SpendList newest first = %v, %v", ids(list), err)
		}
		page, err := tx.SpendList(ctx, &spend.SpendListParams{AgentID: a.ID, AfterCreated: list[2].CreatedAt, AfterID: list[2].ID})
		if err != nil || len(page) != 2 || page[0].ID != list[1].ID || page[1].ID != list[0].ID {
			return fmt.Errorf("SpendList after %s = %v, %v", list[2].ID, ids(page), err)
		}
		list, err = tx.SpendList(ctx, &spend.SpendListParams{Statuses: []spend.Status{spend.StatusPendingApproval, spend.StatusAuthorized}, ExpiresBefore: at.Add(2 * time.Minute)})
		if err != nil || len(list) != 1 || list[0].ID != "spd_1" {
			return fmt.Errorf("SpendList expiring = %v, %v", ids(list), err)
		}
		n, err := tx.SpendCount(ctx, []spend.Status{spend.StatusPendingApproval, spend.StatusCaptured})
		if err != nil || n != 2 {
			return fmt.Errorf("SpendCount = %d, %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Rail data: the request is kept as created, the data as updated;
	// Signed and Unsigned filter on the rail reference.
	req, data := `{"offer":{"amount":"10000","extra":{}}}`, `{"nonce":"0x01","signature":"0xab"}`
	mustTx(t, s, func(tx spend.Tx) error {
		sp := newSpend("spd_rail", a.ID, "", at, spend.StatusAuthorized)
		sp.RailRequest = []byte(req)
		if err := tx.SpendCreate(ctx, sp); err != nil {
			return err
		}
		sp.RailRef, sp.RailData = "0x01", []byte(data)
		return tx.SpendUpdate(ctx, sp)
	})
	err = s.Read(ctx, func(tx spend.Tx) error {
		sp, err := tx.SpendGet(ctx, "spd_rail")
		if err != nil || string(sp.RailRequest) != req || string(sp.RailData) != data {
			return fmt.Errorf("rail data round trip = %s / %s, %v", sp.RailRequest, sp.RailData, err)
		}
		if sp0, err := tx.SpendGet(ctx, "spd_1"); err != nil || sp0.RailRequest != nil || sp0.RailData != nil {
			return fmt.Errorf("spend without rail data reads back %q/%q, %v", sp0.RailRequest, sp0.RailData, err)
		}
		st := []spend.Status{spend.StatusAuthorized, spend.StatusPendingApproval}
		signed, err := tx.SpendList(ctx, &spend.SpendListParams{Statuses: st, Signed: true})
		if err != nil || len(signed) != 1 || signed[0].ID != "spd_rail" {
			return fmt.Errorf("SpendList signed = %v, %v", ids(signed), err)
		}
		unsigned, err := tx.SpendList(ctx, &spend.SpendListParams{Statuses: st, Unsigned: true})
		if err != nil || len(unsigned) != 1 || unsigned[0].ID != "spd_1" {
			return fmt.Errorf("SpendList unsigned = %v, %v", ids(unsigned), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(list []*spend.Spend) []string {
	out := make([]string, len(list))
	for i, sp := range list {
		out[i] = sp.ID
	}
	return out
}

func testTxRollback(t *testing.T, s spend.Store) {
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx spend.Tx) error {
		if err := tx.AgentCreate(ctx, newAgent("agt_r", "r", 0)); err != nil {
			return err
		}
		if err := tx.AuditAppend(ctx, &audit.Event{Time: at, Actor: audit.Actor{Type: "system", ID: "t"}, Action: "x", Subject: "y", Details: []byte(`{}`)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx err = %v, want the fn's error", err)
	}
	err = s.Read(ctx, func(tx spend.Tx) error {
		if _, err := tx.AgentGet(ctx, "agt_r"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("a rolled-back agent is visible: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seq, _, err := s.AuditHead(ctx); err != nil || seq != 0 {
		t.Fatalf("audit head after rollback = %d, %v; want 0", seq, err)
	}
}

func testReadIsReadOnly(t *testing.T, s spend.Store) {
	err := s.Read(ctx, func(tx spend.Tx) error { return tx.AgentCreate(ctx, newAgent("agt_ro", "ro", 0)) })
	if err == nil {
		t.Fatal("a write through Read succeeded")
	}
	err = s.Read(ctx, func(tx spend.Tx) error {
		return tx.AuditAppend(ctx, &audit.Event{Time: at, Actor: audit.Actor{Type: "system", ID: "t"}, Action: "x", Subject: "y", Details: []byte(`{}`)})
	})
	if err == nil {
		t.Fatal("an audit append through Read succeeded")
	}
}

func appendEvent(tx spend.Tx, i int) error {
	return tx.AuditAppend(ctx, &audit.Event{Time: at.Add(time.Duration(i) * time.Millisecond), Actor: audit.Actor{Type: "system", ID: "test"},
		Action: "test.event", Subject: fmt.Sprintf("n:%d", i), Details: []byte(fmt.Sprintf(`{"i": %d}`, i))})
}

// verifyChain checks the stored chain with the audit package's verifier.
func verifyChain(t *testing.T, s spend.Store, want int) []*audit.Event {
	t.Helper()
	evs, err := s.AuditEvents(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != want {
		t.Fatalf("%d audit events stored, want %d", len(evs), want)
	}
	v := audit.NewVerifier(nil)
	for _, e := range evs {
		if err := v.Event(e); err != nil {
			t.Fatalf("stored chain does not verify: %v", err)
		}
	}
	res, err := v.Finish()
	if err != nil {
		t.Fatal(err)
	}
	seq, hash, err := s.AuditHead(ctx)
	if err != nil || seq != res.HeadSeq || hash != res.HeadHash {
		t.Fatalf("AuditHead = %d %x, chain ends at %d %x (%v)", seq, hash, res.HeadSeq, res.HeadHash, err)
	}
	return evs
}

func testAuditChain(t *testing.T, s spend.Store) {
	mustTx(t, s, func(tx spend.Tx) error {
		for i := range 3 {
			if err := appendEvent(tx, i); err != nil {
				return err
			}
		}
		return nil
	})
	mustTx(t, s, func(tx spend.Tx) error { return appendEvent(tx, 3) })
	evs := verifyChain(t, s, 4)
	if evs[0].Seq != 1 || evs[0].PrevHash != ([32]byte{}) || evs[3].Subject != "n:3" || !evs[1].Time.Equal(at.Add(time.Millisecond)) {
		t.Fatalf("events = %+v", evs)
	}
	if string(evs[0].Details) != `{"i":0}` {
		t.Fatalf("details stored as %s, want compact JSON", evs[0].Details)
	}
	page, err := s.AuditEvents(ctx, 2, 1)
	if err != nil || len(page) != 1 || page[0].Seq != 3 {
		t.Fatalf("AuditEvents(after 2, limit 1) = %v, %v", page, err)
	}
}

// testConcurrentTxs: many callers at once (grouped into batches by the
// store) each commit, and the chain stays one unbroken line.
func testConcurrentTxs(t *testing.T, s spend.Store) {
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.InTx(ctx, func(tx spend.Tx) error {
				if _, err := tx.NonceUse(ctx, "agt_c", fmt.Sprintf("0x%x", i), at); err != nil {
					return err
				}
				return appendEvent(tx, i)
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	verifyChain(t, s, n)
}

// testFailedCallerIsolated: a caller whose fn fails inside a batch leaves
// no trace, and the callers around it commit.
func testFailedCallerIsolated(t *testing.T, s spend.Store) {
	const n = 100
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.InTx(ctx, func(tx spend.Tx) error {
				if _, err := tx.NonceUse(ctx, "agt_f", fmt.Sprintf("0x%x", i), at); err != nil {
					return err
				}
				if err := appendEvent(tx, i); err != nil {
					return err
				}
				if i%3 == 0 {
					return &spend.Error{Code: "refused", Message: "test refusal"}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range results {
		switch {
		case i%3 == 0 && spend.CodeOf(err) != "refused":
			t.Fatalf("caller %d: err = %v, want its own refusal", i, err)
		case i%3 != 0 && err != nil:
			t.Fatalf("caller %d: err = %v", i, err)
		case i%3 != 0:
			ok++
		}
	}
	verifyChain(t, s, ok)
	mustTx(t, s, func(tx spend.Tx) error {
		for i := range n {
			fresh, err := tx.NonceUse(ctx, "agt_f", fmt.Sprintf("0x%x", i), at)
			if err != nil {
				return err
			}
			if fresh != (i%3 == 0) {
				return fmt.Errorf("caller %d: nonce fresh=%v after the batch; refused callers must leave nothing behind", i, fresh)
			}
		}
		return nil
	})
}

func testCheckpoints(t *testing.T, s spend.Store) {
	mustTx(t, s, func(tx spend.Tx) error { return appendEvent(tx, 0) })
	seq, hash, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp := audit.Checkpoint{Seq: seq, Hash: hash, Time: at, KeyID: "ed25519:test", Signature: []byte{1, 2, 3}}
	if err := s.CheckpointAdd(ctx, cp); err != nil {
		t.Fatal(err)
	}
	cp2 := cp
	cp2.Signature = []byte{9}
	if err := s.CheckpointAdd(ctx, cp2); err != nil {
		t.Fatalf("a second checkpoint for the same seq must be ignored, got %v", err)
	}
	got, err := s.Checkpoints(ctx, seq)
	if err != nil || len(got) != 1 || got[0].Hash != hash || string(got[0].Signature) != string([]byte{1, 2, 3}) || !got[0].Time.Equal(at) {
		t.Fatalf("Checkpoints = %+v, %v", got, err)
	}
	if got, _ := s.Checkpoints(ctx, 0); len(got) != 0 {
		t.Fatalf("Checkpoints(0) = %v", got)
	}
	if last, err := s.CheckpointLast(ctx); err != nil || last == nil || last.Seq != seq || last.Hash != hash || string(last.Signature) != string([]byte{1, 2, 3}) {
		t.Fatalf("CheckpointLast = %+v, %v; want the one at seq %d", last, err, seq)
	}
	// A checkpoint beyond the head (only a database writer makes one) is
	// still the last: the checkpointer must see it to notice the cut.
	beyond := audit.Checkpoint{Seq: seq + 5, Hash: hash, Time: at, KeyID: "ed25519:test", Signature: []byte{4}}
	if err := s.CheckpointAdd(ctx, beyond); err != nil {
		t.Fatal(err)
	}
	if last, err := s.CheckpointLast(ctx); err != nil || last == nil || last.Seq != seq+5 {
		t.Fatalf("CheckpointLast = %+v, %v; want the one at seq %d", last, err, seq+5)
	}
}

func testCheckpointLastEmpty(t *testing.T, s spend.Store) {
	if last, err := s.CheckpointLast(ctx); last != nil || err != nil {
		t.Fatalf("CheckpointLast of an empty store = %+v, %v; want nil, nil", last, err)
	}
}

func testCanceledCaller(t *testing.T, s spend.Store) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err := s.InTx(cctx, func(tx spend.Tx) error { ran = true; return nil })
	if err == nil || ran {
		t.Fatalf("a canceled caller ran (%v) or succeeded (err %v)", ran, err)
	}
}

// prefetchFor is the hint an agent-signed request gives.
func prefetchFor(addr, nonce, key string) *spend.Prefetch {
	return &spend.Prefetch{Address: addr, Nonce: nonce, NonceExpires: at, IdempotencyKey: key,
		Windows: []string{"lifetime", "day:2026-11-23"}}
}

// testPrefetchedBatch: callers that read through a batch's prefetch see
// what they would see one by one: many racing requests with one nonce
// spend it once; many racing first uses of one idempotency key create one
// spend; a counter read and rewritten by every caller counts each once;
// a caller that fails after buffering writes leaves none of them.
func testPrefetchedBatch(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_p", "p", 0)
	addr := a.IdentityAddress
	const n = 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh, created, replays := 0, 0, 0
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := fmt.Sprintf("0x%x", i)
			if i < 10 {
				nonce = "0xsame" // ten copies of one signed request
			}
			key := fmt.Sprintf("k%d", i)
			if i >= 10 && i < 30 {
				key = "kshared" // twenty requests racing for one key
			}
			errs[i] = s.InTxPrefetch(ctx, prefetchFor(addr, nonce, key), func(tx spend.Tx) error {
				ag, _, prev, err := tx.AgentLockByKey(ctx, addr, key)
				if err != nil {
					return err
				}
				ok, err := tx.NonceUse(ctx, ag.ID, nonce, at)
				if err != nil {
					return err
				}
				if !ok {
					return &spend.Error{Code: "replayed", Message: "nonce replayed"}
				}
				mu.Lock()
				fresh++
				mu.Unlock()
				if prev != "" {
					sp, err := tx.SpendGet(ctx, prev)
					if err != nil || sp.IdempotencyKey != key {
						return fmt.Errorf("replay of %q found spend %v, %v", key, sp, err)
					}
					mu.Lock()
					replays++
					mu.Unlock()
					return nil
				}
				if err := tx.SpendCreate(ctx, newSpend(fmt.Sprintf("spd_p%03d", i), ag.ID, key, at, spend.StatusAuthorized)); err != nil {
					return err
				}
				if err := tx.UsageAdd(ctx, ag.ID, []string{"lifetime", "day:2026-11-23"}, big.NewInt(1)); err != nil {
					return err
				}
				if i%7 == 6 {
					return &spend.Error{Code: "refused", Message: "refused after writing"}
				}
				mu.Lock()
				created++
				mu.Unlock()
				return appendEvent(tx, i)
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && spend.CodeOf(err) != "replayed" && spend.CodeOf(err) != "refused" {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	// Callers 0-9 share a nonce: one of them spends it. The others are
	// distinct: 50 more.
	if fresh != 51 {
		t.Fatalf("%d callers spent a fresh nonce, want 51 (one of ten copies, and 50 distinct)", fresh)
	}
	var spends []*spend.Spend
	var used []*big.Int
	mustTx(t, s, func(tx spend.Tx) error {
		var err error
		if spends, err = tx.SpendList(ctx, &spend.SpendListParams{AgentID: a.ID, Limit: 1000}); err != nil {
			return err
		}
		used, err = tx.UsageGet(ctx, a.ID, []string{"lifetime", "day:2026-11-23"})
		return err
	})
	if len(spends) != created {
		t.Fatalf("%d spends stored, %d callers created one and succeeded", len(spends), created)
	}
	shared := 0
	for _, sp := range spends {
		if sp.IdempotencyKey == "kshared" {
			shared++
		}
	}
	if shared > 1 {
		t.Fatalf("%d spends under one idempotency key", shared)
	}
	if used[0].Int64() != int64(created) || used[1].Int64() != int64(created) {
		t.Fatalf("counters = %v, want %d each (one per stored spend)", used, created)
	}
	verifyChain(t, s, created)
}

// testPrefetchSeesPlainTx: a prefetched caller sees what a plain
// transaction committed before it (a freeze, a counter), and its own
// writes after the prefetch, never the prefetch's older copy.
func testPrefetchSeesPlainTx(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_q", "q", 0)
	addr := a.IdentityAddress
	err := s.InTxPrefetch(ctx, prefetchFor(addr, "0xown", ""), func(tx spend.Tx) error {
		ag, _, _, err := tx.AgentLockByKey(ctx, addr, "")
		if err != nil {
			return err
		}
		ag.Status = spend.AgentFrozen
		if err := tx.AgentUpdate(ctx, ag); err != nil {
			return err
		}
		if err := tx.UsagePut(ctx, a.ID, []string{"lifetime"}, []*big.Int{big.NewInt(7)}); err != nil {
			return err
		}
		again, _, _, err := tx.AgentLockByKey(ctx, addr, "")
		if err != nil {
			return err
		}
		u, err := tx.UsageGet(ctx, a.ID, []string{"lifetime", "day:2026-11-23"})
		if err != nil {
			return err
		}
		if again.Status != spend.AgentFrozen || u[0].Int64() != 7 || u[1].Sign() != 0 {
			return fmt.Errorf("after its own writes a caller read status %s, counters %v", again.Status, u)
		}
		return &spend.Error{Code: "refused", Message: "roll back"}
	})
	if spend.CodeOf(err) != "refused" {
		t.Fatalf("own-writes caller: %v", err)
	}
	mustTx(t, s, func(tx spend.Tx) error {
		ag, err := tx.AgentGet(ctx, a.ID)
		if err == nil && ag.Status != spend.AgentActive {
			err = fmt.Errorf("a refused caller's update was kept: status %s", ag.Status)
		}
		return err
	})
	for round := range 20 {
		var wg sync.WaitGroup
		status := spend.AgentActive
		if round%2 == 1 {
			status = spend.AgentFrozen
		}
		// The plain caller changes the agent and the counter; then the
		// prefetched callers (likely in the same batch) must see it.
		if err := s.InTx(ctx, func(tx spend.Tx) error {
			ag, err := tx.AgentLock(ctx, a.ID)
			if err != nil {
				return err
			}
			ag.Status = status
			if err := tx.AgentUpdate(ctx, ag); err != nil {
				return err
			}
			return tx.UsagePut(ctx, a.ID, []string{"lifetime"}, []*big.Int{big.NewInt(int64(round))})
		}); err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nonce := fmt.Sprintf("0x%d-%d", round, i)
				err := s.InTxPrefetch(ctx, prefetchFor(addr, nonce, ""), func(tx spend.Tx) error {
					ag, _, _, err := tx.AgentLockByKey(ctx, addr, "")
					if err != nil {
						return err
					}
					if ag.Status != status {
						return fmt.Errorf("round %d: status %s, want %s", round, ag.Status, status)
					}
					u, err := tx.UsageGet(ctx, a.ID, []string{"lifetime"})
					if err != nil {
						return err
					}
					if u[0].Int64() != int64(round) {
						return fmt.Errorf("round %d: counter %v, want %d", round, u[0], round)
					}
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
}

// testFailedFinalWrite: when the batch's final multi-row writes fail (on
// PostgreSQL, inside a pipeline, with statements queued behind the failing
// one), nothing of the transaction is committed, the caller gets an error,
// and the store goes on working on the same connections.
func testFailedFinalWrite(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_ff", "ff", 0)
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.SpendCreate(ctx, newSpend("spd_ff_dup", a.ID, "", at, spend.StatusAuthorized)); err != nil {
			return err
		}
		return appendEvent(tx, 0)
	})
	for range 3 { // more than once: a connection left in a bad state would show
		err := s.InTx(ctx, func(tx spend.Tx) error {
			if err := tx.SpendCreate(ctx, newSpend("spd_ff_new", a.ID, "k", at, spend.StatusAuthorized)); err != nil {
				return err
			}
			if err := tx.UsagePut(ctx, a.ID, []string{"lifetime"}, []*big.Int{big.NewInt(777)}); err != nil {
				return err
			}
			if err := appendEvent(tx, 1); err != nil {
				return err
			}
			// A second spend under an id the database already has: only the
			// final insert can find out.
			return tx.SpendCreate(ctx, newSpend("spd_ff_dup", a.ID, "", at, spend.StatusAuthorized))
		})
		if err == nil {
			t.Fatal("InTx with a duplicate spend id succeeded")
		}
	}
	err := s.Read(ctx, func(tx spend.Tx) error {
		if _, err := tx.SpendGet(ctx, "spd_ff_new"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("a spend of the failed transaction is visible: %v", err)
		}
		u, err := tx.UsageGet(ctx, a.ID, []string{"lifetime"})
		if err != nil {
			return err
		}
		if u[0].Sign() != 0 {
			return fmt.Errorf("counter of the failed transaction is visible: %s", u[0])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, s, 1)
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.SpendCreate(ctx, newSpend("spd_ff_after", a.ID, "k", at, spend.StatusAuthorized)); err != nil {
			return err
		}
		return appendEvent(tx, 2)
	})
	verifyChain(t, s, 2)
}
