//! Contracts context: contracts with their milestones, and termination requests.
//!
//! - [`contract`]: the Contract aggregate and the milestone state machine.
//! - [`termination`]: the TerminationRequest aggregate; accepting one terminates its contract.

pub mod contract;
pub mod termination;

#[cfg(test)]
mod properties;

pub use contract::{
    Contract, ContractCommand, ContractEvent, ContractStatus, Milestone, MilestoneStatus, Verdict,
};
pub use termination::{
    TerminationCommand, TerminationEvent, TerminationEvents, TerminationRequest, TerminationStatus,
};
