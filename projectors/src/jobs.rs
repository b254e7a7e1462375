//! Jobs → the Cassandra `jobs_by_id` table, written through to the Redis cache.

use chrono::SubsecRound;
use domain::{
    Aggregate,
    jobs::{Job, JobDraft, JobEvent},
};
use infra::{
    cassandra::{JobStore, JobView},
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    redis::Cache,
};

/// Projects job streams into `jobs_by_id`.
pub struct JobsProjector {
    /// The table written.
    pub store: JobStore,
    /// The cache written through (so readers never see an older version after a newer one).
    pub cache: Cache,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for JobsProjector {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        if event.stream_type != Job::STREAM_TYPE {
            return Ok(());
        }
        let view = match event.decode::<JobEvent>(&self.upcasters)? {
            JobEvent::JobPosted {
                job_id,
                client_id,
                draft,
                posted_at,
            } => {
                let mut view = JobView {
                    job_id: job_id.as_uuid(),
                    client_id: client_id.as_uuid(),
                    title: String::new(),
                    description: String::new(),
                    budget: draft.budget,
                    skills: Vec::new(),
                    status: "open".into(),
                    // CQL timestamps hold milliseconds: cache exactly what the table holds.
                    posted_at: posted_at.as_datetime().trunc_subsecs(3),
                    version: event.version,
                };
                apply_draft(&mut view, draft);
                view
            }
            JobEvent::JobUpdated { draft, .. } => {
                let mut view = self.current(event).await?;
                apply_draft(&mut view, draft);
                view
            }
            JobEvent::JobClosed { .. } => {
                let mut view = self.current(event).await?;
                view.status = "closed".into();
                view
            }
            JobEvent::ProposalReceived { .. } => return Ok(()),
        };
        let view = JobView {
            version: event.version,
            ..view
        };
        if self.store.upsert(&view).await? {
            self.cache.put(&format!("job:{}", view.job_id), &view).await?;
        }
        Ok(())
    }
}

impl JobsProjector {
    /// The stored view an update applies to (its creation was projected before: same
    /// stream, same partition, in order).
    async fn current(&self, event: &RecordedEvent) -> Result<JobView, HandlerError> {
        self.store.get(event.stream_id).await?.ok_or_else(|| {
            format!(
                "job {} not projected before version {}",
                event.stream_id, event.version
            )
            .into()
        })
    }
}

fn apply_draft(view: &mut JobView, draft: JobDraft) {
    view.title = draft.title;
    view.description = draft.description;
    view.budget = draft.budget;
    view.skills = draft.skills;
}
