//! Projectors (DESIGN §6): one consumer group each, turning events into read-model rows.
//! Every write is idempotent (versions stored with rows; older events ignored).
//!
//! - [`users`]: users → MongoDB `users` (profile documents).
//! - [`jobs`]: jobs → Cassandra `jobs_by_id`, written through to the Redis cache.
//! - [`contracts`]: contracts → Cassandra contracts by id, by client and by freelancer,
//!   milestones and termination requests by contract.
//! - [`runner`]: starts every projector and the health/metrics endpoint.

pub mod contracts;
pub mod jobs;
pub mod runner;
pub mod users;
