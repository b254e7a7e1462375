//! The platform's consumer groups (projectors, sagas, the withdrawal worker's intake) and their
//! lag and dead-letter sizes, read from the broker by the same probe the consumers publish
//! `workup_projector_lag_*` with ([`crate::kafka::lag`]).
//!
//! The probes (two broker clients per group) are made on the first measurement, so a query-api
//! whose page nobody opens holds none, and kept; a measurement less than a second old is
//! answered again, so several open pages cost the broker one measurement a second at most.

use domain::BoundedContext;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use super::OpsError;
use crate::{
    config::KafkaConfig,
    kafka::{
        consumer::group_id,
        lag::{Lag, LagProbe},
    },
};

/// How long a measurement is answered again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Every consumer the platform runs: its service, its name (group suffix and dead-letter topic
/// suffix) and the contexts whose topics it reads. Kept in step with `projectors/src/catalog.rs`
/// (`sources`), `sagas/src/runner.rs` and `workers/src/runner.rs` (`GROUP`).
const CONSUMERS: [(&str, &str, &[BoundedContext]); 8] = [
    ("projectors", "users", &[BoundedContext::Users]),
    (
        "projectors",
        "jobs",
        &[BoundedContext::Jobs, BoundedContext::Users],
    ),
    ("projectors", "contracts", &[BoundedContext::Contracts]),
    ("projectors", "payments", &[BoundedContext::Payments]),
    ("sagas", "contract-initiation", &[BoundedContext::Jobs]),
    ("sagas", "payment-requests", &[BoundedContext::Contracts]),
    ("sagas", "completion", &[BoundedContext::Payments]),
    (
        "withdrawal-worker",
        "withdrawal-worker",
        &[BoundedContext::Payments],
    ),
];

/// A consumer group of the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    /// The service whose instances run it.
    pub service: &'static str,
    /// The consumer's name, e.g. `jobs`.
    pub name: &'static str,
    /// Its group id, e.g. `workup.jobs`.
    pub group: String,
    /// The topics it reads.
    pub topics: Vec<String>,
    /// Where it parks the events it cannot apply.
    pub dlq_topic: String,
}

/// Every consumer group of the platform under `kafka`'s topic prefix.
pub fn platform_consumers(kafka: &KafkaConfig) -> Vec<ConsumerGroup> {
    CONSUMERS
        .into_iter()
        .map(|(service, name, contexts)| ConsumerGroup {
            service,
            name,
            group: group_id(kafka, name),
            topics: contexts.iter().map(|c| kafka.context_topic(*c)).collect(),
            dlq_topic: kafka.dlq_topic(name),
        })
        .collect()
}

/// One group's measurement, or why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLag {
    /// The group.
    pub consumer: ConsumerGroup,
    /// Its lag and dead-letter size, or the broker's error.
    pub lag: Result<Lag, String>,
}

/// Measures the lag of every consumer group of the platform (a cheap handle).
#[derive(Debug, Clone)]
pub struct LagBoard {
    kafka: KafkaConfig,
    state: Arc<Mutex<Probes>>,
}

/// The probes made so far and the last measurement.
#[derive(Default)]
struct Probes {
    /// Group id → its probe.
    probes: HashMap<String, LagProbe>,
    last: Option<(Instant, Vec<GroupLag>)>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("groups", &self.probes.len())
            .finish_non_exhaustive()
    }
}

impl LagBoard {
    /// A board of the consumer groups under `kafka`'s prefix (no broker client yet).
    pub fn new(kafka: &KafkaConfig) -> Self {
        Self {
            kafka: kafka.clone(),
            state: Arc::default(),
        }
    }

    /// Every group's lag now (or as measured less than a second ago), in the order of
    /// [`platform_consumers`]. A group that cannot be measured carries its error.
    pub async fn measure(&self) -> Result<Vec<GroupLag>, OpsError> {
        let (kafka, state) = (self.kafka.clone(), Arc::clone(&self.state));
        // The probes' broker calls block: off the async threads.
        Ok(tokio::task::spawn_blocking(move || measure_all(&kafka, &state)).await?)
    }
}

fn measure_all(kafka: &KafkaConfig, state: &Mutex<Probes>) -> Vec<GroupLag> {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, last)) = &state.last
        && at.elapsed() < FRESH_FOR
    {
        return last.clone();
    }
    let measured: Vec<GroupLag> = platform_consumers(kafka)
        .into_iter()
        .map(|consumer| {
            let lag = probe(kafka, &mut state.probes, &consumer)
                .and_then(|p| p.measure().map_err(|e| super::describe(&e)));
            GroupLag { consumer, lag }
        })
        .collect();
    state.last = Some((Instant::now(), measured.clone()));
    measured
}

/// The probe of `consumer`, made now if it is the first time (or the last attempt failed).
fn probe<'a>(
    kafka: &KafkaConfig,
    probes: &'a mut HashMap<String, LagProbe>,
    consumer: &ConsumerGroup,
) -> Result<&'a LagProbe, String> {
    use std::collections::hash_map::Entry;
    match probes.entry(consumer.group.clone()) {
        Entry::Occupied(entry) => Ok(entry.into_mut()),
        Entry::Vacant(entry) => {
            let probe = LagProbe::new(
                kafka,
                &consumer.group,
                consumer.topics.clone(),
                consumer.dlq_topic.clone(),
            )
            .map_err(|e| super::describe(&e))?;
            Ok(entry.insert(probe))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumers_are_named_as_their_services_name_them() {
        let mut kafka = crate::config::Config::local().kafka;
        kafka.topic_prefix = "t".into();
        let consumers = platform_consumers(&kafka);
        let jobs = consumers
            .iter()
            .find(|c| c.name == "jobs")
            .expect("the jobs projector");
        assert_eq!(jobs.group, "t.jobs");
        assert_eq!(jobs.topics, ["t.jobs", "t.users"]);
        assert_eq!(jobs.dlq_topic, "t.dlq.jobs");
        let worker = consumers
            .iter()
            .find(|c| c.service == "withdrawal-worker")
            .expect("the withdrawal worker");
        assert_eq!(worker.group, "t.withdrawal-worker");
        assert_eq!(worker.topics, ["t.payments"]);
    }
}
