//! Command idempotency: the same command id returns the first result and appends nothing.

use infra::ledger::{AppendRequest, ExpectedVersion};
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::support::{Counter, CounterEvent, increments, meta, outbox_len, test_env};

#[tokio::test]
async fn the_same_command_again_returns_the_first_result_and_appends_nothing() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    let metadata = meta();
    let first = ledger
        .execute::<Counter>(stream, metadata.clone(), |_| {
            Ok(vec![CounterEvent::Incremented { by: 5 }])
        })
        .await
        .expect("first");
    assert!(!first.replayed);

    // A retry of the same command (e.g. the client lost the answer): its decision would append
    // again (the stream has moved on), but the command id was seen.
    let again = ledger
        .execute::<Counter>(stream, metadata.clone(), |_| {
            Ok(vec![CounterEvent::Incremented { by: 5 }])
        })
        .await
        .expect("again");
    assert!(again.replayed, "marked as a replay");
    assert_eq!(again.streams, first.streams, "the first result");
    assert_eq!(again.positions, first.positions);
    assert_eq!(again.token(), first.token());

    // Even aimed at another stream, the command id wins: nothing is written there.
    let elsewhere = Uuid::now_v7();
    let replayed = ledger
        .append(AppendRequest::new(
            metadata,
            vec![increments(elsewhere, ExpectedVersion::NoStream, 1)],
        ))
        .await
        .expect("replay");
    assert!(replayed.replayed);
    assert_eq!(replayed.streams, first.streams);

    let loaded = ledger.load::<Counter>(stream).await.expect("load");
    assert_eq!((loaded.version, loaded.state.total), (1, 5), "appended once");
    assert!(ledger.read_stream(elsewhere, 1).await.expect("read").is_empty());
    assert_eq!(outbox_len(&ledger).await, 1, "published once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_command_append_once() {
    let mut env = test_env().await;
    env.config.postgres.max_connections = 12;
    let ledger = env.ledger().await.expect("ledger");
    // One event (recorded by the event itself) and two (recorded apart).
    for events in [1, 2] {
        concurrent_retries(&ledger, events).await;
    }
}

async fn concurrent_retries(ledger: &infra::ledger::Ledger, events: usize) {
    let stream = Uuid::now_v7();
    let request = AppendRequest::new(
        meta(),
        vec![increments(stream, ExpectedVersion::NoStream, events)],
    );
    let start = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (ledger, request, start) = (ledger.clone(), request.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                ledger.append(request).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        // No version conflict: a retry waits for the first attempt and gets its answer.
        results.push(task.await.expect("task").expect("append or replay"));
    }
    assert_eq!(
        results.iter().filter(|r| !r.replayed).count(),
        1,
        "one real append"
    );
    assert!(
        results
            .iter()
            .all(|r| r.streams == results[0].streams && r.positions == results[0].positions)
    );
    assert_eq!(ledger.read_stream(stream, 1).await.expect("read").len(), events);
}

#[tokio::test]
async fn a_retry_that_decides_otherwise_still_gets_the_first_result() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    // First run with two events, the retry with one, and the other way round: whichever way
    // each run records its command, the retry finds the first.
    for (first_events, retry_events) in [(2, 1), (1, 2)] {
        let (stream, metadata) = (Uuid::now_v7(), meta());
        let first = ledger
            .append(AppendRequest::new(
                metadata.clone(),
                vec![increments(stream, ExpectedVersion::NoStream, first_events)],
            ))
            .await
            .expect("first");
        let retry = ledger
            .append(AppendRequest::new(
                metadata,
                vec![increments(
                    stream,
                    ExpectedVersion::Exact(first_events as i64),
                    retry_events,
                )],
            ))
            .await
            .expect("retry");
        assert!(retry.replayed, "{first_events} then {retry_events}: a replay");
        assert_eq!((retry.streams, retry.positions), (first.streams, first.positions));
        assert_eq!(
            ledger.read_stream(stream, 1).await.expect("read").len(),
            first_events,
            "nothing appended by the retry"
        );
    }
}
