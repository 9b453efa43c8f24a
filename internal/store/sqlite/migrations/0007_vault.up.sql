-- The credential vault (issue 12): credentials and their sealed secret
-- versions, the grants that let agents call them, and the MCP tools described
-- over them. Secrets are envelope-sealed by the keystore before they reach the
-- store (base64 here, as webhook secrets); prices are decimal strings of
-- atomic units, NULL when unpriced; times are unix microseconds.
CREATE TABLE vault_credentials (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  upstream      TEXT NOT NULL,
  inject        TEXT NOT NULL,
  allow_private BOOLEAN NOT NULL,
  timeout_ms    BIGINT NOT NULL,
  version       BIGINT NOT NULL,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL
);
CREATE TABLE vault_secrets (
  credential_id TEXT NOT NULL REFERENCES vault_credentials(id),
  version       BIGINT NOT NULL,
  sealed        TEXT NOT NULL,
  created_at    BIGINT NOT NULL,
  retires_at    BIGINT,
  PRIMARY KEY (credential_id, version)
);
-- methods: comma-joined; paths: a JSON array (a pattern may hold any byte).
CREATE TABLE vault_grants (
  id            TEXT PRIMARY KEY,
  credential_id TEXT NOT NULL REFERENCES vault_credentials(id),
  agent_id      TEXT NOT NULL REFERENCES agents(id),
  methods       TEXT NOT NULL,
  paths         TEXT NOT NULL,
  price         TEXT,
  price_header  TEXT NOT NULL,
  max_price     TEXT,
  rate_limit    BIGINT NOT NULL,
  rate_per_ns   BIGINT NOT NULL,
  rate_start    BIGINT NOT NULL,
  rate_used     BIGINT NOT NULL,
  expires_at    BIGINT,
  revoked_at    BIGINT,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL,
  UNIQUE (credential_id, agent_id)
);
CREATE INDEX vault_grants_agent ON vault_grants(agent_id, credential_id);
CREATE TABLE vault_tools (
  name          TEXT PRIMARY KEY,
  credential_id TEXT NOT NULL REFERENCES vault_credentials(id),
  description   TEXT NOT NULL,
  method        TEXT NOT NULL,
  path          TEXT NOT NULL,
  schema        TEXT NOT NULL,
  body          TEXT NOT NULL,
  price         TEXT,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL
);
CREATE INDEX vault_tools_credential ON vault_tools(credential_id, name);
