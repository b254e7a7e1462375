//! The operations page of query-api (README "Operations page"): `GET /ops/data` answers admins
//! with live instances and their settings, consumer lag and dead letters, withdrawal tasks by
//! state and commands per second, and refuses everyone else (401 without a token, 403 for a
//! client); `GET /ops` renders all that in a real browser (headless Chromium, no network beyond
//! loopback) from the token in its URL fragment, and leaves a screenshot in
//! `target/ops/ops.png`.
//!
//! The browser part needs Chromium (`bash scripts/infra.sh up` installs Debian's `chromium`);
//! without one on the `PATH` it is skipped, saying so, and the JSON checks still run.

use anyhow::{Context as _, bail, ensure};
use domain::{Actor, Role, UserId};
use infra::http::auth::TokenKeys;
use reqwest::StatusCode;
use scenarios::harness::{Platform, eventually, expect};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::process::Command;
use uuid::Uuid;

/// The services the harness starts, each of which must be listed as a live instance.
const SERVICES: [&str; 5] = [
    "command-api",
    "query-api",
    "projectors",
    "sagas",
    "withdrawal-worker",
];

/// Longest the data may take to show every instance and the test's own writes.
const DEADLINE: Duration = Duration::from_secs(60);

/// Longest a single Chromium run may take (it is slow on a busy 2-core machine).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// A screenshot of the rendered page is well above this; a blank page is far below it.
const MIN_SCREENSHOT_BYTES: u64 = 20 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ops_page_shows_the_platform_to_admins_only_and_renders_in_a_browser() -> anyhow::Result<()> {
    let platform = Platform::start_with_withdrawals(|_| {}, payout_provider::Settings::default()).await?;
    let prefix = platform.env.config.kafka.topic_prefix.clone();
    // Commands for the ledger to count, and a withdrawal task for the worker to run.
    let (_, client) = platform
        .signed_up_client("ops-client@example.com", "Ops Client")
        .await?;
    let usd = |minor: i64| json!({"amount": {"minor": minor, "currency": "USD"}});
    expect::<Value>(
        platform
            .post(
                "/api/v1/payments/wallet/deposits",
                Some(client.as_str()),
                &usd(10_000),
            )
            .await?,
        StatusCode::OK,
    )
    .await
    .context("deposit")?;
    expect::<Value>(
        platform
            .post(
                "/api/v1/payments/wallet/withdrawals",
                Some(client.as_str()),
                &usd(2_500),
            )
            .await?,
        StatusCode::ACCEPTED,
    )
    .await
    .context("withdrawal")?;
    let admin = TokenKeys::new(&platform.env.config.auth)?
        .issue(Actor::new(UserId::from_uuid(Uuid::now_v7()), Role::Admin))?
        .access_token;
    let data_url = format!("{}/ops/data", platform.query_url);

    // Nobody else: no token 401, a client 403, both problem+json of the types the API uses.
    for (who, token, status, kind) in [
        (
            "no token",
            None,
            StatusCode::UNAUTHORIZED,
            "/problems/missing-token",
        ),
        (
            "a client",
            Some(&client),
            StatusCode::FORBIDDEN,
            "/problems/admins-only",
        ),
    ] {
        let mut request = platform.http.get(&data_url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), status, "{who}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "application/problem+json", "{who}");
        let problem: Value = response.json().await?;
        assert_eq!(problem["type"], kind, "{who}: {problem}");
    }

    // An admin: every service live, the writes counted, the withdrawal's task seen.
    let data: Value = eventually(DEADLINE, || async {
        let response = platform.http.get(&data_url).bearer_auth(&admin).send().await?;
        let data: Value = expect(response, StatusCode::OK).await?;
        let complete = {
            let services: BTreeSet<&str> = data["instances"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i["service"].as_str()).collect())
                .unwrap_or_default();
            let tasks: i64 = [
                "scheduled",
                "queued",
                "running",
                "succeeded",
                "failed",
                "cancelled",
            ]
            .iter()
            .filter_map(|state| data["withdrawals"][state].as_i64())
            .sum();
            SERVICES.iter().all(|s| services.contains(s))
                && data["commands"]["commands"].as_i64().unwrap_or(0) >= 3
                && tasks >= 1
        };
        Ok(complete.then_some(data))
    })
    .await
    .context("the operations data never showed every service, the writes and the withdrawal")?;
    check_data(&data, &prefix)?;

    // The page itself, then in a browser.
    let page = platform
        .http
        .get(format!("{}/ops", platform.query_url))
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("<title>WorkUp operations</title>"));
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "SKIPPED the browser part of the operations page test: no `chromium` on the PATH \
             (install it with `bash scripts/infra.sh up` or `sudo apt-get install chromium`)"
        );
        return platform.stop().await;
    };
    check_in_browser(&chromium, &platform, &admin, &client, &prefix).await?;
    platform.stop().await
}

/// The admin's answer has every section, with the expected fields.
fn check_data(data: &Value, prefix: &str) -> anyhow::Result<()> {
    assert_eq!(data["errors"], json!([]), "no section failed: {data}");
    assert!(data["heartbeat_ms"].as_u64().is_some_and(|ms| ms > 0), "{data}");
    let instances = data["instances"].as_array().context("instances")?;
    for instance in instances {
        for field in [
            "instance",
            "host",
            "started_at",
            "heartbeat_at",
            "disabled_commands",
        ] {
            assert!(!instance[field].is_null(), "instance field {field}: {instance}");
        }
        assert_eq!(instance["frozen"], false, "{instance}");
        assert_eq!(instance["commands_enabled"], true, "{instance}");
        assert!(instance["pid"].as_u64().is_some(), "{instance}");
        assert!(
            instance["heartbeat_age_seconds"]
                .as_f64()
                .is_some_and(|age| (0.0..10.0).contains(&age)),
            "a live instance reported lately: {instance}"
        );
        for field in ["max_concurrency", "max_db_connections", "log_level"] {
            assert!(
                instance.get(field).is_some(),
                "instance field {field}: {instance}"
            );
        }
    }
    let consumers = data["consumers"].as_array().context("consumers")?;
    let groups: BTreeSet<&str> = consumers.iter().filter_map(|c| c["group"].as_str()).collect();
    for name in [
        "users",
        "jobs",
        "contracts",
        "payments",
        "contract-initiation",
        "payment-requests",
        "completion",
        "withdrawal-worker",
    ] {
        assert!(
            groups.contains(format!("{prefix}.{name}").as_str()),
            "group {name} in {groups:?}"
        );
    }
    for consumer in consumers {
        assert_eq!(
            consumer["running"], true,
            "every consumer's service runs here: {consumer}"
        );
        assert!(consumer["error"].is_null(), "measured: {consumer}");
        assert!(
            consumer["lag_events"].as_i64().is_some_and(|n| n >= 0),
            "{consumer}"
        );
        assert!(
            consumer["lag_seconds"].as_f64().is_some_and(|s| s >= 0.0),
            "{consumer}"
        );
        assert_eq!(consumer["dlq_events"], 0, "nothing parked: {consumer}");
    }
    let withdrawals = &data["withdrawals"];
    for state in [
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ] {
        assert!(
            withdrawals[state].as_i64().is_some(),
            "withdrawals.{state}: {withdrawals}"
        );
    }
    let commands = &data["commands"];
    assert_eq!(commands["window_seconds"], 60, "{commands}");
    let seconds = commands["seconds"].as_array().context("commands.seconds")?;
    assert_eq!(seconds.len(), 60, "one entry per second of the minute");
    let per_second: i64 = seconds.iter().filter_map(|s| s["commands"].as_i64()).sum();
    assert_eq!(Some(per_second), commands["commands"].as_i64(), "{commands}");
    assert!(
        commands["commands_per_second"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0),
        "{commands}"
    );
    Ok(())
}

/// `/ops#token=<admin>` renders every instance, consumer group and the command count; a
/// client's token is refused on the page; a screenshot lands in `target/ops/ops.png`.
async fn check_in_browser(
    chromium: &Path,
    platform: &Platform,
    admin: &str,
    client: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    let page = format!("{}/ops", platform.query_url);
    let dom = chromium_run(chromium, &["--dump-dom", &format!("{page}#token={admin}")]).await?;
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-state=\"ready\""),
        "the page rendered its data; DOM:\n{dom}"
    );
    for service in SERVICES {
        assert!(
            dom.contains(&format!("data-service=\"{service}\"")),
            "an instance row of {service}; DOM:\n{dom}"
        );
    }
    assert!(
        dom.contains(&format!("data-group=\"{prefix}.jobs\"")),
        "the jobs projector's row; DOM:\n{dom}"
    );
    let commands = number_in(&dom, "id=\"commands-total\"").context("the command count")?;
    assert!(
        commands >= 3,
        "the test's writes are counted ({commands}); DOM:\n{dom}"
    );
    let instances = number_in(&dom, "id=\"instances-count\"").context("the instance count")?;
    assert!(
        instances >= SERVICES.len() as i64,
        "{instances} instances; DOM:\n{dom}"
    );
    assert!(dom.contains("<polyline"), "the charts are drawn; DOM:\n{dom}");

    // A client's token: back at the sign-in form, told why.
    let refused = chromium_run(chromium, &["--dump-dom", &format!("{page}#token={client}")]).await?;
    let refused = String::from_utf8_lossy(&refused.stdout);
    assert!(refused.contains("data-state=\"login\""), "DOM:\n{refused}");
    assert!(
        refused.contains("Forbidden"),
        "the refusal is shown; DOM:\n{refused}"
    );

    // The screenshot, written under a name of its own and moved into place once checked.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ops");
    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let dir = tokio::fs::canonicalize(&dir).await?;
    let partial = dir.join(format!(".ops.{}.png", Uuid::new_v4()));
    let shot = async {
        chromium_run(
            chromium,
            &[
                &format!("--screenshot={}", partial.display()),
                "--window-size=1280,1600",
                &format!("{page}#token={admin}"),
            ],
        )
        .await?;
        let png = tokio::fs::read(&partial)
            .await
            .with_context(|| format!("Chromium wrote no screenshot {}", partial.display()))?;
        ensure!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        let size = png.len() as u64;
        ensure!(
            size > MIN_SCREENSHOT_BYTES,
            "the screenshot is only {size} bytes: a rendered page is over {MIN_SCREENSHOT_BYTES}"
        );
        Ok(())
    }
    .await;
    if let Err(e) = shot {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e.context(format!("screenshot of {page}")));
    }
    let screenshot = dir.join("ops.png");
    tokio::fs::rename(&partial, &screenshot).await?;
    println!("operations page: screenshot {}", screenshot.display());
    Ok(())
}

/// The integer in the element that opens with `marker` (`<span marker ...>123</span>`).
fn number_in(dom: &str, marker: &str) -> Option<i64> {
    let after = &dom[dom.find(marker)?..];
    let text = &after[after.find('>')? + 1..];
    text[..text.find('<')?].trim().parse().ok()
}

/// `chromium` (or `chromium-browser`) on the `PATH`.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Run headless Chromium on a fresh profile with `args` after the common flags, with no network
/// beyond loopback (every other host name fails to resolve), and return its output.
async fn chromium_run(chromium: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let profile = std::env::temp_dir().join(format!("workup-ops-chromium-{}", Uuid::new_v4()));
    std::fs::create_dir(&profile).with_context(|| format!("creating {}", profile.display()))?;
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CHROMIUM_TIMEOUT, command.output()).await;
    let _ = std::fs::remove_dir_all(&profile);
    let output = match output {
        Ok(output) => output.with_context(|| format!("running {}", chromium.display()))?,
        Err(_) => bail!(
            "{} did not finish within {CHROMIUM_TIMEOUT:?}",
            chromium.display()
        ),
    };
    ensure!(
        output.status.success(),
        "{} failed ({}): {}",
        chromium.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}
