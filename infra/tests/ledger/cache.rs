//! The aggregate cache: a command on a stream this process used recently skips the load, and a
//! cached state made stale by another process (another ledger, another cache) is never decided
//! on in the end.

use domain::DomainError;
use std::sync::Mutex;
use uuid::Uuid;

use crate::support::{Counter, CounterEvent, meta, test_env};

#[tokio::test]
async fn a_state_cached_by_one_process_and_moved_on_by_another_is_decided_on_again() {
    let env = test_env().await;
    let (here, elsewhere) = (
        env.ledger().await.expect("ledger"),
        env.ledger().await.expect("another process's ledger"),
    );
    let stream = Uuid::now_v7();
    let seen = Mutex::new(Vec::new());
    let add = |by: i64| {
        let seen = &seen;
        move |counter: &Counter| {
            seen.lock().expect("lock").push(counter.total);
            Ok(vec![CounterEvent::Incremented { by }])
        }
    };

    here.execute::<Counter>(stream, meta(), add(1))
        .await
        .expect("first");
    here.execute::<Counter>(stream, meta(), add(2))
        .await
        .expect("second, from the cache");
    elsewhere
        .execute::<Counter>(stream, meta(), add(10))
        .await
        .expect("another process appends");
    let third = here
        .execute::<Counter>(stream, meta(), add(100))
        .await
        .expect("the stale cached state loses, the command is decided again and wins");
    assert_eq!(third.streams[0].version, 4);
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![0, 1, 3, 3, 13],
        "decided on 0 (new), 1 (cached), 3 (elsewhere, loaded), 3 (here, stale: the ledger had 13), 13 (loaded)"
    );

    // A rule that refuses on the stale state (odd total) and accepts on the ledger's (even).
    elsewhere
        .execute::<Counter>(stream, meta(), add(1))
        .await
        .expect("another process appends again");
    let even_only = |counter: &Counter| {
        if counter.total % 2 == 0 {
            Ok(vec![CounterEvent::Incremented { by: 2 }])
        } else {
            Err(DomainError::Conflict("odd-total"))
        }
    };
    let fifth = here
        .execute::<Counter>(stream, meta(), even_only)
        .await
        .expect("refused on the cached 113, accepted on the ledger's 114");
    assert_eq!(fifth.streams[0].version, 6);
    let total = here.load::<Counter>(stream).await.expect("load").state.total;
    assert_eq!(total, 116);
}
