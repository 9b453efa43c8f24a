package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/audit"
	"github.com/purserhq/purser/internal/spend"
)

// txn is one caller's view of a (possibly shared) transaction. Every
// statement uses the batch's context, not the caller's: a caller that
// gives up must not abort a transaction other callers share.
type txn struct {
	s        *Store
	tx       *sql.Tx
	conn     *sql.Conn // the transaction's connection, where the dialect pipelines; else nil
	ctx      context.Context
	readOnly bool
	events   []*audit.Event
	dbErr    error       // the first database error, to tell a lost transaction from a refusal
	wrote    bool        // a statement changed the database
	b        *batchState // nil in Read transactions
	req      *request
	pend     pending // this caller's buffered writes (batch.go)
}

var _ spend.Tx = (*txn)(nil)

var errReadOnly = errors.New("sqlstore: write in a read-only transaction")

func (t *txn) fail(err error) error {
	if err != nil && !errors.Is(err, spend.ErrNotFound) && t.dbErr == nil {
		t.dbErr = err
	}
	return err
}

// exec runs a write the batch does not buffer: buffered writes go out
// first, so that the statement sees them, and the prefetched rows are
// dropped after it, since it may have changed them.
func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	if t.readOnly {
		return nil, errReadOnly
	}
	if err := t.flushAll(); err != nil {
		return nil, err
	}
	res, err := t.rawExec(query, args...)
	if t.b != nil {
		t.b.invalidate()
	}
	return res, err
}

// Query is one statement for txn.run: '?' SQL, its arguments, and a
// function for each row it returns (nil if it returns none).
type Query struct {
	SQL  string
	Args []any
	Row  func(Scanner) error
}

// run runs the batch's own statements in order: in one round trip where
// the dialect pipelines them (PostgreSQL; a batch's round trips, not its
// work, were most of its time), else one by one. A statement starts only
// after the one before it has finished, either way.
func (t *txn) run(qs []Query) error {
	if p := t.s.d.Pipeline; p != nil && t.conn != nil && len(qs) > 1 {
		for i := range qs {
			qs[i].SQL = t.s.q(qs[i].SQL)
		}
		return t.fail(t.conn.Raw(func(dc any) error { return p(t.ctx, dc, qs) }))
	}
	for _, q := range qs {
		if q.Row == nil {
			if _, err := t.rawExec(q.SQL, q.Args...); err != nil {
				return err
			}
			continue
		}
		if err := t.each(t.s.q(q.SQL), q.Args, func(rows *sql.Rows) error { return q.Row(rows) }); err != nil {
			return t.fail(err)
		}
	}
	return nil
}

// execSide runs a write to a table the batch neither buffers nor
// prefetches (nonces, payees, pins, wallets, mandates).
func (t *txn) execSide(query string, args ...any) (sql.Result, error) {
	return t.rawExec(query, args...)
}

func (t *txn) rawExec(query string, args ...any) (sql.Result, error) {
	if t.readOnly {
		return nil, errReadOnly
	}
	t.wrote = true
	if st := t.prepared(t.s.q(query)); st != nil {
		res, err := st.ExecContext(t.ctx, args...)
		return res, t.fail(err)
	}
	res, err := t.tx.ExecContext(t.ctx, t.s.q(query), args...)
	return res, t.fail(err)
}

func (t *txn) queryRow(query string, args ...any) *sql.Row {
	if st := t.prepared(t.s.q(query)); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, t.s.q(query), args...)
}

// query runs a query already rewritten for the dialect.
func (t *txn) query(query string, args ...any) (*sql.Rows, error) {
	if st := t.prepared(query); st != nil {
		return st.QueryContext(t.ctx, args...)
	}
	return t.tx.QueryContext(t.ctx, query, args...)
}

// prepared returns the cached prepared statement for query bound to this
// transaction, or nil where the dialect does not cache (pgx caches
// statements itself). Parsing SQL on every call was the largest single
// cost of an authorization on SQLite.
func (t *txn) prepared(query string) *sql.Stmt {
	if !t.s.d.CacheStatements {
		return nil
	}
	db := t.s.w
	if t.readOnly {
		db = t.s.r
	}
	st := t.s.prepare(db, query)
	if st == nil {
		return nil // not prepared yet: run it unprepared this time
	}
	return t.tx.StmtContext(t.ctx, st)
}

func (t *txn) scanErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return spend.ErrNotFound
	}
	return t.fail(err)
}

func micros(tm time.Time) int64 {
	if tm.IsZero() {
		return 0
	}
	return tm.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

const agentCols = "a.id, a.name, a.status, a.identity_address, a.wallet_index, a.mandate_version, a.rate_window_start, a.rate_count, a.created_at, a.updated_at, a.custody"

// Scanner is a row being read: a *sql.Rows, or a row of a pipeline.
type Scanner interface{ Scan(dest ...any) error }

func scanAgent(sc Scanner, extra ...any) (*spend.Agent, error) {
	var a spend.Agent
	var status string
	var idx, rc, created, updated int64
	dest := append([]any{&a.ID, &a.Name, &status, &a.IdentityAddress, &idx, &a.MandateVersion, &a.RateWindowStart, &rc, &created, &updated, &a.Custody}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	a.Status, a.WalletIndex, a.RateCount = spend.AgentStatus(status), uint32(idx), int(rc)
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &a, nil
}

func (t *txn) AgentCreate(_ context.Context, a *spend.Agent) error {
	custody := a.Custody
	if custody == "" {
		custody = spend.CustodyServer
	}
	_, err := t.exec(`INSERT INTO agents (id, name, status, identity_address, wallet_index, mandate_version, rate_window_start, rate_count, created_at, updated_at, custody)
		VALUES (?,?,?,?,?,?,?,?,?,?,?)`, a.ID, a.Name, string(a.Status), a.IdentityAddress, int64(a.WalletIndex), a.MandateVersion,
		a.RateWindowStart, a.RateCount, micros(a.CreatedAt), micros(a.UpdatedAt), custody)
	if err != nil {
		return fmt.Errorf("sqlstore: create agent: %w", err)
	}
	return nil
}

func (t *txn) AgentGet(_ context.Context, ref string) (*spend.Agent, error) {
	a, err := scanAgent(t.queryRow(`SELECT `+agentCols+` FROM agents a WHERE a.id = ? OR a.name = ?`, ref, ref))
	return a, t.scanErr(err)
}

func (t *txn) AgentLock(_ context.Context, id string) (*spend.Agent, error) {
	a, err := scanAgent(t.queryRow(`SELECT `+agentCols+` FROM agents a WHERE a.id = ?`+t.s.d.LockRows, id))
	return a, t.scanErr(err)
}

func (t *txn) AgentLockByKey(ctx context.Context, address, idempotencyKey string) (*spend.Agent, *spend.AgentKey, string, error) {
	if b := t.b; b != nil && b.valid {
		if lk, ok := b.keys[address]; ok {
			if lk == nil {
				return nil, nil, "", spend.ErrNotFound
			}
			a, k := *lk.agent, *lk.key
			if idempotencyKey == "" {
				return &a, &k, "", nil
			}
			if id, ok := t.idemOverlay(a.ID, idempotencyKey); ok {
				return &a, &k, id, nil
			}
			if id, ok := b.idem[idemKey{a.ID, idempotencyKey}]; ok {
				return &a, &k, id, nil
			}
		}
	}
	a, k, prevID, err := t.agentLockByKey(address, idempotencyKey)
	if err == nil && prevID == "" && idempotencyKey != "" {
		if id, ok := t.idemOverlay(a.ID, idempotencyKey); ok {
			prevID = id
		}
	}
	return a, k, prevID, err
}

// idemOverlay finds a spend under key that this caller or an earlier one
// in the batch created and the database does not have yet.
func (t *txn) idemOverlay(agentID, key string) (string, bool) {
	for _, sp := range t.pend.spends {
		if sp.AgentID == agentID && sp.IdempotencyKey == key {
			return sp.ID, true
		}
	}
	if t.b != nil {
		id, ok := t.b.spendIdem[idemKey{agentID, key}]
		return id, ok
	}
	return "", false
}

func (t *txn) agentLockByKey(address, idempotencyKey string) (*spend.Agent, *spend.AgentKey, string, error) {
	var k spend.AgentKey
	var created int64
	var revoked sql.NullInt64
	var prevID sql.NullString
	a, err := scanAgent(t.queryRow(`SELECT `+agentCols+`, k.address, k.created_at, k.revoked_at,
		(SELECT s.id FROM spends s WHERE s.agent_id = a.id AND s.idempotency_key = ?)
		FROM agent_keys k JOIN agents a ON a.id = k.agent_id WHERE k.address = ?`+t.s.d.LockAgentAndKey, idempotencyKey, address),
		&k.Address, &created, &revoked, &prevID)
	if err != nil {
		return nil, nil, "", t.scanErr(err)
	}
	k.AgentID, k.CreatedAt = a.ID, fromMicros(created)
	if revoked.Valid {
		r := fromMicros(revoked.Int64)
		k.RevokedAt = &r
	}
	return a, &k, prevID.String, nil
}

func (t *txn) AgentKeyGet(_ context.Context, address string) (*spend.AgentKey, error) {
	var k spend.AgentKey
	var created int64
	var revoked sql.NullInt64
	err := t.queryRow(`SELECT address, agent_id, created_at, revoked_at FROM agent_keys WHERE address = ?`, address).
		Scan(&k.Address, &k.AgentID, &created, &revoked)
	if err != nil {
		return nil, t.scanErr(err)
	}
	k.CreatedAt = fromMicros(created)
	if revoked.Valid {
		r := fromMicros(revoked.Int64)
		k.RevokedAt = &r
	}
	return &k, nil
}

func (t *txn) AgentUpdate(_ context.Context, a *spend.Agent) error {
	res, err := t.exec(`UPDATE agents SET status = ?, identity_address = ?, mandate_version = ?, rate_window_start = ?, rate_count = ?, updated_at = ? WHERE id = ?`,
		string(a.Status), a.IdentityAddress, a.MandateVersion, a.RateWindowStart, a.RateCount, micros(a.UpdatedAt), a.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: update agent: %w", err)
	}
	return mustAffect(res, "agent "+a.ID)
}

func mustAffect(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: %s: %w", what, spend.ErrNotFound)
	}
	return nil
}

func (t *txn) AgentList(_ context.Context) ([]*spend.Agent, error) {
	rows, err := t.query(`SELECT ` + agentCols + ` FROM agents a ORDER BY a.name`)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, a)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) AgentMaxWalletIndex(_ context.Context) (int64, error) {
	var v int64
	err := t.queryRow(`SELECT COALESCE(MAX(wallet_index), -1) FROM agents`).Scan(&v)
	return v, t.fail(err)
}

func (t *txn) AgentKeyAdd(_ context.Context, k *spend.AgentKey) error {
	var revoked any
	if k.RevokedAt != nil {
		revoked = micros(*k.RevokedAt)
	}
	_, err := t.exec(`INSERT INTO agent_keys (address, agent_id, created_at, revoked_at) VALUES (?,?,?,?)`, k.Address, k.AgentID, micros(k.CreatedAt), revoked)
	if err != nil {
		return fmt.Errorf("sqlstore: add agent key: %w", err)
	}
	return nil
}

func (t *txn) AgentKeysRevoke(_ context.Context, agentID string, at time.Time) error {
	_, err := t.exec(`UPDATE agent_keys SET revoked_at = ? WHERE agent_id = ? AND revoked_at IS NULL`, micros(at), agentID)
	return err
}

func (t *txn) WalletAdd(_ context.Context, w *spend.Wallet) error {
	_, err := t.execSide(`INSERT INTO wallets (agent_id, network, address, custody, path) VALUES (?,?,?,?,?)`, w.AgentID, w.Network, w.Address, w.Custody, w.Path)
	if err != nil {
		return fmt.Errorf("sqlstore: add wallet: %w", err)
	}
	return nil
}

func (t *txn) WalletList(_ context.Context, agentID string) ([]spend.Wallet, error) {
	rows, err := t.query(t.s.q(`SELECT agent_id, network, address, custody, path FROM wallets WHERE agent_id = ? ORDER BY network`), agentID)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	out := []spend.Wallet{}
	for rows.Next() {
		var w spend.Wallet
		if err := rows.Scan(&w.AgentID, &w.Network, &w.Address, &w.Custody, &w.Path); err != nil {
			return nil, t.fail(err)
		}
		out = append(out, w)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) MandatePut(_ context.Context, m *spend.MandateRecord) error {
	_, err := t.execSide(`INSERT INTO mandates (agent_id, version, body, created_at) VALUES (?,?,?,?)`, m.AgentID, m.Version, string(m.Body), micros(m.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: put mandate: %w", err)
	}
	return nil
}

func (t *txn) MandateGet(_ context.Context, agentID string, version int64) (*spend.MandateRecord, error) {
	m := spend.MandateRecord{AgentID: agentID, Version: version}
	var body string
	var created int64
	if err := t.queryRow(`SELECT body, created_at FROM mandates WHERE agent_id = ? AND version = ?`, agentID, version).Scan(&body, &created); err != nil {
		return nil, t.scanErr(err)
	}
	m.Body, m.CreatedAt = json.RawMessage(body), fromMicros(created)
	return &m, nil
}

func (t *txn) UsageGet(_ context.Context, agentID string, windows []string) ([]*big.Int, error) {
	out := make([]*big.Int, len(windows))
	var missing []string
	for i, w := range windows {
		if v, ok := t.usageOverlay(usageKey{agentID, w}); ok {
			out[i] = new(big.Int).Set(v)
			continue
		}
		out[i] = new(big.Int)
		missing = append(missing, w)
	}
	if len(missing) == 0 {
		return out, nil
	}
	args := []any{agentID}
	for _, w := range missing {
		args = append(args, w)
	}
	rows, err := t.query(t.s.q(`SELECT win, committed FROM budget_usage WHERE agent_id = ? AND win IN (?`+strings.Repeat(",?", len(missing)-1)+`)`), args...)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var w, c string
		if err := rows.Scan(&w, &c); err != nil {
			return nil, t.fail(err)
		}
		v, ok := new(big.Int).SetString(c, 10)
		if !ok {
			return nil, fmt.Errorf("sqlstore: budget counter %s/%s is not a number", agentID, w)
		}
		for i, want := range windows {
			if want == w { // only missing windows were asked for
				out[i] = v
			}
		}
	}
	return out, t.fail(rows.Err())
}

// usageOverlay is a counter as this caller, the batch or the prefetch
// last saw it.
func (t *txn) usageOverlay(k usageKey) (*big.Int, bool) {
	if v, ok := t.pend.usage.vals[k]; ok {
		return v, true
	}
	b := t.b
	if b == nil {
		return nil, false
	}
	if v, ok := b.usage.vals[k]; ok {
		return v, true
	}
	if b.valid {
		v, ok := b.usageDB[k]
		return v, ok
	}
	return nil, false
}

// UsageAdd reads and rewrites the counters in two statements; callers
// hold the agent's row lock, which is what makes the read-modify-write
// safe on every engine.
func (t *txn) UsageAdd(ctx context.Context, agentID string, windows []string, delta *big.Int) error {
	cur, err := t.UsageGet(ctx, agentID, windows)
	if err != nil {
		return err
	}
	for i := range windows {
		cur[i].Add(cur[i], delta)
	}
	return t.UsagePut(ctx, agentID, windows, cur)
}

func (t *txn) UsagePut(_ context.Context, agentID string, windows []string, values []*big.Int) error {
	if len(windows) != len(values) || len(windows) == 0 {
		return fmt.Errorf("sqlstore: UsagePut: %d windows, %d values", len(windows), len(values))
	}
	args := make([]any, 0, 3*len(windows))
	for i, w := range windows {
		if values[i].Sign() < 0 {
			return fmt.Errorf("sqlstore: budget counter %s/%s would go negative (%s)", agentID, w, values[i])
		}
		args = append(args, agentID, w, values[i].String())
	}
	if t.b != nil {
		for i, w := range windows {
			t.pend.usage.put(usageKey{agentID, w}, new(big.Int).Set(values[i]))
		}
		return nil
	}
	_, err := t.exec(`INSERT INTO budget_usage (agent_id, win, committed) VALUES (?,?,?)`+strings.Repeat(`,(?,?,?)`, len(windows)-1)+`
		ON CONFLICT (agent_id, win) DO UPDATE SET committed = excluded.committed`, args...)
	return err
}

func (t *txn) PayeeKnown(_ context.Context, agentID, payee string) (bool, error) {
	var one int
	err := t.queryRow(`SELECT 1 FROM known_payees WHERE agent_id = ? AND payee = ?`, agentID, payee).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, t.fail(err)
}

func (t *txn) PayeeAdd(_ context.Context, agentID, payee string) error {
	_, err := t.execSide(`INSERT INTO known_payees (agent_id, payee) VALUES (?,?) ON CONFLICT (agent_id, payee) DO NOTHING`, agentID, payee)
	return err
}

func (t *txn) HostPinGet(_ context.Context, agentID, host string) (string, error) {
	var payee string
	err := t.queryRow(`SELECT payee FROM host_pins WHERE agent_id = ? AND host = ?`, agentID, host).Scan(&payee)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return payee, t.fail(err)
}

func (t *txn) HostPinAdd(_ context.Context, agentID, host, payee string) error {
	_, err := t.execSide(`INSERT INTO host_pins (agent_id, host, payee) VALUES (?,?,?) ON CONFLICT (agent_id, host) DO NOTHING`, agentID, host, payee)
	return err
}

func (t *txn) NonceUse(_ context.Context, agentID, nonce string, expires time.Time) (bool, error) {
	if t.b != nil {
		if nr, ok := t.b.nonces[t.req]; ok && nr.agentID == agentID && nr.key == (nonceKey{micros(expires), nonce}) {
			delete(t.b.nonces, t.req) // spent once
			return nr.fresh, nil
		}
	}
	res, err := t.execSide(`INSERT INTO nonces (expires_at, nonce, agent_id) VALUES (?,?,?) ON CONFLICT (expires_at, nonce) DO NOTHING`, micros(expires), nonce, agentID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *txn) DBNow(_ context.Context) (time.Time, error) {
	var us int64
	if err := t.queryRow(t.s.d.NowMicros).Scan(&us); err != nil {
		return time.Time{}, t.fail(err)
	}
	return fromMicros(us), nil
}

func (t *txn) SpendCountOpenSigned(_ context.Context, agentID string) (int64, error) {
	var n int64
	// The WHERE repeats the partial index spends_open_signed's condition
	// word for word, so that SQLite's planner can use it.
	err := t.queryRow(`SELECT count(*) FROM spends WHERE agent_id = ? AND rail_ref <> '' AND status IN ('authorized', 'unknown')`, agentID).Scan(&n)
	if err != nil {
		return 0, t.fail(err)
	}
	// Spends buffered in this batch are not in the database yet.
	open := func(sp *spend.Spend) bool {
		return sp.AgentID == agentID && sp.RailRef != "" && (sp.Status == spend.StatusAuthorized || sp.Status == spend.StatusUnknown)
	}
	for _, sp := range t.pend.spends {
		if open(sp) {
			n++
		}
	}
	if t.b != nil {
		for _, sp := range t.b.spends {
			if open(sp) {
				n++
			}
		}
	}
	return n, nil
}

func (t *txn) NoncesPrune(_ context.Context, before time.Time) (int64, error) {
	res, err := t.execSide(`DELETE FROM nonces WHERE expires_at < ?`, micros(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

const spendCols = `id, agent_id, idempotency_key, rail, host, payee, asset, network, amount, amount_usd, captured, captured_usd,
	status, reasons, mandate_version, day_key, memo, intent_sig, intent_nonce, rail_ref, created_at, updated_at, expires_at,
	rail_request, rail_data, deny_reason`

func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func bigOrNil(v *big.Int) any {
	if v == nil {
		return nil
	}
	return v.String()
}

var spendColCount = strings.Count(spendCols, ",") + 1

func spendArgs(sp *spend.Spend) ([]any, error) {
	reasons, err := json.Marshal(sp.Reasons)
	if err != nil {
		return nil, err
	}
	return []any{sp.ID, sp.AgentID, nullable(sp.IdempotencyKey), sp.Rail, sp.Host, sp.Payee, sp.Asset, sp.Network,
		sp.Amount.String(), sp.AmountUSD.String(), bigOrNil(sp.Captured), bigOrNil(sp.CapturedUSD),
		string(sp.Status), string(reasons), sp.MandateVersion, sp.DayKey, sp.Memo, sp.IntentSig, sp.IntentNonce,
		sp.RailRef, micros(sp.CreatedAt), micros(sp.UpdatedAt), micros(sp.ExpiresAt), string(sp.RailRequest), string(sp.RailData), sp.DenyReason}, nil
}

// SpendCreate buffers the spend in a group transaction (inserted with
// the batch's others at its end) and inserts it at once otherwise.
func (t *txn) SpendCreate(_ context.Context, sp *spend.Spend) error {
	if t.readOnly {
		return errReadOnly
	}
	if sp.Amount == nil || sp.AmountUSD == nil {
		return fmt.Errorf("sqlstore: create spend %s: amount missing", sp.ID)
	}
	if t.b != nil {
		if _, dup := t.spendOverlay(sp.ID); dup {
			return fmt.Errorf("sqlstore: create spend: id %s exists", sp.ID)
		}
		if sp.IdempotencyKey != "" {
			if _, dup := t.idemOverlay(sp.AgentID, sp.IdempotencyKey); dup {
				return fmt.Errorf("sqlstore: create spend: idempotency key of agent %s exists", sp.AgentID)
			}
		}
		t.pend.spends = append(t.pend.spends, cloneSpend(sp))
		return nil
	}
	a, err := spendArgs(sp)
	if err != nil {
		return fmt.Errorf("sqlstore: create spend: %w", err)
	}
	if _, err := t.rawExec(`INSERT INTO spends (`+spendCols+`) VALUES `+valuesList(1, spendColCount), a...); err != nil {
		return fmt.Errorf("sqlstore: create spend: %w", err)
	}
	return nil
}

// spendOverlay finds a spend buffered by this caller or the batch.
func (t *txn) spendOverlay(id string) (*spend.Spend, bool) {
	for _, sp := range t.pend.spends {
		if sp.ID == id {
			return sp, true
		}
	}
	if t.b != nil {
		if sp, ok := t.b.spendByID[id]; ok {
			return sp, true
		}
	}
	return nil, false
}

func (t *txn) SpendUpdate(_ context.Context, sp *spend.Spend) error {
	if t.readOnly {
		return errReadOnly
	}
	for i, p := range t.pend.spends {
		if p.ID == sp.ID {
			t.pend.spends[i] = cloneSpend(sp)
			return nil
		}
	}
	// An earlier caller's buffered spend is written out by exec first,
	// so the update finds it.
	reasons, err := json.Marshal(sp.Reasons)
	if err != nil {
		return err
	}
	res, err := t.exec(`UPDATE spends SET captured = ?, captured_usd = ?, status = ?, reasons = ?, rail_ref = ?, rail_data = ?, updated_at = ?, expires_at = ?, deny_reason = ? WHERE id = ?`,
		bigOrNil(sp.Captured), bigOrNil(sp.CapturedUSD), string(sp.Status), string(reasons), sp.RailRef, string(sp.RailData),
		micros(sp.UpdatedAt), micros(sp.ExpiresAt), sp.DenyReason, sp.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: update spend: %w", err)
	}
	return mustAffect(res, "spend "+sp.ID)
}

func scanSpend(sc Scanner) (*spend.Spend, error) {
	var sp spend.Spend
	var idem, captured, capturedUSD sql.NullString
	var amount, amountUSD, status, reasons, railReq, railData string
	var created, updated, expires int64
	if err := sc.Scan(&sp.ID, &sp.AgentID, &idem, &sp.Rail, &sp.Host, &sp.Payee, &sp.Asset, &sp.Network, &amount, &amountUSD,
		&captured, &capturedUSD, &status, &reasons, &sp.MandateVersion, &sp.DayKey, &sp.Memo, &sp.IntentSig,
		&sp.IntentNonce, &sp.RailRef, &created, &updated, &expires, &railReq, &railData, &sp.DenyReason); err != nil {
		return nil, err
	}
	if railReq != "" {
		sp.RailRequest = json.RawMessage(railReq)
	}
	if railData != "" {
		sp.RailData = json.RawMessage(railData)
	}
	sp.IdempotencyKey, sp.Status = idem.String, spend.Status(status)
	sp.CreatedAt, sp.UpdatedAt, sp.ExpiresAt = fromMicros(created), fromMicros(updated), fromMicros(expires)
	var ok bool
	if sp.Amount, ok = new(big.Int).SetString(amount, 10); !ok {
		return nil, fmt.Errorf("sqlstore: spend %s: bad amount %q", sp.ID, amount)
	}
	if sp.AmountUSD, ok = new(big.Int).SetString(amountUSD, 10); !ok {
		return nil, fmt.Errorf("sqlstore: spend %s: bad amount_usd %q", sp.ID, amountUSD)
	}
	if captured.Valid {
		sp.Captured, _ = new(big.Int).SetString(captured.String, 10)
	}
	if capturedUSD.Valid {
		sp.CapturedUSD, _ = new(big.Int).SetString(capturedUSD.String, 10)
	}
	if err := json.Unmarshal([]byte(reasons), &sp.Reasons); err != nil {
		return nil, fmt.Errorf("sqlstore: spend %s: reasons: %w", sp.ID, err)
	}
	return &sp, nil
}

func (t *txn) SpendGet(_ context.Context, id string) (*spend.Spend, error) {
	if sp, ok := t.spendOverlay(id); ok {
		return cloneSpend(sp), nil
	}
	sp, err := scanSpend(t.queryRow(`SELECT `+spendCols+` FROM spends WHERE id = ?`, id))
	return sp, t.scanErr(err)
}

func (t *txn) SpendList(_ context.Context, p *spend.SpendListParams) ([]*spend.Spend, error) {
	if err := t.flushAll(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if p.AgentID != "" {
		where, args = append(where, "agent_id = ?"), append(args, p.AgentID)
	}
	if len(p.Statuses) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(",?", len(p.Statuses)-1)+")")
		for _, st := range p.Statuses {
			args = append(args, string(st))
		}
	}
	if !p.ExpiresBefore.IsZero() {
		where, args = append(where, "expires_at > 0 AND expires_at <= ?"), append(args, micros(p.ExpiresBefore))
	}
	if p.Signed {
		where = append(where, "rail_ref <> ''")
	}
	if p.Unsigned {
		where = append(where, "rail_ref = ''")
	}
	if p.AfterID != "" {
		c := micros(p.AfterCreated)
		where, args = append(where, "(created_at > ? OR (created_at = ? AND id > ?))"), append(args, c, c, p.AfterID)
	}
	q := `SELECT ` + spendCols + ` FROM spends`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if p.NewestFirst {
		q += " ORDER BY created_at DESC, id DESC"
	} else {
		q += " ORDER BY created_at, id"
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " LIMIT ?"
	args = append(args, limit)
	rows, err := t.query(t.s.q(q), args...)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.Spend
	for rows.Next() {
		sp, err := scanSpend(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, sp)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) AuditAppend(_ context.Context, e *audit.Event) error {
	if t.readOnly {
		return errReadOnly
	}
	t.events = append(t.events, e)
	return nil
}

func (t *txn) SpendCount(_ context.Context, statuses []spend.Status) (int64, error) {
	if err := t.flushAll(); err != nil {
		return 0, err
	}
	if len(statuses) == 0 {
		return 0, nil
	}
	args := make([]any, len(statuses))
	for i, st := range statuses {
		args[i] = string(st)
	}
	var n int64
	err := t.queryRow(`SELECT COUNT(*) FROM spends WHERE status IN (?`+strings.Repeat(",?", len(statuses)-1)+`)`, args...).Scan(&n)
	return n, t.fail(err)
}
