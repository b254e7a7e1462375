//! Projector lag (DESIGN §6): a poison event is parked in the dead-letter topic and the projector
//! goes on; the projectors' `/metrics` shows, per projector, the events and seconds it is behind
//! (measured from the broker: committed offsets against high watermarks) and its dead letters.

use anyhow::Context as _;
use chrono::Utc;
use domain::BoundedContext;
use infra::{
    kafka::{consumer::group_id, lag::LagProbe},
    ledger::{AppendRequest, EventMetadata, ExpectedVersion, Ledger, NewEvent, StreamWrite},
};
use reqwest::StatusCode;
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

/// The value of `metric` for the users projector of this platform, if published.
pub(crate) async fn users_gauge(platform: &Platform, metric: &str) -> anyhow::Result<Option<f64>> {
    let text = platform
        .http
        .get(format!("{}/metrics", platform.projectors_url))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    // Every platform of this test binary records into one process-wide registry: the `group`
    // label (prefixed by the test's namespace) picks this platform's projector.
    let group = format!("group=\"{}\"", group_id(&platform.env.config.kafka, "users"));
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| line.contains(&group) && line.contains("projector=\"users\""))
        .map(|line| {
            line.rsplit(' ')
                .next()
                .context("no value")?
                .parse::<f64>()
                .with_context(|| format!("not a number: {line}"))
        })
        .next()
        .transpose()
}

/// Append `payload` as it is (nothing sealed by the append: its personal fields, if any, are
/// already in an envelope, or it is not a valid event at all) to user stream `stream`.
pub(crate) async fn append_user_event(
    ledger: &Ledger,
    stream: Uuid,
    expected: ExpectedVersion,
    payload: Value,
) -> anyhow::Result<()> {
    let write = StreamWrite {
        stream_id: stream,
        stream_type: "user",
        context: BoundedContext::Users,
        expected,
        events: vec![NewEvent {
            event_type: payload["type"].as_str().context("type")?.to_owned(),
            schema_version: 1,
            payload,
            personal: None,
        }],
    };
    let metadata = EventMetadata::new(Uuid::now_v7(), None, Utc::now());
    ledger.append(AppendRequest::new(metadata, vec![write])).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_is_parked_and_the_projector_goes_on() -> anyhow::Result<()> {
    let platform = Platform::start_with(|c| c.http.consistency_wait_ms = 30_000).await?;
    let ledger = platform.env.ledger().await?;

    // A user event no version of the users projector can decode.
    let poison = Uuid::now_v7();
    let bogus = json!({"type": "ClientRegistered", "user_id": "not a uuid", "mood": "poisonous"});
    append_user_event(&ledger, poison, ExpectedVersion::NoStream, bogus).await?;

    // Registrations after it are still projected (the read waits for the token; it would answer
    // 504 if the projector had stopped).
    let mut last = None;
    for name in ["Ada", "Bob", "Cy", "Dee"] {
        let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
        let body = json!({"email": email, "password": "correct horse battery", "name": name});
        let created: Value = expect(
            platform
                .post("/api/v1/users/clients/register", None, &body)
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
        last = Some((created, session));
    }
    let (created, session) = last.context("registered")?;
    let profile: Value = expect(
        platform
            .http
            .get(format!("{}/api/v1/users/me/profile", platform.query_url))
            .bearer_auth(session["access_token"].as_str().context("token")?)
            .header(
                "x-consistency-position",
                created["position"].as_str().context("position")?,
            )
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(profile["name"], "Dee");
    let poisoned = platform
        .http
        .get(format!("{}/api/v1/users/{poison}", platform.query_url))
        .bearer_auth(session["access_token"].as_str().context("token")?)
        .send()
        .await?;
    assert_eq!(
        poisoned.status(),
        StatusCode::NOT_FOUND,
        "the poison was not projected"
    );

    // The metrics: one dead letter, and nothing behind once the offsets are committed.
    let parked = eventually(DEADLINE, || async {
        Ok(users_gauge(&platform, "workup_projector_dlq_events")
            .await?
            .filter(|n| *n >= 1.0))
    })
    .await?;
    assert_eq!(parked, 1.0, "exactly the poison event is parked");
    eventually(DEADLINE, || async {
        let events = users_gauge(&platform, "workup_projector_lag_events").await?;
        let seconds = users_gauge(&platform, "workup_projector_lag_seconds").await?;
        Ok((events == Some(0.0) && seconds == Some(0.0)).then_some(()))
    })
    .await
    .context("the lag did not come back to 0")?;

    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_that_applied_nothing_is_behind_by_every_event_and_the_oldest_ones_age() -> anyhow::Result<()>
{
    let platform = Platform::start_with(|c| c.http.consistency_wait_ms = 30_000).await?;
    let kafka = &platform.env.config.kafka;
    for name in ["Eve", "Fox"] {
        platform
            .signed_up_client(&format!("{name}-{}@example.com", Uuid::new_v4().simple()), name)
            .await?;
    }
    let started = Utc::now();
    // A group that never consumed: behind by every user event published so far, and by the
    // age of the oldest; no dead letters. Measured the way the projectors' probe measures.
    let probe = LagProbe::new(
        kafka,
        &group_id(kafka, "nobody"),
        vec![kafka.context_topic(BoundedContext::Users)],
        kafka.dlq_topic("nobody"),
    )?;
    infra::kafka::ensure_topics(kafka, &[kafka.dlq_topic("nobody")], false).await?;
    let lag = eventually(DEADLINE, || async {
        let probe = &probe;
        let lag = tokio::task::block_in_place(|| probe.measure())?;
        Ok((lag.events >= 2).then_some(lag))
    })
    .await?;
    assert_eq!(lag.events, 2, "two registrations behind: {lag:?}");
    assert_eq!(lag.dlq_events, 0);
    let waited = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
    assert!(lag.seconds > 0.0 && lag.seconds < waited + 60.0, "{lag:?}");

    // The users projector of the platform, meanwhile, is not behind.
    eventually(DEADLINE, || async {
        let events = users_gauge(&platform, "workup_projector_lag_events").await?;
        Ok((events == Some(0.0)).then_some(()))
    })
    .await?;

    platform.stop().await
}
