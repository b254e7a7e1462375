//! End-to-end scenarios, load tests and benchmarks against the real local stack.
//!
//! - [`harness`]: starts command-api, query-api, the projectors and the sagas (and on demand a
//!   withdrawal worker with a simulated payout provider) in-process on one isolated
//!   [`infra::testing::TestEnv`], and a typed HTTP client for them.
//! - [`chaos`]: the chaos soak: the platform as processes under load and seeded faults, and the
//!   invariants checked at the end.
//! - [`measure`]: percentiles for the benchmarks.

pub mod chaos;
pub mod harness;
pub mod measure;
