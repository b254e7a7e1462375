//! End-to-end tests over HTTP against the real local stack (`bash scripts/infra.sh up`).

mod bad_input;
mod operations;
mod walking_skeleton;
