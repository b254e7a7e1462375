//! The relay and late commits: sequence values are taken before commit, so a transaction that
//! commits after later ones leaves a hole that a reader tailing by position would skip
//! (DESIGN §1); the relay reads by transaction, below the oldest one still writing.

use infra::{
    ledger::{ExpectedVersion, Ledger},
    relay::{Relay, Step},
};
use sqlx::{Postgres, Transaction};
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

use crate::support::{
    Collector, RunningConsumer, append, assert_exactly_once_in_order, eventually, increments, ledger_streams,
    meta, outbox_len, test_env,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_committing_out_of_order_are_all_published() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let relay = Relay::new(ledger.clone(), &env.config.kafka, 50).expect("relay");

    // Three appends held open after their events took global positions.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(held_append(&ledger, 3).await);
    }

    // Later transactions commit first: the relay publishes none of them while an earlier
    // transaction is still writing (it reads below the oldest one only).
    let mut later_positions = Vec::new();
    for _ in 0..20 {
        let appended = append(&ledger, Uuid::now_v7(), ExpectedVersion::NoStream, 1)
            .await
            .expect("later append");
        later_positions.extend(appended.positions);
    }
    assert_eq!(
        relay.step().await.expect("relay"),
        Step::Idle,
        "nothing past a transaction still writing"
    );
    assert_eq!(outbox_len(&ledger).await, 20, "the committed ones wait");

    // The held ones commit now, last-started first.
    let mut held_positions = Vec::new();
    let mut held_first = Vec::new();
    while let Some((transaction, positions)) = held.pop() {
        transaction.commit().await.expect("held append commits");
        held_first.push(positions[0]);
        held_positions.extend(positions);
    }
    // Each took positions before the later appends did: the gap case.
    let oldest_later = later_positions.iter().min().copied().unwrap_or_default();
    assert!(
        held_first.iter().all(|p| *p < oldest_later),
        "held positions {held_first:?} precede the published ones (from {oldest_later})"
    );

    assert_eq!(
        relay.run_until_idle().await.expect("relay"),
        20 + 3 * 3,
        "the late commits are not skipped"
    );
    assert_eq!(outbox_len(&ledger).await, 0);

    let collector = Arc::new(Collector::default());
    let consumer = RunningConsumer::start(&env, "late-commits", collector.clone());
    let expected = ledger_streams(&ledger).await;
    let total: i64 = expected.values().sum();
    assert_eq!(total, 20 + 9);
    eventually(Duration::from_secs(30), "every event on Kafka", || async {
        collector.len() as i64 >= total
    })
    .await;
    consumer.stop().await;
    let received = collector.events();
    assert_exactly_once_in_order(&received, &expected);
    for position in held_positions {
        assert!(
            received.iter().any(|e| e.global_position == position),
            "position {position} published"
        );
    }
}

#[tokio::test]
async fn a_running_relay_publishes_appends_as_they_commit() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let relay = Relay::new(ledger.clone(), &env.config.kafka, 100).expect("relay");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(relay.run(stopped));
    let collector = Arc::new(Collector::default());
    let consumer = RunningConsumer::start(&env, "live", collector.clone());

    let stream = Uuid::now_v7();
    for version in 0..30 {
        append(&ledger, stream, ExpectedVersion::from_loaded(version), 1)
            .await
            .expect("append");
    }
    eventually(Duration::from_secs(30), "30 events consumed", || async {
        collector.len() >= 30
    })
    .await;
    let _ = stop.send(true);
    relay.await.expect("relay task");
    consumer.stop().await;
    let received = collector.events();
    assert_exactly_once_in_order(&received, &[(stream, 30)].into_iter().collect());
    assert!(
        received
            .iter()
            .all(|e| e.stream_type == "counter" && e.event_type == "Incremented")
    );
}

/// Insert event `version` of wallet `stream` as it is stored (the relay never decodes a
/// payload), outside the outbox; its position.
async fn stored_wallet_event(ledger: &Ledger, stream: Uuid, version: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, metadata)
         SELECT $1, 'wallet', $2, event_type, schema_version, payload, metadata FROM events LIMIT 1
         RETURNING global_position",
    )
    .bind(stream)
    .bind(version)
    .fetch_one(&ledger.pool())
    .await
    .expect("a stored wallet event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_republished_range_reaches_the_topic_again_and_consumers_skip_what_they_applied() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let relay = Relay::new(ledger.clone(), &env.config.kafka, 50).expect("relay");
    append(&ledger, Uuid::now_v7(), ExpectedVersion::NoStream, 2)
        .await
        .expect("events of another context");
    relay.run_until_idle().await.expect("published");
    let wallet = Uuid::now_v7();
    let mut positions = Vec::new();
    for version in 1..=3 {
        positions.push(stored_wallet_event(&ledger, wallet, version).await);
    }
    let (from, to) = (1, *positions.last().expect("three"));
    let payments = [domain::BoundedContext::Payments];

    let collector = Arc::new(Collector::default());
    let consumer = RunningConsumer::start(&env, "republished", collector.clone());
    assert_eq!(
        ledger.requeue(from, to, &payments).await.expect("requeue"),
        3,
        "only the payments events of the range"
    );
    assert_eq!(relay.run_until_idle().await.expect("publish"), 3);
    assert_eq!(outbox_len(&ledger).await, 0);
    assert_eq!(ledger.queued_between(from, to).await.expect("queued"), 0);
    let of_wallet = |collector: &Collector| -> Vec<i64> {
        collector
            .events()
            .iter()
            .filter(|e| e.stream_id == wallet)
            .map(|e| e.version)
            .collect()
    };
    eventually(
        Duration::from_secs(30),
        "the wallet's events to arrive",
        || async { of_wallet(&collector).len() == 3 },
    )
    .await;

    // Again: the consumer has applied them and skips them; a new event behind them (same
    // stream, same partition) shows they went by.
    assert_eq!(ledger.requeue(from, to, &payments).await.expect("requeue"), 3);
    let fourth = stored_wallet_event(&ledger, wallet, 4).await;
    assert_eq!(
        ledger.requeue(fourth, fourth, &payments).await.expect("requeue"),
        1
    );
    assert_eq!(relay.run_until_idle().await.expect("publish"), 4);
    eventually(Duration::from_secs(30), "the fourth event to arrive", || async {
        of_wallet(&collector).len() >= 4
    })
    .await;
    consumer.stop().await;
    assert_eq!(
        of_wallet(&collector),
        vec![1, 2, 3, 4],
        "each event applied once, in order"
    );
}

/// An append of `count` increments to a new stream, inside a transaction left open after its
/// events took their positions: a late commit, once the caller commits it.
async fn held_append(ledger: &Ledger, count: usize) -> (Transaction<'static, Postgres>, Vec<i64>) {
    let write = increments(Uuid::now_v7(), ExpectedVersion::NoStream, count);
    let mut transaction = ledger.pool().begin().await.expect("begin");
    let outcome: serde_json::Value = sqlx::query_scalar(
        "SELECT ledger_append($1, $2, ARRAY[$3::uuid], ARRAY[$4], ARRAY[$5], ARRAY[0::bigint], ARRAY[$6::int],
                              $7, $8, $9, '{}', '{}', '{}', '{}', '{}')",
    )
    .bind(Uuid::now_v7())
    .bind(sqlx::types::Json(meta()))
    .bind(write.stream_id)
    .bind(write.stream_type)
    .bind(write.context.name())
    .bind(count as i32)
    .bind(write.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(write.events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
    .bind(write.events.iter().map(|e| &e.payload).collect::<Vec<_>>())
    .fetch_one(&mut *transaction)
    .await
    .expect("held append");
    let positions = serde_json::from_value(outcome["result"]["positions"].clone()).expect("positions");
    (transaction, positions)
}
