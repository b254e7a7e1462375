//! `control settings`: the messages in force on the control topic, the latest per key, opened
//! with the signing key (a record that does not open is listed with the reason).

use infra::control::{ControlMessage, operator};
use serde::Serialize;
use std::io::Write;

use crate::{
    Outcome, bounded,
    cli::Cli,
    output::{self, Table},
};

/// One key of the control topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InForce {
    /// The record key: `<service>/<setting key>`.
    pub key: String,
    /// The message, when it opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<ControlMessage>,
    /// Why it does not open (unsigned, bad signature, malformed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// Run `control settings`.
pub async fn command(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let key = cli.control.signing_key(cli.environment)?;
    let in_force: Vec<InForce> = bounded(&cli.kafka, operator::messages(&cli.kafka, &key))
        .await?
        .into_iter()
        .map(|(key, opened)| match opened {
            Ok(message) => InForce {
                key,
                message: Some(message),
                rejected: None,
            },
            Err(reason) => InForce {
                key,
                message: None,
                rejected: Some(reason),
            },
        })
        .collect();
    if cli.json {
        output::json(out, &in_force)?;
        return Ok(Outcome::Done);
    }
    if in_force.is_empty() {
        writeln!(out, "no control message: every service runs with its defaults")?;
        return Ok(Outcome::Done);
    }
    let mut table = Table::new(&["KEY", "VALUE", "VERSION", "ISSUED AT", "ISSUED BY"]);
    for entry in &in_force {
        let row = match (&entry.message, &entry.rejected) {
            (Some(message), _) => {
                let (_, value) = output::describe(&message.setting);
                vec![
                    entry.key.clone(),
                    value,
                    message.version.to_string(),
                    output::time(message.issued_at),
                    message.issued_by.clone(),
                ]
            }
            (None, reason) => vec![
                entry.key.clone(),
                format!("rejected: {}", reason.as_deref().unwrap_or("unknown")),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        };
        table.row(row);
    }
    table.print(out)?;
    let rejected = in_force.iter().filter(|e| e.rejected.is_some()).count();
    if rejected > 0 {
        writeln!(out, "{rejected} record(s) rejected: the services ignore them")?;
    }
    Ok(Outcome::Done)
}
