//! Background workers (DESIGN §9): the withdrawal worker.
//!
//! - [`intake`]: a consumer group on the payments topic turns each requested withdrawal into a
//!   task in the durable queue (due now, or at its scheduled time).
//! - [`executor`]: claims due tasks for a renewed lease and runs each: start, pay out through the
//!   provider (idempotent by withdrawal id), then succeed, fail, or cancel on timeout.
//! - [`runner`]: the process: intake, executor, queue metrics, and its health endpoint.

pub mod executor;
pub mod intake;
pub mod runner;
