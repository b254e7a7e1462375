//! End-to-end tests over HTTP against the real local stack (`bash scripts/infra.sh up`).

mod bad_input;
mod commands;
mod concurrency;
mod docs_page;
mod fuzz;
mod media;
mod operations;
mod walking_skeleton;
mod world;
