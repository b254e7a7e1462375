//! The `control` CLI: argument checks, and every command against the local broker, each test
//! on its own topic prefix (`TestEnv`).

use chrono::{TimeDelta, Utc};
use clap::{CommandFactory, Parser};
use control::{
    Cli, Outcome,
    topic::{Record, read_to_end},
};
use infra::{
    config::{Environment, KafkaConfig},
    control::{ControlKey, InstanceStatus, Setting, Settings, operator},
    kafka::{ensure_topics, producer, record},
    ledger::{EventMetadata, RecordedEvent},
    testing::TestEnv,
};
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    process::Command,
    sync::{Mutex, PoisonError},
    time::Duration,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("control").chain(args.iter().copied()))
}

/// A command line on `env`'s topics, in `dev` (its fixed key), printing JSON.
fn cli(env: &TestEnv, args: &[&str]) -> Cli {
    let mut cli = parse(&[&["--env", "dev", "--json"], args].concat()).expect("the command line parses");
    cli.kafka = env.config.kafka.clone();
    cli.control = env.config.control.clone();
    // Liveness is judged on the default heartbeat (a report counts for 5 s): the fake instances
    // below beat every 200 ms, so a busy machine does not make them look dead.
    cli.control.heartbeat_ms = HEARTBEAT.as_millis() as u64;
    cli
}

/// The heartbeat the CLI assumes in these tests.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Run `args` on `env`; the outcome and the JSON printed.
async fn run(env: &TestEnv, args: &[&str]) -> (Outcome, Value) {
    let mut out = Vec::new();
    let outcome = control::run(&cli(env, args), &mut out)
        .await
        .unwrap_or_else(|e| panic!("control {args:?} failed to run: {e:#}"));
    let json = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "control {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    (outcome, json)
}

fn signing_key(env: &TestEnv) -> ControlKey {
    env.config
        .control
        .signing_key(Environment::Dev)
        .expect("dev has a key")
}

// ---- 1. the command line -------------------------------------------------------------------

#[test]
fn the_command_line_is_consistent_and_every_command_has_help_with_an_example() {
    Cli::command().debug_assert();
    fn check(command: &clap::Command, path: &str) {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = format!("{path} {}", sub.get_name());
            assert!(sub.get_about().is_some(), "`{path}` has no description");
            let example = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                example.contains("control "),
                "`{path}` has no example: {example:?}"
            );
            check(sub, &path);
        }
    }
    check(&Cli::command(), "control");
}

#[test]
fn bad_arguments_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["freeze", "billing"], "unknown service"),
        (&["start", "ALL"], "unknown service"),
        (&["set", "x", "max-concurrency", "4"], "unknown service"),
        (&["set", "all", "max-concurrency", "0"], "not a limit"),
        (&["set", "all", "max-db-connections", "-3"], "not a limit"),
        (&["set", "all", "max-threads", "4"], "max-threads"),
        (&["disable", "Post-Job"], "not an operation id"),
        (&["log-level", "sagas", "info,=["], "not a log filter"),
        (&["dlq", "replay", "users", "--id", "42"], "not an id"),
        (&["freeze", "all", "--timeout", "0"], "timeout"),
        (&["freeze"], "TARGET"),
    ];
    for (args, says) in cases {
        let error = parse(args).map(|_| ()).expect_err(&format!("{args:?} accepted"));
        assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        assert!(
            error.to_string().contains(says),
            "{args:?}: `{error}` does not say {says:?}"
        );
    }
    for ok in [
        &["set", "all", "max-db-connections", "none"][..],
        &["log-level", "all", "info,infra::kafka=debug"],
        &["dlq", "replay", "users", "--id", "1:42"],
        &["status", "--all", "--json"],
    ] {
        assert!(parse(ok).is_ok(), "{ok:?} refused");
    }
}

#[test]
fn the_binary_exits_2_on_usage_errors_and_1_with_error_on_runtime_errors() {
    let control = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_control"));
        command.env_remove("WORKUP_CONTROL_KEY").env_remove("WORKUP_ENV");
        command
    };
    let usage = control().args(["freeze", "billing"]).output().expect("runs");
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("unknown service `billing`"));

    // Outside dev a missing key stops the command before anything is sent.
    let runtime = control()
        .args(["--env", "production", "freeze", "all"])
        .output()
        .expect("runs");
    assert_eq!(runtime.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&runtime.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("WORKUP_CONTROL_KEY"),
        "{stderr}"
    );

    let help = control()
        .args(["dlq", "replay", "--help"])
        .output()
        .expect("runs");
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("control dlq replay users --id 1:42"));
}

// ---- 2. sending ------------------------------------------------------------------------------

#[tokio::test]
async fn freeze_all_and_disable_are_on_the_control_topic_signed() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;

    let (outcome, sent) = run(&env, &["freeze", "all"]).await;
    assert_eq!(
        outcome,
        Outcome::Done,
        "no instance is running: sent, nothing to wait for"
    );
    assert_eq!(sent["key"], "all/frozen");
    assert_eq!(sent["outcome"], "no_live_instance");
    assert_eq!(sent["message"]["value"], true);
    let (outcome, _) = run(&env, &["disable", "post_job"]).await;
    assert_eq!(outcome, Outcome::Done);

    let messages = operator::messages(&env.config.kafka, &signing_key(&env)).await?;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let frozen = messages["all/frozen"].as_ref().expect("opens");
    assert_eq!(
        (frozen.service.as_str(), &frozen.setting),
        ("all", &Setting::Frozen(true))
    );
    assert_eq!(
        frozen.version,
        sent["message"]["version"].as_i64().unwrap_or_default()
    );
    let disabled = messages["command-api/disabled:post_job"].as_ref().expect("opens");
    assert_eq!(
        disabled.setting,
        Setting::CommandDisabled {
            command: "post_job".into(),
            disabled: true
        }
    );

    let (_, listed) = run(&env, &["settings"]).await;
    let keys: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["all/frozen", "command-api/disabled:post_job"]);
    Ok(())
}

// ---- 3. status and --wait --------------------------------------------------------------------

fn instance_status(
    service: &str,
    heartbeat_ago: TimeDelta,
    versions: BTreeMap<String, i64>,
) -> InstanceStatus {
    let now = Utc::now();
    InstanceStatus {
        service: service.into(),
        instance: format!("{service}-{}", &Uuid::new_v4().simple().to_string()[..8]),
        host: "test-host".into(),
        pid: 4242,
        started_at: now - TimeDelta::minutes(5),
        heartbeat_at: now - heartbeat_ago,
        settings: Settings {
            max_concurrency: Some(3),
            ..Settings::default()
        },
        versions,
    }
}

async fn report(kafka: &KafkaConfig, status: &InstanceStatus) -> anyhow::Result<()> {
    let topic = kafka.control_status_topic();
    ensure_topics(kafka, std::slice::from_ref(&topic), true).await?;
    let value = serde_json::to_vec(status)?;
    producer(kafka)?
        .send(
            record(&topic, &status.instance, &value, OwnedHeaders::new()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// A fake instance of `service` heartbeating every 200 ms; when `applies`, it takes the
/// version of every message on the control topic addressed to it, as a real one would (the
/// heartbeat does not wait for the reads, as in `infra::control::listener`).
fn fake_instance(env: &TestEnv, service: &str, applies: bool) -> (String, JoinHandle<()>) {
    let status = instance_status(service, TimeDelta::zero(), BTreeMap::new());
    let id = status.instance.clone();
    let kafka = env.config.kafka.clone();
    let key = signing_key(env);
    let versions = Mutex::new(BTreeMap::new());
    let task = tokio::spawn(async move {
        let apply = async {
            if !applies {
                return;
            }
            loop {
                if let Ok(messages) = operator::messages(&kafka, &key).await {
                    let mut versions = versions.lock().unwrap_or_else(PoisonError::into_inner);
                    for message in messages.into_values().flatten() {
                        if message.addresses(&status.service) {
                            versions.insert(message.key(), message.version);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let heartbeat = async {
            let topic = kafka.control_status_topic();
            let sender = async {
                ensure_topics(&kafka, std::slice::from_ref(&topic), true).await?;
                anyhow::Ok(producer(&kafka)?)
            };
            let sender = match sender.await {
                Ok(sender) => sender,
                Err(e) => return eprintln!("fake instance cannot report: {e:#}"),
            };
            let mut status = status.clone();
            loop {
                status.versions = versions.lock().unwrap_or_else(PoisonError::into_inner).clone();
                status.heartbeat_at = Utc::now();
                let value = serde_json::to_vec(&status).unwrap_or_default();
                let sent = sender.send(
                    record(&topic, &status.instance, &value, OwnedHeaders::new()),
                    Duration::from_secs(10),
                );
                if let Err((e, _)) = sent.await {
                    eprintln!("fake heartbeat not sent: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::join!(apply, heartbeat);
    });
    (id, task)
}

/// Wait until `instance` is listed live (its first heartbeat is on the status topic).
async fn until_live(env: &TestEnv, instance: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        let live = control::status::instances(&env.config.kafka, HEARTBEAT, false).await?;
        if live.iter().any(|i| i.status.instance == instance) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{instance} never reported")
}

#[tokio::test]
async fn status_lists_live_instances_and_all_marks_the_dead() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let dead = instance_status("sagas", TimeDelta::hours(1), BTreeMap::new());
    report(&env.config.kafka, &dead).await?;
    let (live, task) = fake_instance(&env, "sagas", false);
    until_live(&env, &live).await?;

    let (outcome, listed) = run(&env, &["status"]).await;
    assert_eq!(outcome, Outcome::Done);
    let statuses: Vec<InstanceStatus> = serde_json::from_value(listed)?;
    assert_eq!(statuses.len(), 1, "only the live one: {statuses:?}");
    assert_eq!(statuses[0].instance, live);
    assert_eq!((statuses[0].pid, statuses[0].host.as_str()), (4242, "test-host"));
    assert_eq!(statuses[0].settings.max_concurrency, Some(3));

    let (_, listed) = run(&env, &["status", "--all"]).await;
    let mut seen: Vec<(String, bool)> = listed
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["instance"].as_str().unwrap_or_default().to_owned(),
                        i["live"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    seen.sort();
    let mut expected = vec![(live.clone(), true), (dead.instance.clone(), false)];
    expected.sort();
    assert_eq!(seen, expected);

    // The table for people names the instance and its limit.
    let mut out = Vec::new();
    let mut human = cli(&env, &["status"]);
    human.json = false;
    control::run(&human, &mut out).await?;
    task.abort();
    let table = String::from_utf8(out)?;
    assert!(
        table.contains(&live) && !table.contains(&dead.instance),
        "{table}"
    );
    assert!(
        table.contains("MAX-CONCURRENCY") && table.contains("1 live instance(s)"),
        "{table}"
    );
    Ok(())
}

#[tokio::test]
async fn wait_succeeds_once_every_live_instance_addressed_applied_the_message() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (applier, task) = fake_instance(&env, "projectors", true);
    // Another service's instance that applies nothing: not addressed, not waited for.
    let (_, bystander) = fake_instance(&env, "sagas", false);
    until_live(&env, &applier).await?;

    let (outcome, sent) = run(
        &env,
        &[
            "set",
            "projectors",
            "max-concurrency",
            "2",
            "--wait",
            "--timeout",
            "15",
        ],
    )
    .await;
    task.abort();
    bystander.abort();
    assert_eq!(outcome, Outcome::Done, "{sent:#}");
    assert_eq!(sent["outcome"], "applied");
    assert_eq!(sent["key"], "projectors/max_concurrency");
    let applied: Vec<&str> = sent["applied"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["instance"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(applied, [applier.as_str()]);
    assert!(sent["applied"][0]["version"].as_i64() >= sent["message"]["version"].as_i64());
    assert_eq!(sent["pending"], serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn wait_times_out_naming_the_laggards_and_fails_without_live_instances() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    // Alive, but never applies the new message.
    let (laggard, task) = fake_instance(&env, "command-api", false);
    until_live(&env, &laggard).await?;

    let (outcome, sent) = run(&env, &["freeze", "all", "--wait", "--timeout", "1"]).await;
    task.abort();
    let Outcome::Failed(reason) = outcome else {
        panic!("no timeout: {sent:#}");
    };
    assert!(
        reason.contains(&laggard) && reason.contains("within 1s"),
        "{reason}"
    );
    assert_eq!(sent["outcome"], "timed_out");
    assert_eq!(sent["pending"][0]["instance"], laggard.as_str());

    // Nobody runs `relay`: waiting for it fails at once, sending alone does not.
    let (outcome, sent) = run(&env, &["log-level", "relay", "debug", "--wait"]).await;
    assert_eq!(
        outcome,
        Outcome::Failed("no live instance of relay".into()),
        "{sent:#}"
    );
    let (outcome, _) = run(&env, &["log-level", "relay", "debug"]).await;
    assert_eq!(outcome, Outcome::Done);
    Ok(())
}

// ---- 4. dead letters -------------------------------------------------------------------------

fn event(event_type: &str, version: i64) -> RecordedEvent {
    let now = Utc::now();
    RecordedEvent {
        global_position: 100 + version,
        stream_id: Uuid::new_v4(),
        stream_type: "job".into(),
        version,
        event_type: event_type.into(),
        schema_version: 1,
        payload: serde_json::json!({ "type": event_type }),
        metadata: EventMetadata::new(Uuid::new_v4(), None, now),
        recorded_at: now,
    }
}

/// The topic the test's events are parked from (as the consumer toolkit records it).
const ORIGIN: &str = "origin";

async fn park(kafka: &KafkaConfig, topic: &str, event: &RecordedEvent, error: &str) -> anyhow::Result<()> {
    let value = serde_json::to_vec(event)?;
    let origin = format!("{}.{ORIGIN}", kafka.topic_prefix);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "error",
            value: Some(error),
        })
        .insert(Header {
            key: "topic",
            value: Some(origin.as_str()),
        })
        .insert(Header {
            key: "attempts",
            value: Some("5"),
        });
    producer(kafka)?
        .send(
            record(topic, &event.stream_id.to_string(), &value, headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

#[tokio::test]
async fn dlq_lists_parked_events_and_replays_exactly_the_one_asked() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let kafka = &env.config.kafka;
    let dlq = kafka.dlq_topic("picky");
    let origin = format!("{}.{ORIGIN}", kafka.topic_prefix);
    ensure_topics(kafka, &[dlq.clone(), origin.clone()], false).await?;
    let posted = event("JobPosted", 1);
    let closed = event("JobClosed", 4);
    park(kafka, &dlq, &posted, "read model down").await?;
    park(kafka, &dlq, &closed, "job not found").await?;

    let (outcome, listed) = run(&env, &["dlq", "list", "picky"]).await;
    assert_eq!(outcome, Outcome::Done);
    let rows = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{listed:#}");
    let row_of = |event: &RecordedEvent| {
        rows.iter()
            .find(|r| r["stream_id"] == event.stream_id.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{} not listed: {listed:#}", event.event_type))
    };
    let closed_row = row_of(&closed);
    assert_eq!(row_of(&posted)["error"], "read model down");
    assert_eq!(closed_row["error"], "job not found");
    assert_eq!(closed_row["event_type"], "JobClosed");
    assert_eq!(closed_row["version"], 4);
    assert_eq!(closed_row["attempts"], 5);

    let mut human = cli(&env, &["dlq", "list", "picky"]);
    human.json = false;
    let mut out = Vec::new();
    control::run(&human, &mut out).await?;
    let table = String::from_utf8(out)?;
    assert!(
        table.contains("job not found") && table.contains("JobPosted"),
        "{table}"
    );
    assert!(table.contains(&format!("2 parked event(s) in {dlq}")), "{table}");

    let id = closed_row["id"].as_str().unwrap_or_default().to_owned();
    let (outcome, replayed) = run(&env, &["dlq", "replay", "picky", "--id", &id]).await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(
        replayed["replayed"].as_array().map(Vec::len),
        Some(1),
        "{replayed:#}"
    );

    // Back on the topic it was parked from, for that consumer alone.
    let back = read_to_end(kafka, &origin, Duration::from_secs(10))
        .await?
        .unwrap_or_default();
    let [
        Record {
            key, value, headers, ..
        },
    ] = back.as_slice()
    else {
        panic!("not exactly one record replayed: {back:?}");
    };
    assert_eq!(key.as_deref(), Some(closed.stream_id.to_string().as_bytes()));
    let value: RecordedEvent = serde_json::from_slice(value.as_deref().unwrap_or_default())?;
    assert_eq!(value, closed);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(header("error").as_deref(), Some(b"job not found".as_slice()));
    assert_eq!(header("attempts").as_deref(), Some(b"5".as_slice()));
    assert_eq!(header("replay-for").as_deref(), Some(b"picky".as_slice()));

    // An id that is not parked fails and replays nothing.
    let (outcome, _) = run_expecting_no_json(&env, &["dlq", "replay", "picky", "--id", "1:999"]).await;
    assert!(
        matches!(outcome, Outcome::Failed(ref r) if r.contains("1:999")),
        "{outcome:?}"
    );
    Ok(())
}

async fn run_expecting_no_json(env: &TestEnv, args: &[&str]) -> (Outcome, String) {
    let mut out = Vec::new();
    let outcome = control::run(&cli(env, args), &mut out)
        .await
        .unwrap_or_else(|e| panic!("control {args:?} failed to run: {e:#}"));
    (outcome, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn an_admin_is_created_once_per_email_through_the_ledger() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use domain::{Role, users::User};
    use infra::http::auth::Passwords;
    let env = TestEnv::new().await?;
    let ledger = env.ledger().await?;
    let email = format!("root-{}@example.com", uuid::Uuid::new_v4().simple());
    let id = control::admin::register(&ledger, &email, "Root", "correct horse battery".into()).await?;
    let user = ledger.load::<User>(id.as_uuid()).await?.state;
    let registered = user.registered.context("registered")?;
    assert_eq!(registered.role, Role::Admin);
    assert!(
        Passwords::new(1)
            .verify("correct horse battery".into(), registered.password_hash)
            .await?
    );
    assert_eq!(
        ledger.reservation_owner("email", &email).await?,
        Some(id.as_uuid())
    );
    let again = control::admin::register(&ledger, &email, "Root", "correct horse battery".into()).await;
    assert!(
        matches!(again, Err(control::admin::AdminError::EmailTaken(_))),
        "{again:?}"
    );
    let short = control::admin::register(&ledger, "x@example.com", "Root", "short".into()).await;
    assert!(
        matches!(short, Err(control::admin::AdminError::Invalid(_))),
        "{short:?}"
    );
    Ok(())
}
