//! Jobs context: job postings and the proposals freelancers send to them.
//!
//! - [`job`]: the Job aggregate (post, update, close; reopen, the contract saga's compensation).
//! - [`proposal`]: the Proposal aggregate (update, withdraw, reject; revert an acceptance, the
//!   contract saga's compensation) and the proposal terms rules.
//! - [`submit_proposal`]: submitting, over the job and the new proposal.
//! - [`accept_proposal`]: accepting, over the job and all its proposals.

pub mod accept_proposal;
pub mod job;
pub mod proposal;
pub mod submit_proposal;

#[cfg(test)]
mod properties;

pub use accept_proposal::{AcceptProposal, AcceptProposalEvents};
pub use job::{Job, JobCommand, JobDraft, JobEvent, decide};
pub use proposal::{
    MilestoneTerms, Proposal, ProposalCommand, ProposalEvent, ProposalStatus, ProposalTerms,
    ProposedMilestone, ValidTerms, parse_attachments,
};
pub use submit_proposal::{SubmitProposal, SubmitProposalEvents};
