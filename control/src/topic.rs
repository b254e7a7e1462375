//! Reading a whole topic once: from its beginning to the end it had when the read started, with
//! a consumer in no group (nothing joined, nothing committed), as `infra`'s control reader does.

use chrono::Utc;
use infra::{config::KafkaConfig, kafka::client_config};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders},
};
use std::{collections::BTreeMap, time::Duration};
use uuid::Uuid;

/// Longest one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The broker failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker knows the topic but cannot serve it.
    #[error("topic {topic}: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
    /// The end was not reached in time.
    #[error("topic {topic} could not be read to its end within {after:?}")]
    Timeout {
        /// The topic.
        topic: String,
        /// The time allowed.
        after: Duration,
    },
}

/// One record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, if any.
    pub value: Option<Vec<u8>>,
    /// Its headers in order: name and value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The value of the first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The headers, to produce them again.
    pub fn owned_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(
            OwnedHeaders::new_with_capacity(self.headers.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: value.as_deref(),
                })
            },
        )
    }
}

/// Every record of `topic` up to the end it had when the read began, in partition then offset
/// order; `None` when the topic does not exist.
pub async fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<Record>>, ReadError> {
    let consumer: StreamConsumer = client_config(kafka)
        // Required by the client, never joined: partitions are assigned by hand below.
        .set(
            "group.id",
            format!("{}.control-cli.{}", kafka.topic_prefix, Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    for found in metadata.topics() {
        if let Some(error) = found.error() {
            let code = RDKafkaErrorCode::from(error);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Ok(None);
            }
            return Err(ReadError::Topic {
                topic: topic.to_owned(),
                code,
            });
        }
        for partition in found.partitions() {
            assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
        }
    }
    if assignment.count() == 0 {
        return Ok(None);
    }
    consumer.assign(&assignment)?;

    // The end of each partition that has records; what arrives after it is left for next time.
    let mut ends = BTreeMap::new();
    for element in assignment.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), REQUEST_TIMEOUT)?;
        if high > low {
            ends.insert(element.partition(), high);
        }
    }
    let started = Utc::now();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut records = Vec::new();
    while ends
        .iter()
        .any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end)
    {
        let elapsed = (Utc::now() - started).to_std().unwrap_or_default();
        let left = timeout.saturating_sub(elapsed);
        let message =
            tokio::time::timeout(left, consumer.recv())
                .await
                .map_err(|_| ReadError::Timeout {
                    topic: topic.to_owned(),
                    after: timeout,
                })??;
        let partition = message.partition();
        next.insert(partition, message.offset() + 1);
        if ends.get(&partition).is_none_or(|end| message.offset() >= *end) {
            continue;
        }
        records.push(Record {
            partition,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(Some(records))
}
