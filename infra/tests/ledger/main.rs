//! Integration tests of the ledger, the outbox relay and the consumer toolkit against the real
//! local stack (PostgreSQL and the Kafka-protocol broker): `bash scripts/infra.sh up` first.
//! Each test has its own [`infra::testing::TestEnv`] (database and topic prefix).

#[path = "../support/mod.rs"]
mod support;

mod appends;
mod cache;
mod dead_letters;
mod idempotency;
mod loading;
mod personal;
mod relay;
mod reservations;
mod scan;
mod upcasters;
