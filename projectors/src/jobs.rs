//! Jobs and proposals → the jobs read model ([`infra::read_models::jobs`]): jobs by id and by
//! client, the keyword index of open jobs, proposals by id, by job and by freelancer. Each event
//! is one idempotent, order-safe write (DESIGN §6): a redelivered or older event changes nothing.
//!
//! A proposal's pitch and attachments are its author's personal data: opened with their key
//! when projected, and redacted in every proposal of theirs when their account is deleted
//! (`UserDeleted`, from the users topic, which this projector also reads).
//!
//! The Redis cache of a job (read first by `GET /jobs/{id}`) never holds a version older than
//! what Cassandra holds: before a job event is written (and on every redelivery) the cached entry
//! is replaced by a tombstone at the event's version, unless it already holds that version or a
//! newer one (Lua, [`Cache::invalidate_versioned`]); readers fill it from Cassandra with a
//! version-guarded put ([`Cache::put_versioned`]), which the tombstone refuses when older. When
//! Redis cannot be reached the event is still applied (a cache outage must not stall or park
//! projections): the invalidation is retried in the background until Redis answers, entries
//! expire after the configured time to live, and a read with a consistency token never takes a
//! cached version older than its token.

use domain::{
    Aggregate,
    jobs::{Job, JobDraft, JobEvent, Proposal, ProposalEvent, ProposedMilestone},
    users::User,
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{Ledger, RecordedEvent, Upcasters},
    privacy::envelope,
    read_models::jobs::{
        self, JobChange, JobContent, JobStore, MilestoneView, ProposalChange, ProposalStatus, ProposalTerms,
    },
    redis::Cache,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};
use uuid::Uuid;

/// How often failed cache invalidations are retried.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Cache invalidations that failed: job id → the version to invalidate at.
type Pending = Mutex<HashMap<Uuid, i64>>;

/// Projects job and proposal streams into the jobs read model.
pub struct JobsProjector {
    store: JobStore,
    cache: Cache,
    upcasters: Upcasters,
    ledger: Ledger,
    pending: Arc<Pending>,
}

impl JobsProjector {
    /// Whether Cassandra (its tables too), the cache and the ledger (personal data keys)
    /// answer.
    pub async fn ping(&self) -> Result<(), HandlerError> {
        self.store.ping().await?;
        self.store.applied(Uuid::nil()).await?;
        self.cache.ping().await?;
        self.ledger.ping().await?;
        Ok(())
    }

    /// A projector writing `store` and invalidating `cache`; starts the task that retries failed
    /// invalidations (it ends with the projector).
    /// `ledger` opens the proposals' personal fields.
    pub fn new(store: JobStore, cache: Cache, upcasters: Upcasters, ledger: Ledger) -> Self {
        let pending = Arc::new(Pending::default());
        tokio::spawn(retry_invalidations(Arc::downgrade(&pending), cache.clone()));
        Self {
            store,
            cache,
            upcasters,
            ledger,
            pending,
        }
    }

    async fn job(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        let change = match event.decode::<JobEvent>(&self.upcasters)? {
            JobEvent::JobPosted {
                client_id,
                draft,
                posted_at,
                ..
            } => JobChange::Posted {
                client_id: client_id.as_uuid(),
                content: content(draft),
                posted_at: posted_at.as_datetime(),
            },
            JobEvent::JobUpdated {
                draft, updated_at, ..
            } => JobChange::Updated {
                content: content(draft),
                updated_at: updated_at.as_datetime(),
            },
            JobEvent::ProposalReceived { .. } => JobChange::ProposalReceived,
            JobEvent::JobClosed {
                accepted_proposal_id,
                closed_at,
                ..
            } => JobChange::Closed {
                accepted_proposal_id: accepted_proposal_id.map(|p| p.as_uuid()),
                closed_at: closed_at.as_datetime(),
            },
            JobEvent::JobReopened { .. } => JobChange::Reopened,
        };
        // Invalidate first, so that no reader gets a cached version older than what Cassandra
        // holds; also on a redelivery (an earlier attempt may not have reached Redis).
        self.invalidate(event.stream_id, event.version).await;
        let applied = self
            .store
            .apply_job(event.stream_id, event.version, change)
            .await?;
        tracing::debug!(?applied, "job event projected");
        Ok(())
    }

    async fn proposal(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        let mut opened = [event.clone()];
        let in_clear = self.ledger.open_personal_data(&mut opened).await? == 1;
        let change = match opened[0].decode::<ProposalEvent>(&self.upcasters)? {
            ProposalEvent::ProposalSubmitted {
                job_id,
                client_id,
                freelancer_id,
                cover_letter,
                milestones,
                attachments,
                submitted_at,
                ..
            } => ProposalChange::Submitted {
                job_id: job_id.as_uuid(),
                client_id: client_id.as_uuid(),
                freelancer_id: freelancer_id.as_uuid(),
                terms: ProposalTerms {
                    cover_letter,
                    milestones: milestone_views(milestones),
                    attachments: attachments.iter().map(|a| a.as_str().to_owned()).collect(),
                },
                submitted_at: submitted_at.as_datetime(),
            },
            ProposalEvent::ProposalUpdated {
                cover_letter,
                milestones,
                attachments,
                updated_at,
                ..
            } => ProposalChange::Updated {
                terms: ProposalTerms {
                    cover_letter,
                    milestones: milestone_views(milestones),
                    attachments: attachments.iter().map(|a| a.as_str().to_owned()).collect(),
                },
                updated_at: updated_at.as_datetime(),
            },
            ProposalEvent::ProposalWithdrawn { withdrawn_at, .. } => ProposalChange::Decided {
                status: ProposalStatus::Withdrawn,
                at: withdrawn_at.as_datetime(),
            },
            ProposalEvent::ProposalRejected { rejected_at, .. } => ProposalChange::Decided {
                status: ProposalStatus::Rejected,
                at: rejected_at.as_datetime(),
            },
            ProposalEvent::ProposalAccepted {
                contract_id,
                milestones,
                accepted_at,
                ..
            } => ProposalChange::Accepted {
                contract_id: contract_id.as_uuid(),
                milestones: milestone_views(milestones),
                at: accepted_at.as_datetime(),
            },
            ProposalEvent::ProposalAcceptanceReverted { .. } => ProposalChange::AcceptanceReverted,
        };
        let applied = self
            .store
            .apply_proposal(event.stream_id, event.version, change)
            .await?;
        tracing::debug!(?applied, "proposal event projected");
        // The author erased while this event was applied: the erasure's redaction may have
        // listed their proposals before this write, so redact again (idempotent). Either that
        // listing saw this row, or this check sees the erasure.
        if in_clear
            && let Some(author) = envelope::subject(&event.payload)
            && self.ledger.is_erased(author).await?
        {
            self.store.redact_freelancer(author).await?;
        }
        Ok(())
    }

    /// Invalidate the cached job at `version`; remember it for a retry when Redis fails.
    async fn invalidate(&self, job_id: Uuid, version: i64) {
        if let Err(error) = self
            .cache
            .invalidate_versioned(&jobs::cache_key(job_id), version)
            .await
        {
            tracing::warn!(%job_id, version, %error, "cache invalidation failed; retrying in the background");
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let at = pending.entry(job_id).or_insert(version);
            *at = (*at).max(version);
        }
    }
}

impl EventHandler for JobsProjector {
    #[tracing::instrument(skip_all, fields(stream_id = %event.stream_id, version = event.version, event_type = %event.event_type))]
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        match event.stream_type.as_str() {
            Job::STREAM_TYPE => self.job(event).await,
            Proposal::STREAM_TYPE => self.proposal(event).await,
            User::STREAM_TYPE if event.event_type == "UserDeleted" => {
                let redacted = self.store.redact_freelancer(event.stream_id).await?;
                tracing::info!(user_id = %event.stream_id, redacted, "an erased person's proposals redacted");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Retry the failed invalidations every [`RETRY_EVERY`] until the projector is dropped.
async fn retry_invalidations(pending: Weak<Pending>, cache: Cache) {
    let mut ticks = tokio::time::interval(RETRY_EVERY);
    loop {
        ticks.tick().await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let due: Vec<(Uuid, i64)> = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, v)| (*id, *v))
            .collect();
        for (job_id, version) in due {
            match cache
                .invalidate_versioned(&jobs::cache_key(job_id), version)
                .await
            {
                Ok(_) => {
                    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                    if pending.get(&job_id) == Some(&version) {
                        pending.remove(&job_id);
                    }
                    tracing::info!(%job_id, version, "delayed cache invalidation done");
                }
                // Redis is still away: try again at the next tick.
                Err(_) => break,
            }
        }
    }
}

fn content(draft: JobDraft) -> JobContent {
    JobContent {
        title: draft.title,
        description: draft.description,
        budget: draft.budget,
        skills: draft.skills,
    }
}

fn milestone_views(milestones: Vec<ProposedMilestone>) -> Vec<MilestoneView> {
    milestones
        .into_iter()
        .map(|m| MilestoneView {
            milestone_id: m.milestone_id.as_uuid(),
            title: m.title,
            amount: m.amount,
            due_on: m.due_on,
        })
        .collect()
}
