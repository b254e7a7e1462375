//! End-to-end tests over HTTP against the real local stack (`bash scripts/infra.sh up`).

mod bad_input;
mod commands;
mod concurrency;
mod contract_reads;
mod docs_page;
mod fuzz;
mod job_reads;
mod marketplace_flow;
mod media;
mod operations;
mod ops_page;
mod payment_reads;
mod privacy;
mod projector_lag;
mod replay;
mod user_reads;
mod walking_skeleton;
mod withdrawals;
mod world;
