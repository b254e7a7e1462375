//! The one command path (DESIGN §1): check the command id, load what the decision reads, decide,
//! append what it emits, every stream read at the version it was loaded at. HTTP handlers and
//! sagas both come through here, for one stream ([`Ledger::execute`]) or several
//! ([`Ledger::execute_with`] and its [`UnitOfWork`]).

use domain::{Aggregate, DomainError};
use std::{any::Any, collections::BTreeMap};
use uuid::Uuid;

use super::{
    AppendRequest, Appended, EventMetadata, ExpectedVersion, Ledger, LedgerError, Loaded, Reservation,
    StreamWrite, cache::AggregateCache,
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
pub struct UnitOfWork<'a> {
    ledger: &'a Ledger,
    /// Whether loads may come from the ledger's [`AggregateCache`] (only where the command is
    /// decided again if a cached state turns out stale: [`Ledger::execute`]).
    cached_loads: bool,
    /// Whether one did.
    from_cache: bool,
    /// Stream id → the stream as loaded, and the events to add to it.
    streams: BTreeMap<Uuid, StreamWrite>,
    /// Stream id → its state with the events added so far, cached once they are appended.
    states: BTreeMap<Uuid, Box<dyn Pending + 'a>>,
    reserve: Vec<Reservation>,
    release: Vec<(&'static str, String)>,
    erase: Vec<Uuid>,
}

impl UnitOfWork<'_> {
    /// Fold stream `stream_id` into aggregate `A` and remember the version it was read at.
    pub async fn load<A: Aggregate>(&mut self, stream_id: Uuid) -> Result<A, LedgerError> {
        let cached = self
            .cached_loads
            .then(|| self.ledger.cache.get::<A>(stream_id))
            .flatten();
        self.from_cache |= cached.is_some();
        let loaded = match cached {
            Some(loaded) => loaded,
            None => self.ledger.load::<A>(stream_id).await?,
        };
        Ok(self.track(stream_id, loaded))
    }

    /// Start stream `stream_id` of aggregate `A`, a new id: its state is the empty aggregate,
    /// without a read, and the append expects no stream there (one that exists after all, e.g.
    /// an id made again from a reused idempotency key, refuses it with a version conflict).
    pub fn create<A: Aggregate>(&mut self, stream_id: Uuid) -> A {
        self.track(
            stream_id,
            Loaded {
                state: A::default(),
                version: 0,
            },
        )
    }

    /// Remember the stream as read at `loaded.version`; its state.
    fn track<A: Aggregate>(&mut self, stream_id: Uuid, loaded: Loaded<A>) -> A {
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
        let state = loaded.state.clone();
        self.states.insert(stream_id, Box::new(loaded));
        state
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
        if let Some(loaded) = self
            .states
            .get_mut(&stream_id)
            .and_then(|s| s.as_any().downcast_mut::<Loaded<A>>())
        {
            for event in events {
                loaded.state.evolve(event);
            }
        }
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
        self.run_unit(metadata, false, work).await.0
    }

    /// [`Ledger::execute_with`], its loads from the cache if `cached_loads`; also whether any was.
    async fn run_unit(
        &self,
        metadata: EventMetadata,
        cached_loads: bool,
        work: impl AsyncFnOnce(&mut UnitOfWork<'_>) -> Result<(), CommandError>,
    ) -> (Result<Appended, CommandError>, bool) {
        let command_id = metadata.command_id;
        let mut unit = UnitOfWork {
            ledger: self,
            cached_loads,
            from_cache: false,
            streams: BTreeMap::new(),
            states: BTreeMap::new(),
            reserve: Vec::new(),
            release: Vec::new(),
            erase: Vec::new(),
        };
        let decided = work(&mut unit).await;
        let from_cache = unit.from_cache;
        if let Err(error) = decided {
            if matches!(error, CommandError::Domain(_)) {
                match self.command_result(command_id).await {
                    Ok(Some(first)) => return (Ok(first), from_cache),
                    Ok(None) => {}
                    Err(error) => return (Err(error.into()), from_cache),
                }
            }
            return (Err(error), from_cache);
        }
        let states = std::mem::take(&mut unit.states);
        let mut request = AppendRequest::new(metadata, unit.streams.into_values().collect());
        request.reserve = unit.reserve;
        request.release = unit.release;
        request.erase = unit.erase;
        let appended = self.append(request).await;
        match &appended {
            Ok(appended) if !appended.replayed => {
                let mut states = states;
                for version in &appended.streams {
                    if let Some(state) = states.remove(&version.stream_id) {
                        state.remember(&self.cache, version.stream_id, version.version);
                    }
                }
            }
            _ => {
                for stream_id in states.keys() {
                    self.cache.forget(*stream_id);
                }
            }
        }
        (appended.map_err(CommandError::from), from_cache)
    }

    /// [`Ledger::execute_with`] over one stream: load aggregate `A` from `stream_id`, run
    /// `decide` on it and append what it emits, expecting the version it was loaded at.
    pub async fn execute<A: Aggregate>(
        &self,
        stream_id: Uuid,
        metadata: EventMetadata,
        decide: impl Fn(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Appended, CommandError> {
        self.execute_reserving::<A>(stream_id, metadata, Vec::new(), decide)
            .await
    }

    /// Run a command that starts stream `stream_id` of aggregate `A` (a new id): `decide` on the
    /// empty aggregate, append expecting no stream ([`UnitOfWork::create`]: no read).
    pub async fn create<A: Aggregate>(
        &self,
        stream_id: Uuid,
        metadata: EventMetadata,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Appended, CommandError> {
        self.execute_with(metadata, async |unit| {
            let events = decide(&unit.create::<A>(stream_id))?;
            unit.write::<A>(stream_id, &events)?;
            Ok(())
        })
        .await
    }

    /// [`Ledger::execute`], also reserving unique values in the same transaction.
    ///
    /// The aggregate may come from the [`AggregateCache`]; if the decision on a cached state is
    /// refused (by a rule, or by the append's version check because another process appended
    /// meanwhile), it is made again once on the state loaded from the ledger.
    pub async fn execute_reserving<A: Aggregate>(
        &self,
        stream_id: Uuid,
        metadata: EventMetadata,
        reserve: Vec<Reservation>,
        decide: impl Fn(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Appended, CommandError> {
        let attempt = async |cached_loads| {
            self.run_unit(metadata.clone(), cached_loads, async |unit| {
                let state = unit.load::<A>(stream_id).await?;
                let events = decide(&state)?;
                unit.write::<A>(stream_id, &events)?;
                for reservation in &reserve {
                    unit.reserve(reservation.clone());
                }
                Ok(())
            })
            .await
        };
        match attempt(true).await {
            (
                Err(CommandError::Domain(_) | CommandError::Ledger(LedgerError::VersionConflict { .. })),
                true,
            ) => attempt(false).await.0,
            (outcome, _) => outcome,
        }
    }
}

/// A loaded stream's state in a unit of work, with its type known only to itself.
trait Pending: Send + Sync {
    fn as_any(&mut self) -> &mut dyn Any;
    /// Cache the state as the stream's at `version` (its append succeeded).
    fn remember(self: Box<Self>, cache: &AggregateCache, stream_id: Uuid, version: i64);
}

impl<A: Aggregate> Pending for Loaded<A> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn remember(self: Box<Self>, cache: &AggregateCache, stream_id: Uuid, version: i64) {
        cache.put(stream_id, Loaded { version, ..*self });
    }
}
