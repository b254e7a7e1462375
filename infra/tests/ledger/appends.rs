//! Appends: optimistic concurrency on one stream, atomicity over several (DESIGN §4).

use infra::ledger::{AppendRequest, ExpectedVersion, LedgerError};
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::support::{append, increments, meta, outbox_len, test_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_appends_at_one_version_one_wins_the_rest_conflict() {
    let mut env = test_env().await;
    // One connection per writer, so all 50 transactions are open at once and really race.
    env.config.postgres.max_connections = 52;
    let ledger = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    append(&ledger, stream, ExpectedVersion::NoStream, 1)
        .await
        .expect("first event");

    let start = Arc::new(Barrier::new(50));
    let writers: Vec<_> = (0..50)
        .map(|_| {
            let (ledger, start) = (ledger.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                append(&ledger, stream, ExpectedVersion::Exact(1), 1).await
            })
        })
        .collect();
    let mut won = 0;
    let mut conflicts = 0;
    for writer in writers {
        match writer.await.expect("writer task") {
            Ok(appended) => {
                won += 1;
                assert_eq!(
                    appended.streams[0].version, 2,
                    "the winner moved the stream to version 2"
                );
            }
            Err(LedgerError::VersionConflict { stream_id }) => {
                assert_eq!(stream_id, stream);
                conflicts += 1;
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 49), "exactly one winner, 49 conflicts");

    let versions: Vec<i64> = ledger
        .read_stream(stream, 1)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2], "no gaps, no duplicates");
    assert_eq!(
        outbox_len(&ledger).await,
        2,
        "two stored events to publish, none of the losers'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_racing_creations_of_one_stream_one_wins() {
    let mut env = test_env().await;
    env.config.postgres.max_connections = 52;
    let ledger = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    let start = Arc::new(Barrier::new(50));
    let writers: Vec<_> = (0..50)
        .map(|_| {
            let (ledger, start) = (ledger.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                append(&ledger, stream, ExpectedVersion::NoStream, 3).await
            })
        })
        .collect();
    let mut outcomes = (0, 0);
    for writer in writers {
        match writer.await.expect("writer task") {
            Ok(_) => outcomes.0 += 1,
            Err(LedgerError::VersionConflict { .. }) => outcomes.1 += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(outcomes, (1, 49));
    let versions: Vec<i64> = ledger
        .read_stream(stream, 1)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
}

/// Two stream ids, the second greater: appends lock streams in id order, so a stale second
/// stream is found only after the first stream's events were already inserted.
fn ordered_pair() -> (Uuid, Uuid) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    if a < b { (a, b) } else { (b, a) }
}

#[tokio::test]
async fn a_multi_stream_append_with_one_stale_stream_writes_nothing() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let (fresh, stale) = ordered_pair();
    append(&ledger, fresh, ExpectedVersion::NoStream, 1)
        .await
        .expect("fresh at 1");
    append(&ledger, stale, ExpectedVersion::NoStream, 2)
        .await
        .expect("stale at 2");
    let other = Uuid::now_v7();
    let before_outbox = outbox_len(&ledger).await;

    // `stale` is at 2 but the command read it at 1; `fresh` and `other` are right.
    let metadata = meta();
    let request = AppendRequest::new(
        metadata.clone(),
        vec![
            increments(other, ExpectedVersion::NoStream, 2),
            increments(fresh, ExpectedVersion::Exact(1), 1),
            increments(stale, ExpectedVersion::Exact(1), 1),
        ],
    );
    let error = ledger.append(request.clone()).await.expect_err("stale stream");
    assert!(
        matches!(error, LedgerError::VersionConflict { stream_id } if stream_id == stale),
        "{error:?}"
    );

    assert_eq!(
        ledger.read_stream(fresh, 1).await.expect("read").len(),
        1,
        "fresh stream untouched"
    );
    assert_eq!(
        ledger.read_stream(stale, 1).await.expect("read").len(),
        2,
        "stale stream untouched"
    );
    assert!(
        ledger.read_stream(other, 1).await.expect("read").is_empty(),
        "new stream not created"
    );
    assert_eq!(outbox_len(&ledger).await, before_outbox, "no outbox rows");

    // Not recorded as processed either: the same command, corrected, goes through.
    let mut corrected = request;
    corrected.streams[2].expected = ExpectedVersion::Exact(2);
    assert_eq!(corrected.metadata, metadata);
    let appended = ledger.append(corrected).await.expect("corrected append");
    assert!(!appended.replayed);
    let mut versions: Vec<(Uuid, i64)> = appended
        .streams
        .iter()
        .map(|s| (s.stream_id, s.version))
        .collect();
    versions.sort();
    let mut wanted = vec![(other, 2), (fresh, 2), (stale, 3)];
    wanted.sort();
    assert_eq!(versions, wanted);
}

#[tokio::test]
async fn a_stale_check_only_stream_fails_the_whole_append() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let (written, checked) = ordered_pair();
    append(&ledger, checked, ExpectedVersion::NoStream, 2)
        .await
        .expect("checked at 2");
    // The checked stream gets no events, only its version is verified (e.g. a wallet read).
    let request = AppendRequest::new(
        meta(),
        vec![
            increments(written, ExpectedVersion::NoStream, 1),
            increments(checked, ExpectedVersion::Exact(1), 0),
        ],
    );
    let error = ledger.append(request).await.expect_err("stale checked stream");
    assert!(
        matches!(error, LedgerError::VersionConflict { stream_id } if stream_id == checked),
        "{error:?}"
    );
    assert!(
        ledger.read_stream(written, 1).await.expect("read").is_empty(),
        "nothing written"
    );
}
