//! command-api: HTTP commands checked against the aggregate's history and appended to the
//! ledger (DESIGN §1, §3). The outbox relay runs inside it as a background task.
//!
//! - [`startup`]: building and running the application.
//! - [`state`]: the handles every handler shares.
//! - [`routes`]: one module per context.

pub mod routes;
pub mod startup;
pub mod state;
