//! The chat UI, embedded in the binary at build time (see `build.rs`).
//!
//! `/` and any path that is not an asset, `/v1` or `/api` get `index.html`, so the
//! UI's own paths (`/c/{id}`) survive a reload. Vite names assets by content hash,
//! so they are cached for a year; `index.html` is revalidated every time.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hearth_api::{ApiError, ErrorKind};

use hearth_http::HttpError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

/// Routes that serve the UI; they need no API key (the UI asks for one itself).
pub fn routes() -> Router {
    Router::new()
        // `/` by `file` too, so a POST there is the UI's 404 (with its headers), not
        // the router's bare 405.
        .route("/", any(file))
        .route("/{*path}", any(file))
        .layer(map_response(security_headers))
}

/// The UI's policy: it loads only its own scripts and styles, talks only to this
/// server, and is framed by no page.
const UI_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                      connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every answer of the UI and its API carries, whatever its status: a
/// 404, an error body or a hashed asset is as much a page of our origin as `/` is,
/// so one forgotten route cannot be framed or sniffed. A route's own policy is kept
/// (a job's artifact is `sandbox`ed: it runs nothing, framed or not).
pub(crate) async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(UI_CSP));
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    resp
}

/// The UI's API's 405, worded as the server's own. Set on the API's routers before
/// their header layer, so that it passes through it: the server's fallback, which it
/// sets on every route once they are merged, replaces only routes' default ones, and
/// would answer outside the layer.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    HttpError(ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("`{method}` is not allowed on `{}`", uri.path()),
    ))
    .into_response()
}

/// The path of every file the binary embeds (`/index.html`, `/assets/...`), so tests
/// can walk them all rather than a list that goes stale.
pub fn paths() -> impl Iterator<Item = &'static str> {
    embedded::ASSETS.iter().map(|(p, ..)| *p)
}

/// Whether this binary carries the built UI rather than the "run make run" page.
pub fn is_built() -> bool {
    embedded::ASSETS
        .iter()
        .any(|(p, ..)| p.starts_with("/assets/"))
}

async fn index(headers: HeaderMap) -> Response {
    serve("/index.html", &headers).unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

async fn file(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let api = ["/v1", "/api"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if api || !(method == Method::GET || method == Method::HEAD) {
        return HttpError(
            ApiError::new(
                ErrorKind::NotFound,
                format!("no route for `{method} {path}`"),
            )
            .with_code("not_found"),
        )
        .into_response();
    }
    if let Some(r) = serve(path, &headers) {
        return r;
    }
    // A missing hashed asset is a real 404 (an old page after an upgrade), not the app.
    if path.starts_with("/assets/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    index(headers).await
}

fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    let (_, bytes, gz) = embedded::ASSETS.iter().find(|(p, ..)| *p == path)?;
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (body, encoded): (&'static [u8], bool) = match gz {
        Some(g) if accepts_gzip => (g, true),
        _ => (bytes, false),
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if encoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let cache = if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Some(resp)
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(path: &str, gzip: bool) -> Response {
        let mut req = Request::get(path);
        if gzip {
            req = req.header(header::ACCEPT_ENCODING, "gzip, br");
        }
        routes()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn index_and_spa_fallback() {
        for p in [
            "/",
            "/c/0b6a2f3e-1111-4222-8333-444455556666",
            "/anything/else",
        ] {
            let r = get_path(p, false).await;
            assert_eq!(r.status(), 200, "{p}");
            assert!(
                r.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        }
    }

    #[tokio::test]
    async fn api_paths_are_not_the_app() {
        for p in ["/v1/nope", "/api/nope", "/api"] {
            let r = get_path(p, false).await;
            assert_eq!(r.status(), 404, "{p}");
            let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "not_found");
        }
        let r = get_path("/assets/missing-abc123.js", false).await;
        assert_eq!(r.status(), 404);
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_gzipped() {
        let Some((path, raw, gz)) = embedded::ASSETS
            .iter()
            .find(|(p, ..)| p.starts_with("/assets/") && p.ends_with(".js"))
        else {
            // Only a bare `cargo test` without `web/dist` may run without the UI;
            // `make test` builds it first and says so.
            assert!(
                std::env::var_os("HEARTH_TEST_UI_BUILT").is_none(),
                "HEARTH_TEST_UI_BUILT is set but this build embeds no UI assets (web/dist was not built, or build.rs did not see it)"
            );
            return;
        };
        let r = get_path(path, true).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        if gz.is_some() {
            assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        }
        let plain = get_path(path, false).await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let body = axum::body::to_bytes(plain.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], *raw);
    }
}
