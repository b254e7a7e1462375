//! `control admin create`: an administrator account, registered through the ledger's command
//! path as the system actor (no HTTP route can make one, and none is built in). The email is
//! reserved in the same transaction, as for every account.

use chrono::Utc;
use domain::{
    Actor, Context, EmailAddress, Timestamp, UserId,
    users::{PersonName, Registration, User, UserCommand, decide},
};
use infra::{
    http::auth::Passwords,
    ledger::{CommandError, EventMetadata, Ledger, LedgerError, Reservation},
};
use std::io::{BufRead, Write};
use uuid::Uuid;

use crate::{Cli, Outcome, output};

/// Accepted password lengths, in characters (as for every account).
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// Why an administrator was not created.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The email belongs to an account already.
    #[error("{0} is already an account's email")]
    EmailTaken(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] CommandError),
    /// Hashing failed.
    #[error("the password could not be hashed: {0}")]
    Hash(String),
}

/// Register the administrator `email` named `name` with `password` in `ledger`; its id.
pub async fn register(
    ledger: &Ledger,
    email: &str,
    name: &str,
    password: String,
) -> Result<UserId, AdminError> {
    let email =
        EmailAddress::parse(email).map_err(|e| AdminError::Invalid(format!("email: {}", e.message)))?;
    let name =
        PersonName::parse(name, "name").map_err(|e| AdminError::Invalid(format!("name: {}", e.message)))?;
    if !PASSWORD_CHARS.contains(&password.chars().count()) {
        return Err(AdminError::Invalid(
            "the password must have 8 to 128 characters".into(),
        ));
    }
    let user_id = UserId::from_uuid(Uuid::now_v7());
    let registration = Registration {
        user_id,
        email: email.clone(),
        password_hash: Passwords::new(1)
            .hash(password)
            .await
            .map_err(|e| AdminError::Hash(e.to_string()))?,
        name,
    };
    let reservation = Reservation {
        scope: "email",
        value: email.as_str().to_owned(),
        stream_id: user_id.as_uuid(),
    };
    let now = Utc::now();
    let ctx = Context {
        actor: Actor::system(),
        now: Timestamp::from_datetime(now),
    };
    let command = UserCommand::RegisterAdmin(registration);
    match ledger
        .execute_reserving::<User>(
            user_id.as_uuid(),
            EventMetadata::new(Uuid::now_v7(), None, now),
            vec![reservation],
            |state| decide(state, &command, &ctx),
        )
        .await
    {
        Ok(_) => Ok(user_id),
        Err(CommandError::Ledger(LedgerError::ReservationTaken { .. })) => {
            Err(AdminError::EmailTaken(email.as_str().to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `control admin create`: the password from WORKUP_ADMIN_PASSWORD or the first line of stdin.
pub async fn create(cli: &Cli, email: &str, name: &str, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let password = match std::env::var("WORKUP_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let ledger = Ledger::connect(&cli.postgres).await?;
    match register(&ledger, email, name, password).await {
        Ok(admin_id) => {
            if cli.json {
                output::json(out, &serde_json::json!({"admin_id": admin_id, "email": email}))?;
            } else {
                writeln!(out, "admin {email} created with id {admin_id}")?;
            }
            Ok(Outcome::Done)
        }
        Err(e @ (AdminError::Invalid(_) | AdminError::EmailTaken(_))) => Ok(Outcome::Failed(e.to_string())),
        Err(e) => Err(e.into()),
    }
}
