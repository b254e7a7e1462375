//! Property test: every write endpoint, fed a valid request with one fault injected (malformed
//! JSON, a wrong type, a huge string, a negative or overflowing amount, an unknown enum value, a
//! wrong content type), answers a 4xx problem, never a 5xx and never another content type.

use proptest::{
    prelude::*,
    strategy::{Strategy, ValueTree},
    test_runner::{Config, TestRunner},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::world::{World, terms};

/// How a valid request is spoiled.
#[derive(Debug, Clone)]
enum Fault {
    /// The body cut short: malformed JSON.
    Truncated(usize),
    /// A leaf (chosen by index) replaced by a value of another type.
    WrongType(usize, Value),
    /// A string leaf replaced by a huge string.
    Huge(usize, usize),
    /// Every `minor` amount set to this (negative, zero or beyond i64).
    Amount(Value),
    /// Every enum-valued leaf (currency, verdict) set to an unknown value.
    UnknownEnum(String),
    /// The right body under another content type (or none).
    ContentType(Option<&'static str>),
}

fn fault() -> impl Strategy<Value = Fault> {
    let wrong = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!([1, "two"])),
        Just(json!({"nested": true})),
    ];
    prop_oneof![
        (1usize..200).prop_map(Fault::Truncated),
        (0usize..50, wrong).prop_map(|(i, v)| Fault::WrongType(i, v)),
        (0usize..50, 20_001usize..300_000).prop_map(|(i, n)| Fault::Huge(i, n)),
        prop_oneof![
            (i64::MIN..=0).prop_map(Value::from),
            Just(json!(9_223_372_036_854_775_808u64)),
            Just(json!(1e300)),
            Just(json!(-0.5)),
        ]
        .prop_map(Fault::Amount),
        "[A-Za-z_]{0,12}".prop_map(Fault::UnknownEnum),
        prop_oneof![
            Just(None),
            Just(Some("text/plain")),
            Just(Some("application/x-www-form-urlencoded"))
        ]
        .prop_map(Fault::ContentType),
    ]
}

/// The paths of the leaves of `value`, in a fixed order.
fn leaves(value: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            let mut p = path.clone();
            p.push(k.clone());
            leaves(v, p, out);
        }),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| {
            let mut p = path.clone();
            p.push(i.to_string());
            leaves(v, p, out);
        }),
        _ => out.push(path),
    }
}

fn at<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Object(map) => map.get_mut(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn set_all(value: &mut Value, key: &str, to: &Value) {
    match value {
        Value::Object(map) => map.iter_mut().for_each(|(k, v)| {
            if k == key {
                *v = to.clone();
            } else {
                set_all(v, key, to);
            }
        }),
        Value::Array(items) => items.iter_mut().for_each(|v| set_all(v, key, to)),
        _ => {}
    }
}

/// The spoiled request: body bytes and content type; `None` when the fault does not apply.
fn spoil(valid: &Value, fault: &Fault) -> Option<(Vec<u8>, Option<&'static str>)> {
    let json = Some("application/json");
    let mut body = valid.clone();
    let mut paths = Vec::new();
    leaves(valid, Vec::new(), &mut paths);
    match fault {
        Fault::Truncated(n) => {
            let text = valid.to_string();
            let cut = (*n).min(text.len().saturating_sub(1));
            return Some((text.as_bytes()[..cut].to_vec(), json));
        }
        Fault::WrongType(i, replacement) => {
            let path = paths.get(i % paths.len().max(1))?;
            let leaf = at(&mut body, path)?;
            let same_kind = matches!(
                (&*leaf, replacement),
                (Value::Number(_), Value::Number(_)) | (Value::Bool(_), Value::Bool(_))
            );
            *leaf = if same_kind {
                json!("not the right type")
            } else {
                replacement.clone()
            };
        }
        Fault::Huge(i, n) => {
            let strings: Vec<_> = paths
                .iter()
                .filter(|p| matches!(at(&mut valid.clone(), p), Some(Value::String(_))))
                .collect();
            let path = strings.get(i % strings.len().max(1))?;
            *at(&mut body, path)? = Value::String("x".repeat(*n));
        }
        Fault::Amount(amount) => {
            if !valid.to_string().contains("\"minor\"") {
                return None;
            }
            set_all(&mut body, "minor", amount);
        }
        Fault::UnknownEnum(name) => {
            let text = valid.to_string();
            if !text.contains("\"currency\"") && !text.contains("\"verdict\"") {
                return None;
            }
            let unknown = Value::String(format!("not-{name}"));
            set_all(&mut body, "currency", &unknown);
            set_all(&mut body, "verdict", &unknown);
        }
        Fault::ContentType(kind) => return Some((valid.to_string().into_bytes(), *kind)),
    }
    Some((body.to_string().into_bytes(), json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spoiled_requests_to_every_write_get_a_4xx_problem() -> anyhow::Result<()> {
    let w = World::new().await?;
    let job = w.job(&w.client).await?;
    let proposal = w.proposal(&job, &w.freelancer, 1).await?;
    let contract_job = w.job(&w.client).await?;
    let accepted = w.proposal(&contract_job, &w.freelancer, 1).await?;
    let (contract, milestones) = w.contract(&contract_job, &accepted).await?;
    let item = json!({"title": "Rust", "details": "since 2015"});
    let skill = w
        .ok(
            Method::POST,
            "/api/v1/users/me/skills",
            &w.freelancer,
            Some(&item),
            reqwest::StatusCode::CREATED,
        )
        .await?;
    let job_body = json!({"title": "Build a loom", "description": "Jacquard", "budget": {"minor": 50_000, "currency": "USD"}, "skills": ["weaving"]});
    let register = json!({"email": "fuzz@example.com", "password": "correct horse battery", "name": "Fuzz"});
    let endpoints: Vec<(Method, String, Value, Option<&str>)> = vec![
        (
            Method::POST,
            "/api/v1/users/clients/register".into(),
            register.clone(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/users/freelancers/register".into(),
            register,
            None,
        ),
        (
            Method::POST,
            "/api/v1/users/login".into(),
            json!({"email": "fuzz@example.com", "password": "correct horse battery"}),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/users/me/profile".into(),
            json!({"name": "Fay", "headline": "h", "bio": "b"}),
            Some(&w.freelancer.token),
        ),
        (
            Method::POST,
            "/api/v1/users/me/skills".into(),
            item.clone(),
            Some(&w.freelancer.token),
        ),
        (
            Method::PUT,
            format!("/api/v1/users/me/skills/{skill}"),
            item,
            Some(&w.freelancer.token),
        ),
        (
            Method::PUT,
            "/api/v1/users/me/photo".into(),
            json!({"link": "/a.png"}),
            Some(&w.client.token),
        ),
        (
            Method::PUT,
            "/api/v1/users/me/resume".into(),
            json!({"link": "/a.pdf"}),
            Some(&w.freelancer.token),
        ),
        (
            Method::POST,
            "/api/v1/jobs".into(),
            job_body.clone(),
            Some(&w.client.token),
        ),
        (
            Method::PUT,
            format!("/api/v1/jobs/{job}"),
            job_body,
            Some(&w.client.token),
        ),
        (
            Method::POST,
            format!("/api/v1/jobs/{job}/proposals"),
            terms(2),
            Some(&w.freelancer.token),
        ),
        (
            Method::PUT,
            format!("/api/v1/proposals/{proposal}"),
            terms(2),
            Some(&w.freelancer.token),
        ),
        (
            Method::POST,
            format!(
                "/api/v1/contracts/{contract}/milestones/{}/evaluate",
                milestones[0]
            ),
            json!({"verdict": "accepted"}),
            Some(&w.client.token),
        ),
        (
            Method::POST,
            format!("/api/v1/contracts/{contract}/terminations"),
            json!({"reason": "r"}),
            Some(&w.client.token),
        ),
        (
            Method::POST,
            "/api/v1/payments/wallet/deposits".into(),
            json!({"amount": {"minor": 100, "currency": "USD"}}),
            Some(&w.client.token),
        ),
    ];

    let mut runner = TestRunner::new(Config {
        cases: 400,
        ..Config::default()
    });
    let strategy = (0..endpoints.len(), fault());
    let mut sent = 0;
    while sent < 400 {
        let (index, fault) = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        let (method, path, valid, token) = &endpoints[index];
        let Some((body, content_type)) = spoil(valid, &fault) else {
            continue;
        };
        sent += 1;
        let mut request = w
            .platform
            .http
            .request(method.clone(), format!("{}{path}", w.platform.command_url))
            .body(body);
        if let Some(kind) = content_type {
            request = request.header("content-type", kind);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await?;
        let status = answer.status();
        let kind = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = answer.text().await?;
        assert!(
            status.is_client_error() && kind == "application/problem+json",
            "{method} {path} with {fault:?} answered {status} {kind}: {text}"
        );
    }
    w.platform.stop().await
}
