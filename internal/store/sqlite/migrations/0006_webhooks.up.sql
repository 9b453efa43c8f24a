-- Webhooks (docs/webhooks.md). An endpoint's cursor is the last audit event
-- turned into messages for it (an event may make several: part); its messages
-- are delivered one at a time, in (seq, part) order; every attempt is kept for the owner to read.
CREATE TABLE webhook_endpoints (
  id            TEXT PRIMARY KEY,
  url           TEXT NOT NULL,
  events        TEXT NOT NULL,
  signing       TEXT NOT NULL,
  secret        TEXT NOT NULL,
  allow_private BOOLEAN NOT NULL,
  status        TEXT NOT NULL,
  cursor_seq    BIGINT NOT NULL,
  next_at       BIGINT NOT NULL,
  last_error    TEXT NOT NULL,
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL
);
CREATE TABLE webhook_messages (
  endpoint_id TEXT NOT NULL,
  seq         BIGINT NOT NULL,
  part        BIGINT NOT NULL,
  id          TEXT NOT NULL,
  type        TEXT NOT NULL,
  body        TEXT NOT NULL,
  status      TEXT NOT NULL,
  attempts    BIGINT NOT NULL,
  first_at    BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  PRIMARY KEY (endpoint_id, seq, part)
);
CREATE INDEX webhook_messages_pending ON webhook_messages(endpoint_id, seq, part) WHERE status = 'pending';
-- Pruning (webhook.Config.Retention) reads finished messages and attempts by age.
CREATE INDEX webhook_messages_done ON webhook_messages(updated_at) WHERE status <> 'pending';
CREATE TABLE webhook_attempts (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  endpoint_id   TEXT NOT NULL,
  seq           BIGINT NOT NULL,
  message_id    TEXT NOT NULL,
  type          TEXT NOT NULL,
  attempt       BIGINT NOT NULL,
  at            BIGINT NOT NULL,
  outcome       TEXT NOT NULL,
  status_code   BIGINT NOT NULL,
  response_body TEXT NOT NULL,
  error         TEXT NOT NULL,
  duration_us   BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts(endpoint_id, id);
CREATE INDEX webhook_attempts_at ON webhook_attempts(at);
-- One dispatcher per deployment: the node holding this lease delivers.
CREATE TABLE webhook_lease (
  id       BIGINT PRIMARY KEY,
  holder   TEXT NOT NULL,
  until_us BIGINT NOT NULL
);
INSERT INTO webhook_lease (id, holder, until_us) VALUES (1, '', 0);
