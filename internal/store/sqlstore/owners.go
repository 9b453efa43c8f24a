package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// Owners, passkeys, invites, sessions and ceremonies: tables the batch
// neither buffers nor prefetches, so every write goes straight out
// (execSide).

var b64 = base64.RawURLEncoding

func optMicros(p *time.Time) any {
	if p == nil {
		return nil
	}
	return micros(*p)
}

func fromOpt(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func (t *txn) OwnerCreate(_ context.Context, o *spend.Owner) error {
	_, err := t.execSide(`INSERT INTO owners (id, name, created_at, revoked_at) VALUES (?,?,?,?)`, o.ID, o.Name, micros(o.CreatedAt), optMicros(o.RevokedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: create owner: %w", err)
	}
	return nil
}

func scanOwner(sc Scanner) (*spend.Owner, error) {
	var o spend.Owner
	var created int64
	var revoked sql.NullInt64
	if err := sc.Scan(&o.ID, &o.Name, &created, &revoked); err != nil {
		return nil, err
	}
	o.CreatedAt, o.RevokedAt = fromMicros(created), fromOpt(revoked)
	return &o, nil
}

func (t *txn) OwnerGet(_ context.Context, ref string) (*spend.Owner, error) {
	o, err := scanOwner(t.queryRow(`SELECT id, name, created_at, revoked_at FROM owners WHERE id = ? OR name = ?`, ref, ref))
	return o, t.scanErr(err)
}

func (t *txn) OwnerList(_ context.Context) ([]*spend.Owner, error) {
	rows, err := t.query(t.s.q(`SELECT id, name, created_at, revoked_at FROM owners ORDER BY created_at, id`))
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	out := []*spend.Owner{}
	for rows.Next() {
		o, err := scanOwner(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, o)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) OwnerRevoke(_ context.Context, id string, at time.Time) error {
	res, err := t.execSide(`UPDATE owners SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id)
	if err != nil {
		return err
	}
	return mustAffect(res, "owner "+id)
}

const passkeyCols = "credential_id, owner_id, public_key, sign_count, aaguid, backup_eligible, created_at, last_used_at, revoked_at"

func scanPasskey(sc Scanner) (*spend.Passkey, error) {
	var p spend.Passkey
	var id, pub, aaguid string
	var count, be, created int64
	var used, revoked sql.NullInt64
	if err := sc.Scan(&id, &p.OwnerID, &pub, &count, &aaguid, &be, &created, &used, &revoked); err != nil {
		return nil, err
	}
	var err error
	if p.CredentialID, err = b64.DecodeString(id); err != nil {
		return nil, fmt.Errorf("sqlstore: passkey id: %w", err)
	}
	if p.PublicKey, err = b64.DecodeString(pub); err != nil {
		return nil, fmt.Errorf("sqlstore: passkey public key: %w", err)
	}
	if p.AAGUID, err = b64.DecodeString(aaguid); err != nil {
		return nil, fmt.Errorf("sqlstore: passkey aaguid: %w", err)
	}
	p.SignCount, p.BackupEligible = uint32(count), be != 0
	p.CreatedAt, p.LastUsedAt, p.RevokedAt = fromMicros(created), fromOpt(used), fromOpt(revoked)
	return &p, nil
}

func (t *txn) PasskeyAdd(_ context.Context, p *spend.Passkey) error {
	be := 0
	if p.BackupEligible {
		be = 1
	}
	_, err := t.execSide(`INSERT INTO owner_passkeys (`+passkeyCols+`) VALUES (?,?,?,?,?,?,?,?,?)`,
		b64.EncodeToString(p.CredentialID), p.OwnerID, b64.EncodeToString(p.PublicKey), int64(p.SignCount), b64.EncodeToString(p.AAGUID), be,
		micros(p.CreatedAt), optMicros(p.LastUsedAt), optMicros(p.RevokedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: add passkey: %w", err)
	}
	return nil
}

func (t *txn) PasskeyGet(_ context.Context, credentialID []byte) (*spend.Passkey, error) {
	p, err := scanPasskey(t.queryRow(`SELECT `+passkeyCols+` FROM owner_passkeys WHERE credential_id = ?`, b64.EncodeToString(credentialID)))
	return p, t.scanErr(err)
}

func (t *txn) PasskeyList(_ context.Context, ownerID string) ([]*spend.Passkey, error) {
	q := `SELECT ` + passkeyCols + ` FROM owner_passkeys WHERE owner_id = ? OR ? = '' ORDER BY created_at, credential_id`
	rows, err := t.query(t.s.q(q), ownerID, ownerID)
	if err != nil {
		return nil, t.fail(err)
	}
	defer rows.Close()
	out := []*spend.Passkey{}
	for rows.Next() {
		p, err := scanPasskey(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, p)
	}
	return out, t.fail(rows.Err())
}

func (t *txn) PasskeyUse(_ context.Context, credentialID []byte, signCount uint32, at time.Time) error {
	res, err := t.execSide(`UPDATE owner_passkeys SET sign_count = ?, last_used_at = ? WHERE credential_id = ?`,
		int64(signCount), micros(at), b64.EncodeToString(credentialID))
	if err != nil {
		return err
	}
	return mustAffect(res, "passkey")
}

func (t *txn) PasskeyRevoke(_ context.Context, credentialID []byte, at time.Time) error {
	res, err := t.execSide(`UPDATE owner_passkeys SET revoked_at = ? WHERE credential_id = ? AND revoked_at IS NULL`,
		micros(at), b64.EncodeToString(credentialID))
	if err != nil {
		return err
	}
	return mustAffect(res, "passkey")
}

func (t *txn) InviteAdd(_ context.Context, i *spend.OwnerInvite) error {
	_, err := t.execSide(`INSERT INTO owner_invites (token_hash, name, created_at, expires_at, used_at) VALUES (?,?,?,?,?)`,
		i.TokenHash, i.Name, micros(i.CreatedAt), micros(i.ExpiresAt), optMicros(i.UsedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: add invite: %w", err)
	}
	return nil
}

func (t *txn) InviteGet(_ context.Context, tokenHash string) (*spend.OwnerInvite, error) {
	var i spend.OwnerInvite
	var created, expires int64
	var used sql.NullInt64
	err := t.queryRow(`SELECT token_hash, name, created_at, expires_at, used_at FROM owner_invites WHERE token_hash = ?`, tokenHash).
		Scan(&i.TokenHash, &i.Name, &created, &expires, &used)
	if err != nil {
		return nil, t.scanErr(err)
	}
	i.CreatedAt, i.ExpiresAt, i.UsedAt = fromMicros(created), fromMicros(expires), fromOpt(used)
	return &i, nil
}

func (t *txn) InviteUse(_ context.Context, tokenHash string, at time.Time) (bool, error) {
	res, err := t.execSide(`UPDATE owner_invites SET used_at = ? WHERE token_hash = ? AND used_at IS NULL`, micros(at), tokenHash)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *txn) SessionAdd(_ context.Context, s *spend.OwnerSession) error {
	_, err := t.execSide(`INSERT INTO owner_sessions (id_hash, owner_id, credential_id, csrf, created_at, last_seen_at, expires_at) VALUES (?,?,?,?,?,?,?)`,
		s.IDHash, s.OwnerID, b64.EncodeToString(s.CredentialID), s.CSRF, micros(s.CreatedAt), micros(s.LastSeenAt), micros(s.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlstore: add session: %w", err)
	}
	return nil
}

func (t *txn) SessionGet(_ context.Context, idHash string) (*spend.OwnerSession, error) {
	var s spend.OwnerSession
	var cred string
	var created, seen, expires int64
	err := t.queryRow(`SELECT id_hash, owner_id, credential_id, csrf, created_at, last_seen_at, expires_at FROM owner_sessions WHERE id_hash = ?`, idHash).
		Scan(&s.IDHash, &s.OwnerID, &cred, &s.CSRF, &created, &seen, &expires)
	if err != nil {
		return nil, t.scanErr(err)
	}
	if s.CredentialID, err = b64.DecodeString(cred); err != nil {
		return nil, fmt.Errorf("sqlstore: session credential: %w", err)
	}
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = fromMicros(created), fromMicros(seen), fromMicros(expires)
	return &s, nil
}

func (t *txn) SessionTouch(_ context.Context, idHash string, at time.Time) error {
	_, err := t.execSide(`UPDATE owner_sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?`, micros(at), idHash, micros(at))
	return err
}

func (t *txn) SessionDelete(_ context.Context, idHash string) error {
	_, err := t.execSide(`DELETE FROM owner_sessions WHERE id_hash = ?`, idHash)
	return err
}

func (t *txn) SessionsDelete(_ context.Context, ownerID string, credentialID []byte) error {
	if credentialID != nil {
		_, err := t.execSide(`DELETE FROM owner_sessions WHERE owner_id = ? AND credential_id = ?`, ownerID, b64.EncodeToString(credentialID))
		return err
	}
	_, err := t.execSide(`DELETE FROM owner_sessions WHERE owner_id = ?`, ownerID)
	return err
}

func (t *txn) CeremonyAdd(_ context.Context, c *spend.Ceremony) error {
	_, err := t.execSide(`INSERT INTO owner_ceremonies (id, kind, owner_id, subject, data, created_at, expires_at) VALUES (?,?,?,?,?,?,?)`,
		c.ID, c.Kind, c.OwnerID, c.Subject, string(c.Data), micros(c.CreatedAt), micros(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlstore: add ceremony: %w", err)
	}
	return nil
}

func (t *txn) CeremonyTake(_ context.Context, id string) (*spend.Ceremony, error) {
	var c spend.Ceremony
	var data string
	var created, expires int64
	err := t.queryRow(`SELECT id, kind, owner_id, subject, data, created_at, expires_at FROM owner_ceremonies WHERE id = ?`, id).
		Scan(&c.ID, &c.Kind, &c.OwnerID, &c.Subject, &data, &created, &expires)
	if err != nil {
		return nil, t.scanErr(err)
	}
	res, err := t.execSide(`DELETE FROM owner_ceremonies WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	// Two takers at once: on PostgreSQL the second DELETE waits for the
	// first to commit and then deletes nothing.
	if n, err := res.RowsAffected(); err != nil {
		return nil, t.fail(err)
	} else if n != 1 {
		return nil, spend.ErrNotFound
	}
	c.Data, c.CreatedAt, c.ExpiresAt = []byte(data), fromMicros(created), fromMicros(expires)
	return &c, nil
}

func (t *txn) OwnerPrune(_ context.Context, now time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM owner_sessions WHERE expires_at < ?`,
		`DELETE FROM owner_ceremonies WHERE expires_at < ?`,
		`DELETE FROM owner_invites WHERE expires_at < ?`,
	} {
		res, err := t.execSide(q, micros(now))
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
