//! Projectors (DESIGN §6): one consumer group each, turning events into read-model rows.
//! Every write is idempotent (versions stored with rows; older events ignored).
//!
//! - [`users`]: users → MongoDB `users` (profile documents).
//! - [`jobs`]: jobs and proposals → Cassandra jobs by id and by client, the keyword index,
//!   proposals by id, by job and by freelancer; version-guarded invalidation of the job cache.
//! - [`contracts`]: contracts → Cassandra contracts by id, by client and by freelancer,
//!   milestones and termination requests by contract.
//! - [`payments`]: wallets, payment requests and withdrawals → Redis wallets, recent
//!   transactions and withdrawal statuses; Cassandra payment requests by id, client, freelancer.
//! - [`catalog`]: opening a read model's projector into one storage generation.
//! - [`generations`]: a live projector writing the generation the control plane names, held
//!   while a rebuild hands over (blue/green).
//! - [`replay`]: applying the ledger to a read model (rebuilds and verification).
//! - [`runner`]: starts every projector and the health/metrics endpoint.

pub mod catalog;
pub mod contracts;
pub mod generations;
pub mod jobs;
pub mod payments;
pub mod replay;
pub mod runner;
pub mod users;
