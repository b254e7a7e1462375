//! End-to-end tests over HTTP against the real local stack (`bash scripts/infra.sh up`).

mod bad_input;
mod docs_page;
mod media;
mod operations;
mod walking_skeleton;
mod commands;
mod concurrency;
mod world;
mod fuzz;
