//! Read models (DESIGN §6), one module per bounded context, each holding its views, schema and
//! queries whatever store it uses; shared by its projector and by query-api.
//!
//! - [`consistency`]: read-your-writes: the consistency token of a write, and waiting until a
//!   read model has applied it.
//! - [`contracts`]: Cassandra contracts by id, by client and by freelancer, milestones and
//!   termination requests by contract (version-guarded writes at the version's timestamp).
//! - [`generation`]: storage generations of a read model (blue/green rebuilds), where each
//!   one's keyspace, database and key prefix are, and opening its store (schema created).
//! - [`jobs`]: Cassandra jobs by id and by client, the keyword index of open jobs, proposals
//!   by id, by job and by freelancer (per-column write timestamps = stream versions, plus a
//!   version guard); the key of a job in the Redis cache.
//! - [`payments`]: Redis wallets, recent transactions and withdrawal statuses (Lua,
//!   version-guarded); Cassandra payment requests by id, by client and by freelancer.
//! - [`storage`]: the storage of a read model in one generation: drop (only its own
//!   tables, collections and keys in the shared generation 0), canonical dumps and their diff.
//! - [`users`]: MongoDB `users`: profile documents (own and public views), version-guarded.

pub mod consistency;
pub mod contracts;
pub mod generation;
pub mod jobs;
pub mod payments;
pub mod storage;
pub mod users;
