//! End-to-end scenarios, load tests and benchmarks against the real local stack.
//!
//! - [`harness`]: starts command-api, query-api, the projectors and the sagas (and on demand a
//!   withdrawal worker with a simulated payout provider) in-process on one isolated
//!   [`infra::testing::TestEnv`], and a typed HTTP client for them.
//! - [`measure`]: percentiles for the benchmarks.

pub mod harness;
pub mod measure;
