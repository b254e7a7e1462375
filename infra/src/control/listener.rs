//! The control-topic listener every instance runs (DESIGN §10). At boot it reads the control
//! topic from the beginning up to its end and applies the latest value of each setting before
//! the service takes traffic; then it follows the topic, applying each new message at once. It
//! reports what it applied on the status topic every heartbeat. A record that is malformed,
//! unsigned, badly signed or stale is logged and counted
//! (`workup_control_messages_total{outcome}`), never applied.

use chrono::{DateTime, Utc};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::{BorrowedMessage, OwnedHeaders},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

use super::{
    ControlError, InstanceStatus,
    message::ControlKey,
    settings::{Desired, Settings},
};
use crate::{
    config::{Config, ControlConfig, Environment, KafkaConfig},
    kafka::{client_config, ensure_topics, producer, record},
    telemetry,
};

/// Longest a boot waits for the control topic to be read.
const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// Broker metadata and watermark requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The control reader's fetch wait: settings arrive within about half of it (well inside the
/// promised second), and an idle reader costs little CPU (every instance runs one).
const FETCH_WAIT_MS: &str = "100";

/// An instance's membership of the control plane: its current settings, and the tasks that
/// follow the topic and send its heartbeats (stopped when this is dropped).
#[derive(Debug)]
pub struct ControlPlane {
    settings: watch::Receiver<Settings>,
    instance_id: String,
    _tasks: Vec<AbortOnDrop>,
}

impl ControlPlane {
    /// Join as an instance of `service`: read the control topic to its end and apply it, then
    /// follow it and report on the status topic.
    pub async fn join(config: &Config, service: &'static str) -> Result<Self, ControlError> {
        Self::join_with(&config.kafka, &config.control, config.auth.environment, service).await
    }

    /// [`ControlPlane::join`] for a process with only these settings (the `relay` binary).
    pub async fn join_with(
        kafka: &KafkaConfig,
        control: &ControlConfig,
        environment: Environment,
        service: &'static str,
    ) -> Result<Self, ControlError> {
        let key = control.signing_key(environment)?;
        let (control_topic, status_topic) = (kafka.control_topic(), kafka.control_status_topic());
        ensure_topics(kafka, &[control_topic.clone(), status_topic.clone()], true).await?;
        let instance_id = format!("{service}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let consumer = reader(kafka, &control_topic, &instance_id)?;
        let mut desired = Desired::new(service);
        read_to_end(&consumer, &control_topic, BOOT_TIMEOUT, |message| {
            take(&key, &mut desired, message.payload().unwrap_or_default());
        })
        .await?;
        let applied = Arc::new(Mutex::new(desired));
        let first = lock(&applied).settings();
        apply_log_level(&first);
        tracing::info!(service, instance = %instance_id, settings = ?first, "control settings applied at boot");
        let (sender, settings) = watch::channel(first);
        let status = InstanceStatus {
            service: service.to_owned(),
            instance: instance_id.clone(),
            host: host_name(),
            pid: std::process::id(),
            started_at: Utc::now(),
            heartbeat_at: Utc::now(),
            settings: settings.borrow().clone(),
            versions: lock(&applied).versions().clone(),
        };
        let follow = tokio::spawn(follow(consumer, key, applied.clone(), sender));
        let heartbeat = tokio::spawn(heartbeat(
            kafka.clone(),
            status_topic,
            status,
            applied,
            Duration::from_millis(control.heartbeat_ms.max(50)),
        ));
        Ok(Self {
            settings,
            instance_id,
            _tasks: vec![AbortOnDrop(follow), AbortOnDrop(heartbeat)],
        })
    }

    /// The settings as they change.
    pub fn settings(&self) -> watch::Receiver<Settings> {
        self.settings.clone()
    }

    /// This instance's id in status reports.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// A consumer of `topic` from its beginning, in no group (nothing is committed).
pub(super) fn reader(kafka: &KafkaConfig, topic: &str, name: &str) -> Result<StreamConsumer, ControlError> {
    let consumer: StreamConsumer = client_config(kafka)
        .set(
            "group.id",
            format!("{}.control-reader.{name}", kafka.topic_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Hand `each` every record of `topic` on `consumer` (from [`reader`]) up to the end each
/// partition had when called; the consumer goes on from there. Fails after `timeout`.
pub(super) async fn read_to_end(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), ControlError> {
    // The end (high watermark) of each partition that has records.
    let mut ends = Vec::new();
    for element in consumer.assignment()?.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), REQUEST_TIMEOUT)?;
        if high > low {
            ends.push((element.partition(), high));
        }
    }
    let started = std::time::Instant::now();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    while ends
        .iter()
        .any(|(p, end)| positions.get(p).copied().unwrap_or(-1) + 1 < *end)
    {
        let left = timeout.saturating_sub(started.elapsed());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .map_err(|_| ControlError::BootTimeout(timeout))??;
        positions.insert(message.partition(), message.offset());
        each(&message);
    }
    Ok(())
}

/// Open and apply one record, counting the outcome.
fn take(key: &ControlKey, desired: &mut Desired, value: &[u8]) -> bool {
    let outcome = match key.open(value) {
        Ok(message) => {
            let description = format!("{} = {:?} (v{})", message.key(), message.setting, message.version);
            let applied = desired.apply(message);
            if applied == super::settings::Applied::Stale {
                tracing::warn!(message = %description, "stale control message ignored");
            }
            applied.label()
        }
        Err(rejected) => {
            tracing::warn!(%rejected, "control record rejected: not applied");
            rejected.label()
        }
    };
    metrics::counter!("workup_control_messages_total", "outcome" => outcome).increment(1);
    outcome == "applied"
}

/// Follow the topic; publish changed settings.
async fn follow(
    consumer: StreamConsumer,
    key: ControlKey,
    desired: Arc<Mutex<Desired>>,
    sender: watch::Sender<Settings>,
) {
    loop {
        let message = match consumer.recv().await {
            Ok(m) => m,
            Err(error) => {
                tracing::warn!(%error, "control topic read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let settings = {
            let mut desired = lock(&desired);
            if !take(&key, &mut desired, message.payload().unwrap_or_default()) {
                continue;
            }
            desired.settings()
        };
        if *sender.borrow() != settings {
            apply_log_level(&settings);
            tracing::info!(?settings, "control settings changed");
            sender.send_replace(settings);
        }
    }
}

/// Report this instance's settings every `every`.
async fn heartbeat(
    kafka: KafkaConfig,
    topic: String,
    mut status: InstanceStatus,
    desired: Arc<Mutex<Desired>>,
    every: Duration,
) {
    let producer = match producer(&kafka) {
        Ok(p) => p,
        Err(error) => {
            tracing::error!(%error, "no control status producer: this instance will not be listed");
            return;
        }
    };
    loop {
        {
            let desired = lock(&desired);
            status.settings = desired.settings();
            status.versions = desired.versions().clone();
        }
        status.heartbeat_at = Utc::now();
        match serde_json::to_vec(&status) {
            Ok(value) => {
                let sent = producer
                    .send(
                        record(&topic, &status.instance, &value, OwnedHeaders::new()),
                        Duration::from_secs(5),
                    )
                    .await;
                if let Err((error, _)) = sent {
                    tracing::warn!(%error, "control heartbeat not sent");
                }
            }
            Err(error) => tracing::error!(%error, "control heartbeat not encoded"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The log filter: the operator's, or the one the process started with.
fn apply_log_level(settings: &Settings) {
    let Some(handle) = telemetry::log_level_handle() else {
        return;
    };
    let filter = settings
        .log_level
        .clone()
        .unwrap_or_else(telemetry::initial_filter);
    match EnvFilter::try_new(&filter) {
        Ok(filter) => {
            if let Err(error) = handle.reload(filter) {
                tracing::warn!(%error, "log filter not changed");
            }
        }
        Err(error) => tracing::warn!(%filter, %error, "invalid log filter ignored"),
    }
}

fn lock(desired: &Mutex<Desired>) -> std::sync::MutexGuard<'_, Desired> {
    desired.lock().unwrap_or_else(PoisonError::into_inner)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// A background task that ends when this handle is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// When a status report counts as an instance alive.
pub fn is_live(status: &InstanceStatus, now: DateTime<Utc>, heartbeat: Duration) -> bool {
    let grace = chrono::TimeDelta::from_std(heartbeat * 5).unwrap_or(chrono::TimeDelta::MAX);
    now - status.heartbeat_at <= grace
}
