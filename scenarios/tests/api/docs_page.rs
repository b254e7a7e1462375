//! `GET /docs` of both services renders Swagger UI over their OpenAPI documents in a real
//! browser (headless Chromium, external hosts unresolvable: every asset comes from the service)
//! and leaves a screenshot in `target/screenshots/<service>-docs.png`.
//!
//! Needs Debian's `chromium` (`bash scripts/infra.sh up` installs it); without it this test fails.

use anyhow::{Context, bail, ensure};
use scenarios::harness::Platform;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Longest a single Chromium run may take (it is slow on a busy 2-core machine).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// A screenshot of the rendered page is well above this; a blank page is far below it.
const MIN_SCREENSHOT_BYTES: u64 = 20 * 1024;

/// One service's page and what its rendering must show.
struct Page<'a> {
    service: &'a str,
    base_url: &'a str,
    title: &'a str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docs_page_renders_swagger_ui_in_headless_chromium() -> anyhow::Result<()> {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: this test renders /docs in headless Chromium; install it with \
         `bash scripts/infra.sh up` (Debian package `chromium`) or `apt-get install chromium`"
    );
    let platform = Platform::start().await?;
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    tokio::fs::create_dir_all(&screenshots)
        .await
        .with_context(|| format!("creating {}", screenshots.display()))?;
    let screenshots = tokio::fs::canonicalize(&screenshots).await?;

    let pages = [
        Page {
            service: "command-api",
            base_url: &platform.command_url,
            title: "WorkUp command-api",
        },
        Page {
            service: "query-api",
            base_url: &platform.query_url,
            title: "WorkUp query-api",
        },
    ];
    for page in &pages {
        check_page(&platform, page, &screenshots).await?;
    }
    platform.stop().await
}

async fn check_page(platform: &Platform, page: &Page<'_>, screenshots: &Path) -> anyhow::Result<()> {
    let Page {
        service,
        base_url,
        title,
    } = page;
    let url = format!("{base_url}/docs");

    // The page itself, before a browser is involved, for a clearer failure.
    let response = platform.http.get(&url).send().await?;
    assert_eq!(response.status(), 200, "{service}: GET /docs");
    let html = response.text().await?;
    assert!(
        html.contains(&format!("<title>{title}</title>")),
        "{service}: page {html}"
    );

    // The DOM after Swagger UI has fetched /openapi.json and rendered it.
    let dom = chromium(&["--dump-dom", &url]).await?;
    let dom = String::from_utf8_lossy(&dom.stdout);
    for (what, needle) in [
        ("the Swagger UI root", "class=\"swagger-ui\""),
        ("the API title", title),
        ("an operation", "opblock-summary-path"),
        ("the jobs operations", "/api/v1/jobs"),
    ] {
        assert!(
            dom.contains(needle),
            "{service}: the rendered /docs lacks {what} ({needle:?}); DOM:\n{dom}"
        );
    }
    assert!(
        !dom.contains("Failed to load API definition"),
        "{service}: Swagger UI could not load /openapi.json; DOM:\n{dom}"
    );

    // A screenshot, for a human to look at. Chromium writes it under a name of its own, moved
    // into place once checked, so that concurrent runs never see each other's partial files.
    let screenshot = screenshots.join(format!("{service}-docs.png"));
    let partial = screenshots.join(format!(".{service}-docs.{}.png", uuid::Uuid::new_v4()));
    let checked = async {
        chromium(&[
            &format!("--screenshot={}", partial.display()),
            "--window-size=1280,2000",
            &url,
        ])
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
        Ok(size)
    }
    .await;
    let size = match checked {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e.context(format!("{service}: screenshot of {url}")));
        }
    };
    tokio::fs::rename(&partial, &screenshot)
        .await
        .with_context(|| format!("moving the screenshot to {}", screenshot.display()))?;
    println!("{service}: screenshot {} ({size} bytes)", screenshot.display());
    Ok(())
}

/// Run headless Chromium on a fresh profile with `args` after the common flags, with no network
/// beyond loopback (every other host name fails to resolve), and return its output.
async fn chromium(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let profile = TempDir::new()?;
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(CHROMIUM_TIMEOUT, command.output()).await {
        Ok(output) => output.with_context(|| format!("running {CHROMIUM}"))?,
        Err(_) => bail!("{CHROMIUM} did not finish within {CHROMIUM_TIMEOUT:?}"),
    };
    ensure!(
        output.status.success(),
        "{CHROMIUM} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("workup-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
