//! The handles every handler shares, and [`Command`]: who acts, when, and under which command id.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::request::Parts,
};
use chrono::Utc;
use domain::{Actor, Context, Role, Timestamp, UserId, payments::withdrawal::Cooldown};
use infra::{
    http::{
        ApiError,
        auth::{Authenticated, Passwords, TokenKeys},
        correlation::CorrelationId,
        idempotency::IdempotentCommand,
        limits::SignInLimits,
    },
    ledger::{EventMetadata, Ledger},
    media::MediaStore,
};
use uuid::Uuid;

/// Shared state of command-api.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The ledger (command path).
    pub ledger: Ledger,
    /// Token signing and checking.
    pub keys: TokenKeys,
    /// Password hashing, bounded.
    pub passwords: Passwords,
    /// Rate limits of registration and login.
    pub limits: SignInLimits,
    /// Uploaded photos and resumes (DESIGN §3).
    pub media: MediaStore,
    /// Largest accepted photo, in bytes.
    pub max_photo_bytes: usize,
    /// Largest accepted resume, in bytes.
    pub max_resume_bytes: usize,
    /// One withdrawal per wallet per window, and what a request inside it gets (DESIGN §9).
    pub cooldown: Cooldown,
}

impl FromRef<AppState> for TokenKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}

/// One command of an authenticated caller: the decision context (actor, clock) and the event
/// metadata (command id, correlation). With an `Idempotency-Key` the command id, and every new id
/// from [`Command::new_id`], is derived from the caller and the key, so a retry is the same
/// command naming the same new resources.
#[derive(Debug, Clone)]
pub struct Command {
    /// Who acts, and when.
    pub ctx: Context,
    /// Stored with the events.
    pub metadata: EventMetadata,
    keyed: bool,
}

impl Command {
    /// The command of `actor` in `correlation`, keyed when the request carried an idempotency key.
    pub fn new(actor: Actor, correlation: CorrelationId, idempotent: Option<IdempotentCommand>) -> Self {
        let now = Utc::now();
        let mut metadata = EventMetadata::new(correlation.0, Some(actor.id.as_uuid()), now);
        if let Some(IdempotentCommand(command_id)) = idempotent {
            metadata.command_id = command_id;
        }
        Self {
            ctx: Context {
                actor,
                now: Timestamp::from_datetime(now),
            },
            metadata,
            keyed: idempotent.is_some(),
        }
    }

    /// The command of a new user registering in `role`: it acts as itself, under an id from
    /// [`Command::new_id`].
    pub fn registration(
        role: Role,
        correlation: CorrelationId,
        idempotent: Option<IdempotentCommand>,
    ) -> Self {
        let mut command = Self::new(
            Actor::new(UserId::from_uuid(Uuid::nil()), role),
            correlation,
            idempotent,
        );
        let user_id = UserId::from_uuid(command.new_id("user"));
        command.ctx.actor = Actor::new(user_id, role);
        command.metadata.actor_id = Some(user_id.as_uuid());
        command
    }

    /// The acting user.
    pub fn actor(&self) -> Actor {
        self.ctx.actor
    }

    /// An id for a new entity (`purpose` tells apart several made by one command): a v7, or
    /// derived from the command id when the request is idempotent.
    pub fn new_id(&self, purpose: &str) -> Uuid {
        if self.keyed {
            Uuid::new_v5(&self.metadata.command_id, purpose.as_bytes())
        } else {
            Uuid::now_v7()
        }
    }
}

impl<S> FromRequestParts<S> for Command
where
    TokenKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(actor) = Authenticated::from_request_parts(parts, state).await?;
        let Ok(correlation) = CorrelationId::from_request_parts(parts, state).await;
        let idempotent = parts.extensions.get::<IdempotentCommand>().copied();
        Ok(Self::new(actor, correlation, idempotent))
    }
}
