//! The browsable API page `GET /docs`: Swagger UI over the service's `/openapi.json`.
//!
//! The Swagger UI assets come from the npm package `swagger-ui-dist`, vendored in
//! `infra/assets/swagger-ui/` (see its README for the version and how to refresh it) and
//! embedded in the binary: nothing is fetched at build or run time. The page has no inline
//! script (the initialisation is `/docs/init.js`), so it is served with a strict
//! content security policy.

use axum::{
    Router,
    body::Bytes,
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Redirect},
    routing::get,
};

/// Swagger UI's stylesheet (`swagger-ui-dist`).
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// Swagger UI with its dependencies, as one script (`swagger-ui-dist`).
const SWAGGER_UI_BUNDLE_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");

/// Starts Swagger UI on the page's `#swagger-ui` element with the service's document.
const INIT_JS: &str = "\
window.addEventListener('DOMContentLoaded', function () {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
  });
});
";

/// The page's policy: its own scripts, styles and fetches only. Swagger UI sets inline style
/// attributes and draws some images as `data:` URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page changes with the binary (its title comes from the document): check every time.
const PAGE_CACHE: &str = "no-cache";

/// The assets change only with the vendored package: a browser may keep them for a day.
const ASSET_CACHE: &str = "public, max-age=86400";

/// The routes `GET /docs` (Swagger UI for the document at `/openapi.json`, under `title`),
/// `GET /docs/` (a redirect to it) and the page's assets under `/docs/`.
pub fn router(title: &str) -> Router {
    let page = Bytes::from(page(title));
    Router::new()
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move {
                    (
                        [
                            (
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("text/html; charset=utf-8"),
                            ),
                            (header::CACHE_CONTROL, HeaderValue::from_static(PAGE_CACHE)),
                            (
                                header::CONTENT_SECURITY_POLICY,
                                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
                            ),
                            (
                                header::X_CONTENT_TYPE_OPTIONS,
                                HeaderValue::from_static("nosniff"),
                            ),
                        ],
                        page,
                    )
                }
            }),
        )
        .route("/docs/", get(|| async { Redirect::permanent("/docs") }))
        .route(
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css; charset=utf-8", ASSET_CACHE, SWAGGER_UI_CSS) }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    ASSET_CACHE,
                    SWAGGER_UI_BUNDLE_JS,
                )
            }),
        )
        .route(
            "/docs/init.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGE_CACHE, INIT_JS.as_bytes()) }),
        )
}

/// An embedded file with its content type and caching policy.
fn asset(content_type: &'static str, cache: &'static str, body: &'static [u8]) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 3] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    (headers, body)
}

/// The HTML of the page, titled `title`.
fn page(title: &str) -> String {
    let title = escape_html(title);
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{title}</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="/docs/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js" charset="utf-8"></script>
    <script src="/docs/init.js" charset="utf-8"></script>
  </body>
</html>
"#
    )
}

/// `text` with the characters that are special in HTML text and attributes escaped.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{
        body::{Body, to_bytes},
        http::{Request, StatusCode},
    };
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Bytes) {
        let response = router("WorkUp <test> & co")
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, body)
    }

    #[tokio::test]
    async fn the_page_is_titled_and_loads_its_assets_from_docs() {
        let (status, headers, body) = get("/docs").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], PAGE_CACHE);
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let html = std::str::from_utf8(&body).unwrap();
        assert!(
            html.contains("<title>WorkUp &lt;test&gt; &amp; co</title>"),
            "{html}"
        );
        for asset in [
            "/docs/swagger-ui.css",
            "/docs/swagger-ui-bundle.js",
            "/docs/init.js",
        ] {
            assert!(
                html.contains(&format!("\"{asset}\"")),
                "{asset} missing from {html}"
            );
        }
        assert!(!html.contains("<script>"), "inline script in {html}");
    }

    #[tokio::test]
    async fn the_assets_are_served_with_their_types_and_caching() {
        for (path, content_type, cache, len) in [
            (
                "/docs/swagger-ui.css",
                "text/css; charset=utf-8",
                ASSET_CACHE,
                SWAGGER_UI_CSS.len(),
            ),
            (
                "/docs/swagger-ui-bundle.js",
                "text/javascript; charset=utf-8",
                ASSET_CACHE,
                SWAGGER_UI_BUNDLE_JS.len(),
            ),
            (
                "/docs/init.js",
                "text/javascript; charset=utf-8",
                PAGE_CACHE,
                INIT_JS.len(),
            ),
        ] {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], cache, "{path}");
            assert_eq!(body.len(), len, "{path}");
        }
        let (_, _, init) = get("/docs/init.js").await;
        let init = std::str::from_utf8(&init).unwrap();
        assert!(init.contains("url: '/openapi.json'") && init.contains("dom_id: '#swagger-ui'"));
    }

    #[tokio::test]
    async fn a_trailing_slash_redirects_to_the_page() {
        let (status, headers, _) = get("/docs/").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[header::LOCATION], "/docs");
    }
}
