//! The one command path (DESIGN §1): check the command id, load what the decision reads, decide,
//! append what it emits, every stream read at the version it was loaded at. HTTP handlers and
//! sagas both come through here, for one stream ([`Ledger::execute`]) or several
//! ([`Ledger::execute_with`] and its [`UnitOfWork`]).

use domain::{Aggregate, DomainError};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{
    AppendRequest, Appended, EventMetadata, ExpectedVersion, Ledger, LedgerError, Reservation, StreamWrite,
};

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A rule refused it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The ledger refused it (version conflict, reservation taken) or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// One command's work over one or more streams. Every stream it loads is appended to (or, if the
/// decision emits nothing for it, only checked) at the version it was loaded at, all in one
/// transaction: a decision over a job and its proposals, or a request and two wallets, is written
/// whole or not at all, and loses with a version conflict if any stream it read has moved on.
#[derive(Debug)]
pub struct UnitOfWork<'a> {
    ledger: &'a Ledger,
    /// Stream id → the stream as loaded, and the events to add to it.
    streams: BTreeMap<Uuid, StreamWrite>,
    reserve: Vec<Reservation>,
    release: Vec<(&'static str, String)>,
    erase: Vec<Uuid>,
}

impl UnitOfWork<'_> {
    /// Fold stream `stream_id` into aggregate `A` and remember the version it was read at.
    pub async fn load<A: Aggregate>(&mut self, stream_id: Uuid) -> Result<A, LedgerError> {
        let loaded = self.ledger.load::<A>(stream_id).await?;
        self.streams.insert(
            stream_id,
            StreamWrite {
                stream_id,
                stream_type: A::STREAM_TYPE,
                context: A::CONTEXT,
                expected: ExpectedVersion::from_loaded(loaded.version),
                events: Vec::new(),
            },
        );
        Ok(loaded.state)
    }

    /// Add `events` to stream `stream_id` of aggregate `A`, which must have been loaded first:
    /// an append is only ever decided on what was read.
    pub fn write<A: Aggregate>(&mut self, stream_id: Uuid, events: &[A::Event]) -> Result<(), LedgerError> {
        let stream = self
            .streams
            .get_mut(&stream_id)
            .filter(|s| s.stream_type == A::STREAM_TYPE)
            .ok_or(LedgerError::NotLoaded { stream_id })?;
        let encoded = StreamWrite::of::<A>(stream_id, stream.expected, events)?;
        stream.events.extend(encoded.events);
        Ok(())
    }

    /// Reserve a unique value (e.g. an email) in the same transaction.
    pub fn reserve(&mut self, reservation: Reservation) {
        self.reserve.push(reservation);
    }

    /// Release a reserved value (e.g. on account deletion) in the same transaction.
    pub fn release(&mut self, scope: &'static str, value: String) {
        self.release.push((scope, value));
    }

    /// Destroy a person's personal data key in the same transaction, after this command's own
    /// events are sealed with it (account erasure: [`crate::privacy`]).
    pub fn erase(&mut self, subject: Uuid) {
        self.erase.push(subject);
    }
}

impl Ledger {
    /// Run one command: let `work` load streams, decide and write through the [`UnitOfWork`], and
    /// append it all atomically. If its id was already executed, the first result is the answer
    /// and nothing is appended (a retried request or a redelivered saga event), even if the state
    /// changed since: the append answers it when the decision holds, and a refused decision is
    /// checked against the recorded commands before it is reported. The id is not looked up
    /// first: that would be a round trip on every command for the rare retry.
    #[tracing::instrument(skip_all, fields(command_id = %metadata.command_id))]
    pub async fn execute_with(
        &self,
        metadata: EventMetadata,
        work: impl AsyncFnOnce(&mut UnitOfWork<'_>) -> Result<(), CommandError>,
    ) -> Result<Appended, CommandError> {
        let mut unit = UnitOfWork {
            ledger: self,
            streams: BTreeMap::new(),
            reserve: Vec::new(),
            release: Vec::new(),
            erase: Vec::new(),
        };
        if let Err(error) = work(&mut unit).await {
            if matches!(error, CommandError::Domain(_))
                && let Some(first) = self.command_result(metadata.command_id).await?
            {
                return Ok(first);
            }
            return Err(error);
        }
        let mut request = AppendRequest::new(metadata, unit.streams.into_values().collect());
        request.reserve = unit.reserve;
        request.release = unit.release;
        request.erase = unit.erase;
        Ok(self.append(request).await?)
    }

    /// [`Ledger::execute_with`] over one stream: load aggregate `A` from `stream_id`, run
    /// `decide` on it and append what it emits, expecting the version it was loaded at.
    pub async fn execute<A: Aggregate>(
        &self,
        stream_id: Uuid,
        metadata: EventMetadata,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Appended, CommandError> {
        self.execute_reserving::<A>(stream_id, metadata, Vec::new(), decide)
            .await
    }

    /// [`Ledger::execute`], also reserving unique values in the same transaction.
    pub async fn execute_reserving<A: Aggregate>(
        &self,
        stream_id: Uuid,
        metadata: EventMetadata,
        reserve: Vec<Reservation>,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Appended, CommandError> {
        self.execute_with(metadata, async |unit| {
            let state = unit.load::<A>(stream_id).await?;
            let events = decide(&state)?;
            unit.write::<A>(stream_id, &events)?;
            for reservation in reserve {
                unit.reserve(reservation);
            }
            Ok(())
        })
        .await
    }
}
