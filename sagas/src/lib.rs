//! Sagas (process managers, DESIGN §7): they consume events and send commands through the same
//! command path as HTTP (load, decide, append), as the system actor that no token can carry.
//! Each command's id is derived from the event that caused it, so a redelivered or replayed event
//! is answered by the ledger's idempotency record and appends nothing: exactly once in effect,
//! whatever crashes when.
//!
//! - [`contract_initiation`]: ProposalAccepted → the contract; if it cannot be made, the
//!   acceptance is reverted and the job reopened.
//! - [`payments`]: MilestoneAccepted → a payment request (and its expiry deadline);
//!   TerminationAccepted → the contract's pending payment requests are cancelled.
//! - [`completion`]: PaymentRequestPaid → the milestone is PAID (the contract completes with
//!   its last one).
//! - [`deadlines`]: due deadlines, kept in PostgreSQL, fired after restarts too.
//! - [`saga`]: the shared step: derive the command id, send, record the outcome.
//! - [`routes`], [`runner`]: the service: consumer groups, the deadline poller, health,
//!   metrics and the saga history for admins.

pub mod completion;
pub mod contract_initiation;
pub mod deadlines;
pub mod payments;
pub mod routes;
pub mod runner;
pub mod saga;
