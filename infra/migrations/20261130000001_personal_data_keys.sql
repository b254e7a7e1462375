-- Personal data keys (crypto-shredding): one data key per person, sealing the personal fields of
-- their events; stored wrapped by a master key from the environment (WORKUP_MASTER_KEYS), with
-- the id of that master key so keys can be rewrapped when it rotates. Erasing a person sets the
-- key to NULL for good: the row stays as a tombstone, so no new key is ever made for them.
CREATE TABLE personal_data_keys (
    subject_id    UUID PRIMARY KEY,
    master_key_id TEXT,
    wrapped_key   BYTEA,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    erased_at     TIMESTAMPTZ,
    CONSTRAINT personal_data_keys_erased CHECK (
        (wrapped_key IS NULL) = (erased_at IS NOT NULL)
        AND (wrapped_key IS NULL) = (master_key_id IS NULL)
    )
);

-- One-off data migrations the services run at start (once, under an advisory lock), e.g. sealing
-- the personal data of events recorded before it was sealed.
CREATE TABLE ledger_data_migrations (
    name    TEXT PRIMARY KEY,
    done_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
