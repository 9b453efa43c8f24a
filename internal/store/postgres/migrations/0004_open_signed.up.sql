-- An agent's open signed spends (signed instruments not yet settled, and unknown outcomes):
-- every authorization on a signing rail counts them against the server's cap
-- (serve --max-open-spends), so the count must read only those rows, not the agent's history.
-- Partial: the index holds only open signed spends, a few per agent.
CREATE INDEX spends_open_signed ON spends(agent_id) WHERE rail_ref <> '' AND status IN ('authorized', 'unknown');
