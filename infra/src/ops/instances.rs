//! The latest status report of every instance (DESIGN §10), kept current by following the
//! control status topic from its beginning, so that a page refreshed every few seconds reads
//! memory, not the topic (`control status` reads the whole topic at each call).

use chrono::{DateTime, Utc};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use uuid::Uuid;

use super::{AbortOnDrop, OpsError};
use crate::{
    config::KafkaConfig,
    control::InstanceStatus,
    kafka::{client_config, ensure_topics},
};

/// Broker metadata requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before following again after the topic could not be read.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Reports older than this are forgotten: instances come and go, memory should not grow.
const FORGET_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Instance id → its latest report.
type Reports = BTreeMap<String, InstanceStatus>;

/// The latest report of each instance, as the status topic tells them (a cheap handle).
#[derive(Debug, Clone)]
pub struct StatusBoard {
    latest: Arc<Mutex<Reports>>,
    /// Follows the topic while any handle lives.
    _follower: Arc<AbortOnDrop>,
}

impl StatusBoard {
    /// Start following the status topic of `kafka` (in the background; a broker that is down is
    /// retried, the board stays empty meanwhile).
    pub fn follow(kafka: &KafkaConfig) -> Self {
        let latest = Arc::new(Mutex::new(Reports::new()));
        let follower = tokio::spawn(follow(kafka.clone(), Arc::clone(&latest)));
        Self {
            latest,
            _follower: Arc::new(AbortOnDrop(follower)),
        }
    }

    /// Every report read so far (newer than an hour), by instance id.
    pub fn reports(&self) -> Vec<InstanceStatus> {
        lock(&self.latest).values().cloned().collect()
    }
}

/// Read the status topic from its beginning and go on with it, keeping the newest report per
/// instance; start over after an error.
async fn follow(kafka: KafkaConfig, latest: Arc<Mutex<Reports>>) {
    loop {
        let error = match subscribe(&kafka).await {
            Ok(consumer) => read(&consumer, &latest).await,
            Err(error) => error,
        };
        tracing::warn!(error = %super::describe(&error), "could not follow the control status topic; retrying");
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// A consumer of every partition of the status topic from its beginning, in a group of its own
/// that never commits.
async fn subscribe(kafka: &KafkaConfig) -> Result<StreamConsumer, OpsError> {
    let topic = kafka.control_status_topic();
    ensure_topics(kafka, std::slice::from_ref(&topic), true).await?;
    let group = format!("{}.ops-status.{}", kafka.topic_prefix, Uuid::new_v4().simple());
    let config = client_config(kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "200")
        .clone();
    // Metadata requests block: off the async threads.
    tokio::task::spawn_blocking(move || -> Result<StreamConsumer, OpsError> {
        let consumer: StreamConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), REQUEST_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(consumer)
    })
    .await?
}

/// Keep reading reports until the consumer fails.
async fn read(consumer: &StreamConsumer, latest: &Mutex<Reports>) -> OpsError {
    loop {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(error) => return error.into(),
        };
        // Records of another shape (a newer or older version) are skipped.
        let Ok(report) = serde_json::from_slice::<InstanceStatus>(message.payload().unwrap_or_default())
        else {
            continue;
        };
        remember(&mut lock(latest), report, Utc::now());
    }
}

/// Keep `report` if it is the instance's newest, and forget reports older than an hour.
fn remember(reports: &mut Reports, report: InstanceStatus, now: DateTime<Utc>) {
    let newer = reports
        .get(&report.instance)
        .is_none_or(|known| known.heartbeat_at <= report.heartbeat_at);
    if newer {
        reports.insert(report.instance.clone(), report);
    }
    reports.retain(|_, r| now - r.heartbeat_at <= FORGET_AFTER);
}

fn lock(reports: &Mutex<Reports>) -> std::sync::MutexGuard<'_, Reports> {
    reports.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Settings;

    fn report(instance: &str, at: DateTime<Utc>) -> InstanceStatus {
        InstanceStatus {
            service: "query-api".into(),
            instance: instance.into(),
            host: "h".into(),
            pid: 1,
            started_at: at,
            heartbeat_at: at,
            settings: Settings::default(),
            versions: BTreeMap::new(),
        }
    }

    #[test]
    fn the_newest_report_per_instance_is_kept_and_old_ones_forgotten() {
        let now = Utc::now();
        let mut reports = Reports::new();
        remember(
            &mut reports,
            report("a", now - chrono::TimeDelta::seconds(1)),
            now,
        );
        remember(
            &mut reports,
            report("a", now - chrono::TimeDelta::seconds(5)),
            now,
        );
        assert_eq!(reports["a"].heartbeat_at, now - chrono::TimeDelta::seconds(1));
        remember(
            &mut reports,
            report("old", now - chrono::TimeDelta::hours(2)),
            now,
        );
        assert!(
            !reports.contains_key("old"),
            "a report older than an hour is forgotten"
        );
        assert_eq!(reports.len(), 1);
    }
}
