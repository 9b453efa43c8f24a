-- Purser schema v1. Times are unix microseconds (UTC); amounts are decimal
-- strings of atomic units (micro-USD for *_usd and budget counters).
CREATE TABLE agents (
  id                TEXT PRIMARY KEY,
  name              TEXT NOT NULL UNIQUE,
  status            TEXT NOT NULL,
  identity_address  TEXT NOT NULL,
  wallet_index      BIGINT NOT NULL UNIQUE,
  mandate_version   BIGINT NOT NULL DEFAULT 0,
  rate_window_start BIGINT NOT NULL DEFAULT 0,
  rate_count        BIGINT NOT NULL DEFAULT 0,
  created_at        BIGINT NOT NULL,
  updated_at        BIGINT NOT NULL
);
CREATE TABLE agent_keys (
  address    TEXT PRIMARY KEY,
  agent_id   TEXT NOT NULL REFERENCES agents(id),
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX agent_keys_agent ON agent_keys(agent_id);
CREATE TABLE wallets (
  agent_id TEXT NOT NULL REFERENCES agents(id),
  network  TEXT NOT NULL,
  address  TEXT NOT NULL,
  custody  TEXT NOT NULL,
  path     TEXT NOT NULL,
  PRIMARY KEY (agent_id, network)
);
CREATE TABLE mandates (
  agent_id   TEXT NOT NULL REFERENCES agents(id),
  version    BIGINT NOT NULL,
  body       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (agent_id, version)
);
CREATE TABLE budget_usage (
  agent_id  TEXT NOT NULL,
  win       TEXT NOT NULL,
  committed TEXT NOT NULL,
  PRIMARY KEY (agent_id, win)
);
CREATE TABLE known_payees (
  agent_id TEXT NOT NULL,
  payee    TEXT NOT NULL,
  PRIMARY KEY (agent_id, payee)
);
-- A replay of a signed request repeats its nonce and its expiry, so
-- (expires_at, nonce) identifies it; keyed by time first, new nonces land
-- at the right edge of the index and pruning is a range delete.
CREATE TABLE nonces (
  expires_at BIGINT NOT NULL,
  nonce      TEXT NOT NULL,
  agent_id   TEXT NOT NULL,
  PRIMARY KEY (expires_at, nonce)
);
CREATE TABLE spends (
  id              TEXT PRIMARY KEY,
  agent_id        TEXT NOT NULL REFERENCES agents(id),
  idempotency_key TEXT,
  rail            TEXT NOT NULL,
  host            TEXT NOT NULL,
  payee           TEXT NOT NULL,
  asset           TEXT NOT NULL,
  network         TEXT NOT NULL,
  amount          TEXT NOT NULL,
  amount_usd      TEXT NOT NULL,
  captured        TEXT,
  captured_usd    TEXT,
  status          TEXT NOT NULL,
  reasons         TEXT NOT NULL,
  mandate_version BIGINT NOT NULL,
  day_key         TEXT NOT NULL,
  memo            TEXT NOT NULL,
  intent_sig      TEXT NOT NULL,
  intent_nonce    TEXT NOT NULL,
  rail_ref        TEXT NOT NULL,
  created_at      BIGINT NOT NULL,
  updated_at      BIGINT NOT NULL,
  expires_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX spends_idempotency ON spends(agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX spends_agent ON spends(agent_id, created_at);
CREATE INDEX spends_expiry ON spends(status, expires_at);
CREATE TABLE audit_events (
  seq        BIGINT PRIMARY KEY,
  at         BIGINT NOT NULL,
  actor_type TEXT NOT NULL,
  actor_id   TEXT NOT NULL,
  action     TEXT NOT NULL,
  subject    TEXT NOT NULL,
  details    TEXT NOT NULL,
  prev_hash  TEXT NOT NULL,
  hash       TEXT NOT NULL
);
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY,
  seq  BIGINT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE audit_checkpoints (
  seq       BIGINT PRIMARY KEY,
  hash      TEXT NOT NULL,
  at        BIGINT NOT NULL,
  key_id    TEXT NOT NULL,
  signature TEXT NOT NULL
);
