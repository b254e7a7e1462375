-- HTTP answers to writes sent with an `Idempotency-Key` (DESIGN §3): the same caller, key and
-- request within 24 h gets the first answer again. A row without a status is a request still
-- being answered; `claimed_at` lets a later attempt take over from one that died.
CREATE TABLE idempotency_keys (
    caller       UUID NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    status       SMALLINT,
    headers      JSONB,
    body         BYTEA,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    claimed_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
