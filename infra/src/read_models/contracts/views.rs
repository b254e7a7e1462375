//! What the contracts read model serves (views, pages, statuses as lower snake case) and what
//! its projector hands it to write.

use chrono::{DateTime, NaiveDate, Utc};
use domain::{
    Money,
    contracts::{ContractStatus, MilestoneStatus, TerminationStatus},
};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

use crate::store::StoreError;

/// Where a contract stands, as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatusView {
    /// Milestones are being worked on.
    Active,
    /// Every milestone is paid.
    Completed,
    /// Ended by an accepted termination request.
    Terminated,
}

/// Where a milestone stands, as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MilestoneStatusView {
    /// Not started.
    Open,
    /// The freelancer works on it.
    InProgress,
    /// Delivered, waiting for the client's evaluation.
    InReview,
    /// Accepted by the client; a payment request follows.
    Accepted,
    /// Paid.
    Paid,
}

/// Where a termination request stands, as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TerminationStatusView {
    /// Waiting for the other party (or an admin).
    Pending,
    /// Accepted: the contract is terminated.
    Accepted,
    /// Rejected: the contract goes on.
    Rejected,
}

/// The stored text of each status, as served (lower snake case).
macro_rules! status_text {
    ($view:ident, $domain:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $view {
            /// The stored and served text.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl From<$domain> for $view {
            fn from(status: $domain) -> Self {
                match status { $($domain::$variant => Self::$variant),+ }
            }
        }

        impl FromStr for $view {
            type Err = StoreError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::Codec(format!("{} `{other}`", stringify!($view)))),
                }
            }
        }

        impl fmt::Display for $view {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_text!(ContractStatusView, ContractStatus {
    Active => "active", Completed => "completed", Terminated => "terminated",
});
status_text!(MilestoneStatusView, MilestoneStatus {
    Open => "open", InProgress => "in_progress", InReview => "in_review", Accepted => "accepted", Paid => "paid",
});
status_text!(TerminationStatusView, TerminationStatus {
    Pending => "pending", Accepted => "accepted", Rejected => "rejected",
});

/// A contract as served: its parties and where it stands (milestones and termination requests
/// have their own lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContractView {
    /// The contract.
    pub contract_id: Uuid,
    /// The accepted proposal it was made from.
    pub proposal_id: Uuid,
    /// The job.
    pub job_id: Uuid,
    /// The client (pays).
    pub client_id: Uuid,
    /// The freelancer (works the milestones).
    pub freelancer_id: Uuid,
    /// `active`, `completed` or `terminated`.
    pub status: ContractStatusView,
    /// When it was initiated.
    pub initiated_at: DateTime<Utc>,
    /// When its last milestone was paid, if completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was terminated, if terminated.
    pub terminated_at: Option<DateTime<Utc>>,
    /// The accepted termination request, if terminated.
    pub termination_request_id: Option<Uuid>,
    /// The contract stream version this view reflects.
    pub version: i64,
}

impl ContractView {
    /// May `user` read this contract? Its client and its freelancer may (admins too: the caller
    /// checks the role).
    pub fn is_party(&self, user: Uuid) -> bool {
        user == self.client_id || user == self.freelancer_id
    }
}

/// A milestone of a contract as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MilestoneView {
    /// The milestone.
    pub milestone_id: Uuid,
    /// Its place in the contract, from 0.
    pub position: i32,
    /// What is delivered.
    pub title: String,
    /// What it costs.
    #[schema(value_type = crate::http::openapi::MoneySchema)]
    pub amount: Money,
    /// When it is due.
    pub due_on: NaiveDate,
    /// `open`, `in_progress`, `in_review`, `accepted` or `paid`.
    pub status: MilestoneStatusView,
    /// The payment request that paid it, once paid.
    pub payment_request_id: Option<Uuid>,
    /// When its status last changed (initiation for an open milestone).
    pub updated_at: DateTime<Utc>,
    /// The contract stream version of its last change.
    pub version: i64,
}

/// A termination request of a contract as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TerminationView {
    /// The request.
    pub termination_request_id: Uuid,
    /// The contract.
    pub contract_id: Uuid,
    /// The party asking.
    pub requested_by: Uuid,
    /// Why.
    pub reason: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: TerminationStatusView,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
    /// Who accepted or rejected it (the other party or an admin).
    pub answered_by: Option<Uuid>,
    /// When it was accepted or rejected.
    pub answered_at: Option<DateTime<Utc>>,
    /// The termination stream version this view reflects.
    pub version: i64,
}

/// A page of contracts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContractPage {
    /// The contracts of this page, oldest first.
    pub items: Vec<ContractView>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// The milestones of a contract (at most 20, DESIGN §2: always one page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MilestonePage {
    /// Every milestone, in the contract's order.
    pub items: Vec<MilestoneView>,
    /// Always `null`: a contract's milestones fit in one page.
    pub next_page_token: Option<String>,
}

/// A page of termination requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TerminationPage {
    /// The requests of this page, oldest first.
    pub items: Vec<TerminationView>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Whose contracts a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The contracts where this user is the client.
    Client(Uuid),
    /// The contracts where this user is the freelancer.
    Freelancer(Uuid),
}

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The page token was not one this list handed out.
    #[error("not a page token of this list")]
    BadPageToken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stream and version an event being applied comes from: the applied version recorded, and
/// the write timestamp of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applying {
    /// The stream.
    pub stream_id: Uuid,
    /// The event's version in it.
    pub version: i64,
}

/// A milestone of a contract being initiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMilestone {
    /// The milestone.
    pub milestone_id: Uuid,
    /// What is delivered.
    pub title: String,
    /// What it costs.
    pub amount: Money,
    /// When it is due.
    pub due_on: NaiveDate,
}

/// A contract being initiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContract {
    /// The contract.
    pub contract_id: Uuid,
    /// The accepted proposal.
    pub proposal_id: Uuid,
    /// The job.
    pub job_id: Uuid,
    /// The client.
    pub client_id: Uuid,
    /// The freelancer.
    pub freelancer_id: Uuid,
    /// When.
    pub initiated_at: DateTime<Utc>,
    /// The milestones, in order.
    pub milestones: Vec<NewMilestone>,
}

/// A termination request being made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTermination {
    /// The request.
    pub termination_request_id: Uuid,
    /// The contract.
    pub contract_id: Uuid,
    /// The party asking.
    pub requested_by: Uuid,
    /// Why.
    pub reason: String,
    /// When.
    pub requested_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_served_in_lower_snake_case() {
        assert_eq!(
            MilestoneStatusView::from(MilestoneStatus::InProgress).as_str(),
            "in_progress"
        );
        assert_eq!(
            serde_json::to_value(MilestoneStatusView::InReview).ok(),
            Some(serde_json::json!("in_review"))
        );
        for status in ["open", "in_progress", "in_review", "accepted", "paid"] {
            let parsed: MilestoneStatusView = status.parse().expect("status");
            assert_eq!(parsed.as_str(), status);
        }
        assert!("OPEN".parse::<MilestoneStatusView>().is_err());
        assert_eq!(
            ContractStatusView::from(ContractStatus::Terminated).as_str(),
            "terminated"
        );
        assert_eq!(
            TerminationStatusView::from(TerminationStatus::Pending).as_str(),
            "pending"
        );
    }
}
