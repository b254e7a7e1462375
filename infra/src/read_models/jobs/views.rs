//! What the jobs read model serves, what its projector writes into it, and the page cursor.

use chrono::{DateTime, NaiveDate, Utc};
use domain::Money;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Takes proposals (also after a reopening); found by search.
    Open,
    /// Closed by its owner or filled by an accepted proposal; not found by search.
    Closed,
}

impl JobStatus {
    /// The stored (and served) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    pub(super) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// A job as stored and served (any signed-in user may read it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job.
    pub job_id: Uuid,
    /// Its owner.
    pub client_id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Budget.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub budget: Money,
    /// Required skills.
    pub skills: Vec<String>,
    /// Where it stands.
    pub status: JobStatus,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// When its content was last edited, if ever.
    pub updated_at: Option<DateTime<Utc>>,
    /// When it closed (only while closed).
    pub closed_at: Option<DateTime<Utc>>,
    /// The proposal whose acceptance closed it (only while closed by an acceptance).
    pub accepted_proposal_id: Option<Uuid>,
    /// Version of the job stream this view reflects (compare with a consistency token).
    pub version: i64,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for the client (also after an acceptance was reverted).
    Submitted,
    /// Taken back by its author.
    Withdrawn,
    /// Turned down by the client, or another proposal was accepted.
    Rejected,
    /// Accepted: a contract follows.
    Accepted,
}

impl ProposalStatus {
    /// The stored (and served) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Withdrawn => "withdrawn",
            Self::Rejected => "rejected",
            Self::Accepted => "accepted",
        }
    }

    pub(super) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "submitted" => Some(Self::Submitted),
            "withdrawn" => Some(Self::Withdrawn),
            "rejected" => Some(Self::Rejected),
            "accepted" => Some(Self::Accepted),
            _ => None,
        }
    }
}

/// One milestone of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MilestoneView {
    /// The milestone (the contract made from the proposal keeps it).
    pub milestone_id: Uuid,
    /// What is delivered.
    pub title: String,
    /// What it costs.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub amount: Money,
    /// When it is due.
    pub due_on: NaiveDate,
}

/// A proposal as stored and served (private: its author, the job's owner and admins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProposalView {
    /// The proposal.
    pub proposal_id: Uuid,
    /// The job it is for.
    pub job_id: Uuid,
    /// The job's owner.
    pub client_id: Uuid,
    /// Its author.
    pub freelancer_id: Uuid,
    /// The pitch.
    pub cover_letter: String,
    /// The milestones, ordered by due date (the agreed ones once accepted).
    pub milestones: Vec<MilestoneView>,
    /// Links to attached files.
    pub attachments: Vec<String>,
    /// Where it stands.
    pub status: ProposalStatus,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
    /// When its terms were last changed, if ever.
    pub updated_at: Option<DateTime<Utc>>,
    /// When it was withdrawn, rejected or accepted (only in those statuses).
    pub decided_at: Option<DateTime<Utc>>,
    /// The contract initiated from it (only while accepted).
    pub contract_id: Option<Uuid>,
    /// Version of the proposal stream this view reflects.
    pub version: i64,
}

/// A job's editable content, as the projector writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobContent {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Budget.
    pub budget: Money,
    /// Required skills.
    pub skills: Vec<String>,
}

/// What one event of a job stream changes.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    /// The job was posted.
    Posted {
        /// Its owner.
        client_id: Uuid,
        /// Its content.
        content: JobContent,
        /// When.
        posted_at: DateTime<Utc>,
    },
    /// The owner edited it.
    Updated {
        /// The new content.
        content: JobContent,
        /// When.
        updated_at: DateTime<Utc>,
    },
    /// A proposal arrived (only the applied version moves).
    ProposalReceived,
    /// It closed.
    Closed {
        /// The accepted proposal, if that is why.
        accepted_proposal_id: Option<Uuid>,
        /// When.
        closed_at: DateTime<Utc>,
    },
    /// It is open again (an acceptance was compensated, DESIGN §7).
    Reopened,
}

/// A proposal's terms, as the projector writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalTerms {
    /// The pitch.
    pub cover_letter: String,
    /// The milestones.
    pub milestones: Vec<MilestoneView>,
    /// Links to attached files.
    pub attachments: Vec<String>,
}

/// What one event of a proposal stream changes.
#[derive(Debug, Clone, PartialEq)]
pub enum ProposalChange {
    /// It was submitted.
    Submitted {
        /// The job.
        job_id: Uuid,
        /// The job's owner.
        client_id: Uuid,
        /// Its author.
        freelancer_id: Uuid,
        /// Its terms.
        terms: ProposalTerms,
        /// When.
        submitted_at: DateTime<Utc>,
    },
    /// Its author changed the terms.
    Updated {
        /// The new terms.
        terms: ProposalTerms,
        /// When.
        updated_at: DateTime<Utc>,
    },
    /// Withdrawn or rejected.
    Decided {
        /// [`ProposalStatus::Withdrawn`] or [`ProposalStatus::Rejected`].
        status: ProposalStatus,
        /// When.
        at: DateTime<Utc>,
    },
    /// Accepted.
    Accepted {
        /// The contract to initiate.
        contract_id: Uuid,
        /// The agreed milestones.
        milestones: Vec<MilestoneView>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The acceptance was reverted: pending again (DESIGN §7).
    AcceptanceReverted,
}

/// Whether an event changed the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Written,
    /// The stream's row already reflects this version or a newer one: nothing written.
    AlreadyApplied,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    /// The jobs of this page.
    pub items: Vec<JobView>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// A page of proposals, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProposalPage {
    /// The proposals of this page.
    pub items: Vec<ProposalView>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
}

/// Where a page ends: the sort key `(rank, id)` of its last item. Lists are ordered by
/// `rank = i64::MAX - creation time in ms` (newest first, ascending in every store, the local
/// emulator included, which ignores `DESC`), then by the id's text (ties).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub(super) rank: i64,
    pub(super) id: String,
}

/// A `page_token` that is not one this service gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a page token of this list")]
pub struct BadPageToken;

impl Cursor {
    pub(super) fn new(rank: i64, id: Uuid) -> Self {
        Self {
            rank,
            id: id.to_string(),
        }
    }

    /// The opaque token: the rank and the id in hex.
    pub fn encode(&self) -> String {
        let id = self.id.parse::<Uuid>().map(|u| u.simple().to_string());
        format!("{:016x}{}", self.rank, id.unwrap_or_default())
    }

    /// Parse a token made by [`Cursor::encode`].
    pub fn decode(raw: &str) -> Result<Self, BadPageToken> {
        if raw.len() != 48 || !raw.is_ascii() {
            return Err(BadPageToken);
        }
        let (rank, id) = raw.split_at(16);
        let rank = i64::from_str_radix(rank, 16).map_err(|_| BadPageToken)?;
        let id = Uuid::try_parse(id).map_err(|_| BadPageToken)?;
        Ok(Self::new(rank, id))
    }
}

/// The sort rank of something created at `at`: newest first in ascending order.
pub(super) fn rank(at: DateTime<Utc>) -> i64 {
    i64::MAX - at.timestamp_millis().max(0)
}

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Most items (1..=100).
    pub limit: usize,
    /// Items after this cursor (from the previous page's token); `None` for the first page.
    pub after: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let cursor = Cursor::new(rank(Utc::now()), Uuid::now_v7());
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        for bad in [
            "",
            "zz",
            &"0".repeat(47),
            &"g".repeat(48),
            &format!("{}é", "0".repeat(46)),
        ] {
            assert_eq!(Cursor::decode(bad), Err(BadPageToken), "{bad}");
        }
    }

    #[test]
    fn newer_ranks_sort_first() {
        let older = rank(DateTime::from_timestamp_millis(1_000).expect("time"));
        let newer = rank(DateTime::from_timestamp_millis(2_000).expect("time"));
        assert!(newer < older && newer > 0);
    }
}
