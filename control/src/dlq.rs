//! Dead letters (DESIGN §5): a consumer named N parks the events it cannot handle in
//! `<prefix>.dlq.N` (key = stream id, value = the event as JSON, headers `error` and
//! `attempts`). Replaying produces a parked record back to the topic it was parked from (its
//! `topic` header), with a `replay-for: N` header: consumer N applies it again, every other
//! consumer of the topic skips it; N's handlers are idempotent, so a replay may repeat.

use infra::{
    config::KafkaConfig,
    kafka::{
        KafkaError,
        consumer::{PARKED_FROM_HEADER, REPLAY_FOR_HEADER},
        producer,
    },
    ledger::RecordedEvent,
};
use rdkafka::{message::Header, producer::FutureRecord};
use serde::Serialize;
use std::{io::Write, time::Duration};

use crate::{
    Outcome,
    cli::{Cli, DlqCommand, DlqId},
    output::{self, Table},
    topic::{ReadError, Record, read_to_end},
};

/// Longest a read of a dead-letter topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the broker may take to accept one replayed record.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why dead letters could not be read or replayed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The dead-letter topic could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The producer could not be made.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A parked record does not say which topic it came from (parked by an older version).
    #[error("{id} does not name the topic it was parked from; replay it by hand")]
    NoOrigin {
        /// The parked event.
        id: DlqId,
    },
    /// The broker did not answer in time.
    #[error("the Kafka broker did not answer within {0:?}")]
    Timeout(Duration),
    /// A record could not be replayed.
    #[error("could not replay {id} to {topic}: {source}")]
    Send {
        /// The parked event.
        id: DlqId,
        /// The topic it was parked from.
        topic: String,
        /// The broker's answer.
        source: rdkafka::error::KafkaError,
    },
}

/// One parked event.
#[derive(Debug, Clone)]
pub struct Parked {
    /// Where it is in the dead-letter topic.
    pub id: DlqId,
    /// The record as parked.
    pub record: Record,
    /// The event, when the value is one (a record the consumer could not decode is parked too).
    pub event: Option<RecordedEvent>,
}

/// A parked event as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedRow {
    /// `<partition>:<offset>`, the id `dlq replay --id` takes.
    pub id: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The record key: the stream id.
    pub stream_id: String,
    /// The stream's type, if the value is an event.
    pub stream_type: Option<String>,
    /// The event's version in its stream, if the value is an event.
    pub version: Option<i64>,
    /// The event's type, if the value is an event.
    pub event_type: Option<String>,
    /// Why the consumer parked it (`error` header).
    pub error: Option<String>,
    /// How many times the consumer tried (`attempts` header; 0: it could not decode it).
    pub attempts: Option<u32>,
}

impl Parked {
    /// The row `dlq list` prints.
    pub fn row(&self) -> ParkedRow {
        let key = self
            .record
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        ParkedRow {
            id: self.id.to_string(),
            partition: self.id.partition,
            offset: self.id.offset,
            stream_id: key
                .or_else(|| self.event.as_ref().map(|e| e.stream_id.to_string()))
                .unwrap_or_default(),
            stream_type: self.event.as_ref().map(|e| e.stream_type.clone()),
            version: self.event.as_ref().map(|e| e.version),
            event_type: self.event.as_ref().map(|e| e.event_type.clone()),
            error: self.record.header("error"),
            attempts: self.record.header("attempts").and_then(|a| a.parse().ok()),
        }
    }
}

/// The events `consumer` parked, oldest first per partition (none if it never parked any).
pub async fn parked(kafka: &KafkaConfig, consumer: &str) -> Result<Vec<Parked>, DlqError> {
    let topic = kafka.dlq_topic(consumer);
    let records = read_to_end(kafka, &topic, READ_TIMEOUT)
        .await?
        .unwrap_or_default();
    Ok(records
        .into_iter()
        .map(|record| Parked {
            id: DlqId {
                partition: record.partition,
                offset: record.offset,
            },
            event: record
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice(v).ok()),
            record,
        })
        .collect())
}

/// Put `events` back on the topics they were parked from, unchanged (key, value, headers) plus a
/// `replay-for: consumer` header, in order; returns how many were sent.
pub async fn replay(kafka: &KafkaConfig, consumer: &str, events: &[Parked]) -> Result<usize, DlqError> {
    let producer = producer(kafka)?;
    for parked in events {
        let topic = parked
            .record
            .header(PARKED_FROM_HEADER)
            .ok_or(DlqError::NoOrigin { id: parked.id })?;
        // The record's own bytes (not `infra::kafka::record`, which wants a text key): a missing
        // key or value stays missing.
        let headers = parked.record.owned_headers().insert(Header {
            key: REPLAY_FOR_HEADER,
            value: Some(consumer),
        });
        let mut out = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = parked.record.key.as_deref() {
            out = out.key(key);
        }
        if let Some(value) = parked.record.value.as_deref() {
            out = out.payload(value);
        }
        // One at a time: a consumer sees the replayed events of a stream in their parked order.
        producer
            .send(out, SEND_TIMEOUT)
            .await
            .map_err(|(source, _)| DlqError::Send {
                id: parked.id,
                topic: topic.clone(),
                source,
            })?;
    }
    Ok(events.len())
}

/// What `dlq replay` did (`--json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// The consumer they are replayed for.
    pub consumer: String,
    /// The events replayed (each to the topic it was parked from).
    pub replayed: Vec<ParkedRow>,
}

/// Run `control dlq ...`.
pub async fn command(cli: &Cli, command: &DlqCommand, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match command {
        DlqCommand::List { consumer } => list(cli, consumer, out).await,
        DlqCommand::Replay { consumer, id } => replay_command(cli, consumer, *id, out).await,
    }
}

async fn list(cli: &Cli, consumer: &str, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let rows: Vec<ParkedRow> = parked(&cli.kafka, consumer)
        .await?
        .iter()
        .map(Parked::row)
        .collect();
    if cli.json {
        output::json(out, &rows)?;
        return Ok(Outcome::Done);
    }
    let topic = cli.kafka.dlq_topic(consumer);
    if rows.is_empty() {
        writeln!(out, "no parked event in {topic}")?;
        return Ok(Outcome::Done);
    }
    print_rows(&rows, out)?;
    writeln!(out, "{} parked event(s) in {topic}", rows.len())?;
    Ok(Outcome::Done)
}

async fn replay_command(
    cli: &Cli,
    consumer: &str,
    id: Option<DlqId>,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let mut events = parked(&cli.kafka, consumer).await?;
    if let Some(id) = id {
        events.retain(|p| p.id == id);
        if events.is_empty() {
            return Ok(Outcome::Failed(format!(
                "no parked event {id} in {} (`control dlq list {consumer}` lists them)",
                cli.kafka.dlq_topic(consumer)
            )));
        }
    }
    let count = replay(&cli.kafka, consumer, &events).await?;
    let report = ReplayReport {
        consumer: consumer.to_owned(),
        replayed: events.iter().map(Parked::row).collect(),
    };
    if cli.json {
        output::json(out, &report)?;
    } else if count == 0 {
        writeln!(
            out,
            "no parked event in {}: nothing replayed",
            cli.kafka.dlq_topic(consumer)
        )?;
    } else {
        print_rows(&report.replayed, out)?;
        writeln!(out, "{count} event(s) replayed for {consumer}")?;
    }
    Ok(Outcome::Done)
}

fn print_rows(rows: &[ParkedRow], out: &mut dyn Write) -> std::io::Result<()> {
    let mut table = Table::new(&[
        "ID",
        "PARTITION",
        "OFFSET",
        "STREAM",
        "VERSION",
        "EVENT",
        "ATTEMPTS",
        "ERROR",
    ]);
    for row in rows {
        table.row(vec![
            row.id.clone(),
            row.partition.to_string(),
            row.offset.to_string(),
            output::or_dash(row.stream_id.clone()),
            row.version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            output::or_dash(row.event_type.clone().unwrap_or_default()),
            row.attempts.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            output::or_dash(row.error.clone().unwrap_or_default()),
        ]);
    }
    table.print(out)
}
