//! The `control` CLI (DESIGN §10): operators steer running services through the compacted
//! control topic, see what every instance applied, and replay dead letters.
//!
//! - [`cli`]: the clap types; raw arguments become checked values there (usage errors, exit 2).
//! - [`send`]: the setting commands (freeze, start, set, disable, enable, log-level) and `--wait`.
//! - [`status`]: `control status`, the live instances and their settings.
//! - [`settings`]: `control settings`, the messages in force on the control topic.
//! - [`dlq`]: `control dlq list|replay`, a consumer's parked events.
//! - [`replay`]: `control replay rebuild|verify|drop-old|republish`, read models from the
//!   ledger (DESIGN §8); [`progress`] shows how far a long run is.
//! - [`admin`]: `control admin create`, administrator accounts (no admin is built in).
//! - [`privacy`]: `control users erase`, `control privacy keys|rotate|new-key`.
//! - [`topic`]: reading a topic once from its beginning to its end.
//! - [`output`]: tables and JSON.
//!
//! The services' side (messages, signing, the listener, the operator's send and reads) lives in
//! `infra::control`.

pub mod admin;
pub mod cli;
pub mod dlq;
pub mod output;
pub mod privacy;
pub mod progress;
pub mod replay;
pub mod send;
pub mod settings;
pub mod status;
pub mod topic;

use std::{io::Write, process::ExitCode, time::Duration};

pub use cli::Cli;

use cli::Command;
use infra::config::KafkaConfig;

/// How a command ended, when it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked (exit 0).
    Done,
    /// It ran but did not achieve it, e.g. `--wait` timed out (exit 1, the reason on stderr).
    Failed(String),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Done => ExitCode::SUCCESS,
            Self::Failed(_) => ExitCode::FAILURE,
        }
    }
}

/// Run a parsed command line, writing its output to `out`. An `Err` is a failure to run at all
/// (broker down, no signing key): exit 1 as well.
pub async fn run(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let outcome = match &cli.command {
        Command::Status { all } => status::command(cli, *all, out).await?,
        Command::Settings => settings::command(cli, out).await?,
        Command::Dlq(command) => dlq::command(cli, command, out).await?,
        Command::Replay(command) => replay::command(cli, command, out).await?,
        Command::Admin(cli::AdminCommand::Create { email, name }) => {
            admin::create(cli, email, name, out).await?
        }
        Command::Users(cli::UsersCommand::Erase { user_id }) => privacy::erase(cli, *user_id, out).await?,
        Command::Privacy(command) => privacy::command(cli, command, out).await?,
        setting_command => match send::Request::of(setting_command) {
            Some(request) => send::command(cli, request, out).await?,
            None => unreachable!("every other command sends a setting"),
        },
    };
    out.flush()?;
    Ok(outcome)
}

/// Longest one exchange with the broker may take before the command gives up: the client
/// would otherwise wait up to a minute for a broker that is down.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(15);

/// `operation` on the broker, given up after [`BROKER_TIMEOUT`].
pub(crate) async fn bounded<T, E>(
    kafka: &KafkaConfig,
    operation: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(BROKER_TIMEOUT, operation).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!(
            "the Kafka broker at {} did not answer within {}s",
            kafka.brokers,
            BROKER_TIMEOUT.as_secs()
        ),
    }
}
