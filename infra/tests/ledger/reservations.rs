//! Unique reservations: a taken value is a conflict; releasing it frees it.

use infra::ledger::{AppendRequest, ExpectedVersion, LedgerError, Reservation};
use uuid::Uuid;

use crate::support::{increments, meta, outbox_len, test_env};

fn register(stream: Uuid, email: &str) -> AppendRequest {
    let mut request = AppendRequest::new(meta(), vec![increments(stream, ExpectedVersion::NoStream, 1)]);
    request.reserve.push(Reservation {
        scope: "email",
        value: email.to_owned(),
        stream_id: stream,
    });
    request
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_until_its_owner_is_deleted() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let email = "ann@example.com";
    let (ann, impostor) = (Uuid::now_v7(), Uuid::now_v7());

    ledger.append(register(ann, email)).await.expect("ann registers");
    assert_eq!(
        ledger.reservation_owner("email", email).await.expect("owner"),
        Some(ann)
    );

    let error = ledger.append(register(impostor, email)).await.expect_err("taken");
    assert!(
        matches!(error, LedgerError::ReservationTaken { scope: "email" }),
        "{error:?}"
    );
    assert!(
        ledger.read_stream(impostor, 1).await.expect("read").is_empty(),
        "no events for the loser"
    );
    assert_eq!(outbox_len(&ledger).await, 1);
    // Another scope does not collide.
    let mut other_scope = register(impostor, email);
    other_scope.reserve[0].scope = "username";
    ledger.append(other_scope).await.expect("other scope is free");

    // Ann deletes her account: the deletion's events and the release share a transaction.
    let mut deletion = AppendRequest::new(meta(), vec![increments(ann, ExpectedVersion::Exact(1), 1)]);
    deletion.release.push(("email", email.to_owned()));
    ledger.append(deletion).await.expect("deletion");
    assert_eq!(
        ledger.reservation_owner("email", email).await.expect("owner"),
        None,
        "released"
    );

    let newcomer = Uuid::now_v7();
    ledger
        .append(register(newcomer, email))
        .await
        .expect("the email is free again");
    assert_eq!(
        ledger.reservation_owner("email", email).await.expect("owner"),
        Some(newcomer)
    );
}

#[tokio::test]
async fn a_release_in_a_failed_append_keeps_the_reservation() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let owner = Uuid::now_v7();
    ledger
        .append(register(owner, "bob@example.com"))
        .await
        .expect("bob");
    // A deletion that lost a race (stale version) must not release the email.
    let mut deletion = AppendRequest::new(meta(), vec![increments(owner, ExpectedVersion::Exact(5), 1)]);
    deletion.release.push(("email", "bob@example.com".to_owned()));
    assert!(matches!(
        ledger.append(deletion).await,
        Err(LedgerError::VersionConflict { .. })
    ));
    assert_eq!(
        ledger
            .reservation_owner("email", "bob@example.com")
            .await
            .expect("owner"),
        Some(owner)
    );
}
