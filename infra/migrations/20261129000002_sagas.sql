-- Process managers (DESIGN §7). Their commands go through the ledger's command path, each with a
-- command id derived from the event that caused it, so the ledger's idempotency record makes a
-- redelivered event harmless. What they did is kept here to be queried.

-- One row per step a saga took: the event that triggered it and the command it sent.
CREATE TABLE saga_steps (
    saga_id         UUID NOT NULL,
    saga            TEXT NOT NULL,
    command_id      UUID NOT NULL,
    command         TEXT NOT NULL,
    trigger_type    TEXT NOT NULL,
    trigger_stream  UUID NOT NULL,
    trigger_version BIGINT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          TEXT,
    streams         JSONB NOT NULL DEFAULT '[]',
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, command_id)
);

-- Deadlines: fired by whichever sagas instance claims them first, after restarts too.
CREATE TABLE saga_deadlines (
    deadline_id   UUID PRIMARY KEY,
    saga_id       UUID NOT NULL,
    kind          TEXT NOT NULL,
    stream_id     UUID NOT NULL,
    due_at        TIMESTAMPTZ NOT NULL,
    claimed_until TIMESTAMPTZ,
    fired_at      TIMESTAMPTZ,
    outcome       TEXT
);
CREATE INDEX saga_deadlines_pending ON saga_deadlines (due_at) WHERE fired_at IS NULL;
