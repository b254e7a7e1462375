//! The setting commands (freeze, start, set, disable, enable, log-level): sign and send one
//! message, then, with `--wait`, poll the status topic until every live instance it addresses
//! reports the message's version applied.

use chrono::Utc;
use infra::{
    config::KafkaConfig,
    control::{ALL, ControlError, ControlMessage, InstanceStatus, Setting, listener::is_live, operator},
};
use serde::Serialize;
use std::{
    io::Write,
    time::{Duration, Instant},
};

use crate::{
    Outcome, bounded,
    cli::{Cli, Command, LimitName, WaitArgs},
    output::{self, Table},
};

/// How often `--wait` reads the status topic.
const POLL: Duration = Duration::from_millis(200);

/// The service commands are switched off in.
const COMMAND_API: &str = "command-api";

/// What a setting command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// A service or `all`.
    pub service: String,
    /// The setting and its value.
    pub setting: Setting,
    /// Whether and how long to wait.
    pub wait: WaitArgs,
}

impl Request {
    /// The request of a setting command; `None` for the other commands.
    pub fn of(command: &Command) -> Option<Self> {
        let (service, setting, wait) = match command {
            Command::Freeze { target, wait } => (target.to_string(), Setting::Frozen(true), wait),
            Command::Start { target, wait } => (target.to_string(), Setting::Frozen(false), wait),
            Command::Set {
                target,
                limit,
                value,
                wait,
            } => {
                let setting = match limit {
                    LimitName::MaxConcurrency => Setting::MaxConcurrency(value.0),
                    LimitName::MaxDbConnections => Setting::MaxDbConnections(value.0),
                };
                (target.to_string(), setting, wait)
            }
            Command::Disable { command, wait } => {
                (COMMAND_API.to_owned(), switch(command.as_str(), true), wait)
            }
            Command::Enable { command, wait } => {
                (COMMAND_API.to_owned(), switch(command.as_str(), false), wait)
            }
            Command::LogLevel { target, filter, wait } => (
                target.to_string(),
                Setting::LogLevel(filter.as_str().to_owned()),
                wait,
            ),
            Command::Status { .. }
            | Command::Settings
            | Command::Dlq(_)
            | Command::Replay(_)
            | Command::Admin(_)
            | Command::Users(_)
            | Command::Privacy(_) => return None,
        };
        Some(Self {
            service,
            setting,
            wait: *wait,
        })
    }
}

fn switch(command: &str, disabled: bool) -> Setting {
    Setting::CommandDisabled {
        command: command.to_owned(),
        disabled,
    }
}

/// An instance, as a wait reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRef {
    /// Its service.
    pub service: String,
    /// Its id.
    pub instance: String,
    /// Its host.
    pub host: String,
    /// The version it reports for the message's key, if any.
    pub version: Option<i64>,
}

/// Where the live instances addressed by a message stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Those that report the message's version (or a newer one) applied.
    pub applied: Vec<InstanceRef>,
    /// Those that do not yet.
    pub pending: Vec<InstanceRef>,
}

impl Progress {
    /// The live instances `message` addresses among `statuses`, split by whether they applied it.
    pub fn of(message: &ControlMessage, statuses: &[InstanceStatus], heartbeat: Duration) -> Self {
        let now = Utc::now();
        let key = message.key();
        let mut progress = Self::default();
        for status in statuses {
            if !message.addresses(&status.service) || !is_live(status, now, heartbeat) {
                continue;
            }
            let version = status.versions.get(&key).copied();
            let instance = InstanceRef {
                service: status.service.clone(),
                instance: status.instance.clone(),
                host: status.host.clone(),
                version,
            };
            if version.is_some_and(|v| v >= message.version) {
                progress.applied.push(instance);
            } else {
                progress.pending.push(instance);
            }
        }
        progress
    }

    /// No live instance is addressed.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.pending.is_empty()
    }

    /// Every live instance addressed (at least one) applied the message.
    pub fn is_done(&self) -> bool {
        !self.applied.is_empty() && self.pending.is_empty()
    }
}

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Sent, not waited for.
    Sent,
    /// Every live instance addressed applied it.
    Applied,
    /// Some did not within the timeout.
    TimedOut,
    /// No live instance is addressed (with `--wait`: a failure).
    NoLiveInstance,
}

/// What a setting command did (`--json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendReport {
    /// The message key on the control topic.
    pub key: String,
    /// The message sent.
    pub message: ControlMessage,
    /// How it ended.
    pub outcome: Ending,
    /// The live instances addressed: applied and not (yet).
    #[serde(flatten)]
    pub progress: Progress,
    /// How long it waited, in seconds.
    pub waited_s: Option<f64>,
}

/// Poll the status topic until every live instance `message` addresses applied it, or
/// `timeout` passes; returns the last progress seen and whether it completed. Gives up at once
/// when the first read finds no live instance addressed: there is nobody to wait for. An error
/// when the status topic could not be read at all before the deadline.
pub async fn wait_applied(
    kafka: &KafkaConfig,
    heartbeat: Duration,
    message: &ControlMessage,
    timeout: Duration,
) -> Result<(Progress, bool), ControlError> {
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::default();
    let mut first = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A read that outlives the deadline counts as no news: the last progress stands.
        if let Ok(statuses) = tokio::time::timeout(left, operator::statuses(kafka)).await {
            progress = Progress::of(message, &statuses?, heartbeat);
            if progress.is_done() || (first && progress.is_empty()) {
                let done = progress.is_done();
                return Ok((progress, done));
            }
            first = false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Not one read finished: say so rather than report nobody alive.
            return if first {
                Err(ControlError::BootTimeout(timeout))
            } else {
                Ok((progress, false))
            };
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

/// Run a setting command: send, report, wait if asked.
pub async fn command(cli: &Cli, request: Request, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let key = cli.control.signing_key(cli.environment)?;
    let heartbeat = Duration::from_millis(cli.control.heartbeat_ms);
    let message = ControlMessage::now(&request.service, request.setting, &issued_by());
    bounded(&cli.kafka, operator::send(&cli.kafka, &key, &message)).await?;
    if !cli.json {
        let (name, value) = output::describe(&message.setting);
        writeln!(
            out,
            "sent {}: {name} = {value} (version {}, by {} at {})",
            message.key(),
            message.version,
            message.issued_by,
            output::time(message.issued_at)
        )?;
    }

    let started = Instant::now();
    let (progress, outcome) = match request.wait.deadline() {
        None => {
            let statuses = bounded(&cli.kafka, operator::statuses(&cli.kafka)).await?;
            let progress = Progress::of(&message, &statuses, heartbeat);
            let ending = if progress.is_empty() {
                Ending::NoLiveInstance
            } else {
                Ending::Sent
            };
            (progress, ending)
        }
        Some(timeout) => {
            let (progress, done) = wait_applied(&cli.kafka, heartbeat, &message, timeout).await?;
            let ending = match (done, progress.is_empty()) {
                (true, _) => Ending::Applied,
                (false, true) => Ending::NoLiveInstance,
                (false, false) => Ending::TimedOut,
            };
            (progress, ending)
        }
    };
    let report = SendReport {
        key: message.key(),
        outcome,
        progress,
        waited_s: request.wait.wait.then(|| started.elapsed().as_secs_f64()),
        message,
    };
    if cli.json {
        output::json(out, &report)?;
    } else {
        print(&report, request.wait, out)?;
    }
    Ok(match report.outcome {
        Ending::Sent | Ending::Applied => Outcome::Done,
        Ending::NoLiveInstance if !request.wait.wait => Outcome::Done,
        Ending::NoLiveInstance => {
            Outcome::Failed(format!("no live instance of {}", addressee(&report.message)))
        }
        Ending::TimedOut => Outcome::Failed(format!(
            "{} of {} live instance(s) did not apply {} within {}s: {}",
            report.progress.pending.len(),
            report.progress.pending.len() + report.progress.applied.len(),
            report.key,
            request.wait.timeout,
            report
                .progress
                .pending
                .iter()
                .map(|i| i.instance.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    })
}

fn print(report: &SendReport, wait: WaitArgs, out: &mut dyn Write) -> std::io::Result<()> {
    let progress = &report.progress;
    let total = progress.applied.len() + progress.pending.len();
    match report.outcome {
        Ending::NoLiveInstance => writeln!(
            out,
            "no live instance of {}: it applies when one starts (the control topic keeps it)",
            addressee(&report.message)
        ),
        Ending::Sent => {
            writeln!(
                out,
                "addressed to {total} live instance(s) (--wait waits for them):"
            )?;
            instances(
                &progress
                    .pending
                    .iter()
                    .chain(&progress.applied)
                    .cloned()
                    .collect::<Vec<_>>(),
                out,
            )
        }
        Ending::Applied => {
            writeln!(out, "applied by all {total} live instance(s) addressed:")?;
            instances(&progress.applied, out)
        }
        Ending::TimedOut => {
            writeln!(
                out,
                "applied by {} of {total} live instance(s):",
                progress.applied.len()
            )?;
            instances(&progress.applied, out)?;
            writeln!(out, "not applied within {}s by:", wait.timeout)?;
            instances(&progress.pending, out)
        }
    }
}

fn instances(list: &[InstanceRef], out: &mut dyn Write) -> std::io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "  (none)");
    }
    let mut table = Table::new(&["  SERVICE", "INSTANCE", "HOST", "VERSION APPLIED"]);
    for i in list {
        table.row(vec![
            format!("  {}", i.service),
            i.instance.clone(),
            i.host.clone(),
            i.version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
        ]);
    }
    table.print(out)
}

fn addressee(message: &ControlMessage) -> String {
    if message.service == ALL {
        "any service".to_owned()
    } else {
        message.service.clone()
    }
}

/// Who sends: `$USER@<hostname>`, or `operator` when the user is unknown.
pub fn issued_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty());
    match (user, host) {
        (Some(user), Some(host)) => format!("{user}@{host}"),
        (Some(user), None) => user,
        (None, _) => "operator".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::control::Settings;
    use std::collections::BTreeMap;

    fn status(service: &str, instance: &str, age_s: i64, versions: &[(&str, i64)]) -> InstanceStatus {
        let now = Utc::now();
        InstanceStatus {
            service: service.into(),
            instance: instance.into(),
            host: "h".into(),
            pid: 1,
            started_at: now,
            heartbeat_at: now - chrono::TimeDelta::seconds(age_s),
            settings: Settings::default(),
            versions: versions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn progress_counts_live_addressed_instances_by_version() {
        let message = ControlMessage {
            version: 10,
            ..ControlMessage::now(ALL, Setting::Frozen(true), "ops")
        };
        let statuses = [
            status("sagas", "sagas-1", 0, &[("all/frozen", 10)]),
            status("sagas", "sagas-2", 0, &[("all/frozen", 9)]),
            status("projectors", "p-1", 0, &[("all/frozen", 11)]),
            status("projectors", "p-dead", 60, &[]),
        ];
        let progress = Progress::of(&message, &statuses, Duration::from_secs(1));
        let names = |list: &[InstanceRef]| list.iter().map(|i| i.instance.clone()).collect::<Vec<_>>();
        assert_eq!(names(&progress.applied), ["sagas-1", "p-1"]);
        assert_eq!(names(&progress.pending), ["sagas-2"]);
        assert!(!progress.is_done());

        let only_projectors = ControlMessage {
            version: 10,
            ..ControlMessage::now("projectors", Setting::Frozen(true), "ops")
        };
        let progress = Progress::of(&only_projectors, &statuses, Duration::from_secs(1));
        assert_eq!(
            names(&progress.pending),
            ["p-1"],
            "the key differs: projectors/frozen"
        );
        assert!(Progress::default().is_empty() && !Progress::default().is_done());
    }

    #[test]
    fn a_timeout_lists_who_applied_and_who_did_not() {
        let instance = |name: &str, version| InstanceRef {
            service: "sagas".into(),
            instance: name.into(),
            host: "h".into(),
            version,
        };
        let report = SendReport {
            key: "sagas/frozen".into(),
            message: ControlMessage::now("sagas", Setting::Frozen(true), "ops"),
            outcome: Ending::TimedOut,
            progress: Progress {
                applied: vec![instance("sagas-1", Some(7))],
                pending: vec![instance("sagas-2", None)],
            },
            waited_s: Some(1.0),
        };
        let wait = WaitArgs {
            wait: true,
            timeout: 1,
        };
        let mut out = Vec::new();
        print(&report, wait, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "applied by 1 of 2 live instance(s):\n\
             \x20 SERVICE  INSTANCE  HOST  VERSION APPLIED\n\
             \x20 sagas    sagas-1   h     7\n\
             not applied within 1s by:\n\
             \x20 SERVICE  INSTANCE  HOST  VERSION APPLIED\n\
             \x20 sagas    sagas-2   h     -\n"
        );
    }

    #[test]
    fn disable_and_enable_address_command_api() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["control", "disable", "post_job"]).unwrap();
        let request = Request::of(&cli.command).unwrap();
        assert_eq!(request.service, "command-api");
        assert_eq!(request.setting, switch("post_job", true));
        let cli = Cli::try_parse_from(["control", "set", "all", "max-db-connections", "none"]).unwrap();
        assert_eq!(
            Request::of(&cli.command).unwrap().setting,
            Setting::MaxDbConnections(None)
        );
    }
}
