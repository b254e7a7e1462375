//! Personal data in the ledger (crypto-shredding, issue 14): the one-off sealing of events
//! recorded in clear, erasure in the append's transaction, and master key rotation.

use chrono::Utc;
use domain::{
    privacy::{ERASED_EMAIL, ERASED_TEXT},
    users::{User, UserEvent},
};
use infra::{
    ledger::{AppendRequest, ExpectedVersion, Ledger, LedgerError, StreamWrite},
    privacy::{Keyring, PrivacyError, keys},
};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{meta, test_env};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

/// Store `payload` as event `version` of `stream` the way the code before sealing did: in clear.
async fn legacy(ledger: &Ledger, stream: Uuid, stream_type: &str, version: i64, payload: Value) {
    let event_type = payload["type"].as_str().expect("type").to_owned();
    sqlx::query(
        "INSERT INTO events (stream_id, stream_type, version, event_type, schema_version, payload, metadata)
         VALUES ($1, $2, $3, $4, 1, $5, $6)",
    )
    .bind(stream)
    .bind(stream_type)
    .bind(version)
    .bind(event_type)
    .bind(payload)
    .bind(serde_json::to_value(meta()).expect("metadata"))
    .execute(&ledger.pool())
    .await
    .expect("legacy event");
}

fn registered(kind: &str, user: Uuid, email: &str, name: &str) -> Value {
    json!({"type": kind, "user_id": user, "email": email, "password_hash": HASH, "name": name, "registered_at": Utc::now()})
}

fn submitted(proposal: Uuid, freelancer: Uuid, cover_letter: &str) -> Value {
    json!({"type": "ProposalSubmitted", "proposal_id": proposal, "job_id": Uuid::now_v7(), "client_id": Uuid::now_v7(),
           "freelancer_id": freelancer, "cover_letter": cover_letter,
           "milestones": [{"milestone_id": Uuid::now_v7(), "title": "all", "amount": {"minor": 100, "currency": "USD"}, "due_on": "2030-01-01"}],
           "submitted_at": Utc::now()})
}

#[tokio::test]
async fn events_recorded_in_clear_are_sealed_once_and_deleted_people_erased() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let tag = Uuid::new_v4().simple().to_string();
    let clear = |what: &str| format!("{what} {tag}");
    let (ada, dee, proposal, deleted_proposal) =
        (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let ada_email = format!("ada-{tag}@example.com");
    legacy(
        &ledger,
        ada,
        "user",
        1,
        registered("FreelancerRegistered", ada, &ada_email, &clear("Ada")),
    )
    .await;
    legacy(&ledger, ada, "user", 2, json!({"type": "ProfileUpdated", "user_id": ada, "name": clear("Ada L"), "headline": clear("Headline"), "bio": clear("Bio"), "updated_at": Utc::now()})).await;
    legacy(
        &ledger,
        dee,
        "user",
        1,
        registered(
            "FreelancerRegistered",
            dee,
            &format!("dee-{tag}@example.com"),
            &clear("Dee"),
        ),
    )
    .await;
    legacy(&ledger, dee, "user", 2, json!({"type": "UserDeleted", "user_id": dee, "email": format!("dee-{tag}@example.com"), "deleted_at": Utc::now()})).await;
    legacy(
        &ledger,
        proposal,
        "proposal",
        1,
        submitted(proposal, ada, &clear("Pitch")),
    )
    .await;
    // Schema 1 of ProposalUpdated did not name its author.
    legacy(&ledger, proposal, "proposal", 2, json!({"type": "ProposalUpdated", "proposal_id": proposal, "cover_letter": clear("Better pitch"),
        "milestones": [{"milestone_id": Uuid::now_v7(), "title": "all", "amount": {"minor": 100, "currency": "USD"}, "due_on": "2030-01-01"}],
        "updated_at": Utc::now()})).await;
    legacy(
        &ledger,
        deleted_proposal,
        "proposal",
        1,
        submitted(deleted_proposal, dee, &clear("Dee's pitch")),
    )
    .await;

    // The ledger of an earlier version: the sealing has not run on it.
    sqlx::query("DELETE FROM ledger_data_migrations")
        .execute(&ledger.pool())
        .await
        .expect("reset");
    assert_eq!(ledger.seal_legacy_personal_data().await.expect("sealing"), 7);
    assert_eq!(
        ledger.seal_legacy_personal_data().await.expect("again"),
        0,
        "once"
    );

    let rows: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&ledger.pool())
        .await
        .expect("rows");
    assert!(
        rows.iter().all(|r| !r.contains(&tag)),
        "clear values left: {rows:#?}"
    );
    let (schema, author): (i32, String) = sqlx::query_as(
        "SELECT schema_version, payload->>'freelancer_id' FROM events WHERE stream_id = $1 AND version = 2",
    )
    .bind(proposal)
    .fetch_one(&ledger.pool())
    .await
    .expect("update");
    assert_eq!(
        (schema, author),
        (2, ada.to_string()),
        "the update names its author"
    );

    // Ada is live: her data opens. Dee had deleted his account: his data is erased.
    let loaded = ledger.load::<User>(ada).await.expect("ada");
    assert_eq!(
        loaded.state.registered.expect("registered").email.as_str(),
        ada_email
    );
    let loaded = ledger.load::<User>(dee).await.expect("dee");
    assert_eq!(
        loaded.state.registered.expect("registered").email.as_str(),
        ERASED_EMAIL
    );
    let mut pitches = ledger.read_stream(proposal, 1).await.expect("stream");
    pitches.extend(ledger.read_stream(deleted_proposal, 1).await.expect("stream"));
    assert_eq!(
        ledger.open_personal_data(&mut pitches).await.expect("open"),
        2,
        "Ada's two"
    );
    let letters: Vec<&Value> = pitches.iter().map(|e| &e.payload["cover_letter"]).collect();
    assert_eq!(
        letters,
        [
            &json!(clear("Pitch")),
            &json!(clear("Better pitch")),
            &json!(ERASED_TEXT)
        ]
    );
}

fn registration(user: Uuid, email: &str) -> StreamWrite {
    let event = UserEvent::ClientRegistered {
        user_id: domain::UserId::from_uuid(user),
        email: domain::EmailAddress::parse(email).expect("email"),
        password_hash: domain::PasswordHash::from_phc(HASH.into()),
        name: domain::users::PersonName::parse("Rita", "name").expect("name"),
        registered_at: domain::Timestamp::from_datetime(Utc::now()),
    };
    StreamWrite::of::<User>(user, ExpectedVersion::NoStream, &[event]).expect("write")
}

#[tokio::test]
async fn an_erased_person_gets_no_new_key_and_nothing_personal_is_written_about_them() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let user = Uuid::now_v7();
    let mut erase = AppendRequest::new(meta(), vec![registration(user, "rita@example.com")]);
    erase.erase = vec![user];
    ledger.append(erase).await.expect("registered and erased at once");
    let loaded = ledger.load::<User>(user).await.expect("load");
    assert_eq!(
        loaded.state.registered.expect("registered").email.as_str(),
        ERASED_EMAIL
    );

    let other = Uuid::now_v7();
    let mut again = registration(other, "rita@example.com");
    again.events[0].personal = again.events[0].personal.map(|mut p| {
        p.subject = domain::UserId::from_uuid(user);
        p
    });
    let refused = ledger.append(AppendRequest::new(meta(), vec![again])).await;
    assert!(
        matches!(refused, Err(LedgerError::Privacy(PrivacyError::Erased(id))) if id == user),
        "{refused:?}"
    );
    assert_eq!(
        ledger.read_stream(other, 1).await.expect("stream").len(),
        0,
        "nothing written"
    );
}

#[tokio::test]
async fn rotation_rewraps_every_key_with_the_new_master_key() {
    let env = test_env().await;
    let keyring = |raw: &str| Keyring::parse(&SecretString::from(raw.to_owned())).expect("keyring");
    let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
    let before = env
        .ledger()
        .await
        .expect("ledger")
        .with_keyring(keyring(&format!("k1:{old}")));
    let users: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (n, user) in users.iter().enumerate() {
        let write = registration(*user, &format!("user{n}@example.com"));
        before
            .append(AppendRequest::new(meta(), vec![write]))
            .await
            .expect("append");
    }
    assert_eq!(
        keys::census(&before.pool()).await.expect("census"),
        [(Some("k1".to_owned()), 3)]
    );

    let both = env
        .ledger()
        .await
        .expect("ledger")
        .with_keyring(keyring(&format!("k2:{new},k1:{old}")));
    assert_eq!(
        keys::rotate(&both.pool(), both.keyring(), 2)
            .await
            .expect("rotate"),
        2
    );
    assert_eq!(
        keys::rotate(&both.pool(), both.keyring(), 2)
            .await
            .expect("rotate"),
        1
    );
    assert_eq!(
        keys::rotate(&both.pool(), both.keyring(), 2)
            .await
            .expect("rotate"),
        0
    );
    assert_eq!(
        keys::census(&both.pool()).await.expect("census"),
        [(Some("k2".to_owned()), 3)]
    );

    // The old master key can be retired: the new one alone opens every person's data ...
    let after = env
        .ledger()
        .await
        .expect("ledger")
        .with_keyring(keyring(&format!("k2:{new}")));
    let loaded = after.load::<User>(users[0]).await.expect("load");
    assert_eq!(
        loaded.state.registered.expect("registered").email.as_str(),
        "user0@example.com"
    );
    // ... and the old one alone no longer does (its fields read as redacted, no failure).
    let retired = loaded_email(&before, users[1]).await;
    assert_eq!(retired, ERASED_EMAIL);
}

async fn loaded_email(ledger: &Ledger, user: Uuid) -> String {
    let loaded = ledger.load::<User>(user).await.expect("load");
    loaded
        .state
        .registered
        .expect("registered")
        .email
        .as_str()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_write_racing_another_for_the_same_person_gets_the_winner_s_key() {
    let env = test_env().await;
    let ledger = env.ledger().await.expect("ledger");
    let person = Uuid::now_v7();
    // The first transaction makes the key and holds it uncommitted ...
    let mut first = ledger.pool().begin().await.expect("begin");
    let key = keys::for_writing(&mut first, ledger.keyring(), person)
        .await
        .expect("made");
    // ... the second, wanting a key for the same person, waits for it ...
    let second = tokio::spawn({
        let (pool, ledger) = (ledger.pool(), ledger.clone());
        async move {
            let mut second = pool.begin().await.expect("begin");
            let key = keys::for_writing(&mut second, ledger.keyring(), person).await;
            second.commit().await.expect("commit");
            key
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second waits for the first's row");
    first.commit().await.expect("commit");
    // ... and gets the key the first made, not an error or a key of its own.
    assert_eq!(second.await.expect("task").expect("the winner's key"), key);
}
