//! Reading the whole ledger for replay (DESIGN §8): commit-safe order, so an event whose
//! transaction took a lower position but commits later is never skipped.

use infra::ledger::{ExpectedVersion, ScanCursor, ScanFilter};
use sqlx::Acquire;
use uuid::Uuid;

use crate::support::{append, test_env};

#[tokio::test]
async fn a_transaction_committing_late_with_a_lower_position_is_read_not_skipped() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let early = Uuid::now_v7();
    append(&ledger, early, ExpectedVersion::NoStream, 2)
        .await
        .expect("two events");

    // A transaction takes the next position and stays open…
    let pool = ledger.pool();
    let mut connection = pool.acquire().await.expect("connection");
    let mut late = connection.begin().await.expect("begin");
    let late_stream = Uuid::now_v7();
    let late_position: i64 = sqlx::query_scalar(
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, metadata)
         SELECT $1, stream_type, 1, event_type, schema_version, payload, metadata FROM events LIMIT 1
         RETURNING global_position",
    )
    .bind(late_stream)
    .fetch_one(&mut *late)
    .await
    .expect("insert in the open transaction");
    // …while a later one, with a higher position, commits.
    let after = Uuid::now_v7();
    append(&ledger, after, ExpectedVersion::NoStream, 1)
        .await
        .expect("a later event");

    let all = ScanFilter::everything();
    let first = ledger.scan(&all, ScanCursor::default(), 100).await.expect("scan");
    let streams: Vec<Uuid> = first.iter().map(|(_, e)| e.stream_id).collect();
    assert_eq!(
        streams,
        vec![early, early],
        "nothing at or after the open transaction is readable yet"
    );
    let cursor = first.last().expect("two events").0;

    late.commit().await.expect("commit");
    // The horizon is the PostgreSQL cluster's: a transaction of another test, in another
    // database, may hold it back a moment longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let rest: Vec<(Uuid, i64)> = loop {
        let rest: Vec<(Uuid, i64)> = ledger
            .scan(&all, cursor, 100)
            .await
            .expect("scan the rest")
            .iter()
            .map(|(_, e)| (e.stream_id, e.global_position))
            .collect();
        if rest.len() >= 2 || std::time::Instant::now() > deadline {
            break rest;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(rest.len(), 2, "the late event and the one after it: {rest:?}");
    assert_eq!(
        rest[0],
        (late_stream, late_position),
        "the late transaction's event first"
    );
    assert_eq!(rest[1].0, after);
    assert!(
        rest[1].1 > late_position,
        "its position is higher, yet a position cursor would have passed the late one"
    );

    let horizon = ledger.transaction_horizon().await.expect("horizon");
    assert!(horizon.oldest_running <= horizon.next);
    assert_eq!(
        ledger.count(&all).await.expect("count"),
        4,
        "every event is counted"
    );
}
