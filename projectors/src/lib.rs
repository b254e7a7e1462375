//! Projectors (DESIGN §6): one consumer group each, turning events into read-model rows.
//! Every write is idempotent (versions stored with rows; older events ignored).
//!
//! - [`user_profiles`]: users → MongoDB `users`.
//! - [`jobs`]: jobs → Cassandra `jobs_by_id`, written through to the Redis cache.
//! - [`runner`]: starts every projector and the health/metrics endpoint.

pub mod jobs;
pub mod runner;
pub mod user_profiles;
