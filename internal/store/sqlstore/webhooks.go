package sqlstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// Webhook tables are side tables: the batch neither buffers nor
// prefetches them, so their statements run as they come (execSide).

const webhookCols = "id, url, events, signing, secret, allow_private, status, cursor_seq, next_at, last_error, created_at, updated_at"

func scanWebhook(sc Scanner) (*spend.WebhookEndpoint, error) {
	var w spend.WebhookEndpoint
	var events, secret string
	var next, created, updated int64
	if err := sc.Scan(&w.ID, &w.URL, &events, &w.Signing, &secret, &w.AllowPrivate, &w.Status, &w.Cursor, &next, &w.LastError, &created, &updated); err != nil {
		return nil, err
	}
	if events != "" {
		w.Events = strings.Split(events, ",")
	}
	sec, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: webhook %s: stored secret does not decode: %w", w.ID, err)
	}
	w.Secret = sec
	w.NextAt, w.CreatedAt, w.UpdatedAt = fromMicros(next), fromMicros(created), fromMicros(updated)
	return &w, nil
}

func (t *txn) WebhookCreate(_ context.Context, w *spend.WebhookEndpoint) error {
	_, err := t.execSide(`INSERT INTO webhook_endpoints (`+webhookCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		w.ID, w.URL, strings.Join(w.Events, ","), w.Signing, base64.StdEncoding.EncodeToString(w.Secret), w.AllowPrivate,
		w.Status, w.Cursor, micros(w.NextAt), w.LastError, micros(w.CreatedAt), micros(w.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: add webhook: %w", err)
	}
	return nil
}

func (t *txn) WebhookGet(_ context.Context, id string) (*spend.WebhookEndpoint, error) {
	w, err := scanWebhook(t.queryRow(`SELECT `+webhookCols+` FROM webhook_endpoints WHERE id = ?`, id))
	if err != nil {
		return nil, t.scanErr(err)
	}
	return w, nil
}

func (t *txn) WebhookList(_ context.Context) ([]*spend.WebhookEndpoint, error) {
	rows, err := t.query(t.s.q(`SELECT ` + webhookCols + ` FROM webhook_endpoints ORDER BY created_at, id`))
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.WebhookEndpoint
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, w)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) WebhookUpdate(_ context.Context, w *spend.WebhookEndpoint) error {
	res, err := t.execSide(`UPDATE webhook_endpoints SET status = ?, cursor_seq = ?, next_at = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		w.Status, w.Cursor, micros(w.NextAt), w.LastError, micros(w.UpdatedAt), w.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: update webhook: %w", err)
	}
	return mustAffect(res, "webhook")
}

func (t *txn) WebhookDelete(_ context.Context, id string) error {
	res, err := t.execSide(`DELETE FROM webhook_endpoints WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("sqlstore: delete webhook: %w", err)
	}
	if err := mustAffect(res, "webhook"); err != nil {
		return err
	}
	if _, err := t.execSide(`DELETE FROM webhook_messages WHERE endpoint_id = ?`, id); err != nil {
		return fmt.Errorf("sqlstore: delete webhook messages: %w", err)
	}
	if _, err := t.execSide(`DELETE FROM webhook_attempts WHERE endpoint_id = ?`, id); err != nil {
		return fmt.Errorf("sqlstore: delete webhook attempts: %w", err)
	}
	return nil
}

const messageCols = "endpoint_id, seq, part, id, type, body, status, attempts, first_at, updated_at"

func (t *txn) WebhookMessageAdd(_ context.Context, m *spend.WebhookMessage) error {
	_, err := t.execSide(`INSERT INTO webhook_messages (`+messageCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		m.EndpointID, m.Seq, m.Part, m.ID, m.Type, string(m.Body), m.Status, m.Attempts, micros(m.FirstAt), micros(m.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: add webhook message: %w", err)
	}
	return nil
}

func (t *txn) WebhookMessageHead(_ context.Context, endpointID string) (*spend.WebhookMessage, error) {
	var m spend.WebhookMessage
	var body string
	var first, updated int64
	err := t.queryRow(`SELECT `+messageCols+` FROM webhook_messages WHERE endpoint_id = ? AND status = 'pending' ORDER BY seq, part LIMIT 1`, endpointID).
		Scan(&m.EndpointID, &m.Seq, &m.Part, &m.ID, &m.Type, &body, &m.Status, &m.Attempts, &first, &updated)
	if err != nil {
		return nil, t.scanErr(err)
	}
	m.Body, m.FirstAt, m.UpdatedAt = []byte(body), fromMicros(first), fromMicros(updated)
	return &m, nil
}

func (t *txn) WebhookMessageUpdate(_ context.Context, m *spend.WebhookMessage) error {
	res, err := t.execSide(`UPDATE webhook_messages SET status = ?, attempts = ?, first_at = ?, updated_at = ? WHERE endpoint_id = ? AND seq = ? AND part = ?`,
		m.Status, m.Attempts, micros(m.FirstAt), micros(m.UpdatedAt), m.EndpointID, m.Seq, m.Part)
	if err != nil {
		return fmt.Errorf("sqlstore: update webhook message: %w", err)
	}
	return mustAffect(res, "webhook message")
}

const attemptCols = "endpoint_id, seq, message_id, type, attempt, at, outcome, status_code, response_body, error, duration_us"

func (t *txn) WebhookAttemptAdd(_ context.Context, a *spend.WebhookAttempt) error {
	if t.readOnly {
		return errReadOnly
	}
	t.wrote = true
	err := t.queryRow(`INSERT INTO webhook_attempts (`+attemptCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id`,
		a.EndpointID, a.Seq, a.MessageID, a.Type, a.Attempt, micros(a.At), a.Outcome, a.StatusCode, a.ResponseBody, a.Error, a.Duration.Microseconds()).Scan(&a.ID)
	if err != nil {
		return t.fail(fmt.Errorf("sqlstore: add webhook attempt: %w", err))
	}
	return nil
}

func (t *txn) WebhookAttemptList(_ context.Context, endpointID string, beforeID int64, limit int) ([]*spend.WebhookAttempt, error) {
	if limit <= 0 {
		limit = 100
	}
	if beforeID <= 0 {
		beforeID = 1<<63 - 1
	}
	rows, err := t.query(t.s.q(`SELECT id, `+attemptCols+` FROM webhook_attempts WHERE endpoint_id = ? AND id < ? ORDER BY id DESC LIMIT ?`), endpointID, beforeID, limit)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	var out []*spend.WebhookAttempt
	for rows.Next() {
		var a spend.WebhookAttempt
		var at, dur int64
		if err := rows.Scan(&a.ID, &a.EndpointID, &a.Seq, &a.MessageID, &a.Type, &a.Attempt, &at, &a.Outcome, &a.StatusCode, &a.ResponseBody, &a.Error, &dur); err != nil {
			return nil, t.fail(err)
		}
		a.At, a.Duration = fromMicros(at), time.Duration(dur)*time.Microsecond
		out = append(out, &a)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) WebhookPrune(_ context.Context, before time.Time) (int64, error) {
	res, err := t.execSide(`DELETE FROM webhook_attempts WHERE at < ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune webhook attempts: %w", err)
	}
	n, _ := res.RowsAffected()
	res, err = t.execSide(`DELETE FROM webhook_messages WHERE status <> 'pending' AND updated_at < ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune webhook messages: %w", err)
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}

func (t *txn) WebhookLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	if holder == "" {
		return false, errors.New("sqlstore: webhook lease: empty holder")
	}
	now, err := t.DBNow(ctx)
	if err != nil {
		return false, err
	}
	res, err := t.execSide(`UPDATE webhook_lease SET holder = ?, until_us = ? WHERE id = 1 AND (holder = ? OR until_us < ?)`,
		holder, micros(now.Add(ttl)), holder, micros(now))
	if err != nil {
		return false, fmt.Errorf("sqlstore: webhook lease: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
