package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

func tp(tm time.Time) *time.Time { return &tm }

// vaultFixture is two credentials with secrets, grants and tools.
type vaultFixture struct {
	a1, a2 *spend.Agent
	c1, c2 *spend.Credential
}

func newVaultFixture(t *testing.T, s spend.Store) *vaultFixture {
	f := &vaultFixture{
		a1: createAgent(t, s, "agt_v1", "v1", 0),
		a2: createAgent(t, s, "agt_v2", "v2", 1),
		c1: &spend.Credential{ID: "crd_a", Name: "stripe", Upstream: "https://api.stripe.test/v1", Inject: "header:Authorization:Bearer {secret}",
			TimeoutMS: 30000, Version: 2, CreatedAt: at, UpdatedAt: at.Add(time.Second)},
		c2: &spend.Credential{ID: "crd_b", Name: "github", Upstream: "http://127.0.0.1:8080", Inject: "query:token",
			AllowPrivate: true, Version: 1, CreatedAt: at, UpdatedAt: at},
	}
	mustTx(t, s, func(tx spend.Tx) error {
		if err := tx.CredentialCreate(ctx, f.c1); err != nil {
			return err
		}
		return tx.CredentialCreate(ctx, f.c2)
	})
	return f
}

// expectErr runs fn in its own transaction and wants target from it.
func expectErr(t *testing.T, s spend.Store, what string, target error, fn func(tx spend.Tx) error) {
	t.Helper()
	if err := s.InTx(ctx, fn); !errors.Is(err, target) {
		t.Fatalf("%s: err = %v; want %v", what, err, target)
	}
}

// testVaultCredentials: credentials round-trip and are found by id or
// name (an id wins over a name that looks like one), list by name; a used
// name or id is ErrConflict and leaves the stored row as it was; update
// writes only its fields; missing rows are ErrNotFound; secret versions
// round-trip newest first, a duplicate version is ErrConflict.
func testVaultCredentials(t *testing.T, s spend.Store) {
	f := newVaultFixture(t, s)
	c1, c2 := f.c1, f.c2
	if err := s.Read(ctx, func(tx spend.Tx) error {
		for _, ref := range []string{"crd_a", "stripe"} {
			got, err := tx.CredentialGet(ctx, ref)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, c1) {
				return fmt.Errorf("CredentialGet(%q) = %+v; want %+v", ref, got, c1)
			}
		}
		if _, err := tx.CredentialGet(ctx, "nope"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("CredentialGet(missing) = %v; want ErrNotFound", err)
		}
		list, err := tx.CredentialList(ctx)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(list, []*spend.Credential{c2, c1}) {
			return fmt.Errorf("CredentialList = %+v; want github, stripe", list)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	expectErr(t, s, "a used name", spend.ErrConflict, func(tx spend.Tx) error {
		return tx.CredentialCreate(ctx, &spend.Credential{ID: "crd_c", Name: "stripe", Upstream: "https://evil.test", CreatedAt: at, UpdatedAt: at})
	})
	expectErr(t, s, "a used id", spend.ErrConflict, func(tx spend.Tx) error {
		return tx.CredentialCreate(ctx, &spend.Credential{ID: "crd_a", Name: "other", Upstream: "https://evil.test", CreatedAt: at, UpdatedAt: at})
	})
	// A credential named like another's id: the id wins.
	mustTx(t, s, func(tx spend.Tx) error {
		return tx.CredentialCreate(ctx, &spend.Credential{ID: "crd_z", Name: "crd_a", Upstream: "https://z.test", CreatedAt: at, UpdatedAt: at})
	})
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.CredentialGet(ctx, "crd_a")
		if err != nil || !reflect.DeepEqual(got, c1) {
			return fmt.Errorf("CredentialGet(crd_a) = %+v, %v; want the credential with that id, not the one of that name", got, err)
		}
		if got, err := tx.CredentialGet(ctx, "crd_z"); err != nil || got.Name != "crd_a" {
			return fmt.Errorf("CredentialGet(crd_z) = %+v, %v", got, err)
		}
		return tx.CredentialDelete(ctx, "crd_z")
	})

	// Update writes its fields, never the name or creation time.
	upd := *c1
	upd.Name, upd.CreatedAt = "renamed", at.Add(time.Hour)
	upd.Upstream, upd.Inject, upd.AllowPrivate, upd.TimeoutMS, upd.Version, upd.UpdatedAt = "https://api2.stripe.test", "basic:{secret}:", true, 5000, 3, at.Add(time.Minute)
	mustTx(t, s, func(tx spend.Tx) error { return tx.CredentialUpdate(ctx, &upd) })
	want := upd
	want.Name, want.CreatedAt = c1.Name, c1.CreatedAt
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.CredentialGet(ctx, "crd_a")
		if err != nil || !reflect.DeepEqual(got, &want) {
			return fmt.Errorf("after CredentialUpdate: %+v, %v; want %+v", got, err, &want)
		}
		return nil
	})
	expectErr(t, s, "update of a missing credential", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.CredentialUpdate(ctx, &spend.Credential{ID: "crd_none", UpdatedAt: at})
	})
	expectErr(t, s, "delete of a missing credential", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.CredentialDelete(ctx, "crd_none")
	})

	// Secret versions.
	v1 := &spend.CredentialSecret{CredentialID: "crd_a", Version: 1, Sealed: []byte{0, 1, 2, 0xff, 0xfe}, CreatedAt: at}
	v2 := &spend.CredentialSecret{CredentialID: "crd_a", Version: 2, Sealed: []byte("sealed-v2\x00"), CreatedAt: at.Add(time.Minute)}
	other := &spend.CredentialSecret{CredentialID: "crd_b", Version: 1, Sealed: []byte{9}, CreatedAt: at, RetiresAt: tp(at.Add(time.Hour))}
	mustTx(t, s, func(tx spend.Tx) error {
		for _, v := range []*spend.CredentialSecret{v1, v2, other} {
			if err := tx.CredentialSecretAdd(ctx, v); err != nil {
				return err
			}
		}
		return nil
	})
	expectErr(t, s, "a second secret of the same version", spend.ErrConflict, func(tx spend.Tx) error {
		return tx.CredentialSecretAdd(ctx, &spend.CredentialSecret{CredentialID: "crd_a", Version: 2, Sealed: []byte("other"), CreatedAt: at})
	})
	v1.RetiresAt = tp(at.Add(24 * time.Hour))
	mustTx(t, s, func(tx spend.Tx) error { return tx.CredentialSecretUpdate(ctx, v1) })
	if err := s.Read(ctx, func(tx spend.Tx) error {
		got, err := tx.CredentialSecrets(ctx, "crd_a")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, []*spend.CredentialSecret{v2, v1}) {
			return fmt.Errorf("CredentialSecrets = %+v; want v2 then v1 (v1 retiring), as stored", got)
		}
		if got, err := tx.CredentialSecrets(ctx, "crd_b"); err != nil || !reflect.DeepEqual(got, []*spend.CredentialSecret{other}) {
			return fmt.Errorf("CredentialSecrets(crd_b) = %+v, %v", got, err)
		}
		if got, err := tx.CredentialSecrets(ctx, "crd_none"); err != nil || len(got) != 0 {
			return fmt.Errorf("CredentialSecrets(missing) = %+v, %v; want none", got, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	expectErr(t, s, "update of a missing secret version", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.CredentialSecretUpdate(ctx, &spend.CredentialSecret{CredentialID: "crd_a", Version: 9, RetiresAt: tp(at)})
	})
	// Clearing RetiresAt makes a version current again.
	v1.RetiresAt = nil
	mustTx(t, s, func(tx spend.Tx) error { return tx.CredentialSecretUpdate(ctx, v1) })
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.CredentialSecrets(ctx, "crd_a")
		if err != nil || len(got) != 2 || got[1].RetiresAt != nil {
			return fmt.Errorf("after clearing RetiresAt: %+v, %v", got, err)
		}
		return nil
	})
}

// testVaultGrants: grants round-trip (prices exact beyond 64 bits, nil
// prices and times nil, Methods and Paths nil when none whether written
// nil or empty, paths with commas and quotes), list filtered by
// credential and agent and ordered by credential then agent; a put
// replaces the (credential, agent) grant whole; an update writes only the
// rate counters, revocation and update time, and names the grant by id.
func testVaultGrants(t *testing.T, s spend.Store) {
	newVaultFixture(t, s)
	huge, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	g1 := &spend.Grant{ID: "grt_1", CredentialID: "crd_a", AgentID: "agt_v1", Methods: []string{"GET", "POST"},
		Paths: []string{"/v1/charges", "/v1/customers/*", `/odd,path"with'quotes/*`}, Price: huge,
		RateLimit: 10, RatePer: time.Minute + 1500*time.Microsecond + 7, RateStart: 1_790_000_000, RateUsed: 3,
		ExpiresAt: tp(at.Add(48 * time.Hour)), CreatedAt: at, UpdatedAt: at}
	g2 := &spend.Grant{ID: "grt_2", CredentialID: "crd_a", AgentID: "agt_v2", Methods: []string{}, Paths: []string{},
		PriceHeader: "X-Price", MaxPrice: big.NewInt(0), CreatedAt: at, UpdatedAt: at}
	g3 := &spend.Grant{ID: "grt_3", CredentialID: "crd_b", AgentID: "agt_v1", Methods: []string{"GET"}, Paths: []string{"*"},
		RevokedAt: tp(at.Add(time.Hour)), CreatedAt: at, UpdatedAt: at}
	mustTx(t, s, func(tx spend.Tx) error {
		for _, g := range []*spend.Grant{g3, g2, g1} {
			if err := tx.GrantPut(ctx, g); err != nil {
				return err
			}
		}
		return nil
	})
	g2.Methods, g2.Paths = nil, nil // none reads back nil
	if err := s.Read(ctx, func(tx spend.Tx) error {
		for _, g := range []*spend.Grant{g1, g2, g3} {
			got, err := tx.GrantGet(ctx, g.CredentialID, g.AgentID)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, g) {
				return fmt.Errorf("GrantGet(%s, %s) = %+v; want %+v", g.CredentialID, g.AgentID, got, g)
			}
		}
		if _, err := tx.GrantGet(ctx, "crd_b", "agt_v2"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("GrantGet(missing) = %v; want ErrNotFound", err)
		}
		for _, c := range []struct {
			cred, agent string
			want        []*spend.Grant
		}{
			{"", "", []*spend.Grant{g1, g2, g3}},
			{"crd_a", "", []*spend.Grant{g1, g2}},
			{"", "agt_v1", []*spend.Grant{g1, g3}},
			{"crd_b", "agt_v1", []*spend.Grant{g3}},
			{"crd_b", "agt_v2", nil},
			{"crd_none", "", nil},
		} {
			got, err := tx.GrantList(ctx, c.cred, c.agent)
			if err != nil {
				return err
			}
			if len(got) != len(c.want) || len(got) > 0 && !reflect.DeepEqual(got, c.want) {
				return fmt.Errorf("GrantList(%q, %q) = %+v; want %+v", c.cred, c.agent, got, c.want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Granting again replaces the grant whole, with its new id.
	g1b := &spend.Grant{ID: "grt_1b", CredentialID: "crd_a", AgentID: "agt_v1", Methods: []string{"DELETE"}, Paths: []string{"/x"},
		Price: big.NewInt(7), CreatedAt: at.Add(time.Hour), UpdatedAt: at.Add(time.Hour)}
	mustTx(t, s, func(tx spend.Tx) error { return tx.GrantPut(ctx, g1b) })
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.GrantGet(ctx, "crd_a", "agt_v1")
		if err != nil || !reflect.DeepEqual(got, g1b) {
			return fmt.Errorf("after a second GrantPut: %+v, %v; want %+v (nothing of the old grant)", got, err, g1b)
		}
		if all, err := tx.GrantList(ctx, "", ""); err != nil || len(all) != 3 {
			return fmt.Errorf("GrantList after a replace = %d grants, %v; want 3", len(all), err)
		}
		return nil
	})
	// The replaced grant's id names nothing: a stale counter update does
	// not land on its successor.
	expectErr(t, s, "update of a replaced grant", spend.ErrNotFound, func(tx spend.Tx) error {
		old := *g1
		old.RateUsed = 99
		return tx.GrantUpdate(ctx, &old)
	})

	// GrantUpdate writes the counters, revocation and update time only.
	upd := *g1b
	upd.RateStart, upd.RateUsed, upd.RevokedAt, upd.UpdatedAt = 1_790_000_060, 4, tp(at.Add(2*time.Hour)), at.Add(2*time.Hour)
	upd.Methods, upd.Price, upd.RateLimit, upd.ExpiresAt, upd.CreatedAt = []string{"PUT"}, big.NewInt(1), 1, tp(at), at
	mustTx(t, s, func(tx spend.Tx) error { return tx.GrantUpdate(ctx, &upd) })
	want := *g1b
	want.RateStart, want.RateUsed, want.RevokedAt, want.UpdatedAt = upd.RateStart, upd.RateUsed, upd.RevokedAt, upd.UpdatedAt
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.GrantGet(ctx, "crd_a", "agt_v1")
		if err != nil || !reflect.DeepEqual(got, &want) {
			return fmt.Errorf("after GrantUpdate: %+v, %v; want %+v", got, err, &want)
		}
		// Clearing RevokedAt is written too (nil is NULL, not zero).
		got.RevokedAt = nil
		return tx.GrantUpdate(ctx, got)
	})
	mustTx(t, s, func(tx spend.Tx) error {
		got, err := tx.GrantGet(ctx, "crd_a", "agt_v1")
		if err != nil || got.RevokedAt != nil {
			return fmt.Errorf("after clearing RevokedAt: %+v, %v", got, err)
		}
		return nil
	})
	expectErr(t, s, "update of a missing grant", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.GrantUpdate(ctx, &spend.Grant{ID: "grt_none"})
	})
}

// testVaultTools: tools round-trip and list by name, filtered by
// credential; a put replaces the credential's own tool, and a name
// another credential's tool uses is ErrConflict, leaving that tool as it
// was; a delete names the credential too.
func testVaultTools(t *testing.T, s spend.Store) {
	newVaultFixture(t, s)
	schema := json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`)
	charge := &spend.Tool{CredentialID: "crd_a", Name: "stripe_charge", Description: "Create a charge", Method: "POST",
		Path: "/v1/charges", Schema: schema, Body: "form", Price: big.NewInt(2500), CreatedAt: at, UpdatedAt: at}
	customer := &spend.Tool{CredentialID: "crd_a", Name: "stripe_customer", Description: "Get a customer", Method: "GET",
		Path: "/v1/customers/{id}", Schema: schema, Body: "query", CreatedAt: at, UpdatedAt: at}
	issues := &spend.Tool{CredentialID: "crd_b", Name: "gh_issues", Method: "GET", Path: "/issues", Body: "query", CreatedAt: at, UpdatedAt: at}
	mustTx(t, s, func(tx spend.Tx) error {
		for _, tl := range []*spend.Tool{customer, issues, charge} {
			if err := tx.ToolPut(ctx, tl); err != nil {
				return err
			}
		}
		return nil
	})
	list := func(cred string, want ...*spend.Tool) {
		t.Helper()
		if err := s.Read(ctx, func(tx spend.Tx) error {
			got, err := tx.ToolList(ctx, cred)
			if err != nil {
				return err
			}
			if len(got) != len(want) || len(got) > 0 && !reflect.DeepEqual(got, want) {
				return fmt.Errorf("ToolList(%q) = %+v; want %+v", cred, got, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	list("", issues, charge, customer)
	list("crd_a", charge, customer)
	list("crd_none")

	expectErr(t, s, "a tool name another credential uses", spend.ErrConflict, func(tx spend.Tx) error {
		return tx.ToolPut(ctx, &spend.Tool{CredentialID: "crd_b", Name: "stripe_charge", Method: "DELETE", Path: "/", Body: "json", CreatedAt: at, UpdatedAt: at})
	})
	list("crd_a", charge, customer)

	charge2 := &spend.Tool{CredentialID: "crd_a", Name: "stripe_charge", Description: "Charge (v2)", Method: "PUT",
		Path: "/v2/charges", Body: "json", CreatedAt: at.Add(time.Minute), UpdatedAt: at.Add(time.Minute)}
	mustTx(t, s, func(tx spend.Tx) error { return tx.ToolPut(ctx, charge2) })
	list("crd_a", charge2, customer)

	expectErr(t, s, "delete of a tool under the wrong credential", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.ToolDelete(ctx, "crd_b", "stripe_charge")
	})
	mustTx(t, s, func(tx spend.Tx) error { return tx.ToolDelete(ctx, "crd_a", "stripe_charge") })
	list("", issues, customer)
	expectErr(t, s, "delete of a missing tool", spend.ErrNotFound, func(tx spend.Tx) error {
		return tx.ToolDelete(ctx, "crd_a", "stripe_charge")
	})
}

// testVaultDelete: deleting a credential takes its secrets, grants and
// tools with it, and nothing of another credential; a delete in a
// transaction that fails takes nothing. That the rows are gone, not only
// hidden, shows in their keys being free again: the same secret version,
// grant and tool name can be stored anew.
func testVaultDelete(t *testing.T, s spend.Store) {
	newVaultFixture(t, s)
	fill := func(tx spend.Tx, cred string, n int) error {
		for v := int64(1); v <= 2; v++ {
			if err := tx.CredentialSecretAdd(ctx, &spend.CredentialSecret{CredentialID: cred, Version: v, Sealed: []byte("ciphertext-" + cred), CreatedAt: at}); err != nil {
				return err
			}
		}
		for _, a := range []string{"agt_v1", "agt_v2"} {
			if err := tx.GrantPut(ctx, &spend.Grant{ID: fmt.Sprintf("grt_%s_%s_%d", cred, a, n), CredentialID: cred, AgentID: a, Methods: []string{"GET"}, Paths: []string{"/*"}, CreatedAt: at, UpdatedAt: at}); err != nil {
				return err
			}
		}
		return tx.ToolPut(ctx, &spend.Tool{CredentialID: cred, Name: "tool_" + cred, Method: "GET", Path: "/", Body: "query", CreatedAt: at, UpdatedAt: at})
	}
	mustTx(t, s, func(tx spend.Tx) error {
		if err := fill(tx, "crd_a", 0); err != nil {
			return err
		}
		return fill(tx, "crd_b", 0)
	})
	count := func(tx spend.Tx, cred string) (secrets, grants, tools int, err error) {
		sec, err := tx.CredentialSecrets(ctx, cred)
		if err != nil {
			return
		}
		gr, err := tx.GrantList(ctx, cred, "")
		if err != nil {
			return
		}
		tl, err := tx.ToolList(ctx, cred)
		return len(sec), len(gr), len(tl), err
	}
	refused := errors.New("refused after delete")
	if err := s.InTx(ctx, func(tx spend.Tx) error {
		if err := tx.CredentialDelete(ctx, "crd_a"); err != nil {
			return err
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("failing delete: %v", err)
	}
	mustTx(t, s, func(tx spend.Tx) error {
		if _, err := tx.CredentialGet(ctx, "crd_a"); err != nil {
			return fmt.Errorf("after a failed delete: %v", err)
		}
		if s, g, tl, err := count(tx, "crd_a"); err != nil || s != 2 || g != 2 || tl != 1 {
			return fmt.Errorf("after a failed delete: %d secrets, %d grants, %d tools, %v; want 2, 2, 1", s, g, tl, err)
		}
		return tx.CredentialDelete(ctx, "crd_a")
	})
	mustTx(t, s, func(tx spend.Tx) error {
		if _, err := tx.CredentialGet(ctx, "crd_a"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("CredentialGet after delete = %v; want ErrNotFound", err)
		}
		if _, err := tx.CredentialGet(ctx, "stripe"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("CredentialGet(name) after delete = %v; want ErrNotFound", err)
		}
		if s, g, tl, err := count(tx, "crd_a"); err != nil || s+g+tl != 0 {
			return fmt.Errorf("after delete: %d secrets, %d grants, %d tools, %v; want none", s, g, tl, err)
		}
		if _, err := tx.GrantGet(ctx, "crd_a", "agt_v1"); !errors.Is(err, spend.ErrNotFound) {
			return fmt.Errorf("GrantGet after delete = %v; want ErrNotFound", err)
		}
		if s, g, tl, err := count(tx, "crd_b"); err != nil || s != 2 || g != 2 || tl != 1 {
			return fmt.Errorf("the other credential: %d secrets, %d grants, %d tools, %v; want 2, 2, 1", s, g, tl, err)
		}
		for _, a := range []string{"agt_v1", "agt_v2"} {
			if gr, err := tx.GrantList(ctx, "", a); err != nil || len(gr) != 1 || gr[0].CredentialID != "crd_b" {
				return fmt.Errorf("GrantList(agent %s) after delete = %+v, %v; want crd_b's only", a, gr, err)
			}
		}
		// The keys are free: the rows are gone, not hidden.
		if err := tx.CredentialCreate(ctx, &spend.Credential{ID: "crd_a", Name: "stripe", Upstream: "https://new.test", Version: 1, CreatedAt: at, UpdatedAt: at}); err != nil {
			return err
		}
		return fill(tx, "crd_a", 1)
	})
}

// testVaultGrantInBatch: grants read and written inside the hot
// authorization transaction (InTxPrefetch, group-committed with other
// callers) count every successful caller once: a caller reads what the
// callers before it in its batch wrote, and a caller that fails after its
// GrantUpdate leaves nothing of it. Plain InTx callers that lock no agent
// race on a second grant: GrantGet locks the row in a write transaction,
// so two batches committing at once do not lose an update.
func testVaultGrantInBatch(t *testing.T, s spend.Store) {
	newVaultFixture(t, s)
	a := createAgent(t, s, "agt_vb", "vb", 7)
	type target struct{ cred, agent string }
	hot, plain := target{"crd_a", a.ID}, target{"crd_b", "agt_v1"}
	mustTx(t, s, func(tx spend.Tx) error {
		for i, g := range []target{hot, plain} {
			if err := tx.GrantPut(ctx, &spend.Grant{ID: fmt.Sprintf("grt_b%d", i), CredentialID: g.cred, AgentID: g.agent, Methods: []string{"GET"},
				Paths: []string{"/*"}, RateLimit: 1000, RatePer: time.Minute, CreatedAt: at, UpdatedAt: at}); err != nil {
				return err
			}
		}
		return nil
	})
	// The prefetched callers go first, then the plain ones: a batch with a
	// prefetched caller locks the agent before any fn runs, which would
	// serialise the plain callers' batches too.
	const n = 120
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		if i == n/2 {
			wg.Wait()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefetched := i < n/2
			g := plain
			if prefetched {
				g = hot
			}
			fn := func(tx spend.Tx) error {
				if prefetched {
					if _, _, _, err := tx.AgentLockByKey(ctx, a.IdentityAddress, ""); err != nil {
						return err
					}
				}
				gr, err := tx.GrantGet(ctx, g.cred, g.agent)
				if err != nil {
					return err
				}
				before := gr.RateUsed
				gr.RateUsed++
				gr.RateStart = 1_790_000_000
				if err := tx.GrantUpdate(ctx, gr); err != nil {
					return err
				}
				// A caller reads its own write.
				again, err := tx.GrantGet(ctx, g.cred, g.agent)
				if err != nil {
					return err
				}
				if again.RateUsed != before+1 {
					return fmt.Errorf("caller %d read rate_used %d after writing %d", i, again.RateUsed, before+1)
				}
				if i%3 == 0 {
					return &spend.Error{Code: "refused", Message: "refused after counting"}
				}
				return appendEvent(tx, i)
			}
			if prefetched {
				errs[i] = s.InTxPrefetch(ctx, prefetchFor(a.IdentityAddress, fmt.Sprintf("0xb%x", i), ""), fn)
			} else {
				errs[i] = s.InTx(ctx, fn)
			}
		}()
	}
	wg.Wait()
	ok := map[target]int{}
	for i, err := range errs {
		switch {
		case i%3 == 0 && spend.CodeOf(err) != "refused":
			t.Fatalf("caller %d: err = %v; want its own refusal", i, err)
		case i%3 != 0 && err != nil:
			t.Fatalf("caller %d: %v", i, err)
		case i%3 != 0 && i < n/2:
			ok[hot]++
		case i%3 != 0:
			ok[plain]++
		}
	}
	mustTx(t, s, func(tx spend.Tx) error {
		for _, g := range []target{hot, plain} {
			gr, err := tx.GrantGet(ctx, g.cred, g.agent)
			if err != nil {
				return err
			}
			if gr.RateUsed != ok[g] {
				return fmt.Errorf("grant %s/%s: rate_used = %d after %d successful callers; each must count once, and refused ones never", g.cred, g.agent, gr.RateUsed, ok[g])
			}
		}
		return nil
	})
	verifyChain(t, s, ok[hot]+ok[plain])
}
