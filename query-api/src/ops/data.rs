//! The operations data (`GET /ops/data`): live instances and their control settings, the lag
//! and dead-letter size of every consumer group, withdrawal tasks by state and the commands
//! recorded per second over the last minute. Each section comes from its own source
//! ([`infra::ops`]) within a bound; one that fails or is late is `null` (or empty) and named in
//! `errors`, and the others are still answered: the page is most needed when something is down.

use chrono::{DateTime, Utc};
use infra::{
    config::Config,
    control::{InstanceStatus, listener::is_live},
    ops::{
        self, OpsError,
        activity::{CommandRate, LedgerActivity},
        consumers::{GroupLag, LagBoard},
        instances::StatusBoard,
    },
    withdrawals::TaskCounts,
};
use serde::Serialize;
use std::{collections::BTreeSet, future::Future, time::Duration};
use utoipa::ToSchema;

/// The window of the command rate.
const COMMAND_WINDOW: Duration = Duration::from_secs(60);
/// Longest one section may take before it is answered as late (the lag has its own bound per
/// group, a little shorter).
const SECTION_TIMEOUT: Duration = Duration::from_secs(8);

/// Where the operations data comes from (cheap handles, shared by every request).
#[derive(Debug, Clone)]
pub struct Sources {
    statuses: StatusBoard,
    lag: LagBoard,
    ledger: LedgerActivity,
    /// How often instances report (`WORKUP_CONTROL_HEARTBEAT_MS`).
    heartbeat: Duration,
}

impl Sources {
    /// Follow the status topic and prepare the other reads (nothing connects yet but the
    /// status follower, in the background).
    pub fn open(config: &Config) -> Result<Self, OpsError> {
        Ok(Self {
            statuses: StatusBoard::follow(&config.kafka),
            lag: LagBoard::new(&config.kafka),
            ledger: LedgerActivity::connect_lazy(&config.postgres)?,
            heartbeat: Duration::from_millis(config.control.heartbeat_ms),
        })
    }
}

/// Everything the operations page shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpsData {
    /// When this was gathered.
    pub generated_at: DateTime<Utc>,
    /// How often instances report, in milliseconds; one silent for five reports is left out.
    pub heartbeat_ms: u64,
    /// Live instances, by service and instance id.
    pub instances: Vec<InstanceRow>,
    /// Every consumer group of the platform (empty if the broker could not be asked).
    pub consumers: Vec<ConsumerRow>,
    /// Withdrawal tasks by state (`null` if the ledger database could not be read).
    pub withdrawals: Option<WithdrawalCounts>,
    /// Commands recorded over the last minute (`null` if the ledger database could not be read).
    pub commands: Option<CommandActivity>,
    /// The sections that could not be read, and why.
    pub errors: Vec<SectionError>,
}

/// A live instance and the control settings it reports (DESIGN §10).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceRow {
    /// Its service, e.g. `projectors`.
    pub service: String,
    /// Its id.
    pub instance: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last reported.
    pub heartbeat_at: DateTime<Utc>,
    /// Seconds since it last reported.
    pub heartbeat_age_seconds: f64,
    /// Frozen by an operator (503 / not consuming).
    pub frozen: bool,
    /// Work in flight at most (`null`: no limit).
    pub max_concurrency: Option<u32>,
    /// Database connections at most (`null`: the configured pool).
    pub max_db_connections: Option<u32>,
    /// No command is switched off.
    pub commands_enabled: bool,
    /// The commands switched off (answered 410).
    pub disabled_commands: Vec<String>,
    /// The operator's log filter (`null`: the one it started with).
    pub log_level: Option<String>,
}

/// A consumer group's lag and dead letters, measured from the broker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsumerRow {
    /// The service that runs it.
    pub service: String,
    /// The consumer, e.g. `jobs`.
    pub name: String,
    /// Its group id.
    pub group: String,
    /// The topics it reads.
    pub topics: Vec<String>,
    /// Whether an instance of its service is live (if not, its lag only grows).
    pub running: bool,
    /// Events published and not yet applied (`null` if not measured).
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet applied, in seconds (`null` if not measured).
    pub lag_seconds: Option<f64>,
    /// Events parked in its dead-letter topic (`null` if not measured).
    pub dlq_events: Option<i64>,
    /// Why it could not be measured.
    pub error: Option<String>,
}

/// Withdrawal tasks by state (DESIGN §9).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct WithdrawalCounts {
    /// Waiting for their scheduled time.
    pub scheduled: i64,
    /// Due, held by no worker: the queue depth.
    pub queued: i64,
    /// Held by a worker.
    pub running: i64,
    /// Paid out.
    pub succeeded: i64,
    /// Refused by the provider.
    pub failed: i64,
    /// Cancelled (timeout, or by the owner).
    pub cancelled: i64,
}

/// Commands the ledger recorded in the last minute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommandActivity {
    /// The window, in seconds.
    pub window_seconds: u64,
    /// Commands in the window.
    pub commands: i64,
    /// Events in the window.
    pub events: i64,
    /// Commands per second, averaged over the window.
    pub commands_per_second: f64,
    /// Each second of the window, oldest first (the last one is still running).
    pub seconds: Vec<SecondRow>,
}

/// What the ledger recorded in one second.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct SecondRow {
    /// The second's start.
    pub at: DateTime<Utc>,
    /// Commands.
    pub commands: i64,
    /// Events.
    pub events: i64,
}

/// A section that could not be read.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SectionError {
    /// `consumers`, `withdrawals` or `commands`.
    pub section: &'static str,
    /// Why.
    pub message: String,
}

/// Gather every section at once.
pub async fn gather(sources: &Sources) -> OpsData {
    let now = Utc::now();
    let instances = live_instances(sources.statuses.reports(), now, sources.heartbeat);
    let (lag, withdrawals, commands) = tokio::join!(
        bounded(sources.lag.measure()),
        bounded(sources.ledger.withdrawal_tasks()),
        bounded(sources.ledger.command_rate(COMMAND_WINDOW)),
    );
    let mut errors = Vec::new();
    let mut failed = |section: &'static str, message: String| {
        tracing::warn!(section, error = %message, "an operations section could not be read");
        errors.push(SectionError { section, message });
    };
    let running: BTreeSet<&str> = instances.iter().map(|i| i.service.as_str()).collect();
    let consumers = match lag {
        Ok(groups) => groups.into_iter().map(|g| consumer_row(g, &running)).collect(),
        Err(message) => {
            failed("consumers", message);
            Vec::new()
        }
    };
    let withdrawals = withdrawals
        .map(withdrawal_counts)
        .map_err(|message| failed("withdrawals", message))
        .ok();
    let commands = commands
        .map(command_activity)
        .map_err(|message| failed("commands", message))
        .ok();
    OpsData {
        generated_at: now,
        heartbeat_ms: u64::try_from(sources.heartbeat.as_millis()).unwrap_or(u64::MAX),
        instances,
        consumers,
        withdrawals,
        commands,
        errors,
    }
}

/// `read`'s value, or why it failed or was late.
async fn bounded<T>(read: impl Future<Output = Result<T, OpsError>>) -> Result<T, String> {
    match tokio::time::timeout(SECTION_TIMEOUT, read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ops::describe(&error)),
        Err(_) => Err(format!("no answer within {SECTION_TIMEOUT:?}")),
    }
}

/// The live instances among `reports`, by service and id.
fn live_instances(reports: Vec<InstanceStatus>, now: DateTime<Utc>, heartbeat: Duration) -> Vec<InstanceRow> {
    let mut rows: Vec<InstanceRow> = reports
        .into_iter()
        .filter(|r| is_live(r, now, heartbeat))
        .map(|r| InstanceRow {
            heartbeat_age_seconds: (now - r.heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0,
            frozen: r.settings.frozen,
            max_concurrency: r.settings.max_concurrency,
            max_db_connections: r.settings.max_db_connections,
            commands_enabled: r.settings.disabled_commands.is_empty(),
            disabled_commands: r.settings.disabled_commands.into_iter().collect(),
            log_level: r.settings.log_level,
            service: r.service,
            instance: r.instance,
            host: r.host,
            pid: r.pid,
            started_at: r.started_at,
            heartbeat_at: r.heartbeat_at,
        })
        .collect();
    rows.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
    rows
}

fn consumer_row(measured: GroupLag, running: &BTreeSet<&str>) -> ConsumerRow {
    let GroupLag { consumer, lag } = measured;
    let (lag, error) = match lag {
        Ok(lag) => (Some(lag), None),
        Err(error) => (None, Some(error)),
    };
    ConsumerRow {
        running: running.contains(consumer.service),
        service: consumer.service.to_owned(),
        name: consumer.name.to_owned(),
        group: consumer.group,
        topics: consumer.topics,
        lag_events: lag.map(|l| l.events),
        lag_seconds: lag.map(|l| l.seconds),
        dlq_events: lag.map(|l| l.dlq_events),
        error,
    }
}

fn withdrawal_counts(counts: TaskCounts) -> WithdrawalCounts {
    let TaskCounts {
        scheduled,
        queued,
        running,
        succeeded,
        failed,
        cancelled,
    } = counts;
    WithdrawalCounts {
        scheduled,
        queued,
        running,
        succeeded,
        failed,
        cancelled,
    }
}

fn command_activity(rate: CommandRate) -> CommandActivity {
    CommandActivity {
        window_seconds: rate.seconds.len() as u64,
        commands: rate.commands(),
        events: rate.events(),
        commands_per_second: rate.per_second(),
        seconds: rate
            .seconds
            .iter()
            .map(|s| SecondRow {
                at: s.at,
                commands: s.commands,
                events: s.events,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::control::Settings;
    use std::collections::BTreeMap;

    fn report(service: &str, instance: &str, age_ms: i64, settings: Settings) -> InstanceStatus {
        let at = Utc::now() - chrono::TimeDelta::milliseconds(age_ms);
        InstanceStatus {
            service: service.into(),
            instance: instance.into(),
            host: "h".into(),
            pid: 7,
            started_at: at,
            heartbeat_at: at,
            settings,
            versions: BTreeMap::new(),
        }
    }

    #[test]
    fn only_live_instances_are_listed_with_their_settings_in_order() {
        let frozen = Settings {
            frozen: true,
            max_concurrency: Some(4),
            disabled_commands: BTreeSet::from(["post_job".to_owned()]),
            log_level: Some("debug".into()),
            ..Settings::default()
        };
        let reports = vec![
            report("sagas", "sagas-b", 100, Settings::default()),
            report("command-api", "command-api-a", 200, frozen),
            report("projectors", "projectors-gone", 60_000, Settings::default()),
        ];
        let rows = live_instances(reports, Utc::now(), Duration::from_secs(1));
        let names: Vec<&str> = rows.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(
            names,
            ["command-api-a", "sagas-b"],
            "the silent instance is left out"
        );
        let api = &rows[0];
        assert!(api.frozen && !api.commands_enabled);
        assert_eq!(api.disabled_commands, ["post_job"]);
        assert_eq!(api.max_concurrency, Some(4));
        assert_eq!(api.log_level.as_deref(), Some("debug"));
        assert!(rows[1].commands_enabled);
        assert!(api.heartbeat_age_seconds >= 0.2);
    }
}
