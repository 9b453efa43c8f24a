package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// Vault tables (credentials, sealed secret versions, grants, tools) are
// side tables: the batch neither buffers nor prefetches them, so their
// statements run in the transaction as they come (execSide). Inside a
// group transaction a caller therefore reads its own and earlier callers'
// writes, and a caller that fails after writing (t.wrote) makes the batch
// run again without it (tryBatch), which takes its writes away with it.
//
// Unique rows are inserted with ON CONFLICT DO NOTHING and a missing row
// counted as ErrConflict, never by catching a unique violation: on
// PostgreSQL a failed statement aborts the whole transaction, which in a
// batch is every caller's.
//
// A grant's Methods and Paths read back nil when there are none (stored
// as "" and "[]"), whether they were written nil or empty; a tool's
// Schema reads back nil when it was stored empty.

const credentialCols = "id, name, upstream, inject, allow_private, timeout_ms, version, created_at, updated_at"

func scanCredential(sc Scanner) (*spend.Credential, error) {
	var c spend.Credential
	var created, updated int64
	if err := sc.Scan(&c.ID, &c.Name, &c.Upstream, &c.Inject, &c.AllowPrivate, &c.TimeoutMS, &c.Version, &created, &updated); err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &c, nil
}

// insertOnce runs an INSERT … ON CONFLICT DO NOTHING and reports a row
// that was not inserted as ErrConflict.
func (t *txn) insertOnce(what, query string, args ...any) error {
	res, err := t.execSide(query, args...)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return t.fail(fmt.Errorf("sqlstore: %s: %w", what, err))
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: %s: %w", what, spend.ErrConflict)
	}
	return nil
}

func (t *txn) CredentialCreate(_ context.Context, c *spend.Credential) error {
	return t.insertOnce("create credential "+c.Name, `INSERT INTO vault_credentials (`+credentialCols+`) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
		c.ID, c.Name, c.Upstream, c.Inject, c.AllowPrivate, c.TimeoutMS, c.Version, micros(c.CreatedAt), micros(c.UpdatedAt))
}

// CredentialGet prefers an id to a name, should a name look like an id.
func (t *txn) CredentialGet(_ context.Context, ref string) (*spend.Credential, error) {
	c, err := scanCredential(t.queryRow(`SELECT `+credentialCols+` FROM vault_credentials WHERE id = ? OR name = ?
		ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END LIMIT 1`, ref, ref, ref))
	if err != nil {
		return nil, t.scanErr(err)
	}
	return c, nil
}

func (t *txn) CredentialList(_ context.Context) ([]*spend.Credential, error) {
	rows, err := t.query(t.s.q(`SELECT ` + credentialCols + ` FROM vault_credentials ORDER BY name`))
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.Credential
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, c)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) CredentialUpdate(_ context.Context, c *spend.Credential) error {
	res, err := t.execSide(`UPDATE vault_credentials SET upstream = ?, inject = ?, allow_private = ?, timeout_ms = ?, version = ?, updated_at = ? WHERE id = ?`,
		c.Upstream, c.Inject, c.AllowPrivate, c.TimeoutMS, c.Version, micros(c.UpdatedAt), c.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: update credential: %w", err)
	}
	return mustAffect(res, "credential "+c.ID)
}

// CredentialDelete removes the dependent rows first (they reference the
// credential), then the credential; a missing credential is ErrNotFound
// and, the caller's fn failing, the batch drops the deletes with it.
func (t *txn) CredentialDelete(_ context.Context, id string) error {
	for _, table := range []string{"vault_secrets", "vault_grants", "vault_tools"} {
		if _, err := t.execSide(`DELETE FROM `+table+` WHERE credential_id = ?`, id); err != nil {
			return fmt.Errorf("sqlstore: delete credential %s: %s: %w", id, table, err)
		}
	}
	res, err := t.execSide(`DELETE FROM vault_credentials WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlstore: delete credential %s: %w", id, err)
	}
	return mustAffect(res, "credential "+id)
}

func (t *txn) CredentialSecretAdd(_ context.Context, s *spend.CredentialSecret) error {
	return t.insertOnce(fmt.Sprintf("add secret version %d of credential %s", s.Version, s.CredentialID),
		`INSERT INTO vault_secrets (credential_id, version, sealed, created_at, retires_at) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING`,
		s.CredentialID, s.Version, base64.StdEncoding.EncodeToString(s.Sealed), micros(s.CreatedAt), microsOrNil(s.RetiresAt))
}

func (t *txn) CredentialSecrets(_ context.Context, credentialID string) ([]*spend.CredentialSecret, error) {
	rows, err := t.query(t.s.q(`SELECT credential_id, version, sealed, created_at, retires_at FROM vault_secrets WHERE credential_id = ? ORDER BY version DESC`), credentialID)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.CredentialSecret
	for rows.Next() {
		var s spend.CredentialSecret
		var sealed string
		var created int64
		var retires sql.NullInt64
		if err := rows.Scan(&s.CredentialID, &s.Version, &sealed, &created, &retires); err != nil {
			return nil, t.fail(err)
		}
		if s.Sealed, err = base64.StdEncoding.DecodeString(sealed); err != nil {
			return nil, fmt.Errorf("sqlstore: secret version %d of credential %s does not decode: %w", s.Version, s.CredentialID, err)
		}
		s.CreatedAt, s.RetiresAt = fromMicros(created), timeOrNil(retires)
		out = append(out, &s)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) CredentialSecretUpdate(_ context.Context, s *spend.CredentialSecret) error {
	res, err := t.execSide(`UPDATE vault_secrets SET retires_at = ? WHERE credential_id = ? AND version = ?`,
		microsOrNil(s.RetiresAt), s.CredentialID, s.Version)
	if err != nil {
		return fmt.Errorf("sqlstore: update secret version: %w", err)
	}
	return mustAffect(res, fmt.Sprintf("secret version %d of credential %s", s.Version, s.CredentialID))
}

const grantCols = "id, credential_id, agent_id, methods, paths, price, price_header, max_price, rate_limit, rate_per_ns, rate_start, rate_used, expires_at, revoked_at, created_at, updated_at"

func scanGrant(sc Scanner) (*spend.Grant, error) {
	var g spend.Grant
	var methods, paths string
	var price, maxPrice sql.NullString
	var rateLimit, ratePer, rateUsed, created, updated int64
	var expires, revoked sql.NullInt64
	if err := sc.Scan(&g.ID, &g.CredentialID, &g.AgentID, &methods, &paths, &price, &g.PriceHeader, &maxPrice,
		&rateLimit, &ratePer, &g.RateStart, &rateUsed, &expires, &revoked, &created, &updated); err != nil {
		return nil, err
	}
	if methods != "" {
		g.Methods = strings.Split(methods, ",")
	}
	if err := json.Unmarshal([]byte(paths), &g.Paths); err != nil {
		return nil, fmt.Errorf("sqlstore: grant %s: stored paths do not decode: %w", g.ID, err)
	}
	if len(g.Paths) == 0 {
		g.Paths = nil
	}
	var err error
	if g.Price, err = bigFromNull(price); err != nil {
		return nil, fmt.Errorf("sqlstore: grant %s: price: %w", g.ID, err)
	}
	if g.MaxPrice, err = bigFromNull(maxPrice); err != nil {
		return nil, fmt.Errorf("sqlstore: grant %s: max price: %w", g.ID, err)
	}
	g.RateLimit, g.RatePer, g.RateUsed = int(rateLimit), time.Duration(ratePer), int(rateUsed)
	g.ExpiresAt, g.RevokedAt = timeOrNil(expires), timeOrNil(revoked)
	g.CreatedAt, g.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &g, nil
}

func grantArgs(g *spend.Grant) ([]any, error) {
	for _, m := range g.Methods {
		if m == "" || strings.Contains(m, ",") {
			return nil, fmt.Errorf("sqlstore: grant %s: method %q cannot be stored", g.ID, m)
		}
	}
	paths := g.Paths
	if paths == nil {
		paths = []string{}
	}
	pj, err := json.Marshal(paths)
	if err != nil {
		return nil, err
	}
	return []any{g.ID, g.CredentialID, g.AgentID, strings.Join(g.Methods, ","), string(pj), bigOrNil(g.Price), g.PriceHeader, bigOrNil(g.MaxPrice),
		int64(g.RateLimit), int64(g.RatePer), g.RateStart, int64(g.RateUsed), microsOrNil(g.ExpiresAt), microsOrNil(g.RevokedAt),
		micros(g.CreatedAt), micros(g.UpdatedAt)}, nil
}

// grantPut replaces the (credential, agent) row whole, id included, in
// one statement.
var grantPut = func() string {
	var set []string
	for _, c := range strings.Split(grantCols, ", ") {
		if c != "credential_id" && c != "agent_id" {
			set = append(set, c+" = excluded."+c)
		}
	}
	return `INSERT INTO vault_grants (` + grantCols + `) VALUES (` + strings.TrimSuffix(strings.Repeat("?,", len(set)+2), ",") + `)
		ON CONFLICT (credential_id, agent_id) DO UPDATE SET ` + strings.Join(set, ", ")
}()

func (t *txn) GrantPut(_ context.Context, g *spend.Grant) error {
	args, err := grantArgs(g)
	if err != nil {
		return err
	}
	if _, err := t.execSide(grantPut, args...); err != nil {
		return fmt.Errorf("sqlstore: put grant: %w", err)
	}
	return nil
}

// GrantGet locks the row in a write transaction (where the engine locks
// rows), so that a read-modify-write of its rate counters is safe on its
// own, not only under the agent's lock.
func (t *txn) GrantGet(_ context.Context, credentialID, agentID string) (*spend.Grant, error) {
	lock := ""
	if !t.readOnly {
		lock = t.s.d.LockRows
	}
	g, err := scanGrant(t.queryRow(`SELECT `+grantCols+` FROM vault_grants WHERE credential_id = ? AND agent_id = ?`+lock, credentialID, agentID))
	if err != nil {
		return nil, t.scanErr(err)
	}
	return g, nil
}

func (t *txn) GrantList(_ context.Context, credentialID, agentID string) ([]*spend.Grant, error) {
	var where []string
	var args []any
	if credentialID != "" {
		where, args = append(where, "credential_id = ?"), append(args, credentialID)
	}
	if agentID != "" {
		where, args = append(where, "agent_id = ?"), append(args, agentID)
	}
	q := `SELECT ` + grantCols + ` FROM vault_grants`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	rows, err := t.query(t.s.q(q+` ORDER BY credential_id, agent_id`), args...)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, g)
	}
	return out, t.fail(rows.Err())
}

// GrantUpdate names the grant by its id: a grant replaced since it was
// read is not updated (ErrNotFound), so a stale counter never lands on
// its successor.
func (t *txn) GrantUpdate(_ context.Context, g *spend.Grant) error {
	res, err := t.execSide(`UPDATE vault_grants SET rate_start = ?, rate_used = ?, revoked_at = ?, updated_at = ? WHERE id = ?`,
		g.RateStart, int64(g.RateUsed), microsOrNil(g.RevokedAt), micros(g.UpdatedAt), g.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: update grant: %w", err)
	}
	return mustAffect(res, "grant "+g.ID)
}

const toolCols = "name, credential_id, description, method, path, schema, body, price, created_at, updated_at"

// ToolPut replaces a tool of the same credential; the WHERE of the upsert
// leaves another credential's tool alone, and no row written is
// ErrConflict.
func (t *txn) ToolPut(_ context.Context, tl *spend.Tool) error {
	return t.insertOnce("put tool "+tl.Name, `INSERT INTO vault_tools (`+toolCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (name) DO UPDATE SET description = excluded.description, method = excluded.method, path = excluded.path,
		schema = excluded.schema, body = excluded.body, price = excluded.price, created_at = excluded.created_at, updated_at = excluded.updated_at
		WHERE vault_tools.credential_id = excluded.credential_id`,
		tl.Name, tl.CredentialID, tl.Description, tl.Method, tl.Path, string(tl.Schema), tl.Body, bigOrNil(tl.Price), micros(tl.CreatedAt), micros(tl.UpdatedAt))
}

func (t *txn) ToolDelete(_ context.Context, credentialID, name string) error {
	res, err := t.execSide(`DELETE FROM vault_tools WHERE credential_id = ? AND name = ?`, credentialID, name)
	if err != nil {
		return fmt.Errorf("sqlstore: delete tool: %w", err)
	}
	return mustAffect(res, "tool "+name)
}

func (t *txn) ToolList(_ context.Context, credentialID string) ([]*spend.Tool, error) {
	q, args := `SELECT `+toolCols+` FROM vault_tools`, []any(nil)
	if credentialID != "" {
		q, args = q+` WHERE credential_id = ?`, append(args, credentialID)
	}
	rows, err := t.query(t.s.q(q+` ORDER BY name`), args...)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.Tool
	for rows.Next() {
		var tl spend.Tool
		var schema string
		var price sql.NullString
		var created, updated int64
		if err := rows.Scan(&tl.Name, &tl.CredentialID, &tl.Description, &tl.Method, &tl.Path, &schema, &tl.Body, &price, &created, &updated); err != nil {
			return nil, t.fail(err)
		}
		if schema != "" {
			tl.Schema = json.RawMessage(schema)
		}
		if tl.Price, err = bigFromNull(price); err != nil {
			return nil, fmt.Errorf("sqlstore: tool %s: price: %w", tl.Name, err)
		}
		tl.CreatedAt, tl.UpdatedAt = fromMicros(created), fromMicros(updated)
		out = append(out, &tl)
	}
	return out, t.fail(rows.Err())
}

func microsOrNil(tm *time.Time) any {
	if tm == nil {
		return nil
	}
	return micros(*tm)
}

func timeOrNil(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	tm := fromMicros(v.Int64)
	return &tm
}

func bigFromNull(v sql.NullString) (*big.Int, error) {
	if !v.Valid {
		return nil, nil
	}
	n, ok := new(big.Int).SetString(v.String, 10)
	if !ok {
		return nil, fmt.Errorf("%q is not a number", v.String)
	}
	return n, nil
}
