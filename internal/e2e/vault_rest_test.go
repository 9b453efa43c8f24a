package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/purserhq/purser/api"
	"github.com/purserhq/purser/internal/app"
	"github.com/purserhq/purser/internal/store/storetest"
)

// TestVaultSecretEncryptedAtRest puts and rotates a credential, uses it,
// and searches every file of the data directory (the database, its WAL
// and shared memory, the key files: the KEK is not the secret) while the
// server runs and after it stopped, and on PostgreSQL every row of every
// table as text, for the secrets in every spelling: the vault stores
// only sealed envelopes.
func TestVaultSecretEncryptedAtRest(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); testSecretAtRest(t, "") })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); testSecretAtRest(t, storetest.PostgresDSN(t)) })
}

func testSecretAtRest(t *testing.T, dsn string) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Start(ctx, app.Config{DataDir: dir, DB: dsn, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Shutdown(ctx)
		}
	})
	n := newNode(t, "http://"+srv.Addr(), dir)
	secrets := make([]string, 3)
	for i := range secrets {
		b := make([]byte, 24)
		rand.Read(b)
		secrets[i] = "sk_rest_" + base64.RawURLEncoding.EncodeToString(b)
	}
	up := newEchoUpstream(t, secrets[1])
	mustOwner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: "rest", Upstream: up.srv.URL, Inject: "basic:u:{secret}",
		Secret: secrets[0], AllowPrivate: true}, 201, nil)
	mustOwner(t, n, "POST", "/v1/vault/rest/rotate", api.RotateCredentialRequest{Secret: secrets[1], Grace: "1h"}, 200, nil)
	mustOwner(t, n, "POST", "/v1/vault", api.PutCredentialRequest{Name: "rest2", Upstream: up.srv.URL, Inject: "query:key={secret}",
		Secret: secrets[2], AllowPrivate: true}, 201, nil)
	ag := n.proxyAgent(t, n.newAgent(t, "rester", `{"per_tx_max":"1","daily":"1"}`))
	mustOwner(t, n, "POST", "/v1/vault/rest/grants", api.GrantRequest{Agent: "rester", Methods: []string{"GET"}, Paths: []string{"/*"}, Price: "0.001"}, 201, nil)
	if a, _ := ag.call(t, "GET", "/v1/proxy/rest/x?q=1", nil, nil); a.status != 200 {
		t.Fatalf("proxied call: %s", a)
	}
	if up.sawWith.Load() != 1 {
		t.Fatal("the upstream did not receive the current secret")
	}
	waitSettled(t, n)
	var forms []string
	for _, s := range secrets {
		forms = append(forms, leakForms([]byte(s))...)
		forms = append(forms, leakForms([]byte("u:"+s))...)
	}
	searchDir := func(when string) {
		t.Helper()
		files := map[string][]byte{}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			rel, _ := filepath.Rel(dir, p)
			files[when+": "+rel] = b
			return nil
		})
		if dsn == "" {
			if _, ok := files[when+": purser.db"]; !ok {
				t.Fatalf("%s: no purser.db among %d files; is this the data directory?", when, len(files))
			}
		}
		if _, ok := files[when+": kek"]; !ok {
			t.Fatalf("%s: no kek file", when)
		}
		findLeaks(t, forms, files)
	}
	searchDir("running")
	if dsn != "" {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			tables = append(tables, s)
		}
		rows.Close()
		dump := map[string][]byte{}
		for _, tb := range tables {
			// A row as text holds every column, bytea as hex.
			rs, err := db.Query(`SELECT t::text FROM "` + tb + `" t`)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			for rs.Next() {
				var s string
				rs.Scan(&s)
				buf.WriteString(s + "\n")
			}
			rs.Close()
			dump["table "+tb] = buf.Bytes()
		}
		for _, must := range []string{"table vault_secrets", "table vault_credentials", "table audit_events"} {
			if len(dump[must]) == 0 {
				t.Fatalf("%s is empty or missing (tables %v)", must, tables)
			}
		}
		findLeaks(t, forms, dump)
	}
	stopped = true
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	searchDir("stopped")
}
