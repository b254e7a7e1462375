//! The users read side (DESIGN §3, §6): every write of the users context is readable with its
//! consistency token; the public view has no private fields; a deleted account is a tombstone
//! that is never served; redelivered, older and racing events change nothing; documents hold
//! dates as BSON dates.

use anyhow::Context as _;
use infra::{
    ledger::{RecordedEvent, Upcasters},
    read_models::users::UserProfiles,
};
use mongodb::bson::{Bson, Document, doc};
use projectors::users::UsersProjector;
use reqwest::{Method, Response, StatusCode};
use scenarios::harness::{Platform, expect};
use serde_json::{Value, json};
use uuid::Uuid;

const SECTIONS: [&str; 5] = ["skills", "languages", "education", "experience", "achievements"];

/// A platform whose reads wait long enough for a loaded test machine.
async fn platform() -> anyhow::Result<Platform> {
    Platform::start_with(|c| c.http.consistency_wait_ms = 15_000).await
}

/// A registered and signed-in user.
struct Account {
    id: String,
    email: String,
    token: String,
    /// Consistency token of the registration.
    position: String,
}

async fn register(platform: &Platform, role: &str, name: &str) -> anyhow::Result<Account> {
    // Emails are stored lower-case.
    let email = format!("{}-{}@example.com", name.to_lowercase(), Uuid::new_v4().simple());
    let body = json!({"email": email, "password": "correct horse battery", "name": name});
    let created: Value = expect(
        platform
            .post(&format!("/api/v1/users/{role}/register"), None, &body)
            .await?,
        StatusCode::CREATED,
    )
    .await?;
    let login = json!({"email": email, "password": "correct horse battery"});
    let session: Value = expect(
        platform.post("/api/v1/users/login", None, &login).await?,
        StatusCode::OK,
    )
    .await?;
    Ok(Account {
        id: created["id"].as_str().context("no id")?.to_owned(),
        email,
        token: session["access_token"].as_str().context("no token")?.to_owned(),
        position: created["position"].as_str().context("no position")?.to_owned(),
    })
}

/// A write of `account` that must answer `status`: its `(id, position)`.
async fn write(
    platform: &Platform,
    account: &Account,
    method: Method,
    path: &str,
    body: Option<&Value>,
    status: StatusCode,
) -> anyhow::Result<(String, String)> {
    let answer: Value = expect(
        platform.call(method, path, Some(&account.token), body).await?,
        status,
    )
    .await
    .with_context(|| path.to_owned())?;
    Ok((
        answer["id"].as_str().context("no id")?.to_owned(),
        answer["position"].as_str().context("no position")?.to_owned(),
    ))
}

/// GET from query-api with a bearer token and, if given, a consistency token.
async fn read(
    platform: &Platform,
    path: &str,
    token: &str,
    position: Option<&str>,
) -> anyhow::Result<Response> {
    let mut request = platform
        .http
        .get(format!("{}{path}", platform.query_url))
        .bearer_auth(token);
    if let Some(position) = position {
        request = request.header("x-consistency-position", position);
    }
    Ok(request.send().await?)
}

/// The caller's own profile once `position` is applied.
async fn own(platform: &Platform, account: &Account, position: &str) -> anyhow::Result<Value> {
    expect(
        read(
            platform,
            "/api/v1/users/me/profile",
            &account.token,
            Some(position),
        )
        .await?,
        StatusCode::OK,
    )
    .await
}

/// The stored document of user `id`, straight from MongoDB.
async fn stored(platform: &Platform, id: &str) -> anyhow::Result<Document> {
    let db = infra::mongo::connect(&platform.env.config.mongo).await?;
    db.collection::<Document>("users")
        .find_one(doc! {"_id": id})
        .await?
        .context("no document")
}

/// Register a freelancer and fill every part of the profile; the freelancer and the last
/// position.
async fn full_profile(platform: &Platform) -> anyhow::Result<(Account, String)> {
    let fay = register(platform, "freelancers", "Fay").await?;
    let profile =
        json!({"name": "Fay Weaver", "headline": "Looms and code", "bio": "Twenty years at the loom."});
    let (_, mut position) = write(
        platform,
        &fay,
        Method::PUT,
        "/api/v1/users/me/profile",
        Some(&profile),
        StatusCode::OK,
    )
    .await?;
    for section in SECTIONS {
        let path = format!("/api/v1/users/me/{section}");
        let (kept, _) = write(
            platform,
            &fay,
            Method::POST,
            &path,
            Some(&json!({"title": format!("{section} one"), "details": "first"})),
            StatusCode::CREATED,
        )
        .await?;
        let (dropped, _) = write(
            platform,
            &fay,
            Method::POST,
            &path,
            Some(&json!({"title": format!("{section} two"), "details": "second"})),
            StatusCode::CREATED,
        )
        .await?;
        write(
            platform,
            &fay,
            Method::PUT,
            &format!("{path}/{kept}"),
            Some(&json!({"title": format!("{section} one, revised"), "details": "revised"})),
            StatusCode::OK,
        )
        .await?;
        (_, position) = write(
            platform,
            &fay,
            Method::DELETE,
            &format!("{path}/{dropped}"),
            None,
            StatusCode::OK,
        )
        .await?;
    }
    for (what, link) in [
        ("photo", "/api/v1/media/photos/fay.png"),
        ("resume", "/api/v1/media/resumes/fay.pdf"),
    ] {
        (_, position) = write(
            platform,
            &fay,
            Method::PUT,
            &format!("/api/v1/users/me/{what}"),
            Some(&json!({"link": link})),
            StatusCode::OK,
        )
        .await?;
    }
    Ok((fay, position))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_users_write_is_readable_with_its_token() -> anyhow::Result<()> {
    let platform = platform().await?;
    let fay = register(&platform, "freelancers", "Fay").await?;

    // Registration.
    let me = own(&platform, &fay, &fay.position).await?;
    assert_eq!(me["id"], fay.id.as_str());
    assert_eq!(me["email"], fay.email.as_str());
    assert_eq!(me["name"], "Fay");
    assert_eq!(me["role"], "freelancer");
    assert_eq!(
        (me["headline"].clone(), me["photo"].clone()),
        (json!(""), Value::Null)
    );
    for section in SECTIONS {
        assert_eq!(me[section], json!([]), "{section} starts empty");
    }
    let registered_at = me["registered_at"].as_str().context("registered_at")?;
    chrono::DateTime::parse_from_rfc3339(registered_at).context("registered_at is RFC 3339")?;

    // Profile update.
    let profile =
        json!({"name": "Fay Weaver", "headline": "Looms and code", "bio": "Twenty years at the loom."});
    let (_, position) = write(
        &platform,
        &fay,
        Method::PUT,
        "/api/v1/users/me/profile",
        Some(&profile),
        StatusCode::OK,
    )
    .await?;
    let me = own(&platform, &fay, &position).await?;
    assert_eq!(
        (&me["name"], &me["headline"], &me["bio"]),
        (&profile["name"], &profile["headline"], &profile["bio"])
    );

    // Each section: add two items, revise one, remove the other; each step read back.
    for section in SECTIONS {
        let path = format!("/api/v1/users/me/{section}");
        let (first, position) = write(
            &platform,
            &fay,
            Method::POST,
            &path,
            Some(&json!({"title": "one", "details": "first"})),
            StatusCode::CREATED,
        )
        .await?;
        let me = own(&platform, &fay, &position).await?;
        assert_eq!(
            me[section],
            json!([{"id": first, "title": "one", "details": "first"}]),
            "{section}: added"
        );
        let (second, _) = write(
            &platform,
            &fay,
            Method::POST,
            &path,
            Some(&json!({"title": "two", "details": ""})),
            StatusCode::CREATED,
        )
        .await?;
        let (_, position) = write(
            &platform,
            &fay,
            Method::PUT,
            &format!("{path}/{first}"),
            Some(&json!({"title": "one, revised", "details": "better"})),
            StatusCode::OK,
        )
        .await?;
        let me = own(&platform, &fay, &position).await?;
        assert_eq!(
            me[section],
            json!([{"id": first, "title": "one, revised", "details": "better"}, {"id": second, "title": "two", "details": ""}]),
            "{section}: revised in place"
        );
        let (_, position) = write(
            &platform,
            &fay,
            Method::DELETE,
            &format!("{path}/{first}"),
            None,
            StatusCode::OK,
        )
        .await?;
        let me = own(&platform, &fay, &position).await?;
        assert_eq!(
            me[section],
            json!([{"id": second, "title": "two", "details": ""}]),
            "{section}: removed"
        );
    }

    // Photo and resume links, set then cleared.
    for what in ["photo", "resume"] {
        let link = format!("/api/v1/media/{what}s/abc.bin");
        let path = format!("/api/v1/users/me/{what}");
        let (_, position) = write(
            &platform,
            &fay,
            Method::PUT,
            &path,
            Some(&json!({"link": link})),
            StatusCode::OK,
        )
        .await?;
        assert_eq!(
            own(&platform, &fay, &position).await?[what],
            link.as_str(),
            "{what} set"
        );
        let (_, position) = write(
            &platform,
            &fay,
            Method::PUT,
            &path,
            Some(&json!({"link": null})),
            StatusCode::OK,
        )
        .await?;
        assert_eq!(
            own(&platform, &fay, &position).await?[what],
            Value::Null,
            "{what} cleared"
        );
    }

    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_public_view_shows_the_profile_without_private_fields() -> anyhow::Result<()> {
    let platform = platform().await?;
    let (fay, position) = full_profile(&platform).await?;
    let ada = register(&platform, "clients", "Ada").await?;

    let mine = own(&platform, &fay, &position).await?;
    let public: Value = expect(
        read(
            &platform,
            &format!("/api/v1/users/{}", fay.id),
            &ada.token,
            Some(&position),
        )
        .await?,
        StatusCode::OK,
    )
    .await?;
    assert!(
        public.get("email").is_none(),
        "the public view leaks the email: {public}"
    );
    assert!(public.get("password_hash").is_none() && public.get("version").is_none());
    let mut without_email = mine.clone();
    without_email
        .as_object_mut()
        .context("an object")?
        .remove("email");
    assert_eq!(
        public, without_email,
        "public = own view minus the private fields"
    );
    assert_eq!(public["skills"][0]["title"], "skills one, revised");
    assert_eq!(public["resume"], "/api/v1/media/resumes/fay.pdf");

    // A client's profile too; the owner reading their own public page gets no email either.
    let client: Value = expect(
        read(
            &platform,
            &format!("/api/v1/users/{}", ada.id),
            &fay.token,
            Some(&ada.position),
        )
        .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        (client["role"].as_str(), client["name"].as_str()),
        (Some("client"), Some("Ada"))
    );
    assert!(client.get("email").is_none());

    // Unknown user, bad id, no token, bad consistency token.
    let unknown = read(
        &platform,
        &format!("/api/v1/users/{}", Uuid::now_v7()),
        &ada.token,
        None,
    )
    .await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad = read(&platform, "/api/v1/users/not-a-uuid", &ada.token, None).await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let anonymous = platform
        .http
        .get(format!("{}/api/v1/users/{}", platform.query_url, fay.id))
        .send()
        .await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let garbage = read(
        &platform,
        "/api/v1/users/me/profile",
        &fay.token,
        Some("user:nope"),
    )
    .await?;
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);

    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_account_is_a_tombstone_never_served() -> anyhow::Result<()> {
    let platform = platform().await?;
    let (fay, _) = full_profile(&platform).await?;
    let ada = register(&platform, "clients", "Ada").await?;

    let (_, position) = write(
        &platform,
        &fay,
        Method::DELETE,
        "/api/v1/users/me",
        None,
        StatusCode::OK,
    )
    .await?;
    let mine = read(&platform, "/api/v1/users/me/profile", &fay.token, Some(&position)).await?;
    assert_eq!(
        mine.status(),
        StatusCode::NOT_FOUND,
        "own view of a deleted account"
    );
    let public = read(
        &platform,
        &format!("/api/v1/users/{}", fay.id),
        &ada.token,
        Some(&position),
    )
    .await?;
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "public view of a deleted account"
    );

    // Personal data dropped; the id, version, role, status and registration date kept.
    let tombstone = stored(&platform, &fay.id).await?;
    let mut fields: Vec<&str> = tombstone.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["_id", "registered_at", "role", "status", "version"],
        "{tombstone}"
    );
    assert_eq!(tombstone.get_str("status")?, "deleted");
    let version: i64 = position.rsplit(':').next().context("version")?.parse()?;
    assert_eq!(stored_version(&tombstone)?, version);

    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_store_dates_as_bson_dates_and_versions_as_integers() -> anyhow::Result<()> {
    let platform = platform().await?;
    let (fay, position) = full_profile(&platform).await?;
    own(&platform, &fay, &position).await?;

    let document = stored(&platform, &fay.id).await?;
    assert!(
        matches!(document.get("registered_at"), Some(Bson::DateTime(_))),
        "registered_at is a BSON date: {document}"
    );
    assert!(
        matches!(document.get("version"), Some(Bson::Int64(_) | Bson::Int32(_))),
        "version is an integer: {document}"
    );
    assert_eq!(
        document.get_str("email")?,
        fay.email,
        "the email is kept for its owner"
    );
    assert!(
        document.get("password_hash").is_none(),
        "no password hash in a read model"
    );
    for section in SECTIONS {
        let items = document.get_array(section)?;
        assert_eq!(items.len(), 1, "{section}: {document}");
        assert!(
            matches!(&items[0], Bson::Document(d) if d.get_str("title").is_ok()),
            "{section} items are documents: {document}"
        );
    }
    // An operator can query by what a profile holds.
    let db = infra::mongo::connect(&platform.env.config.mongo).await?;
    let found = db
        .collection::<Document>("users")
        .find_one(doc! {"skills.title": "skills one, revised", "registered_at": {"$lte": mongodb::bson::DateTime::now()}})
        .await?
        .context("found by skill and date")?;
    assert_eq!(found.get_str("_id")?, fay.id);

    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_older_and_racing_events_change_nothing() -> anyhow::Result<()> {
    let platform = platform().await?;
    let (fay, position) = full_profile(&platform).await?;
    let before = own(&platform, &fay, &position).await?;
    let stored_before = stored(&platform, &fay.id).await?;

    let ledger = platform.env.ledger().await?;
    let events = ledger.read_stream(fay.id.parse()?, 1).await?;
    assert!(events.len() > 20, "a long stream: {}", events.len());
    let db = infra::mongo::connect(&platform.env.config.mongo).await?;
    let projector = UsersProjector {
        profiles: UserProfiles::new(&db),
        upcasters: Upcasters::current(),
        ledger: ledger.clone(),
    };

    // Every event again, in order, then newest first.
    for event in events.iter().chain(events.iter().rev()) {
        handle(&projector, event).await?;
    }
    assert_eq!(
        own(&platform, &fay, &position).await?,
        before,
        "redelivery changed the view"
    );
    assert_eq!(
        stored(&platform, &fay.id).await?,
        stored_before,
        "redelivery changed the document"
    );

    // Two consumers racing over the whole stream (as after a rebalance), into a fresh database:
    // the result is the document the projector built, whoever wins each write.
    let race_db = db
        .client()
        .database(&format!("{}_race", platform.env.config.mongo.database));
    for round in 0..3 {
        race_db.collection::<Document>("users").drop().await?;
        let racers = (0..2).map(|_| {
            let (events, profiles) = (events.clone(), UserProfiles::new(&race_db));
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let projector = UsersProjector {
                    profiles,
                    upcasters: Upcasters::current(),
                    ledger,
                };
                for event in &events {
                    handle(&projector, event).await?;
                }
                anyhow::Ok(())
            })
        });
        for racer in futures::future::join_all(racers).await {
            racer??;
        }
        let raced = UserProfiles::new(&race_db)
            .own(fay.id.parse()?)
            .await?
            .context("raced profile")?;
        assert_eq!(
            serde_json::to_value(&raced)?,
            before,
            "round {round}: racing consumers"
        );
        // An older event after the race: nothing changes.
        handle(&projector_on(&race_db, &ledger), &events[1]).await?;
        let again = UserProfiles::new(&race_db).own(fay.id.parse()?).await?;
        assert_eq!(
            again.as_ref(),
            Some(&raced),
            "round {round}: an older event after the race"
        );
    }
    race_db.drop().await?;

    // After the deletion, older events never bring the profile back.
    let (_, deleted) = write(
        &platform,
        &fay,
        Method::DELETE,
        "/api/v1/users/me",
        None,
        StatusCode::OK,
    )
    .await?;
    let gone = read(&platform, "/api/v1/users/me/profile", &fay.token, Some(&deleted)).await?;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let tombstone = stored(&platform, &fay.id).await?;
    let all = ledger.read_stream(fay.id.parse()?, 1).await?;
    for event in all.iter().rev() {
        handle(&projector, event).await?;
    }
    let gone = read(&platform, "/api/v1/users/me/profile", &fay.token, None).await?;
    assert_eq!(
        gone.status(),
        StatusCode::NOT_FOUND,
        "an old event resurrected the profile"
    );
    assert_eq!(
        stored(&platform, &fay.id).await?,
        tombstone,
        "the tombstone changed"
    );

    platform.stop().await
}

fn projector_on(db: &mongodb::Database, ledger: &infra::ledger::Ledger) -> UsersProjector {
    UsersProjector {
        profiles: UserProfiles::new(db),
        upcasters: Upcasters::current(),
        ledger: ledger.clone(),
    }
}

async fn handle(projector: &UsersProjector, event: &RecordedEvent) -> anyhow::Result<()> {
    use infra::kafka::consumer::EventHandler as _;
    projector
        .handle(event)
        .await
        .map_err(|e| anyhow::anyhow!("{} v{}: {e}", event.event_type, event.version))
}

fn stored_version(document: &Document) -> anyhow::Result<i64> {
    match document.get("version") {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        other => anyhow::bail!("version is {other:?}"),
    }
}
