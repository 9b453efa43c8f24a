package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// testOwners: owners, passkeys, invites and sessions round-trip exactly,
// revocations stick, and the prune drops only what has expired.
func testOwners(t *testing.T, s spend.Store) {
	cred := []byte{0, 1, 2, 0xfe, 0xff}
	cred2 := []byte("second-device")
	mustTx(t, s, func(tx spend.Tx) error {
		return tx.OwnerCreate(ctx, &spend.Owner{ID: "own_1", Name: "alice", CreatedAt: at})
	})
	if err := s.InTx(ctx, func(tx spend.Tx) error {
		return tx.OwnerCreate(ctx, &spend.Owner{ID: "own_2", Name: "alice", CreatedAt: at})
	}); err == nil {
		t.Fatal("a second owner with the same name was stored")
	}
	mustTx(t, s, func(tx spend.Tx) error {
		for _, p := range []*spend.Passkey{
			{CredentialID: cred, OwnerID: "own_1", PublicKey: []byte{0xa5, 1, 2}, SignCount: 7, AAGUID: make([]byte, 16), BackupEligible: true, CreatedAt: at},
			{CredentialID: cred2, OwnerID: "own_1", PublicKey: []byte{0xa5}, CreatedAt: at.Add(time.Second)},
		} {
			if err := tx.PasskeyAdd(ctx, p); err != nil {
				return err
			}
		}
		if err := tx.InviteAdd(ctx, &spend.OwnerInvite{TokenHash: "h1", Name: "bob", CreatedAt: at, ExpiresAt: at.Add(15 * time.Minute)}); err != nil {
			return err
		}
		return tx.SessionAdd(ctx, &spend.OwnerSession{IDHash: "s1", OwnerID: "own_1", CredentialID: cred, CSRF: "c1",
			CreatedAt: at, LastSeenAt: at, ExpiresAt: at.Add(12 * time.Hour)})
	})
	mustTx(t, s, func(tx spend.Tx) error {
		for _, ref := range []string{"own_1", "alice"} {
			o, err := tx.OwnerGet(ctx, ref)
			if err != nil || o.ID != "own_1" || o.Name != "alice" || !o.CreatedAt.Equal(at) || o.RevokedAt != nil {
				return fmt.Errorf("OwnerGet(%s) = %+v, %v", ref, o, err)
			}
		}
		if _, err := tx.OwnerGet(ctx, "nobody"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("OwnerGet(nobody): %v, want ErrNotFound", err)
		}
		p, err := tx.PasskeyGet(ctx, cred)
		if err != nil || !bytes.Equal(p.CredentialID, cred) || !bytes.Equal(p.PublicKey, []byte{0xa5, 1, 2}) || p.SignCount != 7 ||
			!p.BackupEligible || len(p.AAGUID) != 16 || p.OwnerID != "own_1" || p.RevokedAt != nil || p.LastUsedAt != nil {
			return fmt.Errorf("PasskeyGet = %+v, %v", p, err)
		}
		if err := tx.PasskeyUse(ctx, cred, 9, at.Add(time.Minute)); err != nil {
			return err
		}
		if p, _ = tx.PasskeyGet(ctx, cred); p.SignCount != 9 || p.LastUsedAt == nil || !p.LastUsedAt.Equal(at.Add(time.Minute)) {
			return fmt.Errorf("after PasskeyUse: %+v", p)
		}
		ps, err := tx.PasskeyList(ctx, "own_1")
		if err != nil || len(ps) != 2 || !bytes.Equal(ps[0].CredentialID, cred) || !bytes.Equal(ps[1].CredentialID, cred2) {
			return fmt.Errorf("PasskeyList = %d, %v", len(ps), err)
		}
		if all, err := tx.PasskeyList(ctx, ""); err != nil || len(all) != 2 {
			return fmt.Errorf("PasskeyList(all) = %d, %v", len(all), err)
		}
		i, err := tx.InviteGet(ctx, "h1")
		if err != nil || i.Name != "bob" || !i.ExpiresAt.Equal(at.Add(15*time.Minute)) || i.UsedAt != nil {
			return fmt.Errorf("InviteGet = %+v, %v", i, err)
		}
		ss, err := tx.SessionGet(ctx, "s1")
		if err != nil || ss.OwnerID != "own_1" || ss.CSRF != "c1" || !bytes.Equal(ss.CredentialID, cred) || !ss.ExpiresAt.Equal(at.Add(12*time.Hour)) {
			return fmt.Errorf("SessionGet = %+v, %v", ss, err)
		}
		if err := tx.SessionTouch(ctx, "s1", at.Add(time.Minute)); err != nil {
			return err
		}
		if ss, _ = tx.SessionGet(ctx, "s1"); !ss.LastSeenAt.Equal(at.Add(time.Minute)) {
			return fmt.Errorf("SessionTouch: last seen %v", ss.LastSeenAt)
		}
		return nil
	})
	// Revocation: a passkey, its sessions, then the owner.
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.PasskeyRevoke(ctx, cred, at.Add(time.Hour)); err != nil {
			return err
		}
		if err := tx.PasskeyRevoke(ctx, cred, at.Add(2*time.Hour)); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("revoking twice: %v, want ErrNotFound", err)
		}
		if err := tx.SessionsDelete(ctx, "own_1", cred2); err != nil {
			return err
		}
		if _, err := tx.SessionGet(ctx, "s1"); err != nil {
			return fmt.Errorf("a session of another passkey was ended: %v", err)
		}
		if err := tx.SessionsDelete(ctx, "own_1", cred); err != nil {
			return err
		}
		if _, err := tx.SessionGet(ctx, "s1"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("session after SessionsDelete: %v", err)
		}
		if err := tx.OwnerRevoke(ctx, "own_1", at.Add(time.Hour)); err != nil {
			return err
		}
		o, _ := tx.OwnerGet(ctx, "own_1")
		if o.RevokedAt == nil || !o.RevokedAt.Equal(at.Add(time.Hour)) {
			return fmt.Errorf("owner after revoke: %+v", o)
		}
		p, _ := tx.PasskeyGet(ctx, cred)
		if p.RevokedAt == nil || !p.RevokedAt.Equal(at.Add(time.Hour)) {
			return fmt.Errorf("passkey after revoke: %+v", p)
		}
		os, err := tx.OwnerList(ctx)
		if err != nil || len(os) != 1 {
			return fmt.Errorf("OwnerList = %d, %v", len(os), err)
		}
		return nil
	})
	// Prune: only what expired before now.
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.SessionAdd(ctx, &spend.OwnerSession{IDHash: "s2", OwnerID: "own_1", CredentialID: cred2, CSRF: "c",
			CreatedAt: at, LastSeenAt: at, ExpiresAt: at.Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.CeremonyAdd(ctx, &spend.Ceremony{ID: "c-old", Kind: "login", Data: []byte("{}"), CreatedAt: at, ExpiresAt: at.Add(time.Minute)}); err != nil {
			return err
		}
		if err := tx.CeremonyAdd(ctx, &spend.Ceremony{ID: "c-new", Kind: "login", Data: []byte("{}"), CreatedAt: at, ExpiresAt: at.Add(3 * time.Hour)}); err != nil {
			return err
		}
		n, err := tx.OwnerPrune(ctx, at.Add(2*time.Hour))
		if err != nil || n != 3 { // s2, c-old, invite h1
			return fmt.Errorf("OwnerPrune = %d, %v; want 3", n, err)
		}
		if _, err := tx.CeremonyTake(ctx, "c-new"); err != nil {
			return fmt.Errorf("the live ceremony was pruned: %v", err)
		}
		return nil
	})
}

// testOwnerSingleUse: an invite is used once and a ceremony taken once,
// also by concurrent transactions.
func testOwnerSingleUse(t *testing.T, s spend.Store) {
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.InviteAdd(ctx, &spend.OwnerInvite{TokenHash: "h", Name: "n", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}); err != nil {
			return err
		}
		return tx.CeremonyAdd(ctx, &spend.Ceremony{ID: "ch", Kind: "approve", OwnerID: "own_x", Subject: "spd_1", Data: []byte(`{"a":1}`), CreatedAt: at, ExpiresAt: at.Add(time.Hour)})
	})
	const n = 8
	var mu sync.Mutex
	invites, ceremonies := 0, 0
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.InTx(ctx, func(tx spend.Tx) error {
				used, err := tx.InviteUse(ctx, "h", at)
				if err != nil {
					return err
				}
				c, err := tx.CeremonyTake(ctx, "ch")
				if err != nil && !errors.Is(err, spend.ErrNotFound) {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if used {
					invites++
				}
				if c != nil {
					if c.Subject != "spd_1" || c.OwnerID != "own_x" || string(c.Data) != `{"a":1}` || c.Kind != "approve" {
						return fmt.Errorf("CeremonyTake = %+v", c)
					}
					ceremonies++
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if invites != 1 || ceremonies != 1 {
		t.Fatalf("invite used %d times, ceremony taken %d times; want 1 and 1", invites, ceremonies)
	}
	mustTx(t, s, func(tx spend.Tx) error {
		if i, err := tx.InviteGet(ctx, "h"); err != nil || i.UsedAt == nil {
			return fmt.Errorf("invite after use: %+v, %v", i, err)
		}
		if _, err := tx.CeremonyTake(ctx, "ch"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("a taken ceremony was taken again: %v", err)
		}
		return nil
	})
}

// testDenyReason: the owner's reason for a denial round-trips with the
// spend, through an update and through a create.
func testDenyReason(t *testing.T, s spend.Store) {
	a := createAgent(t, s, "agt_d", "d", 0)
	sp := newSpend("spd_d1", a.ID, "", at, spend.StatusPendingApproval)
	mustTx(t, s, func(tx spend.Tx) error { return tx.SpendCreate(ctx, sp) })
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.SpendGet(ctx, sp.ID)
		if err != nil || got.DenyReason != "" {
			return fmt.Errorf("new spend: %+v, %v", got, err)
		}
		got.Status, got.DenyReason = spend.StatusDenied, "not <this> one, \"agent\""
		return tx.SpendUpdate(ctx, got)
	})
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.SpendGet(ctx, sp.ID)
		if err != nil || got.DenyReason != "not <this> one, \"agent\"" {
			return fmt.Errorf("after update: %q, %v", got.DenyReason, err)
		}
		sp2 := newSpend("spd_d2", a.ID, "", at, spend.StatusDenied)
		sp2.DenyReason = "no"
		if err := tx.SpendCreate(ctx, sp2); err != nil {
			return err
		}
		l, err := tx.SpendList(ctx, &spend.SpendListParams{AgentID: a.ID})
		if err != nil || len(l) != 2 {
			return fmt.Errorf("list: %d, %v", len(l), err)
		}
		for _, x := range l {
			if x.ID == "spd_d2" && x.DenyReason != "no" {
				return fmt.Errorf("created in the transaction: %q", x.DenyReason)
			}
		}
		return nil
	})
}
