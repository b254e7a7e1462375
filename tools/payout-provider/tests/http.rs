//! The HTTP API over a real socket, as a withdrawal worker sees it.

use std::time::{Duration, Instant};

use payout_provider::{Payout, PayoutStatus, Provider, Settings, Stats};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

struct App {
    base: String,
    provider: Provider,
    client: reqwest::Client,
}

async fn spawn_app(latency_ms: u64, failure_rate: f64) -> App {
    let settings = Settings {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::ZERO,
        failure_rate,
    };
    let provider = Provider::new(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(provider.clone().serve(listener));
    App {
        base,
        provider,
        client: reqwest::Client::new(),
    }
}

impl App {
    async fn post(&self, withdrawal_id: Uuid, minor: i64) -> (StatusCode, Value) {
        let body = json!({ "withdrawal_id": withdrawal_id, "amount": { "minor": minor, "currency": "USD" } });
        let response = self
            .client
            .post(format!("{}/payouts", self.base))
            .header("Idempotency-Key", withdrawal_id.to_string())
            .json(&body)
            .send()
            .await
            .expect("POST /payouts");
        (response.status(), response.json().await.expect("JSON answer"))
    }

    async fn delete(&self, withdrawal_id: Uuid) -> (StatusCode, Value) {
        let response = self
            .client
            .delete(format!("{}/payouts/{withdrawal_id}", self.base))
            .send()
            .await
            .expect("DELETE /payouts/{id}");
        (response.status(), response.json().await.expect("JSON answer"))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        (response.status(), response.json().await.expect("JSON answer"))
    }

    async fn stats(&self) -> Stats {
        let (status, body) = self.get("/stats").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_value(body).expect("Stats")
    }
}

fn payout(body: Value) -> Payout {
    serde_json::from_value(body).expect("a Payout")
}

#[tokio::test]
async fn a_payout_is_paid_after_the_latency() {
    let app = spawn_app(300, 0.0).await;
    let id = Uuid::now_v7();

    let started = Instant::now();
    let (status, body) = app.post(id, 1234).await;

    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::OK);
    let paid = payout(body);
    assert_eq!(paid.status, PayoutStatus::Paid);
    assert_eq!(paid.withdrawal_id, id);
    assert_eq!(paid.amount.minor, 1234);
    assert_eq!(paid.requests, 1);
    assert!(
        paid.reference
            .as_deref()
            .is_some_and(|r| r.starts_with("po_") && r.len() == 35)
    );
    assert_eq!(paid.reason, None);
    assert_eq!(
        app.stats().await,
        Stats {
            requests: 1,
            paid: 1,
            declined: 0,
            cancelled: 0,
            paid_minor: 1234
        }
    );
    let (status, body) = app.get(&format!("/payouts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payout(body), paid);
    assert_eq!(app.provider.payout(id), Some(paid));
}

#[tokio::test]
async fn concurrent_requests_for_one_id_pay_once() {
    let app = spawn_app(300, 0.0).await;
    let id = Uuid::now_v7();

    let ((first_status, first), (second_status, second)) = tokio::join!(app.post(id, 500), app.post(id, 500));

    assert_eq!((first_status, second_status), (StatusCode::OK, StatusCode::OK));
    let (first, second) = (payout(first), payout(second));
    assert!(first.reference.is_some());
    assert_eq!(first.reference, second.reference);
    let stats = app.stats().await;
    assert_eq!((stats.paid, stats.requests, stats.paid_minor), (1, 2, 500));
    assert_eq!(app.provider.payout(id).map(|p| p.requests), Some(2));
}

#[tokio::test]
async fn a_retry_after_settlement_answers_at_once_with_the_same_payout() {
    let app = spawn_app(200, 0.0).await;
    let id = Uuid::now_v7();
    let (_, first) = app.post(id, 700).await;

    let started = Instant::now();
    let (status, again) = app.post(id, 700).await;

    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payout(again).reference, payout(first).reference);
    let stats = app.stats().await;
    assert_eq!((stats.paid, stats.requests), (1, 2));
}

#[tokio::test]
async fn a_declined_payout_stays_declined_on_retry() {
    let app = spawn_app(50, 1.0).await;
    let id = Uuid::now_v7();

    let (status, body) = app.post(id, 900).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let declined = payout(body);
    assert_eq!(declined.status, PayoutStatus::Declined);
    assert_eq!(declined.reason.as_deref(), Some(payout_provider::DECLINE_REASON));
    assert_eq!(declined.reference, None);

    // Even with failures switched off, the verdict for this id does not change.
    app.provider.set_settings(Settings {
        failure_rate: 0.0,
        ..Settings::default()
    });
    let (status, body) = app.post(id, 900).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(payout(body).status, PayoutStatus::Declined);
    assert_eq!(
        app.stats().await,
        Stats {
            requests: 2,
            paid: 0,
            declined: 1,
            cancelled: 0,
            paid_minor: 0
        }
    );
}

#[tokio::test]
async fn cancelling_a_pending_payout_answers_the_waiting_request_with_409() {
    let app = spawn_app(400, 0.0).await;
    let id = Uuid::now_v7();

    let waiting = {
        let (client, base) = (app.client.clone(), app.base.clone());
        tokio::spawn(async move {
            let body = json!({ "withdrawal_id": id, "amount": { "minor": 100, "currency": "EUR" } });
            let response = client
                .post(format!("{base}/payouts"))
                .json(&body)
                .send()
                .await
                .expect("POST");
            (response.status(), response.json::<Value>().await.expect("JSON"))
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = app.delete(id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payout(body).status, PayoutStatus::Cancelled);

    let (status, body) = waiting.await.expect("the waiting request");
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(payout(body).status, PayoutStatus::Cancelled);

    // Past the original deadline, the scheduled settlement leaves it cancelled.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        app.provider.payout(id).map(|p| p.status),
        Some(PayoutStatus::Cancelled)
    );
    assert_eq!(
        app.stats().await,
        Stats {
            requests: 1,
            paid: 0,
            declined: 0,
            cancelled: 1,
            paid_minor: 0
        }
    );
}

#[tokio::test]
async fn cancelling_a_paid_payout_is_too_late() {
    let app = spawn_app(50, 0.0).await;
    let id = Uuid::now_v7();
    app.post(id, 300).await;

    let (status, body) = app.delete(id).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(payout(body).status, PayoutStatus::Paid);
    let stats = app.stats().await;
    assert_eq!((stats.paid, stats.cancelled), (1, 0));
}

#[tokio::test]
async fn cancelling_an_unknown_id_refuses_a_late_request() {
    let app = spawn_app(50, 0.0).await;
    let id = Uuid::now_v7();

    let (status, body) = app.delete(id).await;
    assert_eq!(status, StatusCode::OK);
    let tombstone = payout(body);
    assert_eq!(tombstone.status, PayoutStatus::Cancelled);
    assert_eq!(
        (tombstone.amount.minor, tombstone.amount.currency.as_str()),
        (0, "XXX")
    );

    let (status, body) = app.post(id, 250).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(payout(body).status, PayoutStatus::Cancelled);
    assert_eq!(
        app.stats().await,
        Stats {
            requests: 1,
            paid: 0,
            declined: 0,
            cancelled: 1,
            paid_minor: 0
        }
    );

    // Cancelling again is harmless.
    let (status, _) = app.delete(id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.stats().await.cancelled, 1);
}

#[tokio::test]
async fn reusing_an_id_with_another_amount_is_a_conflict() {
    let app = spawn_app(50, 0.0).await;
    let id = Uuid::now_v7();
    app.post(id, 1000).await;

    let (status, body) = app.post(id, 1001).await;

    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({ "error": "idempotency-key-reused" }));
    let stats = app.stats().await;
    assert_eq!((stats.paid, stats.requests, stats.paid_minor), (1, 2, 1000));
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_stop_the_payout() {
    let app = spawn_app(300, 0.0).await;
    let id = Uuid::now_v7();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");

    let body = json!({ "withdrawal_id": id, "amount": { "minor": 42, "currency": "GBP" } });
    let gave_up = impatient
        .post(format!("{}/payouts", app.base))
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));

    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = app.get(&format!("/payouts/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payout(body).status, PayoutStatus::Paid);
    assert_eq!(app.stats().await.paid, 1);
}

#[tokio::test]
async fn bad_requests_get_400_with_an_error() {
    let app = spawn_app(50, 0.0).await;
    let id = Uuid::now_v7();
    let post = |body: String, key: Option<String>| {
        let mut request = app
            .client
            .post(format!("{}/payouts", app.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };
    let bodies = [
        ("not json".to_owned(), None),
        (
            json!({ "amount": { "minor": 1, "currency": "USD" } }).to_string(),
            None,
        ),
        (
            json!({ "withdrawal_id": "nope", "amount": { "minor": 1, "currency": "USD" } }).to_string(),
            None,
        ),
        (
            json!({ "withdrawal_id": id, "amount": { "minor": 0, "currency": "USD" } }).to_string(),
            None,
        ),
        (
            json!({ "withdrawal_id": id, "amount": { "minor": -5, "currency": "USD" } }).to_string(),
            None,
        ),
        (
            json!({ "withdrawal_id": id, "amount": { "minor": 5, "currency": "usd" } }).to_string(),
            None,
        ),
        (
            json!({ "withdrawal_id": id, "amount": { "minor": 5, "currency": "USD" } }).to_string(),
            Some(Uuid::now_v7().to_string()),
        ),
    ];
    for (body, key) in bodies {
        let response = post(body.clone(), key).await.expect("POST");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.expect("JSON error");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }

    let (status, body) = app.get("/payouts/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string());
    assert_eq!(app.stats().await, Stats::default());
}

#[tokio::test]
async fn health_lookup_and_settings() {
    let app = spawn_app(50, 0.0).await;

    assert_eq!(
        app.get("/health").await,
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    assert_eq!(
        app.get(&format!("/payouts/{}", Uuid::now_v7())).await,
        (StatusCode::NOT_FOUND, json!({ "error": "not-found" }))
    );

    let put = |body: Value| {
        app.client
            .put(format!("{}/settings", app.base))
            .json(&body)
            .send()
    };
    let response = put(json!({ "latency_ms": 10, "jitter_ms": 5, "failure_rate": 0.25 }))
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({ "latency_ms": 10, "jitter_ms": 5, "failure_rate": 0.25 })
    );
    assert_eq!(
        app.provider.settings(),
        Settings {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            failure_rate: 0.25
        }
    );
    for bad in [
        json!({ "latency_ms": 10, "jitter_ms": 0, "failure_rate": 1.5 }),
        json!({ "latency_ms": 10, "jitter_ms": 0, "failure_rate": -0.1 }),
        json!({ "latency_ms": 10 }),
    ] {
        let response = put(bad.clone()).await.expect("PUT");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(app.provider.settings().failure_rate, 0.25);
}
