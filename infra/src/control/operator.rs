//! The operator's side (the `control` CLI): send a signed message, read what every instance
//! reports, read the messages in force.

use rdkafka::{Message, message::OwnedHeaders};
use std::{collections::BTreeMap, time::Duration};
use uuid::Uuid;

use super::{
    ControlError, InstanceStatus,
    listener::{self, reader},
    message::{ControlKey, ControlMessage},
};
use crate::{
    config::KafkaConfig,
    kafka::{ensure_topics, producer, record},
};

/// Longest a read of a topic to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Sign `message` and put it on the control topic; returns once the broker has it.
pub async fn send(
    kafka: &KafkaConfig,
    key: &ControlKey,
    message: &ControlMessage,
) -> Result<(), ControlError> {
    let topic = kafka.control_topic();
    ensure_topics(kafka, &[topic.clone(), kafka.control_status_topic()], true).await?;
    let value = serde_json::to_vec(&key.sign(message)?)?;
    producer(kafka)?
        .send(
            record(&topic, &message.key(), &value, OwnedHeaders::new()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| ControlError::Client(e))?;
    Ok(())
}

/// The latest report of every instance that ever reported (by instance id).
pub async fn statuses(kafka: &KafkaConfig) -> Result<Vec<InstanceStatus>, ControlError> {
    let topic = kafka.control_status_topic();
    ensure_topics(kafka, std::slice::from_ref(&topic), true).await?;
    let mut latest = BTreeMap::new();
    read_to_end(kafka, &topic, |_, value| {
        if let Ok(status) = serde_json::from_slice::<InstanceStatus>(value) {
            latest.insert(status.instance.clone(), status);
        }
    })
    .await?;
    Ok(latest.into_values().collect())
}

/// The latest record of every key of the control topic, opened with `key` (records that do not
/// open are returned with the reason).
pub async fn messages(
    kafka: &KafkaConfig,
    key: &ControlKey,
) -> Result<BTreeMap<String, Result<ControlMessage, String>>, ControlError> {
    let topic = kafka.control_topic();
    ensure_topics(kafka, std::slice::from_ref(&topic), true).await?;
    let mut latest = BTreeMap::new();
    read_to_end(kafka, &topic, |record_key, value| {
        latest.insert(record_key.to_owned(), key.open(value).map_err(|e| e.to_string()));
    })
    .await?;
    Ok(latest)
}

/// Read `topic` from its beginning to its end, in no group.
async fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<(), ControlError> {
    let consumer = reader(kafka, topic, &format!("operator-{}", Uuid::new_v4().simple()))?;
    listener::read_to_end(&consumer, topic, READ_TIMEOUT, |message| {
        let record_key = String::from_utf8_lossy(message.key().unwrap_or_default());
        each(&record_key, message.payload().unwrap_or_default());
    })
    .await
}
