-- Replay tooling (DESIGN §8) reads the ledger in commit-safe order: by the writing transaction's
-- id, then position, and only below the oldest transaction still running
-- (`pg_snapshot_xmin`). Positions alone are not enough: a transaction that took a lower
-- position can commit after one with a higher position was read, and would be skipped.
-- Every transaction below that horizon has finished, and every later one gets a higher id.
ALTER TABLE events ADD COLUMN transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_transaction_order ON events (transaction_id, global_position);
