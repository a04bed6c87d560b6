//! The UI's security headers on every route it answers, over a real socket: the
//! whole server (as `hearth serve` builds it) on a loopback port with a key, in
//! front of the fake upstream.
//!
//! The routes are walked, not listed by hand where they can be enumerated: every file
//! the binary embeds (`hearth_webui::assets::paths`, the same table the server serves
//! from), so a new asset is covered by the next build. The SPA's deep links come
//! from the app's own router (`web/src/App.tsx`: `/c/{id}`, `/jobs`, `/jobs/{id}`),
//! with any other path, which the server answers with the app as well.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

mod log_root;

const KEY: &str = "sk-ui-headers-test-key-5f1c";

struct App {
    base: String,
    http: reqwest::Client,
    _up: hearth_testkit::FakeUpstream,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), hearth_server::RunError>>,
}

impl App {
    async fn start(dir: &tempfile::TempDir) -> App {
        log_root::install("ui_headers");
        let up = hearth_testkit::FakeUpstream::start().await.unwrap();
        let toml = format!(
            "[[keys]]\nname = \"ui\"\nkey = \"{KEY}\"\n\
             [server]\nshutdown_grace_secs = 1\n[storage]\ndata_dir = \"{}\"\n\
             [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\n",
            dir.path().display(),
            up.base_url()
        );
        let config =
            hearth_config::load_str(&toml, "test.toml", &hearth_config::MapEnv::default()).unwrap();
        let server = hearth_server::Server::builder(config)
            .build()
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = rx.await;
        }));
        App {
            base,
            http: reqwest::Client::new(),
            _up: up,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// `method path` with `body` (JSON), with or without the key: status, headers, body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: bool,
        gzip: bool,
    ) -> (u16, HeaderMap, String) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if key {
            r = r.bearer_auth(KEY);
        }
        if gzip {
            r = r.header("accept-encoding", "gzip");
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned();
        (status, headers, text)
    }
}

/// Every UI answer: a CSP that forbids framing, no MIME sniffing, no referrer.
fn assert_headers(what: &str, h: &HeaderMap) {
    let get = |name: &str| {
        h.get(name)
            .unwrap_or_else(|| panic!("{what}: no `{name}` header in {h:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = get("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{what}: the CSP must forbid framing: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
}

#[tokio::test]
async fn every_ui_route_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir).await;
    use reqwest::Method;

    // Every embedded file, plain and gzipped, by GET and HEAD.
    let files: Vec<&str> = hearth_webui::assets::paths().collect();
    assert!(files.contains(&"/index.html"), "{files:?}");
    if std::env::var_os("HEARTH_TEST_UI_BUILT").is_some() {
        assert!(
            files.iter().any(|p| p.starts_with("/assets/")),
            "HEARTH_TEST_UI_BUILT is set but the binary embeds no hashed assets: {files:?}"
        );
    }
    for path in &files {
        for gzip in [false, true] {
            for method in [Method::GET, Method::HEAD] {
                let (status, h, _) = app.call(method.clone(), path, None, false, gzip).await;
                assert_eq!(status, 200, "{method} {path}");
                assert_headers(&format!("{method} {path} (gzip {gzip})"), &h);
            }
        }
    }

    // The app and its deep links (and any other path: the SPA fallback).
    let id = "0b6a2f3e-1111-4222-8333-444455556666";
    for path in [
        "/".to_owned(),
        format!("/c/{id}"),
        "/jobs".to_owned(),
        format!("/jobs/{id}"),
        "/settings/anything/else".to_owned(),
    ] {
        let (status, h, body) = app.call(Method::GET, &path, None, false, false).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains("<html") || body.contains("<!doctype"),
            "{path}"
        );
        assert_headers(&path, &h);
    }

    // 404s (405s) under the UI: a missing hashed asset, an unknown API path, a
    // method the UI does not serve.
    for (method, path) in [
        (Method::GET, "/assets/missing-0000aaaa.js"),
        (Method::GET, "/api/nope"),
        (Method::GET, "/api"),
        (Method::GET, "/v1/nope"),
        (Method::POST, "/"),
        (Method::DELETE, "/c/x"),
    ] {
        let (status, h, _) = app.call(method.clone(), path, None, true, false).await;
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert_headers(&format!("{method} {path}"), &h);
    }

    // The UI's JSON API (with the key): listings, a created conversation, a reply's
    // stream, the 4xx answers.
    let (status, h, body) = app
        .call(
            Method::POST,
            "/api/hearth/conversations",
            Some(json!({"model": "m"})),
            true,
            false,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_headers("POST /api/hearth/conversations", &h);
    let conv: Value = serde_json::from_str(&body).unwrap();
    let conv = conv["id"].as_str().unwrap().to_owned();
    let calls: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::GET, "/api/hearth/conversations".into(), None, 200),
        (
            Method::GET,
            format!("/api/hearth/conversations/{conv}"),
            None,
            200,
        ),
        (
            Method::POST,
            format!("/api/hearth/conversations/{conv}/messages"),
            Some(json!({"content": "hello"})),
            200,
        ),
        (
            Method::GET,
            format!("/api/hearth/conversations/{conv}/export?format=markdown"),
            None,
            200,
        ),
        (
            Method::GET,
            format!("/api/hearth/conversations/{id}"),
            None,
            404,
        ),
        (
            Method::PATCH,
            format!("/api/hearth/conversations/{conv}"),
            Some(json!({"title": 7})),
            400,
        ),
        (Method::GET, "/api/jobs".into(), None, 200),
        (Method::GET, format!("/api/jobs/{id}"), None, 404),
        (
            Method::GET,
            format!("/api/jobs/{id}/files/x.png"),
            None,
            404,
        ),
        // A method the route does not serve.
        (
            Method::GET,
            format!("/api/hearth/conversations/{conv}/messages"),
            None,
            405,
        ),
        (Method::PATCH, "/api/jobs".into(), None, 405),
    ];
    for (method, path, body, want) in calls {
        let (status, h, text) = app.call(method.clone(), &path, body, true, false).await;
        assert_eq!(status, want, "{method} {path}: {text}");
        assert_headers(&format!("{method} {path}"), &h);
    }
    app.stop().await;
}

/// Hearth's own answers (`/health`, `/ready`, `/metrics`, and every error: a
/// missing key, a malformed request, on the hot path too) say `nosniff` and
/// `no-store`.
#[tokio::test]
async fn hearths_own_answers_are_not_sniffed_or_cached() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir).await;
    use reqwest::Method;
    let chat = "/v1/chat/completions";
    let calls: Vec<(Method, &str, Option<Value>, bool, u16)> = vec![
        (Method::GET, "/health", None, false, 200),
        (Method::GET, "/ready", None, false, 200),
        (Method::GET, "/metrics", None, true, 200),
        (Method::GET, "/metrics", None, false, 401),
        (Method::GET, "/v1/models", None, false, 401),
        (Method::POST, chat, Some(json!({"model": "m"})), false, 401),
        (Method::POST, chat, Some(json!({"model": "m"})), true, 400),
        (
            Method::POST,
            chat,
            Some(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})),
            true,
            404,
        ),
    ];
    for (method, path, body, key, want) in calls {
        let (status, h, text) = app.call(method.clone(), path, body, key, false).await;
        assert_eq!(status, want, "{method} {path}: {text}");
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(
            get("x-content-type-options"),
            "nosniff",
            "{method} {path}: {h:?}"
        );
        assert_eq!(get("cache-control"), "no-store", "{method} {path}: {h:?}");
    }
    app.stop().await;
}
