package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// testCosign: a 2of2 agent's custody reads back through every agent read
// (get, lock, lock by key, list); its co-signed key row is created once,
// updated, and read back byte for byte; a signing session id is claimed
// once, even by concurrent claimers, and a claim rolled back with its
// transaction can be made again.
func testCosign(t *testing.T, s spend.Store) {
	a := newAgent("agt_c1", "cosigned", 0)
	a.Custody = spend.Custody2of2
	key := &spend.CosignKey{AgentID: a.ID, RecoveryPublicKey: "cHVi", RecoveryCiphertext: "Y3Q=", CreatedAt: at, UpdatedAt: at}
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.AgentCreate(ctx, a); err != nil {
			return err
		}
		if err := tx.AgentKeyAdd(ctx, &spend.AgentKey{Address: a.IdentityAddress, AgentID: a.ID, CreatedAt: at}); err != nil {
			return err
		}
		return tx.CosignKeyCreate(ctx, key)
	})
	plain := createAgent(t, s, "agt_c2", "plain", 1)
	mustTx(t, s, func(tx spend.Tx) error {
		for _, read := range []func() (*spend.Agent, error){
			func() (*spend.Agent, error) { return tx.AgentGet(ctx, "cosigned") },
			func() (*spend.Agent, error) { return tx.AgentLock(ctx, a.ID) },
			func() (*spend.Agent, error) {
				got, _, _, err := tx.AgentLockByKey(ctx, a.IdentityAddress, "k")
				return got, err
			},
		} {
			got, err := read()
			if err != nil {
				return err
			}
			if got.Custody != spend.Custody2of2 {
				return fmt.Errorf("custody read back %q; want 2of2", got.Custody)
			}
		}
		list, err := tx.AgentList(ctx)
		if err != nil {
			return err
		}
		want := map[string]string{a.ID: spend.Custody2of2, plain.ID: spend.CustodyServer}
		for _, g := range list {
			if g.Custody != want[g.ID] {
				return fmt.Errorf("AgentList: %s custody %q; want %q", g.ID, g.Custody, want[g.ID])
			}
		}
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if k.Ready() || k.PublicKey != nil || k.SealedShare != nil || k.RecoveryCiphertext != "Y3Q=" {
			return fmt.Errorf("fresh key row = %+v", k)
		}
		if _, err := tx.CosignKeyGet(ctx, plain.ID); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("key of a server-custody agent: %v; want ErrNotFound", err)
		}
		return nil
	})
	expectErr(t, s, "second key row", spend.ErrConflict, func(tx spend.Tx) error { return tx.CosignKeyCreate(ctx, key) })
	expectErr(t, s, "update of a missing row", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.CosignKeyUpdate(ctx, &spend.CosignKey{AgentID: plain.ID, UpdatedAt: at})
	})
	pub := append([]byte{2}, bytes.Repeat([]byte{7}, 32)...)
	sealed := []byte{0, 1, 2, 255, 254}
	mustTx(t, s, func(tx spend.Tx) error {
		k := *key
		k.PublicKey, k.SealedShare, k.Address, k.Epoch, k.UpdatedAt = pub, sealed, "0x00000000000000000000000000000000000000aB", 1, at.Add(time.Minute)
		return tx.CosignKeyUpdate(ctx, &k)
	})
	mustTx(t, s, func(tx spend.Tx) error {
		k, err := tx.CosignKeyGet(ctx, a.ID)
		if err != nil {
			return err
		}
		if !k.Ready() || !bytes.Equal(k.PublicKey, pub) || !bytes.Equal(k.SealedShare, sealed) || k.Epoch != 1 ||
			k.Address != "0x00000000000000000000000000000000000000aB" || !k.CreatedAt.Equal(at) || !k.UpdatedAt.Equal(at.Add(time.Minute)) {
			return fmt.Errorf("key read back %+v", k)
		}
		return nil
	})

	claim := func(sid string) func(tx spend.Tx) error {
		return func(tx spend.Tx) error {
			return tx.CosignSessionClaim(ctx, &spend.CosignSession{SessionID: sid, AgentID: a.ID, SpendID: "spd_1", Kind: "sign", CreatedAt: at})
		}
	}
	// A claim rolled back with its transaction was never made.
	if err := s.InTx(ctx, func(tx spend.Tx) error {
		if err := claim("0xaa")(tx); err != nil {
			return err
		}
		return errors.New("roll back")
	}); err == nil {
		t.Fatal("rolled back transaction committed")
	}
	var won, lost atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			err := s.InTx(ctx, claim("0xaa"))
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, spend.ErrConflict):
				lost.Add(1)
			default:
				t.Errorf("claim: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || lost.Load() != 7 {
		t.Fatalf("concurrent claims: %d won, %d lost; want 1 and 7", won.Load(), lost.Load())
	}
	expectErr(t, s, "claim again", spend.ErrConflict, claim("0xaa"))
	mustTx(t, s, claim("0xbb"))
}
