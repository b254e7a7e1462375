//! Loading: folding a whole stream, or only what follows a snapshot (DESIGN §4).

use infra::ledger::{ExpectedVersion, Loaded};
use uuid::Uuid;

use crate::support::{Counter, append, test_env};

#[tokio::test]
async fn a_snapshot_plus_the_events_after_it_folds_to_the_same_state() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let stream = Uuid::now_v7();
    append(&ledger, stream, ExpectedVersion::NoStream, 4)
        .await
        .expect("first four");
    let snapshot: Loaded<Counter> = ledger.load(stream).await.expect("load at 4");
    assert_eq!((snapshot.version, snapshot.state.total), (4, 1 + 2 + 3 + 4));
    append(&ledger, stream, ExpectedVersion::Exact(4), 3)
        .await
        .expect("three more");

    let whole: Loaded<Counter> = ledger.load(stream).await.expect("load all");
    let resumed = ledger
        .load_from(stream, snapshot)
        .await
        .expect("load from the snapshot");
    assert_eq!(resumed.version, 7);
    assert_eq!(resumed.state, whole.state);
    assert_eq!(whole.state.increments, 7);

    let missing: Loaded<Counter> = ledger.load(Uuid::now_v7()).await.expect("load nothing");
    assert_eq!(missing.version, 0, "a stream that does not exist is at version 0");
}
