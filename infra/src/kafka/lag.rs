//! Consumer-group lag (DESIGN §6: each projector exposes its lag, in events and seconds).
//!
//! Measured from the broker, not from the consumer's own progress, so that a stuck consumer
//! shows a growing lag instead of a frozen one. Every `interval`:
//! - **events behind**: per partition of the group's topics, the high watermark minus the
//!   group's committed offset (the low watermark when nothing is committed yet), summed;
//! - **seconds behind**: the age of the oldest event not applied yet: for each partition that is
//!   behind, the message at the committed offset is read and its `recorded_at` taken (the
//!   message timestamp when the value is not an event), and the oldest one counts; 0 when
//!   nothing is behind;
//! - **dead-letter size**: the records held by the group's dead-letter topic (high minus low
//!   watermark, summed over partitions).
//!
//! Published as `workup_projector_lag_events`, `workup_projector_lag_seconds` and
//! `workup_projector_dlq_events`, labelled `projector` (the consumer's name) and `group` (the
//! consumer group id, which tells apart several deployments recording into one process, as
//! tests do). Every running instance of a projector reports the lag of the whole group.
//!
//! The probe uses its own two clients: one carrying the group id only to read its committed
//! offsets (it never joins the group nor commits), and one with no group membership that reads
//! single messages by offset. Offsets are committed about once a second (auto-commit of stored
//! offsets), so an idle group may show a little lag for up to that long.

use chrono::{DateTime, Utc};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde::Deserialize;
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::sync::watch;

use super::{KafkaError, client_config};
use crate::config::KafkaConfig;

/// How long one broker request of a probe may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One measurement of a consumer group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Events published but not yet applied (committed) by the group.
    pub events: i64,
    /// Age of the oldest event not yet applied, in seconds (0 when none).
    pub seconds: f64,
    /// Records in the group's dead-letter topic.
    pub dlq_events: i64,
    /// The group's committed offsets, summed over its partitions: unchanged while nobody in
    /// the group makes progress.
    pub committed: i64,
}

/// Reads the lag of one consumer group from the broker (blocking calls: run it off the async
/// threads, as [`monitor`] does).
pub struct LagProbe {
    /// Carries the group id, to read the group's committed offsets; never subscribes.
    group: BaseConsumer,
    /// Reads one message at a given offset; no group membership, never commits.
    reader: BaseConsumer,
    topics: Vec<String>,
    dlq_topic: String,
}

/// A partition of a topic.
type Partition = (String, i32);

/// The only field of an event message the probe needs.
#[derive(Deserialize)]
struct Recorded {
    recorded_at: DateTime<Utc>,
}

impl LagProbe {
    /// A probe of group `group_id` on `topics`, whose dead letters go to `dlq_topic`.
    pub fn new(
        kafka: &KafkaConfig,
        group_id: &str,
        topics: Vec<String>,
        dlq_topic: String,
    ) -> Result<Self, KafkaError> {
        let group: BaseConsumer = client_config(kafka)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?;
        let reader: BaseConsumer = client_config(kafka)
            // Required by the client; this group is never joined and nothing is committed to it.
            .set("group.id", format!("{group_id}.lag-probe"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
            .create()?;
        Ok(Self {
            group,
            reader,
            topics,
            dlq_topic,
        })
    }

    /// Measure the group's lag now.
    pub fn measure(&self) -> Result<Lag, KafkaError> {
        // Serve the clients' pending events (errors, logs): nothing else polls them.
        let _ = self.group.poll(Duration::ZERO);
        let mut partitions = TopicPartitionList::new();
        for topic in &self.topics {
            for partition in self.partitions(topic)? {
                partitions.add_partition(topic, partition);
            }
        }
        let committed = self.group.committed_offsets(partitions, REQUEST_TIMEOUT)?;
        let mut events = 0;
        let mut committed_total = 0;
        let mut behind: HashMap<Partition, i64> = HashMap::new();
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = self.group.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?;
            let next = match element.offset() {
                Offset::Offset(n) => n.max(low),
                // Nothing committed yet: the group starts at the earliest record.
                _ => low,
            };
            committed_total += next;
            if high > next {
                events += high - next;
                behind.insert((topic.to_owned(), partition), next);
            }
        }
        let seconds = self.oldest_age(&behind)?;
        let mut dlq_events = 0;
        for partition in self.partitions(&self.dlq_topic)? {
            let (low, high) = self
                .group
                .fetch_watermarks(&self.dlq_topic, partition, REQUEST_TIMEOUT)?;
            dlq_events += (high - low).max(0);
        }
        Ok(Lag {
            events,
            seconds,
            dlq_events,
            committed: committed_total,
        })
    }

    /// The partitions of `topic`.
    fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        let metadata = self.group.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// The age in seconds of the oldest message at the given next offsets (0 when none; a
    /// partition whose message cannot be read within the timeout is left out).
    fn oldest_age(&self, next: &HashMap<Partition, i64>) -> Result<f64, KafkaError> {
        if next.is_empty() {
            return Ok(0.0);
        }
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            assignment.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        self.reader.assign(&assignment)?;
        let mut waiting = next.clone();
        let mut oldest: Option<DateTime<Utc>> = None;
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while !waiting.is_empty() && std::time::Instant::now() < deadline {
            let Some(Ok(message)) = self.reader.poll(Duration::from_millis(100)) else {
                continue;
            };
            let key = (message.topic().to_owned(), message.partition());
            if waiting.get(&key) != Some(&message.offset()) {
                continue;
            }
            waiting.remove(&key);
            let at = message
                .payload()
                .and_then(|p| serde_json::from_slice::<Recorded>(p).ok())
                .map(|r| r.recorded_at)
                .or_else(|| {
                    message
                        .timestamp()
                        .to_millis()
                        .and_then(DateTime::from_timestamp_millis)
                });
            if let Some(at) = at {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        self.reader.unassign()?;
        Ok(oldest.map_or(0.0, |at| {
            (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
        }))
    }
}

/// Publish the lag of consumer `name` (group `group_id`) every `every` until `shutdown` turns
/// true, and hand each measurement to `latest`. A failed measurement is logged and the gauges
/// keep their last value.
pub async fn monitor(
    probe: LagProbe,
    name: String,
    group_id: String,
    every: Duration,
    latest: watch::Sender<Option<Lag>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let probe = Arc::new(probe);
    let labels = [("projector", name.clone()), ("group", group_id)];
    loop {
        let measuring = Arc::clone(&probe);
        match tokio::task::spawn_blocking(move || measuring.measure()).await {
            Ok(Ok(lag)) => {
                metrics::gauge!("workup_projector_lag_events", &labels).set(lag.events as f64);
                metrics::gauge!("workup_projector_lag_seconds", &labels).set(lag.seconds);
                metrics::gauge!("workup_projector_dlq_events", &labels).set(lag.dlq_events as f64);
                latest.send_replace(Some(lag));
            }
            Ok(Err(error)) => tracing::warn!(consumer = %name, %error, "could not measure the consumer lag"),
            Err(error) => tracing::warn!(consumer = %name, %error, "the lag probe failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
