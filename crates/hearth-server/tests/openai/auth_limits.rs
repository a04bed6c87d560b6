//! API keys and per-key rate limits.

use hearth_config::MapEnv;
use hearth_testkit::FakeUpstream;

use crate::harness::*;

const KEYS: &str = "[[keys]]\nname = \"alice\"\nkey = \"sk-alice-0123456789\"\nrpm = 2\n\n[[keys]]\nname = \"bob\"\nkey = \"sk-bob-0123456789\"\ntpm = 40\n";

#[tokio::test]
async fn keys_are_required_when_configured() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "{KEYS}\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let resp = gw.chat("m", false).await;
    let (status, e) = error_of(resp).await;
    assert_eq!(status, 401);
    assert_eq!(e["type"], "authentication_error");
    let resp = gw
        .get("/v1/models")
        .bearer_auth("sk-wrong-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await.0, 401);
    let resp = gw
        .get("/v1/models")
        .bearer_auth("sk-alice-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Ollama's API takes the same keys.
    for path in ["/api/tags", "/api/ps", "/api/version"] {
        assert_eq!(gw.get(path).send().await.unwrap().status(), 401, "{path}");
        let resp = gw
            .get(path)
            .bearer_auth("sk-alice-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let resp = gw
        .post("/api/chat")
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Probes and the API's document need no key.
    let doc = gw.get("/openapi.json").send().await.unwrap();
    assert_eq!(doc.status(), 200);
    let doc: serde_json::Value = doc.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(gw.get("/health").send().await.unwrap().status(), 200);
    assert_eq!(gw.get("/ready").send().await.unwrap().status(), 200);
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn keys_from_hearth_api_keys_env() {
    let up = FakeUpstream::start().await.unwrap();
    let env =
        hearth_config::MapEnv::new([("HEARTH_API_KEYS", "sk-one-123456789, sk-two-123456789")]);
    let gw = Gateway::start_with_env(&upstream_model("m", &up.base_url(), ""), env).await;
    assert_eq!(gw.get("/v1/models").send().await.unwrap().status(), 401);
    assert_eq!(
        gw.get("/v1/models")
            .bearer_auth("sk-two-123456789")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn requests_per_minute_with_headers() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "{KEYS}\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let send = || {
        gw.post("/v1/chat/completions")
            .bearer_auth("sk-alice-0123456789")
            .json(&chat_body("m", false))
            .send()
    };
    let r1 = send().await.unwrap();
    assert_eq!(r1.status(), 200);
    assert_eq!(r1.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(r1.headers()["x-ratelimit-remaining-requests"], "1");
    assert!(r1.headers().get("x-ratelimit-reset-requests").is_some());
    assert_eq!(send().await.unwrap().status(), 200);
    let r3 = send().await.unwrap();
    assert_eq!(r3.status(), 429);
    let retry: u64 = r3.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let (_, e) = error_of(r3).await;
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert_eq!(up.hits(), 2);
    // Another key has its own budget.
    let r = gw
        .post("/v1/chat/completions")
        .bearer_auth("sk-bob-0123456789")
        .json(&chat_body("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tokens_per_minute() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "{KEYS}\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    // The fake reports 5 + 4 = 9 tokens a request; bob has 40 a minute.
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = gw
            .post("/v1/chat/completions")
            .bearer_auth("sk-bob-0123456789")
            .json(&chat_body("m", false))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "40");
        }
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes[0], 200);
    assert!(codes.contains(&429), "{codes:?}");
    assert!(
        codes.iter().filter(|c| **c == 200).count() <= 5,
        "{codes:?}"
    );
}

#[tokio::test]
async fn a_keys_token_budget_holds_across_a_restart() {
    let up = FakeUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = || {
        MapEnv::new([(
            "HEARTH_STORAGE_DATA_DIR",
            data.path().display().to_string().as_str(),
        )])
    };
    let toml = format!(
        "{KEYS}\n[[keys]]\nname = \"kid\"\nkey = \"sk-kid-0123456789\"\nbudget_tokens = 15\nbudget_period = \"day\"\n\n[[keys]]\nname = \"root\"\nkey = \"sk-root-0123456789\"\nadmin = true\n{}",
        upstream_model("m", &up.base_url(), "")
    );
    let gw = Gateway::start_with_env(&toml, env()).await;
    let ask = |gw: &Gateway, key: &'static str, stream: bool| {
        gw.post("/v1/chat/completions")
            .bearer_auth(key)
            .json(&chat_body("m", stream))
            .send()
    };
    // The fake reports 5 + 4 = 9 tokens a request: the second starts at 9 of 15 (a
    // stream, counted from its last chunk's usage), the third at 18. Each answer
    // says what was left when it was admitted.
    let r = ask(&gw, "sk-kid-0123456789", false).await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-hearth-budget-limit-tokens"], "15");
    assert_eq!(h["x-hearth-budget-remaining-tokens"], "15");
    let renews = h["x-hearth-budget-renews-at"].to_str().unwrap().to_owned();
    assert!(renews.ends_with("T00:00:00Z"), "{renews}");
    let r = ask(&gw, "sk-kid-0123456789", true).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-hearth-budget-remaining-tokens"], "6");
    // The gateway asked the upstream for the usage; the client, who did not, gets
    // no usage chunk.
    let payloads = sse_payloads(r).await;
    assert!(
        payloads.iter().all(|p| !p.contains("\"usage\"")),
        "{payloads:?}"
    );
    let r = ask(&gw, "sk-kid-0123456789", false).await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let (status, e) = error_of(r).await;
    assert_eq!(status, 429);
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(e["code"], "insufficient_quota");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "key `kid` has used its budget of 15 tokens this day (18 used); it renews at "
        ) && message.ends_with("T00:00:00Z"),
        "{message}"
    );
    assert_eq!(up.hits(), 2);
    let metrics = gw.metrics_as(Some("sk-bob-0123456789")).await;
    assert!(
        metrics.contains("hearth_key_budget_used_tokens{key=\"kid\"} 18"),
        "{metrics}"
    );
    // `/api/hearth/me` says it too, without spending a request.
    let me = |key: &'static str| gw.get("/api/hearth/me").bearer_auth(key).send();
    let kid: serde_json::Value = me("sk-kid-0123456789").await.unwrap().json().await.unwrap();
    assert_eq!(kid["key"], "kid");
    assert_eq!(kid["admin"], false);
    let budget = &kid["budget"];
    assert_eq!(
        (
            &budget["tokens"],
            &budget["period"],
            &budget["used"],
            &budget["remaining"]
        ),
        (&15.into(), &"day".into(), &18.into(), &0.into()),
        "{kid}"
    );
    assert_eq!(budget["renews_at"], renews.as_str());
    assert!(
        budget["period_start"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    // Other keys are not held to it, and have none.
    let r = ask(&gw, "sk-bob-0123456789", false).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-hearth-budget-limit-tokens").is_none());
    let bob: serde_json::Value = me("sk-bob-0123456789").await.unwrap().json().await.unwrap();
    assert_eq!(
        (&bob["key"], &bob["tpm"], &bob["budget"]),
        (&"bob".into(), &40.into(), &serde_json::Value::Null)
    );
    assert_eq!(gw.get("/api/hearth/me").send().await.unwrap().status(), 401);
    // The count is in the store: a restarted server still refuses the key.
    gw.stop().await;
    let gw = Gateway::start_with_env(&toml, env()).await;
    let (status, e) = error_of(ask(&gw, "sk-kid-0123456789", false).await.unwrap()).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (429, Some("insufficient_quota"))
    );
    // An admin key sees every key's limits and budget (the count read back from
    // the store); any other key is refused, saying why.
    let keys = gw
        .get("/api/hearth/keys")
        .bearer_auth("sk-root-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);
    let keys: serde_json::Value = keys.json().await.unwrap();
    assert_eq!(keys["object"], "list");
    let data = keys["data"].as_array().unwrap();
    let names: Vec<&str> = data.iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "kid", "root"], "{keys}");
    assert_eq!(
        (&data[0]["rpm"], &data[0]["budget"]),
        (&2.into(), &serde_json::Value::Null)
    );
    assert_eq!(
        (&data[2]["budget"]["used"], &data[2]["budget"]["remaining"]),
        (&18.into(), &0.into()),
        "{keys}"
    );
    assert_eq!(data[2]["budget"]["renews_at"], renews.as_str());
    assert_eq!(data[3]["admin"], true);
    let r = gw
        .get("/api/hearth/keys")
        .bearer_auth("sk-kid-0123456789")
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(r).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (403, Some("admin_key_required"))
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("key `kid` is not an admin key"),
        "{e}"
    );
    assert_eq!(
        gw.get("/api/hearth/keys").send().await.unwrap().status(),
        401
    );
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn cors_allows_localhost_origins_only_by_default() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&upstream_model("m", &up.base_url(), "")).await;
    let pre = |origin: &'static str| {
        gw.client
            .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = pre("http://localhost:5173").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let bad = pre("https://evil.example").await.unwrap();
    assert!(bad.headers().get("access-control-allow-origin").is_none());

    // The browser's actual request after the preflight, and a request with no
    // `Origin` at all (an SDK): the latter carries no CORS grant, only `Vary`.
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let browser = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("origin", "http://localhost:5173")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    assert_eq!(
        browser.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let exposed = browser.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let sdk = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sdk.status(), 200);
    assert!(
        sdk.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        sdk.headers()
    );
    let vary: Vec<_> = sdk.headers().get_all("vary").iter().collect();
    assert!(
        vary.iter().any(|v| v.to_str().unwrap().contains("origin")),
        "{vary:?}"
    );
}

/// Completions from clients without an `Origin` take the hot path (`fast.rs`); the
/// same requests from a browser go through the router's middleware. Both must
/// answer alike: status, error body, request id, rate-limit headers, `Vary`.
#[tokio::test]
async fn hot_path_and_router_answer_alike() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "{KEYS}\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let cases: [(&str, &str, Option<&str>); 9] = [
        ("/v1/chat/completions", chat, Some("sk-bob-0123456789")),
        ("/v1/chat/completions", chat, None),
        ("/v1/chat/completions", chat, Some("sk-wrong-0123456789")),
        (
            "/v1/chat/completions",
            "{not json",
            Some("sk-bob-0123456789"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            Some("sk-bob-0123456789"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#,
            Some("sk-bob-0123456789"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m","prompt":"hi"}"#,
            Some("sk-bob-0123456789"),
        ),
        (
            "/v1/completions",
            r#"{"model":"m"}"#,
            Some("sk-bob-0123456789"),
        ),
        ("/v1/completions", r#"{"model":"m","prompt":"hi"}"#, None),
    ];
    for (path, body, key) in cases {
        let send = |origin: Option<&'static str>| {
            let mut r = gw
                .post(path)
                .header("content-type", "application/json")
                .header("x-request-id", "same-id-for-both")
                .body(body.to_owned());
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            r.send()
        };
        let hot = send(None).await.unwrap();
        let routed = send(Some("http://localhost:5173")).await.unwrap();
        let case = format!("{path} {body} key={key:?}");
        assert_eq!(hot.status(), routed.status(), "{case}");
        assert!(
            routed.headers().contains_key("access-control-allow-origin"),
            "{case}"
        );
        let names = |r: &reqwest::Response| {
            let mut n: Vec<String> = r
                .headers()
                .keys()
                .map(|k| k.as_str().to_owned())
                .filter(|k| !k.starts_with("access-control-") && k != "date")
                .collect();
            n.sort();
            n.dedup();
            n
        };
        assert_eq!(names(&hot), names(&routed), "{case}");
        assert_eq!(hot.headers()["x-request-id"], "same-id-for-both", "{case}");
        assert_eq!(
            routed.headers()["x-request-id"],
            "same-id-for-both",
            "{case}"
        );
        let vary = |r: &reqwest::Response| {
            r.headers()
                .get_all("vary")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(vary(&hot).contains("origin"), "{case}: {}", vary(&hot));
        let (hot_body, routed_body): (serde_json::Value, serde_json::Value) =
            (hot.json().await.unwrap(), routed.json().await.unwrap());
        if hot_body.get("error").is_some() {
            assert_eq!(hot_body, routed_body, "{case}");
        } else {
            assert_eq!(hot_body["choices"], routed_body["choices"], "{case}");
        }
    }
}

/// Without keys (loopback only), a page on another site cannot use Hearth through
/// the visitor's browser: a `Host` that is not a loopback or configured name (DNS
/// rebinding) and an `Origin` of another site get 403 with the reason, on the
/// fast path and the router alike; with keys, the key is what counts.
#[tokio::test]
async fn without_keys_only_loopback_names_and_own_pages_are_served() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "[server]\nallowed_hosts = [\"hearth.lan\"]\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let chat = |host: &'static str, origin: Option<&'static str>| {
        let mut r = gw
            .post("/v1/chat/completions")
            .header("host", host)
            .json(&chat_body("m", false));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    for host in ["127.0.0.1:8080", "localhost", "hearth.lan:8080"] {
        assert_eq!(chat(host, None).await.unwrap().status(), 200, "{host}");
    }
    let (status, e) = error_of(chat("attacker.example:8080", None).await.unwrap()).await;
    assert_eq!(status, 403);
    assert_eq!(e["code"], "host_not_allowed", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("DNS rebinding"),
        "{e}"
    );
    // A cross-site form post (a browser sends Origin), and a read through the router.
    let (status, e) = error_of(
        chat("127.0.0.1:8080", Some("https://attacker.example"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(e["code"], "origin_not_allowed", "{e}");
    let resp = gw
        .get("/v1/models")
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await.0, 403);
    assert_eq!(
        chat("127.0.0.1:8080", Some("http://localhost:8080"))
            .await
            .unwrap()
            .status(),
        200,
        "the UI's own page"
    );

    // With keys, any Host: the key is the protection.
    let keyed = Gateway::start(&format!(
        "{KEYS}\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let resp = keyed
        .get("/v1/models")
        .header("host", "attacker.example")
        .bearer_auth("sk-alice-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A client that sends its request head a byte at a time (slow-loris), and a
/// kept-alive connection left idle, are closed after `server.header_timeout_secs`
/// (and counted); a client that sends its request in time is answered.
#[tokio::test]
async fn slow_request_heads_and_idle_connections_are_closed() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&format!(
        "[server]\nheader_timeout_secs = 1\n{}",
        upstream_model("m", &up.base_url(), "")
    ))
    .await;
    let addr = gw.url("").trim_start_matches("http://").to_owned();

    // One header byte every 300 ms: the head never completes within 1 s.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for b in head {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
            // Closed (0 or an error), or an answer to a request it never finished.
            assert!(!matches!(r, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200")));
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a head sent over {:?} was still being read",
        start.elapsed()
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // Kept alive, then idle: closed after about 1 s.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (got, closed) = read_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "the idle connection was not closed: {got}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );

    // An ordinary client is served, and the timeouts are counted.
    assert_eq!(gw.chat("m", false).await.status(), 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("hearth_connections_timed_out_total"),
        "{metrics}"
    );
}
