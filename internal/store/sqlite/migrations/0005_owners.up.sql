-- Owners and their passkeys (WebAuthn), one-time enrolment invites,
-- browser sessions and WebAuthn ceremony challenges (internal/owners).
-- Secrets are stored as SHA-256 hashes only: an invite token or a session
-- id read from the database signs nobody in. Binary values are base64url
-- text, the same on both engines. Times are unix microseconds.
CREATE TABLE owners (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE owner_passkeys (
  credential_id   TEXT PRIMARY KEY,
  owner_id        TEXT NOT NULL REFERENCES owners(id),
  public_key      TEXT NOT NULL,
  sign_count      BIGINT NOT NULL DEFAULT 0,
  aaguid          TEXT NOT NULL DEFAULT '',
  backup_eligible BIGINT NOT NULL DEFAULT 0,
  created_at      BIGINT NOT NULL,
  last_used_at    BIGINT,
  revoked_at      BIGINT
);
CREATE INDEX owner_passkeys_owner ON owner_passkeys(owner_id);
CREATE TABLE owner_invites (
  token_hash TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at    BIGINT
);
CREATE TABLE owner_sessions (
  id_hash       TEXT PRIMARY KEY,
  owner_id      TEXT NOT NULL REFERENCES owners(id),
  credential_id TEXT NOT NULL,
  csrf          TEXT NOT NULL,
  created_at    BIGINT NOT NULL,
  last_seen_at  BIGINT NOT NULL,
  expires_at    BIGINT NOT NULL
);
CREATE INDEX owner_sessions_owner ON owner_sessions(owner_id);
CREATE TABLE owner_ceremonies (
  id         TEXT PRIMARY KEY,
  kind       TEXT NOT NULL,
  owner_id   TEXT NOT NULL DEFAULT '',
  subject    TEXT NOT NULL DEFAULT '',
  data       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX owner_ceremonies_expiry ON owner_ceremonies(expires_at);
-- What the owner told the agent when denying its spend (POST /v1/approvals/{id}/deny, the
-- portal's deny): the agent reads it in its spend.
ALTER TABLE spends ADD COLUMN deny_reason TEXT NOT NULL DEFAULT '';
