-- Co-signed wallets (issue 13): who holds an agent's wallet key ("server":
-- HD-derived from the keystore, "2of2": shared between the agent and the
-- server), the server's sealed share of each co-signed key, and the durable
-- ledger of signing sessions (a session id is never run twice with the
-- server's share). A 2of2 agent's row exists from creation (epoch 0, no key
-- yet, optionally its recovery blob); key generation fills it (epoch 1).
-- Shares are envelope-sealed by the keystore before they reach the store
-- (base64 here); times are unix microseconds.
ALTER TABLE agents ADD COLUMN custody TEXT NOT NULL DEFAULT 'server';
CREATE TABLE cosign_keys (
  agent_id            TEXT PRIMARY KEY REFERENCES agents(id),
  public_key          TEXT NOT NULL,
  address             TEXT NOT NULL,
  sealed_share        TEXT NOT NULL,
  epoch               BIGINT NOT NULL,
  recovery_public_key TEXT NOT NULL,
  recovery_ciphertext TEXT NOT NULL,
  created_at          BIGINT NOT NULL,
  updated_at          BIGINT NOT NULL
);
CREATE TABLE cosign_sessions (
  session_id TEXT PRIMARY KEY,
  agent_id   TEXT NOT NULL REFERENCES agents(id),
  spend_id   TEXT NOT NULL,
  kind       TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX cosign_sessions_spend ON cosign_sessions(spend_id);
