//! The platform's consumer groups (projectors, sagas, the withdrawal worker's intake) and their
//! lag and dead-letter sizes, read from the broker by the same probe the consumers publish
//! `workup_projector_lag_*` with ([`crate::kafka::lag`]).
//!
//! The probes (two broker clients per group) are made on the first measurement, so a query-api
//! whose page nobody opens holds none, and kept; the groups are measured in parallel; a
//! measurement less than a second old is answered again, so several open pages cost the broker
//! about one measurement a second.

use domain::BoundedContext;
use std::{
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
/// Longest the groups' measurements may take (a probe waits up to 5 s for the oldest message).
const MEASURE_TIMEOUT: Duration = Duration::from_secs(6);

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

/// A measurement of every group and when it was taken.
type Measured = (Instant, Vec<GroupLag>);

/// Measures the lag of every consumer group of the platform (a cheap handle).
#[derive(Debug, Clone)]
pub struct LagBoard {
    kafka: KafkaConfig,
    /// One per group, in the order of [`platform_consumers`].
    slots: Arc<Vec<Slot>>,
    /// The last measurement and when it was taken.
    last: Arc<Mutex<Option<Measured>>>,
}

/// A group and its probe, made on its first measurement (again after a failed attempt).
struct Slot {
    consumer: ConsumerGroup,
    probe: Mutex<Option<LagProbe>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl LagBoard {
    /// A board of the consumer groups under `kafka`'s prefix (no broker client yet).
    pub fn new(kafka: &KafkaConfig) -> Self {
        let slots = platform_consumers(kafka)
            .into_iter()
            .map(|consumer| Slot {
                consumer,
                probe: Mutex::new(None),
            })
            .collect();
        Self {
            kafka: kafka.clone(),
            slots: Arc::new(slots),
            last: Arc::default(),
        }
    }

    /// Every group's lag now (or as measured less than a second ago), in the order of
    /// [`platform_consumers`]. A group that cannot be measured carries its error.
    pub async fn measure(&self) -> Result<Vec<GroupLag>, OpsError> {
        let fresh = lock(&self.last)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, last)| last.clone());
        if let Some(last) = fresh {
            return Ok(last);
        }
        // The probes' broker calls block: off the async threads, all groups at once.
        let tasks: Vec<_> = (0..self.slots.len())
            .map(|i| {
                let (kafka, slots) = (self.kafka.clone(), Arc::clone(&self.slots));
                tokio::task::spawn_blocking(move || measure_one(&kafka, &slots[i]))
            })
            .collect();
        // A group that is late is answered as such; the others are not held back by it.
        let deadline = tokio::time::Instant::now() + MEASURE_TIMEOUT;
        let mut measured = Vec::with_capacity(tasks.len());
        for (slot, task) in self.slots.iter().zip(tasks) {
            measured.push(match tokio::time::timeout_at(deadline, task).await {
                Ok(joined) => joined?,
                Err(_) => GroupLag {
                    consumer: slot.consumer.clone(),
                    lag: Err(format!("no answer within {MEASURE_TIMEOUT:?}")),
                },
            });
        }
        *lock(&self.last) = Some((Instant::now(), measured.clone()));
        Ok(measured)
    }
}

/// Measure one group with its probe, made now if it has none yet.
fn measure_one(kafka: &KafkaConfig, slot: &Slot) -> GroupLag {
    let mut probe = lock(&slot.probe);
    if probe.is_none() {
        let consumer = &slot.consumer;
        match LagProbe::new(
            kafka,
            &consumer.group,
            consumer.topics.clone(),
            consumer.dlq_topic.clone(),
        ) {
            Ok(made) => *probe = Some(made),
            Err(error) => {
                return GroupLag {
                    consumer: consumer.clone(),
                    lag: Err(super::describe(&error)),
                };
            }
        }
    }
    let lag = match probe.as_ref() {
        Some(probe) => probe.measure().map_err(|e| super::describe(&e)),
        None => Err("no probe".to_owned()),
    };
    GroupLag {
        consumer: slot.consumer.clone(),
        lag,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
