//! query-api: HTTP reads over the read models that the projectors build (DESIGN §3, §6).
//!
//! - [`startup`]: building and running the application.
//! - [`state`]: the read-model handles every handler shares.
//! - [`routes`]: one module per context.
//! - [`ops`]: the operations page for admins (`/ops`) and its data (`/ops/data`).

pub mod ops;
pub mod routes;
pub mod startup;
pub mod state;
