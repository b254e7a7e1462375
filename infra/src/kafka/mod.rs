//! Kafka (DESIGN §5): clients, topics and the event record format.
//!
//! - [`consumer`]: the consumer toolkit used by projectors and sagas.
//! - [`lag`]: a consumer group's lag (events, seconds, dead letters) read from the broker.
//! - the message of an event: key = stream id, value = the [`RecordedEvent`] as JSON (event
//!   type, schema version, stream id, version, global position, metadata), no headers.

pub mod consumer;
pub mod lag;

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::RDKafkaErrorCode,
    message::OwnedHeaders,
    producer::{FutureProducer, FutureRecord},
};

use crate::{config::KafkaConfig, ledger::RecordedEvent};

/// Why a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The client failed.
    #[error("kafka client error")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A topic could not be created.
    #[error("could not create topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
    /// An event could not be encoded as a message.
    #[error("could not encode an event")]
    Encode(#[from] serde_json::Error),
}

/// Base client settings.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &config.brokers)
        .set("socket.keepalive.enable", "true")
        // librdkafka logs to stderr by default; errors surface through our results instead.
        .set("log_level", "3");
    cfg
}

/// The producer: acks=all, retries keeping the order per partition. No Kafka transactions:
/// consumers de-duplicate by (stream id, version) instead.
///
/// Idempotent only with `WORKUP_KAFKA_IDEMPOTENCE=true` (for real Kafka): the local broker
/// (tansu 0.6.0) panics its storage on idempotent produce requests (`idempotent_message_check`:
/// "more or less than one row"), after which it fails every request until restarted. Without
/// idempotence one request is in flight per connection, so order still holds, and a retried
/// request may write a duplicate, which consumers already drop (DESIGN §5).
pub fn producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    Ok(ordered_producer(config)
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// The relay's producer: [`producer`]'s settings, but a queued message is retried until it is
/// delivered (no timeout; only an error no retry can cure fails it), so a later message of a
/// partition is never delivered after an earlier one failed; batches of up to 10,000 messages,
/// gathered for `relay_linger_ms`.
pub fn relay_producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    Ok(ordered_producer(config)
        .set("message.timeout.ms", "0")
        .set("batch.num.messages", "10000")
        .set("linger.ms", config.relay_linger_ms.to_string())
        .create()?)
}

fn ordered_producer(config: &KafkaConfig) -> ClientConfig {
    let mut cfg = client_config(config);
    if config.idempotence {
        cfg.set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5");
    } else {
        cfg.set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1");
    }
    cfg.set("acks", "all").set("linger.ms", "2");
    cfg
}

/// Create the topics that do not exist yet (the broker does not auto-create them).
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &[String],
    compacted: bool,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            let topic = NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            );
            if compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(new_topics.iter(), &AdminOptions::new())
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// The topics of every bounded context.
pub fn context_topics(config: &KafkaConfig) -> Vec<String> {
    domain::BoundedContext::ALL
        .iter()
        .map(|c| config.context_topic(*c))
        .collect()
}

/// Encode an event as a message key (its stream id) and value (the [`RecordedEvent`] as JSON).
///
/// No headers: everything a consumer needs is in the value, and the local broker stores each
/// header as a row of its own, which cut its intake from 59,000 to 12,000 events/s in
/// `ledger_bench` (issue 15); real Kafka is indifferent either way.
pub fn encode_event(event: &RecordedEvent) -> Result<(String, Vec<u8>), KafkaError> {
    Ok((event.stream_id.to_string(), serde_json::to_vec(event)?))
}

/// The record of an encoded event for `topic`.
pub fn record<'a>(
    topic: &'a str,
    key: &'a str,
    value: &'a [u8],
    headers: OwnedHeaders,
) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(topic).key(key).payload(value).headers(headers)
}
