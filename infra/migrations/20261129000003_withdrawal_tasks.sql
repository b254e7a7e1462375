-- Withdrawal tasks (DESIGN §9): the durable queue of the payout workers. A worker's intake
-- (a consumer group on the payments topic) adds one row per requested withdrawal, due at once or
-- at its scheduled time; any worker claims due rows for a lease it renews while it works, so a
-- task whose worker died is claimed again by another once the lease has lapsed. Deferred tasks
-- are rows, not timers: they survive restarts.
CREATE TABLE withdrawal_tasks (
    withdrawal_id UUID PRIMARY KEY,
    wallet_id     UUID NOT NULL,
    -- Of the request, carried on by the worker's commands.
    correlation_id UUID NOT NULL,
    due_at        TIMESTAMPTZ NOT NULL,
    enqueued_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- First claim: the task's timeout counts from here, across redeliveries.
    started_at    TIMESTAMPTZ,
    attempts      INT NOT NULL DEFAULT 0,
    leased_by     TEXT,
    leased_until  TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    -- succeeded | failed | cancelled (the withdrawal's final status).
    outcome       TEXT
);
CREATE INDEX withdrawal_tasks_open ON withdrawal_tasks (due_at) WHERE finished_at IS NULL;
