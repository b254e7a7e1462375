//! The stored rows of the contracts read model and their views. A row can be partial on
//! ScyllaDB (a later event's columns written before the creating event's, after a rebalance):
//! it is then not served.

use chrono::{DateTime, NaiveDate, Utc};
use domain::{Currency, Money};
use scylla::DeserializeRow;
use uuid::Uuid;

use super::views::{ContractView, MilestoneView, TerminationView};
use crate::store::StoreError;

#[derive(DeserializeRow)]
pub(super) struct ContractRow {
    contract_id: Uuid,
    proposal_id: Option<Uuid>,
    job_id: Option<Uuid>,
    client_id: Option<Uuid>,
    freelancer_id: Option<Uuid>,
    status: Option<String>,
    initiated_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    terminated_at: Option<DateTime<Utc>>,
    termination_request_id: Option<Uuid>,
    version: Option<i64>,
}

impl ContractRow {
    /// The view, or `None` while the row is partial (a later event's columns written before the
    /// initiation's, which only a rebalance can cause on ScyllaDB).
    pub(super) fn into_view(self) -> Result<Option<ContractView>, StoreError> {
        let (
            Some(proposal_id),
            Some(job_id),
            Some(client_id),
            Some(freelancer_id),
            Some(status),
            Some(initiated_at),
            Some(version),
        ) = (
            self.proposal_id,
            self.job_id,
            self.client_id,
            self.freelancer_id,
            self.status,
            self.initiated_at,
            self.version,
        )
        else {
            return Ok(None);
        };
        Ok(Some(ContractView {
            contract_id: self.contract_id,
            proposal_id,
            job_id,
            client_id,
            freelancer_id,
            status: status.parse()?,
            initiated_at,
            completed_at: self.completed_at,
            terminated_at: self.terminated_at,
            termination_request_id: self.termination_request_id,
            version,
        }))
    }
}

#[derive(DeserializeRow)]
pub(super) struct MilestoneRow {
    milestone_id: Uuid,
    position: Option<i32>,
    title: Option<String>,
    amount_minor: Option<i64>,
    currency: Option<String>,
    due_on: Option<NaiveDate>,
    status: Option<String>,
    payment_request_id: Option<Uuid>,
    updated_at: Option<DateTime<Utc>>,
    version: Option<i64>,
}

impl MilestoneRow {
    /// The view, or `None` while the row is partial (see [`ContractRow::into_view`]).
    pub(super) fn into_view(self) -> Result<Option<MilestoneView>, StoreError> {
        let (
            Some(position),
            Some(title),
            Some(amount_minor),
            Some(currency),
            Some(due_on),
            Some(status),
            Some(updated_at),
            Some(version),
        ) = (
            self.position,
            self.title,
            self.amount_minor,
            self.currency,
            self.due_on,
            self.status,
            self.updated_at,
            self.version,
        )
        else {
            return Ok(None);
        };
        let currency: Currency = currency
            .parse()
            .map_err(|_| StoreError::Codec(format!("currency `{currency}`")))?;
        Ok(Some(MilestoneView {
            milestone_id: self.milestone_id,
            position,
            title,
            amount: Money::new(amount_minor, currency),
            due_on,
            status: status.parse()?,
            payment_request_id: self.payment_request_id,
            updated_at,
            version,
        }))
    }
}

#[derive(DeserializeRow)]
pub(super) struct TerminationRow {
    contract_id: Uuid,
    termination_request_id: Uuid,
    requested_by: Option<Uuid>,
    reason: Option<String>,
    status: Option<String>,
    requested_at: Option<DateTime<Utc>>,
    answered_by: Option<Uuid>,
    answered_at: Option<DateTime<Utc>>,
    version: Option<i64>,
}

impl TerminationRow {
    /// The view, or `None` while the row is partial (see [`ContractRow::into_view`]).
    pub(super) fn into_view(self) -> Result<Option<TerminationView>, StoreError> {
        let (Some(requested_by), Some(reason), Some(status), Some(requested_at), Some(version)) = (
            self.requested_by,
            self.reason,
            self.status,
            self.requested_at,
            self.version,
        ) else {
            return Ok(None);
        };
        Ok(Some(TerminationView {
            termination_request_id: self.termination_request_id,
            contract_id: self.contract_id,
            requested_by,
            reason,
            status: status.parse()?,
            requested_at,
            answered_by: self.answered_by,
            answered_at: self.answered_at,
            version,
        }))
    }
}
