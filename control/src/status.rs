//! `control status`: the instances that report on the status topic and what each runs with.

use chrono::{DateTime, Utc};
use infra::{
    config::KafkaConfig,
    control::{ControlError, InstanceStatus, listener::is_live, operator},
};
use serde::Serialize;
use std::{io::Write, time::Duration};

use crate::{
    Outcome, bounded,
    cli::Cli,
    output::{self, Table},
};

/// An instance's latest report and whether it still counts as alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Its latest report.
    #[serde(flatten)]
    pub status: InstanceStatus,
    /// Whether it reported within five heartbeats.
    pub live: bool,
}

/// The instances that reported, live ones only unless `include_dead`, by service and id.
pub async fn instances(
    kafka: &KafkaConfig,
    heartbeat: Duration,
    include_dead: bool,
) -> Result<Vec<Instance>, ControlError> {
    let now = Utc::now();
    let mut instances: Vec<Instance> = operator::statuses(kafka)
        .await?
        .into_iter()
        .map(|status| Instance {
            live: is_live(&status, now, heartbeat),
            status,
        })
        .filter(|i| include_dead || i.live)
        .collect();
    instances.sort_by(|a, b| {
        (&a.status.service, &a.status.instance).cmp(&(&b.status.service, &b.status.instance))
    });
    Ok(instances)
}

/// Run `control status`.
pub async fn command(cli: &Cli, include_dead: bool, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let heartbeat = Duration::from_millis(cli.control.heartbeat_ms);
    let instances = bounded(&cli.kafka, instances(&cli.kafka, heartbeat, include_dead)).await?;
    if cli.json {
        if include_dead {
            output::json(out, &instances)?;
        } else {
            let statuses: Vec<&InstanceStatus> = instances.iter().map(|i| &i.status).collect();
            output::json(out, &statuses)?;
        }
        return Ok(Outcome::Done);
    }
    if instances.is_empty() {
        let hint = if include_dead {
            ""
        } else {
            " (--all lists those that stopped reporting)"
        };
        writeln!(out, "no live instance{hint}")?;
        return Ok(Outcome::Done);
    }
    print(&instances, include_dead, Utc::now(), out)?;
    Ok(Outcome::Done)
}

fn print(
    instances: &[Instance],
    with_liveness: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut headers = vec![
        "SERVICE",
        "INSTANCE",
        "HOST",
        "PID",
        "STARTED",
        "HEARTBEAT",
        "FROZEN",
        "MAX-CONCURRENCY",
        "MAX-DB-CONNECTIONS",
        "DISABLED",
        "LOG",
        "APPLIED",
    ];
    if with_liveness {
        headers.push("STATE");
    }
    let mut table = Table::new(&headers);
    for Instance { status, live } in instances {
        let settings = &status.settings;
        let age = (now - status.heartbeat_at).num_milliseconds() as f64 / 1000.0;
        let mut row = vec![
            status.service.clone(),
            status.instance.clone(),
            status.host.clone(),
            status.pid.to_string(),
            output::time(status.started_at),
            format!("{age:.1}s ago"),
            if settings.frozen { "yes" } else { "no" }.to_owned(),
            output::limit_text(settings.max_concurrency),
            output::limit_text(settings.max_db_connections),
            output::or_dash(
                settings
                    .disabled_commands
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            output::or_dash(settings.log_level.clone().unwrap_or_default()),
            status.versions.len().to_string(),
        ];
        if with_liveness {
            row.push(if *live { "live" } else { "dead" }.to_owned());
        }
        table.row(row);
    }
    let live = instances.iter().filter(|i| i.live).count();
    table.print(out)?;
    writeln!(out, "{live} live instance(s)")
}
