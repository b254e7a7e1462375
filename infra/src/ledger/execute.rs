//! The one command path: load the stream, decide, append with the loaded version as the
//! expected one (DESIGN §1). HTTP handlers and sagas both come through here.

use domain::{Aggregate, DomainError};
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

impl Ledger {
    /// Load aggregate `A` from `stream_id`, run `decide` on it and append what it emits,
    /// expecting the version it was loaded at. A lost race is [`LedgerError::VersionConflict`].
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
    #[tracing::instrument(skip_all, fields(%stream_id, stream_type = A::STREAM_TYPE))]
    pub async fn execute_reserving<A: Aggregate>(
        &self,
        stream_id: Uuid,
        metadata: EventMetadata,
        reserve: Vec<Reservation>,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<Appended, CommandError> {
        let loaded = self.load::<A>(stream_id).await?;
        let events = decide(&loaded.state)?;
        let expected = ExpectedVersion::from_loaded(loaded.version);
        let write = StreamWrite::of::<A>(stream_id, expected, &events)?;
        let mut request = AppendRequest::new(metadata, vec![write]);
        request.reserve = reserve;
        Ok(self.append(request).await?)
    }
}
