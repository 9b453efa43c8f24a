-- The owner's list of all spends, newest first, must read an index in order and stop at the
-- page size: without this one it scanned and sorted the whole table (117 ms at 44,000 spends
-- on SQLite, growing with the table) and held a read snapshot all that time, which also kept
-- SQLite's WAL from starting over. Ids and times increase, so the index grows at its right
-- edge and an authorization's commit writes few extra pages for it. (One agent's list already
-- reads spends_agent in order.)
CREATE INDEX spends_created ON spends(created_at, id);
