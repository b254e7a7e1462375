//! Media (DESIGN §3): owners upload a photo (PNG/JPEG) or a resume (PDF, freelancers only),
//! checked by content and size, stored content-addressed; the profile records the link and
//! query-api serves the file (a placeholder when missing) and describes what is there.

use reqwest::{
    Response, StatusCode,
    multipart::{Form, Part},
};
use scenarios::harness::{Platform, eventually, expect};
use serde_json::Value;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);
/// Small limits, so an oversized file is cheap to send.
const MAX_PHOTO: usize = 2 * 1024;
const MAX_RESUME: usize = 4 * 1024;

/// A real 2×2 RGB PNG (red and blue pixels).
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x02\x00\x00\x00\x02\x08\x02\x00\x00\x00\xfd\xd4\x9a\x73\x00\x00\x00\x10\x49\x44\x41\x54\x78\xda\x63\xf8\xcf\x00\x04\xff\x19\x20\x14\x00\x1b\xf2\x03\xfd\x3e\x97\x5d\xa4\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";
/// A minimal PDF.
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

async fn start() -> anyhow::Result<Platform> {
    Platform::start_with(|config| {
        config.media.max_photo_bytes = MAX_PHOTO;
        config.media.max_resume_bytes = MAX_RESUME;
    })
    .await
}

/// POST a multipart form with `bytes` as its `file` field (claimed to be `mime`).
async fn upload(
    platform: &Platform,
    group: &str,
    token: Option<&str>,
    bytes: &[u8],
    mime: &str,
) -> anyhow::Result<Response> {
    let part = Part::bytes(bytes.to_vec()).file_name("upload").mime_str(mime)?;
    let mut request = platform
        .http
        .post(format!("{}/api/v1/media/{group}", platform.command_url))
        .multipart(Form::new().part("file", part));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?)
}

/// GET from query-api without a token (media reads are public).
async fn public_get(platform: &Platform, path: &str) -> anyhow::Result<Response> {
    Ok(platform
        .http
        .get(format!("{}{path}", platform.query_url))
        .send()
        .await?)
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn problem(response: Response, status: StatusCode, kind: &str, case: &str) -> anyhow::Result<Value> {
    assert_eq!(response.status(), status, "{case}: status");
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/problem+json"),
        "{case}: content type"
    );
    let body: Value = response.json().await?;
    assert_eq!(body["type"], format!("/problems/{kind}"), "{case}: {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_are_recorded_in_the_profile_and_served_as_uploaded() -> anyhow::Result<()> {
    let platform = start().await?;
    let (client_id, client) = platform
        .signed_up_client("ada@example.com", "Ada Lovelace")
        .await?;
    let (_, freelancer) = platform
        .signed_up("freelancers", "fred@example.com", "Fred Brooks")
        .await?;

    // A photo: 201, the id is the link, named by the content's hash.
    let written: Value = expect(
        upload(&platform, "photos", Some(&client), PNG, "image/png").await?,
        StatusCode::CREATED,
    )
    .await?;
    let link = written["id"].as_str().expect("link").to_owned();
    let name = link.strip_prefix("/api/v1/media/photos/").expect("a photo link");
    assert!(
        name.len() == 68 && name.ends_with(".png"),
        "content-addressed: {link}"
    );
    assert!(written["position"].is_string(), "{written}");

    // The same bytes again: the same file.
    let again: Value = expect(
        upload(&platform, "photos", Some(&client), PNG, "image/png").await?,
        StatusCode::CREATED,
    )
    .await?;
    assert_eq!(again["id"], link.as_str());

    // query-api serves the same bytes, typed and cacheable forever, without a token.
    let served = public_get(&platform, &link).await?;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(header(&served, "content-type").as_deref(), Some("image/png"));
    assert!(
        header(&served, "cache-control").is_some_and(|c| c.contains("immutable")),
        "cache-control: {:?}",
        header(&served, "cache-control")
    );
    assert_eq!(header(&served, "x-media-placeholder"), None);
    assert_eq!(served.bytes().await?.as_ref(), PNG);

    // The profile records the link (through the ledger, the projector and the read model).
    let profile: Value = eventually(DEADLINE, || async {
        let response = platform
            .get(&format!("/api/v1/users/{client_id}"), &client)
            .await?;
        if response.status() != StatusCode::OK {
            return Ok(None);
        }
        let profile: Value = response.json().await?;
        Ok((profile["photo"] == link.as_str()).then_some(profile))
    })
    .await?;
    assert_eq!(profile["photo"], link.as_str());

    // A resume by a freelancer: 201 and served as a PDF.
    let written: Value = expect(
        upload(&platform, "resumes", Some(&freelancer), PDF, "application/pdf").await?,
        StatusCode::CREATED,
    )
    .await?;
    let resume = written["id"].as_str().expect("link").to_owned();
    assert!(
        resume.starts_with("/api/v1/media/resumes/") && resume.ends_with(".pdf"),
        "{resume}"
    );
    let served = public_get(&platform, &resume).await?;
    assert_eq!(
        header(&served, "content-type").as_deref(),
        Some("application/pdf")
    );
    assert_eq!(served.bytes().await?.as_ref(), PDF);

    // What is there: one photo and one resume.
    let photos: Value = expect(
        public_get(&platform, "/api/v1/media/photos").await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(photos["group"], "photos");
    let files = photos["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{photos}");
    assert_eq!(files[0]["name"], name);
    assert_eq!(files[0]["link"], link.as_str());
    assert_eq!(files[0]["size"], PNG.len());
    assert_eq!(files[0]["content_type"], "image/png");
    let described: Value = expect(public_get(&platform, "/api/v1/media").await?, StatusCode::OK).await?;
    assert_eq!(described["groups"][0]["group"], "photos", "{described}");
    assert_eq!(described["groups"][0]["files"], 1, "{described}");
    assert_eq!(described["groups"][0]["bytes"], PNG.len(), "{described}");
    assert_eq!(described["groups"][1]["group"], "resumes", "{described}");
    assert_eq!(described["groups"][1]["files"], 1, "{described}");

    platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_uploads_are_refused_and_store_nothing() -> anyhow::Result<()> {
    let platform = start().await?;
    let (_, client) = platform
        .signed_up_client("grace@example.com", "Grace Hopper")
        .await?;

    // Far over the route's body limit the server stops reading the body: the client gets the 413
    // if it had finished sending, else the connection closes under it; either way nothing is
    // stored (checked below).
    // Sent on a connection of its own: the server closes it, and a pooled one would be reused
    // by the next request while closing ("connection closed before message completed").
    let far_over = [PNG, &vec![0; 40 * 1024]].concat();
    let part = Part::bytes(far_over).file_name("upload").mime_str("image/png")?;
    let answer = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?
        .post(format!("{}/api/v1/media/photos", platform.command_url))
        .bearer_auth(&client)
        .multipart(Form::new().part("file", part))
        .send()
        .await
        .map_err(anyhow::Error::from);
    match answer {
        Ok(answer) => assert_eq!(
            answer.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "far over the limit"
        ),
        Err(error) => assert!(
            format!("{error:#}").contains("connection closed"),
            "far over the limit: {error:#}"
        ),
    }

    let cases: Vec<(&str, Response, StatusCode, &str)> = vec![
        (
            "a client's resume",
            upload(&platform, "resumes", Some(&client), PDF, "application/pdf").await?,
            StatusCode::FORBIDDEN,
            "only-freelancers",
        ),
        (
            "text claimed to be a PNG",
            upload(&platform, "photos", Some(&client), b"just some text", "image/png").await?,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "a PDF as a photo",
            upload(&platform, "photos", Some(&client), PDF, "image/png").await?,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "a photo just over the limit",
            upload(
                &platform,
                "photos",
                Some(&client),
                &[PNG, &vec![0; MAX_PHOTO]].concat(),
                "image/png",
            )
            .await?,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            "no token",
            upload(&platform, "photos", None, PNG, "image/png").await?,
            StatusCode::UNAUTHORIZED,
            "missing-token",
        ),
        (
            "not a multipart body",
            platform
                .http
                .post(format!("{}/api/v1/media/photos", platform.command_url))
                .bearer_auth(&client)
                .header("content-type", "image/png")
                .body(PNG.to_vec())
                .send()
                .await?,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
    ];
    for (case, response, status, kind) in cases {
        problem(response, status, kind, case).await?;
    }

    let no_file = platform
        .http
        .post(format!("{}/api/v1/media/photos", platform.command_url))
        .bearer_auth(&client)
        .multipart(Form::new().text("photo", "not the file field"))
        .send()
        .await?;
    let body = problem(no_file, StatusCode::BAD_REQUEST, "validation", "no file field").await?;
    assert_eq!(body["errors"][0]["field"], "file", "{body}");

    // Nothing refused was stored.
    let described: Value = expect(public_get(&platform, "/api/v1/media").await?, StatusCode::OK).await?;
    assert_eq!(described["groups"][0]["files"], 0, "{described}");
    assert_eq!(described["groups"][1]["files"], 0, "{described}");

    // A well-formed name with no file behind it: the placeholder image.
    let missing = public_get(&platform, &format!("/api/v1/media/photos/{}.png", "a".repeat(64))).await?;
    assert_eq!(missing.status(), StatusCode::OK);
    assert_eq!(header(&missing, "x-media-placeholder").as_deref(), Some("true"));
    assert_eq!(header(&missing, "content-type").as_deref(), Some("image/png"));
    assert!(missing.bytes().await?.starts_with(b"\x89PNG\r\n\x1a\n"));

    // Names that are not content addresses never reach the file system; unknown groups 404.
    for (path, status, kind) in [
        (
            "/api/v1/media/photos/..%2F..%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
            "invalid-media-name",
        ),
        (
            "/api/v1/media/photos/avatar.png",
            StatusCode::BAD_REQUEST,
            "invalid-media-name",
        ),
        (
            "/api/v1/media/videos",
            StatusCode::NOT_FOUND,
            "media-group-not-found",
        ),
    ] {
        problem(public_get(&platform, path).await?, status, kind, path).await?;
    }

    platform.stop().await
}
