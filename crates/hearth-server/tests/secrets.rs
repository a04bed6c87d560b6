//! Keys never leave in an answer or a log line: wrong and malformed `Authorization`
//! headers, a handler that panics, an upstream that refuses its key. Each answer's
//! body is checked here; the server's log (DEBUG, and panic messages) is written to
//! a file and checked at the end, and, under `make test`, left in
//! `LOGSCAN_ROOT` for `make logscan` to grep with every other test's logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod log_root;

use std::sync::Arc;

use async_trait::async_trait;
use hearth_router::{Backend, BackendError, EventStream, Request};
use serde_json::json;

const ALICE: &str = "sk-secrets-alice-7c1e9a40";
const WRONG: &str = "sk-secrets-wrong-55aa01f3";
const UPSTREAM: &str = "sk-secrets-upstream-3b8d2e77";

/// A backend whose handler panics, as a bug would.
struct Boom;

#[async_trait]
impl Backend for Boom {
    fn kind(&self) -> &'static str {
        "upstream"
    }
    async fn call(&self, _: &Request) -> Result<EventStream, BackendError> {
        panic!("the backend fell over (a test's deliberate panic)")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_reach_answers_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log_root::install("secrets")
        .or_else(|| log_root::install_in(tmp.path(), "secrets"))
        .expect("no log subscriber could be installed");

    let ok = hearth_testkit::FakeUpstream::start().await.unwrap();
    let refusing = hearth_testkit::FakeUpstream::start().await.unwrap();
    refusing.set_default(hearth_testkit::Behaviour::status(401));
    let toml = format!(
        "[[keys]]\nname = \"alice\"\nkey = \"{ALICE}\"\n\
         [server]\nshutdown_grace_secs = 1\n[storage]\ndata_dir = \"{}\"\n\
         [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\napi_key_env = \"UP_KEY\"\n\
         [[models]]\nname = \"refused\"\nbackend = \"upstream\"\nbase_url = \"{}\"\napi_key_env = \"UP_KEY\"\nretries = 0\n\
         [[models]]\nname = \"boom\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:9/v1\"\nretries = 0\n",
        tmp.path().join("data").display(),
        ok.base_url(),
        refusing.base_url(),
    );
    let env = hearth_config::MapEnv(
        [("UP_KEY".to_owned(), UPSTREAM.to_owned())]
            .into_iter()
            .collect(),
    );
    let config = hearth_config::load_str(&toml, "test.toml", &env).unwrap();
    let server = hearth_server::Server::builder(config)
        .env(env)
        .backend("boom", Arc::new(Boom))
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    // (what, Authorization value as bytes, path, model, the status expected)
    let bearer = |k: &str| format!("Bearer {k}").into_bytes();
    let mut cases: Vec<(&str, Vec<u8>, &str, &str, u16)> = vec![
        (
            "a wrong key",
            bearer(WRONG),
            "/v1/chat/completions",
            "m",
            401,
        ),
        (
            "a wrong key, UI API",
            bearer(WRONG),
            "/api/hearth/conversations",
            "m",
            401,
        ),
        ("a wrong key, models", bearer(WRONG), "/v1/models", "m", 401),
        (
            "no scheme",
            ALICE.as_bytes().to_vec(),
            "/v1/chat/completions",
            "m",
            401,
        ),
        (
            "Basic",
            format!("Basic {ALICE}").into_bytes(),
            "/v1/chat/completions",
            "m",
            401,
        ),
        (
            "a key with more after it",
            format!("Bearer {WRONG} {ALICE}").into_bytes(),
            "/v1/chat/completions",
            "m",
            401,
        ),
        (
            "a key then a byte that is not text",
            [bearer(WRONG), vec![0xff, 0xfe]].concat(),
            "/v1/chat/completions",
            "m",
            401,
        ),
        (
            "the right key, a panicking handler",
            bearer(ALICE),
            "/v1/chat/completions",
            "boom",
            500,
        ),
        (
            "the right key, an upstream that refuses its key",
            bearer(ALICE),
            "/v1/chat/completions",
            "refused",
            0,
        ),
    ];
    // A mid-stream failure's error event too.
    cases.push((
        "the right key, a stream that panics",
        bearer(ALICE),
        "/v1/chat/completions?stream",
        "boom",
        0,
    ));
    for (what, auth, path, model, want) in cases {
        // Both ways in: the hot path (no Origin) and the router's (a browser's Origin).
        for origin in [None, Some("http://localhost")] {
            let stream = path.ends_with("?stream");
            let path = path.trim_end_matches("?stream");
            let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
            let mut r = if path == "/v1/models" {
                http.get(format!("{base}{path}"))
            } else {
                http.post(format!("{base}{path}")).json(&body)
            };
            r = r.header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(&auth).unwrap(),
            );
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            if want != 0 {
                assert_eq!(status, want, "{what} (origin {origin:?}): {text}");
            } else {
                assert!(
                    status >= 400 || text.contains("error"),
                    "{what}: {status} {text}"
                );
            }
            for key in [ALICE, WRONG, UPSTREAM] {
                assert!(
                    !text.contains(key) && !text.contains(&key[3..]),
                    "{what} (origin {origin:?}): the answer echoes a key: {text}"
                );
            }
        }
    }
    assert!(
        refusing
            .received()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(&format!("Bearer {UPSTREAM}"))),
        "the upstream key was sent (so a leak of it would be seen)"
    );

    let _ = stop.send(());
    let _ = task.await;
    let text = std::fs::read_to_string(&log).unwrap();
    // The log saw these requests and the panic: its silence about keys means something.
    assert!(
        text.contains("401"),
        "no 401 in the log {}:\n{text}",
        log.display()
    );
    assert!(
        text.contains("fell over"),
        "no panic in the log {}:\n{text}",
        log.display()
    );
    for key in [ALICE, WRONG, UPSTREAM] {
        if let Some((n, line)) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(&key[3..]))
        {
            panic!("{}:{}: a key in the log: {line}", log.display(), n + 1);
        }
    }
}
