//! The page itself: `GET /ops` (HTML), `GET /ops/ops.js` and `GET /ops/ops.css`, embedded in
//! the binary. The page holds no data and no inline script: its script asks for the admin's
//! token (or takes it from the URL fragment `#token=...`, which never reaches a server), keeps
//! it in the tab's session storage and polls `/ops/data` with it. Charts are drawn as inline
//! SVG by the script: nothing is fetched from elsewhere.

use axum::{
    Router,
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Redirect},
    routing::get,
};

/// The page.
const PAGE_HTML: &str = include_str!("page.html");
/// Its script: login, polling, tables and charts.
const OPS_JS: &str = include_str!("ops.js");
/// Its stylesheet.
const OPS_CSS: &str = include_str!("ops.css");

/// Own scripts, styles and fetches only; no frames, no forms posted anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The files change with the binary: check every time.
const CACHE: &str = "no-cache";

/// The routes of the page and its assets.
pub fn router() -> Router {
    Router::new()
        .route(
            "/ops",
            get(|| async { file("text/html; charset=utf-8", PAGE_HTML) }),
        )
        .route("/ops/", get(|| async { Redirect::permanent("/ops") }))
        .route(
            "/ops/ops.js",
            get(|| async { file("text/javascript; charset=utf-8", OPS_JS) }),
        )
        .route(
            "/ops/ops.css",
            get(|| async { file("text/css; charset=utf-8", OPS_CSS) }),
        )
}

/// An embedded file with its type and the page's policies.
fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static(CACHE)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // The token may sit in the page's URL fragment for a moment: never send the URL on.
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{
        body::{Body, to_bytes},
        http::{Request, StatusCode},
    };
    use tower::ServiceExt;

    async fn get(path: &str) -> anyhow::Result<(StatusCode, axum::http::HeaderMap, String)> {
        let response = router().oneshot(Request::get(path).body(Body::empty())?).await?;
        let (status, headers) = (response.status(), response.headers().clone());
        let body = to_bytes(response.into_body(), usize::MAX).await?;
        Ok((status, headers, String::from_utf8(body.to_vec())?))
    }

    #[tokio::test]
    async fn the_page_loads_its_own_script_and_styles_only() -> anyhow::Result<()> {
        let (status, headers, html) = get("/ops").await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(html.contains("src=\"/ops/ops.js\"") && html.contains("href=\"/ops/ops.css\""));
        assert!(!html.contains("<script>"), "no inline script: {html}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from elsewhere"
        );
        for (path, content_type) in [
            ("/ops/ops.js", "text/javascript; charset=utf-8"),
            ("/ops/ops.css", "text/css; charset=utf-8"),
        ] {
            let (status, headers, body) = get(path).await?;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert!(!body.is_empty(), "{path}");
        }
        let (_, _, script) = get("/ops/ops.js").await?;
        assert!(
            script.contains("'/ops/data'"),
            "the script polls the data endpoint"
        );
        Ok(())
    }
}
