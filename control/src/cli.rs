//! The command line: clap types, and the parsers that turn raw arguments into checked values
//! (a bad service, limit, filter or id is a usage error, exit 2, before anything is sent).

use clap::{Args, Parser, Subcommand, ValueEnum};
use infra::{
    config::{
        CassandraConfig, ControlConfig, Environment, KafkaConfig, MongoConfig, PostgresConfig, RedisConfig,
    },
    control::{ALL, SERVICES},
};
use std::{fmt, str::FromStr, time::Duration};

/// Steer the running services through the control topic (DESIGN §10), read what every
/// instance applied, and replay parked dead letters.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "control",
    version,
    after_help = "Examples:\n  control freeze all --wait\n  control status\n  control --json dlq list users\n\n\
                  Exit codes: 0 done, 1 the operation failed or --wait timed out, 2 usage error."
)]
pub struct Cli {
    /// The broker and the topic prefix.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// The signing key and the heartbeat the services report at.
    #[command(flatten)]
    pub control: ControlConfig,
    /// The ledger (`admin create` and `replay`).
    #[command(flatten)]
    pub postgres: PostgresConfig,
    /// Cassandra (`replay` only).
    #[command(flatten)]
    pub cassandra: CassandraConfig,
    /// MongoDB (`replay` only).
    #[command(flatten)]
    pub mongo: MongoConfig,
    /// Redis (`replay` only).
    #[command(flatten)]
    pub redis: RedisConfig,
    /// `dev` or `production`; outside `dev` WORKUP_CONTROL_KEY must be set.
    #[arg(
        long = "env",
        env = "WORKUP_ENV",
        value_enum,
        default_value = "production",
        hide_possible_values = true,
        global = true
    )]
    pub environment: Environment,
    /// Machine output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Freeze a service: it finishes in-flight work and takes no commands / events (503 meanwhile).
    #[command(after_help = "Example:\n  control freeze command-api --wait")]
    Freeze {
        /// A service or `all`.
        target: Target,
        /// Waiting for the instances.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start a frozen service again.
    #[command(after_help = "Example:\n  control start all --wait --timeout 30")]
    Start {
        /// A service or `all`.
        target: Target,
        /// Waiting for the instances.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Set a per-instance limit of a service (`none` lifts it).
    #[command(after_help = "Examples:\n  control set projectors max-concurrency 4\n  \
                            control set all max-db-connections none --wait")]
    Set {
        /// A service or `all`.
        target: Target,
        /// The limit.
        #[arg(value_enum)]
        limit: LimitName,
        /// At least 1, or `none` for no limit (max-db-connections: the configured pool size).
        #[arg(allow_negative_numbers = true)]
        value: Limit,
        /// Waiting for the instances.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Switch a command of command-api off (it answers 410).
    #[command(after_help = "Example:\n  control disable request_withdrawal --wait")]
    Disable {
        /// command-api's operation id, e.g. `post_job`.
        command: CommandName,
        /// Waiting for the instances.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Switch a command of command-api back on.
    #[command(after_help = "Example:\n  control enable request_withdrawal")]
    Enable {
        /// command-api's operation id, e.g. `post_job`.
        command: CommandName,
        /// Waiting for the instances.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Set the log filter of a service (a `tracing` EnvFilter).
    #[command(after_help = "Examples:\n  control log-level sagas debug\n  \
                            control log-level all 'info,infra::kafka=debug'")]
    LogLevel {
        /// A service or `all`.
        target: Target,
        /// The filter, e.g. `debug` or `info,infra::kafka=debug`.
        filter: LogFilter,
        /// Waiting for the instances.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List the live instances and the settings each runs with.
    #[command(after_help = "Examples:\n  control status\n  control status --all --json")]
    Status {
        /// Also the instances that stopped reporting (marked dead).
        #[arg(long)]
        all: bool,
    },
    /// List the messages in force on the control topic (the latest per key).
    #[command(after_help = "Example:\n  control settings")]
    Settings,
    /// Read or replay a consumer's dead-letter topic.
    #[command(subcommand, after_help = "Example:\n  control dlq list users")]
    Dlq(DlqCommand),
    /// Rebuild read models from the ledger (blue/green), verify them, republish events.
    #[command(
        subcommand,
        after_help = "Examples:\n  control replay rebuild jobs\n  control replay verify all\n  \
                      control replay drop-old jobs\n  control replay republish --from 1 --to 5000"
    )]
    Replay(ReplayCommand),
    /// Administrator accounts.
    #[command(
        subcommand,
        after_help = "Example:\n  echo \"$PASSWORD\" | control admin create --email root@example.com"
    )]
    Admin(AdminCommand),
    /// Erase a person: delete their account and destroy their personal data key.
    #[command(
        subcommand,
        after_help = "Example:\n  control users erase 01a2289e-a4d3-7695-90ce-df5357a9e0cc"
    )]
    Users(UsersCommand),
    /// The master keys wrapping the personal data keys: census and rotation.
    #[command(
        subcommand,
        after_help = "Examples:\n  control privacy keys\n  control privacy rotate"
    )]
    Privacy(PrivacyCommand),
}

/// `control users ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// Delete an account and erase the person (GDPR art. 17), as `DELETE /users/me` does: in one
    /// transaction the account is deleted, its email released and the person's personal data key
    /// destroyed, so every personal field of their events reads as a placeholder from then on.
    #[command(after_help = "Example:\n  control users erase 01a2289e-a4d3-7695-90ce-df5357a9e0cc")]
    Erase {
        /// The user's id.
        user_id: uuid::Uuid,
    },
}

/// `control privacy ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum PrivacyCommand {
    /// How many personal data keys each master key wraps, and how many people are erased.
    #[command(after_help = "Example:\n  control privacy keys --json")]
    Keys,
    /// Rewrap every personal data key with the first master key of WORKUP_MASTER_KEYS (list the
    /// new key first and keep the old ones after it until this has run everywhere).
    #[command(after_help = "Example:\n  WORKUP_MASTER_KEYS=k2:<new>,k1:<old> control privacy rotate")]
    Rotate,
    /// Print a fresh random master key (base64) for WORKUP_MASTER_KEYS.
    #[command(after_help = "Example:\n  WORKUP_MASTER_KEYS=\"k1:$(control privacy new-key)\"")]
    NewKey,
}

/// `control admin ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Create an administrator (the first one, or another): the password is read from
    /// WORKUP_ADMIN_PASSWORD or, if unset, the first line of stdin (8 to 128 characters).
    #[command(
        after_help = "Example:\n  echo \"$PASSWORD\" | control admin create --email root@example.com --name Root"
    )]
    Create {
        /// Login email (unique across all accounts).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
}

/// `control replay ...` (DESIGN §8).
#[derive(Debug, Clone, Subcommand)]
pub enum ReplayCommand {
    /// Rebuild a read model from the ledger into a new generation while the old one keeps
    /// serving, catch up with the live tail, then switch readers to it. The old generation is
    /// kept until `drop-old`.
    #[command(
        after_help = "Examples:\n  control replay rebuild jobs\n  control replay rebuild all --from-position 1"
    )]
    Rebuild {
        /// A read model (`users`, `jobs`, `contracts`, `payments`) or `all`.
        projection: Projection,
        /// Only events at or after this global position (default: the whole ledger).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        from_position: i64,
        /// Longest wait for the running instances to apply each switch, in seconds.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
    },
    /// Rebuild a read model into a scratch copy and compare it, row by row, with the one
    /// readers use; exit 1 and list the differences when they differ.
    #[command(after_help = "Example:\n  control replay verify jobs")]
    Verify {
        /// A read model or `all`.
        projection: Projection,
    },
    /// Drop the generations of a read model that readers no longer use.
    #[command(after_help = "Example:\n  control replay drop-old jobs")]
    DropOld {
        /// A read model or `all`.
        projection: Projection,
    },
    /// Publish a range of the ledger to Kafka again, through the outbox and the relay (which
    /// must run); consumers de-duplicate what they have applied.
    #[command(after_help = "Examples:\n  control replay republish --from 1 --to 5000\n  \
                            control replay republish --from 1200 --to 1300 --topic payments")]
    Republish {
        /// First global position.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        from: i64,
        /// Last global position (inclusive).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        to: i64,
        /// Only the events of one context's topic (`users`, `jobs`, `contracts`, `payments`).
        #[arg(long)]
        topic: Option<Projection>,
    },
}

/// A read model by its context's name, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection(pub Option<domain::BoundedContext>);

impl Projection {
    /// The read models named.
    pub fn contexts(self) -> Vec<domain::BoundedContext> {
        self.0
            .map_or_else(|| domain::BoundedContext::ALL.to_vec(), |c| vec![c])
    }
}

impl FromStr for Projection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == ALL {
            return Ok(Self(None));
        }
        domain::BoundedContext::parse(s)
            .map(|c| Self(Some(c)))
            .ok_or_else(|| {
                let names: Vec<&str> = domain::BoundedContext::ALL.iter().map(|c| c.name()).collect();
                format!("no read model `{s}`: one of {} or `all`", names.join(", "))
            })
    }
}

/// `control dlq ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// List the events a consumer parked, with the error and the attempts.
    #[command(after_help = "Example:\n  control dlq list users")]
    List {
        /// The consumer's name, e.g. `users` (a projector) or a saga's name.
        consumer: String,
    },
    /// Put parked events back on the consumer's replay topic (they stay listed in the DLQ).
    #[command(
        after_help = "Examples:\n  control dlq replay users\n  control dlq replay users --id 1:42\n\n\
                            The consumer applies them again; its handlers are idempotent, so a \
                            second replay is harmless."
    )]
    Replay {
        /// The consumer's name.
        consumer: String,
        /// One event, `<partition>:<offset>` as `dlq list` shows it (default: all of them).
        #[arg(long)]
        id: Option<DlqId>,
    },
}

/// `--wait` and `--timeout`, on every setting command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct WaitArgs {
    /// Wait until every live instance addressed has applied the message.
    #[arg(long)]
    pub wait: bool,
    /// Longest wait, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

impl WaitArgs {
    /// How long to wait, if at all.
    pub fn deadline(&self) -> Option<Duration> {
        self.wait.then(|| Duration::from_secs(self.timeout))
    }
}

/// Who a message addresses: one service or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target(String);

impl Target {
    /// The service name (or `all`) as the message carries it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw == ALL || SERVICES.contains(&raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "unknown service `{raw}`: one of {}, or {ALL}",
                SERVICES.join(", ")
            ))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limits `control set` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LimitName {
    /// Commands or events in flight per instance.
    MaxConcurrency,
    /// Database connections per instance.
    MaxDbConnections,
}

/// A limit: at least 1, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u32>);

impl FromStr for Limit {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        match raw.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Self(Some(n))),
            _ => Err(format!(
                "`{raw}` is not a limit: a whole number from 1, or `none`"
            )),
        }
    }
}

/// A command-api operation id: snake_case (`post_job`, `request_withdrawal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandName(String);

impl CommandName {
    /// The operation id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CommandName {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let mut chars = raw.chars();
        let shaped = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if shaped {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "`{raw}` is not an operation id: snake_case, as command-api names them (e.g. post_job)"
            ))
        }
    }
}

/// A log filter `tracing_subscriber::EnvFilter` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    /// The filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        // The services apply it with EnvFilter::try_new and ignore one that does not parse:
        // refuse it here, where the operator sees why.
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the filter is empty".to_owned());
        }
        tracing_subscriber::EnvFilter::try_new(raw)
            .map(|_| Self(raw.to_owned()))
            .map_err(|e| format!("`{raw}` is not a log filter: {e}"))
    }
}

/// A parked event's id: `<partition>:<offset>` in the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DlqId {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

impl FromStr for DlqId {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let parsed = raw.split_once(':').and_then(|(p, o)| {
            let partition = p.parse::<i32>().ok().filter(|p| *p >= 0)?;
            let offset = o.parse::<i64>().ok().filter(|o| *o >= 0)?;
            Some(Self { partition, offset })
        });
        parsed.ok_or_else(|| format!("`{raw}` is not an id: <partition>:<offset>, e.g. 0:42"))
    }
}

impl fmt::Display for DlqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_known_services_or_all() {
        for ok in ["all", "command-api", "withdrawal-worker"] {
            assert_eq!(
                ok.parse::<Target>().map(|t| t.to_string()),
                Ok(ok.to_owned()),
                "{ok}"
            );
        }
        for bad in ["", "ALL", "command_api", "billing"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits_are_positive_or_none() {
        assert_eq!("4".parse::<Limit>(), Ok(Limit(Some(4))));
        assert_eq!("none".parse::<Limit>(), Ok(Limit(None)));
        for bad in ["0", "-1", "", "four", "1.5"] {
            assert!(bad.parse::<Limit>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn command_names_filters_and_ids_are_checked() {
        assert!("post_job".parse::<CommandName>().is_ok());
        for bad in ["", "Post_job", "post-job", "_x", "post job"] {
            assert!(bad.parse::<CommandName>().is_err(), "{bad:?} accepted");
        }
        assert!("info,infra::kafka=debug".parse::<LogFilter>().is_ok());
        assert!("debug".parse::<LogFilter>().is_ok());
        for bad in ["", "  ", "info,=[", "infra=loud"] {
            assert!(bad.parse::<LogFilter>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "1:42".parse::<DlqId>(),
            Ok(DlqId {
                partition: 1,
                offset: 42
            })
        );
        for bad in ["", "1", "1:", ":2", "a:b", "-1:2", "1:-2", "1:2:3"] {
            assert!(bad.parse::<DlqId>().is_err(), "{bad:?} accepted");
        }
    }
}
