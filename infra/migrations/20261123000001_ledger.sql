-- The ledger (DESIGN §4): the source of truth. One row per event, one row per stream.

-- Current version of every stream: the row an append locks to check its expected version.
CREATE TABLE streams (
    stream_id   UUID PRIMARY KEY,
    stream_type TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 1)
);

CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       UUID NOT NULL,
    stream_type     TEXT NOT NULL,
    version         BIGINT NOT NULL CHECK (version >= 1),
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         JSONB NOT NULL,
    metadata        JSONB NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- Events committed but not yet acknowledged by Kafka (DESIGN §1). Written in the append's
-- transaction, deleted by the relay once the broker has acknowledged the event, so a late
-- committing transaction can never be skipped (no tailing by position).
CREATE TABLE outbox (
    global_position BIGINT PRIMARY KEY REFERENCES events (global_position),
    topic_context   TEXT NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Values that must be unique across streams (e.g. a user's email), reserved in the same
-- transaction as the events that claim them.
CREATE TABLE reservations (
    scope       TEXT NOT NULL,
    value       TEXT NOT NULL,
    stream_id   UUID NOT NULL,
    reserved_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT reservations_pkey PRIMARY KEY (scope, value)
);

-- Commands already executed: the same command id returns the first result, appends nothing.
CREATE TABLE processed_commands (
    command_id  UUID PRIMARY KEY,
    result      JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
