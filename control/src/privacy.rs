//! `control users erase` and `control privacy keys|rotate|new-key`: erasing a person and keeping
//! the master keys of the personal data keys ([`infra::privacy`]).

use chrono::Utc;
use domain::{Actor, Context, DomainError, Timestamp, UserId};
use infra::{
    ledger::{CommandError, EventMetadata, Ledger},
    privacy::{self, Keyring, keys},
};
use std::io::Write;
use uuid::Uuid;

use crate::{Cli, Outcome, cli::PrivacyCommand, output};

/// Keys rewrapped per round of `rotate`.
const ROTATE_BATCH: i64 = 500;

/// `control users erase <id>`: as the system actor (an operator is not a user).
pub async fn erase(cli: &Cli, user_id: Uuid, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let ledger = Ledger::connect(&cli.postgres).await?;
    let now = Utc::now();
    let ctx = Context {
        actor: Actor::system(),
        now: Timestamp::from_datetime(now),
    };
    let metadata = EventMetadata::new(Uuid::now_v7(), None, now);
    match privacy::erase_account(&ledger, UserId::from_uuid(user_id), metadata, &ctx).await {
        Ok(appended) => {
            if cli.json {
                output::json(
                    out,
                    &serde_json::json!({"user_id": user_id, "erased": true, "position": appended.token()}),
                )?;
            } else {
                writeln!(out, "user {user_id} deleted; personal data key destroyed")?;
            }
            Ok(Outcome::Done)
        }
        Err(CommandError::Domain(DomainError::NotFound(_))) => Ok(Outcome::Failed(format!(
            "no account {user_id} (unknown, or already erased)"
        ))),
        Err(error) => Err(error.into()),
    }
}

/// `control privacy ...`.
pub async fn command(cli: &Cli, command: &PrivacyCommand, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match command {
        PrivacyCommand::NewKey => writeln!(out, "{}", Keyring::generate_key())?,
        PrivacyCommand::Keys => {
            let ledger = Ledger::connect(&cli.postgres).await?;
            let census = keys::census(&ledger.pool()).await?;
            let current = ledger.keyring().current_id().to_owned();
            if cli.json {
                let rows: Vec<_> = census
                    .iter()
                    .map(|(id, n)| serde_json::json!({"master_key_id": id, "keys": n}))
                    .collect();
                output::json(out, &serde_json::json!({"current": current, "keys": rows}))?;
            } else {
                let mut table = output::Table::new(&["MASTER KEY", "PERSONAL DATA KEYS"]);
                for (id, n) in census {
                    let name = match id {
                        Some(id) if id == current => format!("{id} (current)"),
                        Some(id) => id,
                        None => "- (erased people)".into(),
                    };
                    table.row(vec![name, n.to_string()]);
                }
                table.print(out)?;
            }
        }
        PrivacyCommand::Rotate => {
            let ledger = Ledger::connect(&cli.postgres).await?;
            let mut total = 0;
            loop {
                let rewrapped = keys::rotate(&ledger.pool(), ledger.keyring(), ROTATE_BATCH).await?;
                if rewrapped == 0 {
                    break;
                }
                total += rewrapped;
                eprintln!("rotate: {total} keys rewrapped so far");
            }
            writeln!(
                out,
                "{total} personal data keys rewrapped with master key {}",
                ledger.keyring().current_id()
            )?;
        }
    }
    Ok(Outcome::Done)
}
