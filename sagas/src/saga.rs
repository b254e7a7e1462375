//! One saga step: the command id derived from the cause, the command sent through the command
//! path as the system actor, and the outcome recorded in the saga's history.

use chrono::Utc;
use domain::{Actor, Context, DomainError, Timestamp};
use infra::{
    kafka::consumer::HandlerError,
    ledger::{CommandError, EventMetadata, Ledger, RecordedEvent, UnitOfWork},
    sagas::{Json, SagaStep, SagaStore},
};
use uuid::Uuid;

/// Namespace of the command ids sagas derive.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x5a6a_0c0d_e1d5_4f7e_8a2b_3c4d_5e6f_7a8b);

/// What caused a step: an event, or a deadline.
#[derive(Debug, Clone)]
pub struct Cause {
    /// Event type, or `Deadline`.
    pub kind: String,
    /// Its stream (or the deadline's id).
    pub stream_id: Uuid,
    /// Its version (0 for a deadline).
    pub version: i64,
    /// The correlation id to carry on.
    pub correlation_id: Uuid,
}

impl From<&RecordedEvent> for Cause {
    fn from(event: &RecordedEvent) -> Self {
        Self {
            kind: event.event_type.clone(),
            stream_id: event.stream_id,
            version: event.version,
            correlation_id: event.metadata.correlation_id,
        }
    }
}

/// How a step ended.
#[derive(Debug)]
pub enum Outcome {
    /// The command was appended now, or had been before (a redelivery).
    Done,
    /// A rule refused it; nothing was appended.
    Refused(DomainError),
}

/// A process manager: its name and the handles its steps use.
#[derive(Debug, Clone)]
pub struct Saga {
    /// Its name, e.g. `contract-initiation` (part of every command id it derives).
    pub name: &'static str,
    /// The command path.
    pub ledger: Ledger,
    /// Its history.
    pub store: SagaStore,
}

/// The decision context of the system actor, now.
pub fn system() -> Context {
    Context {
        actor: Actor::system(),
        now: Timestamp::from_datetime(Utc::now()),
    }
}

impl Saga {
    /// The id of the command `label` that this saga sends for `cause`: the same on every
    /// delivery of the same event.
    pub fn command_id(&self, cause: &Cause, label: &str) -> Uuid {
        let name = format!("{}/{}/{}/{}", self.name, cause.stream_id, cause.version, label);
        Uuid::new_v5(&COMMAND_NAMESPACE, name.as_bytes())
    }

    /// Send command `command` (named `label` among those `cause` leads to) for saga `saga_id`
    /// through the command path, and record the step. A rule's refusal is an outcome; a ledger
    /// failure is an error (the event is retried).
    pub async fn send(
        &self,
        saga_id: Uuid,
        cause: &Cause,
        label: &str,
        command: &str,
        work: impl AsyncFnOnce(&mut UnitOfWork<'_>) -> Result<(), CommandError>,
    ) -> Result<Outcome, HandlerError> {
        let command_id = self.command_id(cause, label);
        let metadata = EventMetadata {
            command_id,
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.stream_id),
            actor_id: None,
            occurred_at: Utc::now(),
        };
        let (outcome, detail, streams, result) = match self.ledger.execute_with(metadata, work).await {
            Ok(appended) => {
                let outcome = if appended.replayed { "replayed" } else { "appended" };
                (outcome, None, appended.streams, Outcome::Done)
            }
            Err(CommandError::Domain(refusal)) => (
                "refused",
                Some(refusal.to_string()),
                Vec::new(),
                Outcome::Refused(refusal),
            ),
            Err(CommandError::Ledger(error)) => return Err(error.into()),
        };
        metrics::counter!("workup_saga_commands_total", "saga" => self.name, "command" => command.to_owned(), "outcome" => outcome)
            .increment(1);
        tracing::info!(saga = self.name, %saga_id, command, outcome, ?detail, "saga step");
        self.store
            .record(&SagaStep {
                saga_id,
                saga: self.name.to_owned(),
                command_id,
                command: command.to_owned(),
                trigger_type: cause.kind.clone(),
                trigger_stream: cause.stream_id,
                trigger_version: cause.version,
                outcome: outcome.to_owned(),
                detail,
                streams: Json(streams),
                recorded_at: Utc::now(),
            })
            .await?;
        Ok(result)
    }
}
