//! The WorkUp marketplace model: pure aggregates, commands, events and rules (DESIGN §2). No I/O.
//!
//! - [`values`]: ids, money, email, actor, time.
//! - [`error`]: [`DomainError`], which maps one-to-one to HTTP answers.
//! - [`privacy`]: which event fields are personal data, and what they read as once erased.
//! - [`aggregate`]: the [`Aggregate`] and [`DomainEvent`] traits and the decision [`Context`].
//! - [`users`], [`jobs`], [`contracts`], [`payments`]: one module per bounded context. Each aggregate
//!   file holds its events, state and `evolve`, commands, `decide` and given/when/then tests;
//!   decisions over several aggregates have their own file and take a tuple of states:
//!   [`jobs::submit_proposal`], [`jobs::accept_proposal`], [`contracts::termination`],
//!   [`payments::pay_request`], [`payments::withdrawal`].
//! - `testing` (tests only): the given/when/then harness and shared fixtures; each context has a
//!   `properties` test module running random command sequences against its invariants.
//!
//! Decisions are pure: the caller passes the clock and new ids (in [`Context`] and the commands).

#![warn(missing_docs)]

pub mod aggregate;
pub mod error;
pub mod privacy;
pub mod values;

pub mod contracts;
pub mod jobs;
pub mod payments;
pub mod users;

#[cfg(test)]
mod testing;

pub use aggregate::{Aggregate, BoundedContext, Context, DomainEvent};
pub use error::{DomainError, FieldError};
pub use values::*;
