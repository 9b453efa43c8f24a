package sqlstore

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/purserhq/purser/internal/spend"
)

// Co-signing tables (cosign_keys, cosign_sessions) are side tables, like the
// vault's: their statements run in the transaction as they come (execSide),
// and unique rows are inserted with ON CONFLICT DO NOTHING, a missing row
// counted as ErrConflict (see vault.go for why).

const cosignKeyCols = "agent_id, public_key, address, sealed_share, epoch, recovery_public_key, recovery_ciphertext, created_at, updated_at"

func (t *txn) CosignKeyCreate(_ context.Context, k *spend.CosignKey) error {
	return t.insertOnce("create co-signed key of agent "+k.AgentID,
		`INSERT INTO cosign_keys (`+cosignKeyCols+`) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
		k.AgentID, hex.EncodeToString(k.PublicKey), k.Address, base64.StdEncoding.EncodeToString(k.SealedShare), k.Epoch,
		k.RecoveryPublicKey, k.RecoveryCiphertext, micros(k.CreatedAt), micros(k.UpdatedAt))
}

func (t *txn) CosignKeyGet(_ context.Context, agentID string) (*spend.CosignKey, error) {
	var k spend.CosignKey
	var pub, sealed string
	var created, updated int64
	err := t.queryRow(`SELECT `+cosignKeyCols+` FROM cosign_keys WHERE agent_id = ?`, agentID).Scan(
		&k.AgentID, &pub, &k.Address, &sealed, &k.Epoch, &k.RecoveryPublicKey, &k.RecoveryCiphertext, &created, &updated)
	if err != nil {
		return nil, t.scanErr(err)
	}
	if k.PublicKey, err = hex.DecodeString(pub); err != nil {
		return nil, fmt.Errorf("sqlstore: co-signed key of agent %s: public key is not hex", agentID)
	}
	if k.SealedShare, err = base64.StdEncoding.DecodeString(sealed); err != nil {
		return nil, fmt.Errorf("sqlstore: co-signed key of agent %s: sealed share is not base64", agentID)
	}
	if len(k.PublicKey) == 0 {
		k.PublicKey = nil
	}
	if len(k.SealedShare) == 0 {
		k.SealedShare = nil
	}
	k.CreatedAt, k.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &k, nil
}

func (t *txn) CosignKeyUpdate(_ context.Context, k *spend.CosignKey) error {
	res, err := t.execSide(`UPDATE cosign_keys SET public_key = ?, address = ?, sealed_share = ?, epoch = ?, recovery_public_key = ?,
		recovery_ciphertext = ?, updated_at = ? WHERE agent_id = ?`,
		hex.EncodeToString(k.PublicKey), k.Address, base64.StdEncoding.EncodeToString(k.SealedShare), k.Epoch,
		k.RecoveryPublicKey, k.RecoveryCiphertext, micros(k.UpdatedAt), k.AgentID)
	if err != nil {
		return fmt.Errorf("sqlstore: update co-signed key: %w", err)
	}
	return mustAffect(res, "co-signed key of agent "+k.AgentID)
}

func (t *txn) CosignSessionClaim(_ context.Context, c *spend.CosignSession) error {
	return t.insertOnce("claim co-signing session",
		`INSERT INTO cosign_sessions (session_id, agent_id, spend_id, kind, created_at) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING`,
		c.SessionID, c.AgentID, c.SpendID, c.Kind, micros(c.CreatedAt))
}
