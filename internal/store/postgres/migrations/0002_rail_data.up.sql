-- Rails that sign an instrument before money moves (x402, payouts) keep what
-- the agent asked for (rail_request: the seller's offer, immutable) and what
-- the rail produced (rail_data: the signed authorization, the tx hash).
-- Signed spends are found by the reconciler through spends_signed.
ALTER TABLE spends ADD COLUMN rail_request TEXT NOT NULL DEFAULT '';
ALTER TABLE spends ADD COLUMN rail_data TEXT NOT NULL DEFAULT '';
CREATE INDEX spends_signed ON spends(status, created_at) WHERE rail_ref <> '';
-- pin_payees: the payee each host of an agent was first paid to.
CREATE TABLE host_pins (
  agent_id TEXT NOT NULL REFERENCES agents(id),
  host     TEXT NOT NULL,
  payee    TEXT NOT NULL,
  PRIMARY KEY (agent_id, host)
);
