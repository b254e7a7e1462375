//! Erasing a person from the append-only ledger (issue 14, crypto-shredding), on the whole
//! platform: after `DELETE /users/me` no clear personal value of theirs is left in the ledger's
//! rows or in any read model (live, or rebuilt from the ledger), the other party's money and
//! contract read the same, and the email can register again; a missing or wrong key never stops
//! a projector.

use anyhow::{Context as _, ensure};
use chacha20poly1305::{
    XChaCha20Poly1305,
    aead::{KeyInit, OsRng},
};
use chrono::Utc;
use control::Outcome;
use domain::{
    BoundedContext, UserId,
    payments::Wallet,
    privacy::{ERASED_EMAIL, ERASED_TEXT, PersonalData, PersonalField},
    users::User as UserAggregate,
};
use infra::{
    ledger::{ExpectedVersion, Ledger},
    privacy::envelope,
    read_models::{generation::Target, storage::Storage},
};
use reqwest::{Method, StatusCode};
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

use crate::{
    projector_lag::{append_user_event, users_gauge},
    replay::{control, until},
    world::{User, World, due},
};

const DEADLINE: Duration = Duration::from_secs(30);

/// A signed-up user, with what identifies them.
struct Person {
    id: String,
    email: String,
    name: String,
    user: User,
}

async fn person(platform: &Platform, role: &str, tag: &str) -> anyhow::Result<Person> {
    let (email, name) = (
        format!("{role}-{tag}@example.com"),
        format!("Erin Erasable {tag}"),
    );
    let (id, token) = platform.signed_up(role, &email, &name).await?;
    Ok(Person {
        id,
        email,
        name,
        user: User { token },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_freelancer_leaves_no_personal_value_in_the_ledger_or_any_read_model() -> anyhow::Result<()>
{
    let platform = Platform::start().await?;
    let tag = Uuid::new_v4().simple().to_string();
    let erin = person(&platform, "freelancers", &tag).await?;
    let (_, client_token) = platform
        .signed_up_client(&format!("client-{tag}@example.com"), "Cleo Client")
        .await?;
    let (_, other_client) = platform
        .signed_up_client(&format!("other-{tag}@example.com"), "Olga Other")
        .await?;
    let (_, other_freelancer) = platform
        .signed_up("freelancers", &format!("gus-{tag}@example.com"), "Gus")
        .await?;
    let world = World {
        ledger: platform.env.ledger().await?,
        platform,
        client: User { token: client_token },
        other_client: User { token: other_client },
        freelancer: erin.user,
        other_freelancer: User {
            token: other_freelancer,
        },
    };
    let erin_user = User {
        token: world.freelancer.token.clone(),
    };

    // Everything personal Erin can write: a profile, a profile item, a photo, a pitch.
    let (headline, bio, skill) = (
        format!("Headline of {tag}"),
        format!("Bio of {tag}"),
        format!("Skill of {tag}"),
    );
    let profile = json!({"name": erin.name, "headline": headline, "bio": bio});
    world
        .ok(
            Method::PUT,
            "/api/v1/users/me/profile",
            &erin_user,
            Some(&profile),
            StatusCode::OK,
        )
        .await?;
    let item = json!({"title": skill, "details": format!("Details of {tag}")});
    world
        .ok(
            Method::POST,
            "/api/v1/users/me/skills",
            &erin_user,
            Some(&item),
            StatusCode::CREATED,
        )
        .await?;
    let photo = json!({"link": format!("photos/{tag}.png")});
    world
        .ok(
            Method::PUT,
            "/api/v1/users/me/photo",
            &erin_user,
            Some(&photo),
            StatusCode::OK,
        )
        .await?;

    // Erin proposes with her own pitch, is hired and paid for one of two milestones.
    let job = world.job(&world.client).await?;
    let cover_letter = format!("Cover letter of {tag}");
    let milestones: Vec<Value> = (0..2)
        .map(|i| json!({"title": format!("part {i}"), "amount": {"minor": 10_000, "currency": "USD"}, "due_on": due(10 + i)}))
        .collect();
    let terms = json!({"cover_letter": cover_letter, "milestones": milestones, "attachments": [format!("files/{tag}.pdf")]});
    let proposal = world
        .ok(
            Method::POST,
            &format!("/api/v1/jobs/{job}/proposals"),
            &erin_user,
            Some(&terms),
            StatusCode::CREATED,
        )
        .await?;
    let (contract, milestones) = world.contract(&job, &proposal).await?;
    world.deposit(&world.client, 50_000).await?;
    let request = world.payment_request(&contract, &milestones[0]).await?;
    world
        .ok(
            Method::POST,
            &format!("/api/v1/payments/requests/{request}/pay"),
            &world.client,
            None,
            StatusCode::OK,
        )
        .await?;

    // The client's side, once every read model has applied all of it.
    let client_reads = [
        "/api/v1/payments/wallet".to_owned(),
        "/api/v1/payments/wallet/transactions".to_owned(),
        format!("/api/v1/contracts/{contract}"),
        format!("/api/v1/contracts/{contract}/milestones"),
        format!("/api/v1/jobs/{job}"),
        "/api/v1/payments/requests/me".to_owned(),
    ];
    let before = until(DEADLINE, || async {
        let answers = client_view(&world, &client_reads).await?;
        ensure!(
            answers[0]["balance"]["minor"] == 40_000,
            "the payment is not projected yet: {}",
            answers[0]
        );
        ensure!(
            answers[3].to_string().contains("\"paid\""),
            "milestone not paid yet: {}",
            answers[3]
        );
        // The contract's own view and its milestones' come from one stream: both at its end.
        let milestones_version = answers[3]["items"]
            .as_array()
            .and_then(|items| items.iter().filter_map(|m| m["version"].as_i64()).max());
        ensure!(
            answers[2]["version"].as_i64() == milestones_version,
            "the contract view is behind its milestones: {} vs {milestones_version:?}",
            answers[2]["version"]
        );
        Ok(answers)
    })
    .await?;
    let pitch = until(DEADLINE, || async {
        let response = world
            .platform
            .get(&format!("/api/v1/proposals/{proposal}"), &world.client.token)
            .await?;
        let view: Value = expect(response, StatusCode::OK).await?;
        ensure!(view["cover_letter"] == cover_letter.as_str(), "{view}");
        Ok(view)
    })
    .await?;
    assert_eq!(pitch["attachments"], json!([format!("files/{tag}.pdf")]));

    let personal_values = [
        erin.name.clone(),
        erin.email.clone(),
        headline,
        bio,
        skill,
        cover_letter,
        format!("photos/{tag}.png"),
        format!("files/{tag}.pdf"),
    ];
    let in_clear = in_ledger_rows(&world.ledger, &personal_values).await?;
    ensure!(
        in_clear.is_empty(),
        "stored in clear before the erasure: {in_clear:?}"
    );

    // Erase Erin.
    let erin_id: Uuid = erin.id.parse()?;
    world
        .ok(
            Method::DELETE,
            "/api/v1/users/me",
            &erin_user,
            None,
            StatusCode::OK,
        )
        .await?;

    // 1. The ledger: every event is still there, nothing personal of Erin's opens, the email is
    //    free, her key is gone, and her wallet's history is whole.
    let in_clear = in_ledger_rows(&world.ledger, &personal_values).await?;
    ensure!(
        in_clear.is_empty(),
        "in the ledger after the erasure: {in_clear:?}"
    );
    let pool = world.ledger.pool();
    let reserved: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE value = $1")
        .bind(&erin.email)
        .fetch_one(&pool)
        .await?;
    assert_eq!(reserved, 0, "the email is still reserved");
    let key: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM personal_data_keys WHERE subject_id = $1")
            .bind(erin_id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(key, None, "the data key is destroyed");
    let loaded = world.ledger.load::<UserAggregate>(erin_id).await?;
    let registered = loaded.state.registered.context("registered")?;
    assert_eq!(registered.email.as_str(), ERASED_EMAIL);
    assert!(loaded.state.deleted);
    let mut events = world.ledger.read_stream(erin_id, 1).await?;
    assert_eq!(
        world.ledger.open_personal_data(&mut events).await?,
        0,
        "nothing of hers opens"
    );
    for event in &events {
        for value in &personal_values {
            assert!(
                !event.payload.to_string().contains(value.as_str()),
                "{value} opens"
            );
        }
    }
    assert_eq!(events[0].payload["name"], ERASED_TEXT, "{}", events[0].payload);
    let wallet = domain::WalletId::for_user(UserId::from_uuid(erin_id));
    let wallet = world.ledger.load::<Wallet>(wallet.as_uuid()).await?;
    assert_eq!(
        wallet.state.opened.map(|w| w.balance_minor),
        Some(10_000),
        "her earnings stay in the ledger"
    );

    // 2. Kafka carries what the ledger stores: sealed (the topics never held her data in clear).
    let kafka = &world.platform.env.config.kafka;
    let mut sealed = 0;
    for context in [BoundedContext::Users, BoundedContext::Jobs] {
        let topic = kafka.context_topic(context);
        let records = control::topic::read_to_end(kafka, &topic, DEADLINE)
            .await?
            .context("no topic")?;
        for record in records {
            let mut text = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
            for (name, value) in &record.headers {
                text.push_str(name);
                text.push_str(&String::from_utf8_lossy(value.as_deref().unwrap_or_default()));
            }
            for value in &personal_values {
                ensure!(!text.contains(value.as_str()), "{topic} carries {value}: {text}");
            }
            sealed += usize::from(text.contains(envelope::MEMBER) && text.contains(&erin.id));
        }
    }
    // Six events sealed for her; her deletion may not be published yet.
    ensure!(
        sealed >= 5,
        "only {sealed} of Erin's sealed events were read from Kafka"
    );

    // 3. The live read models drop or redact her data.
    until(DEADLINE, || async {
        let path = format!("/api/v1/users/{erin_id}");
        let profile = world.platform.get(&path, &world.client.token).await?;
        ensure!(
            profile.status() == StatusCode::NOT_FOUND,
            "profile: {}",
            profile.status()
        );
        Ok(())
    })
    .await?;
    until(DEADLINE, || async {
        let response = world
            .platform
            .get(&format!("/api/v1/proposals/{proposal}"), &world.client.token)
            .await?;
        let view: Value = expect(response, StatusCode::OK).await?;
        ensure!(
            view["cover_letter"] == ERASED_TEXT && view["attachments"] == json!([]),
            "{view}"
        );
        Ok(())
    })
    .await?;
    let login = json!({"email": erin.email, "password": "correct horse battery"});
    let refused = world.platform.post("/api/v1/users/login", None, &login).await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // 4. The other party reads exactly what it read before.
    assert_eq!(
        client_view(&world, &client_reads).await?,
        before,
        "the client's money or contract changed"
    );

    // 5. Every read model rebuilt from the ledger holds nothing personal of hers, and equals
    //    the live one.
    let env = &world.platform.env;
    let (outcome, output) = control(env, &["replay", "rebuild", "all"]).await?;
    ensure!(matches!(outcome, Outcome::Done), "rebuild: {outcome:?}\n{output}");
    let storage = Storage::connect(&env.config).await?;
    for context in BoundedContext::ALL {
        for generation in [0, 1] {
            let dump = storage
                .dump(Target::generation(context, generation), &env.config)
                .await?;
            for (key, row) in dump.iter() {
                for value in &personal_values {
                    ensure!(
                        !key.contains(value.as_str()) && !row.contains(value.as_str()),
                        "{} g{generation} holds {value}: {key} = {row}",
                        context.name()
                    );
                }
            }
        }
    }
    let (outcome, output) = control(env, &["replay", "verify", "all"]).await?;
    ensure!(matches!(outcome, Outcome::Done), "verify: {outcome:?}\n{output}");
    assert_eq!(
        client_view(&world, &client_reads).await?,
        before,
        "changed by the rebuild"
    );

    // 6. The same email registers again: a new person, with a new key.
    let again = json!({"email": erin.email, "password": "correct horse battery", "name": "Erin Again"});
    let created: Value = expect(
        world
            .platform
            .post("/api/v1/users/freelancers/register", None, &again)
            .await?,
        StatusCode::CREATED,
    )
    .await?;
    assert_ne!(created["id"], erin.id.as_str());
    let session: Value = expect(
        world.platform.post("/api/v1/users/login", None, &login).await?,
        StatusCode::OK,
    )
    .await?;
    let token = session["access_token"].as_str().context("token")?;
    let own = until(DEADLINE, || async {
        let response = world.platform.get("/api/v1/users/me/profile", token).await?;
        expect::<Value>(response, StatusCode::OK).await
    })
    .await?;
    assert_eq!(own["email"], erin.email.as_str());
    assert_eq!(own["name"], "Erin Again");

    world.platform.stop().await
}

/// Those of `values` that some ledger row (payload or metadata) holds in clear.
async fn in_ledger_rows<'v>(ledger: &Ledger, values: &'v [String]) -> anyhow::Result<Vec<&'v str>> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT payload::text || metadata::text FROM events")
        .fetch_all(&ledger.pool())
        .await?;
    Ok(values
        .iter()
        .map(String::as_str)
        .filter(|value| rows.iter().any(|row| row.contains(value)))
        .collect())
}

/// The client's answers to `reads`, all 200.
async fn client_view(world: &World, reads: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut answers = Vec::new();
    for path in reads {
        let response = world.platform.get(path, &world.client.token).await?;
        ensure!(
            response.status() == StatusCode::OK,
            "{path}: {}",
            response.status()
        );
        answers.push(response.json::<Value>().await?);
    }
    Ok(answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_or_wrong_key_never_stops_the_projector_the_fields_read_as_redacted() -> anyhow::Result<()>
{
    let platform = Platform::start().await?;
    let ledger = platform.env.ledger().await?;
    let registration = |user: Uuid, name: &str| {
        json!({"type": "ClientRegistered", "user_id": user, "email": format!("{name}@example.com"),
               "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "name": name,
               "registered_at": Utc::now()})
    };
    const REGISTRATION: &[PersonalField] = &[
        PersonalField::email("email"),
        PersonalField::text("password_hash"),
        PersonalField::text("name"),
    ];
    const NAME: &[PersonalField] = &[PersonalField::text("name")];
    let personal = |user: Uuid, fields| PersonalData {
        subject: UserId::from_uuid(user),
        fields,
    };
    let stranger_key = XChaCha20Poly1305::generate_key(&mut OsRng);

    // No key at all: sealed with a key the ledger never had.
    let keyless = Uuid::now_v7();
    let mut no_key = registration(keyless, "Keyless");
    envelope::seal(&mut no_key, &personal(keyless, REGISTRATION), &stranger_key)?;
    // A key, but not the one that sealed the event.
    let (wrong, _) = platform
        .signed_up_client(&format!("wrong-{}@example.com", Uuid::new_v4().simple()), "Wendy")
        .await?;
    let wrong: Uuid = wrong.parse()?;
    let mut wrong_key = json!({"type": "ProfileUpdated", "user_id": wrong, "name": "Wendy Two", "headline": "h", "bio": "b", "updated_at": Utc::now()});
    envelope::seal(&mut wrong_key, &personal(wrong, NAME), &stranger_key)?;
    // Altered data: the sealed blob cut short.
    let altered = Uuid::now_v7();
    let mut cut = registration(altered, "Altered");
    envelope::seal(&mut cut, &personal(altered, REGISTRATION), &stranger_key)?;
    cut[envelope::MEMBER]["sealed"] = json!("AAAA");
    for (stream, expected, payload) in [
        (keyless, ExpectedVersion::NoStream, no_key),
        (wrong, ExpectedVersion::Exact(1), wrong_key),
        (altered, ExpectedVersion::NoStream, cut),
    ] {
        append_user_event(&ledger, stream, expected, payload).await?;
    }

    // Each is projected with placeholders; a registration after them too (the projector goes on).
    let (last, token) = platform
        .signed_up_client(&format!("after-{}@example.com", Uuid::new_v4().simple()), "After")
        .await?;
    for (user, name) in [
        (keyless.to_string(), ERASED_TEXT),
        (wrong.to_string(), ERASED_TEXT),
        (altered.to_string(), ERASED_TEXT),
        (last, "After"),
    ] {
        // Until the name is the expected one: "wrong" was readable (as Wendy) before its
        // unreadable update was projected.
        let last_seen = std::sync::Mutex::new(Value::Null);
        eventually(DEADLINE, || async {
            let response = platform.get(&format!("/api/v1/users/{user}"), &token).await?;
            if response.status() != StatusCode::OK {
                return Ok(None);
            }
            let profile = response.json::<Value>().await?;
            let projected = profile["name"] == name;
            *last_seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = profile;
            Ok(projected.then_some(()))
        })
        .await
        .with_context(|| {
            let seen = last_seen.lock().map(|v| v.to_string()).unwrap_or_default();
            format!("{user} not projected with the name {name:?}: last seen {seen}")
        })?;
    }
    // Nothing parked.
    let parked = users_gauge(&platform, "workup_projector_dlq_events").await?;
    assert!(parked.unwrap_or(0.0) == 0.0, "parked: {parked:?}");
    platform.stop().await
}
