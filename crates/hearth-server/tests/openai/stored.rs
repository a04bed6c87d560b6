//! The Responses API's calls on a stored response (`GET`/`DELETE
//! /v1/responses/{id}`, `/input_items`, `/cancel`): asked of each distinct upstream
//! that serves that API, in config order, the first answer that is not a 404
//! passed on as it came.

use hearth_config::MapEnv;
use hearth_testkit::FakeUpstream;
use serde_json::{Value, json};

use crate::harness::*;

const KEY: &str = "sk-client-0123456789";

/// Hearth with `models` behind a client key, the upstream keys in the environment.
async fn gateway(models: &str) -> Gateway {
    let toml = format!("[[keys]]\nname = \"client\"\nkey = \"{KEY}\"\n\n{models}");
    let env = MapEnv::new([("KEY_A", "sk-upstream-a"), ("KEY_B", "sk-upstream-b")]);
    Gateway::start_with_env(&toml, env).await
}

/// A `responses_api = true` model at `up` with the upstream key in `key_env`.
fn responses_model(name: &str, base_url: &str, key_env: &str) -> String {
    upstream_model(
        name,
        base_url,
        &format!("retries = 0\nresponses_api = true\napi_key_env = \"{key_env}\""),
    )
}

async fn call(gw: &Gateway, method: reqwest::Method, path: &str) -> reqwest::Response {
    gw.client
        .request(method, gw.url(path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
}

/// A response made as `key` on `model` with `store: true`: its body.
async fn stored(gw: &Gateway, key: &str, model: &str, input: Value) -> Value {
    let r = gw
        .post("/v1/responses")
        .bearer_auth(key)
        .json(&json!({"model": model, "input": input, "store": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// What `up` received of the calls on stored responses: (path, query, key).
fn stored_calls(up: &FakeUpstream) -> Vec<(String, Option<String>, Option<String>)> {
    up.received()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/responses/"))
        .map(|r| (r.path, r.query, r.authorization))
        .collect()
}

/// A response stored on the second of two upstreams is read, listed, cancelled and
/// deleted through Hearth (each call asked of the first, which says 404, then of
/// the second once, though two models point at it), with the upstream's key and
/// the client's query; then it is gone. Ids that are not one plain segment never
/// reach an upstream.
#[tokio::test]
async fn stored_responses_are_found_on_the_upstream_that_holds_them() {
    let (a, b) = (
        FakeUpstream::start().await.unwrap(),
        FakeUpstream::start().await.unwrap(),
    );
    let gw = gateway(&format!(
        "{}{}{}{}",
        upstream_model("chat", &a.base_url(), "retries = 0"),
        responses_model("first", &a.base_url(), "KEY_A"),
        responses_model("second", &b.base_url(), "KEY_B"),
        responses_model("second-again", &b.base_url(), "KEY_B"),
    ))
    .await;
    let input = json!([{"role": "user", "content": "hi"}]);
    let made = stored(&gw, KEY, "second", input).await;
    let id = made["id"].as_str().unwrap().to_owned();

    // Retrieved, with the query as the client wrote it.
    let query = "include[]=message.output_text.logprobs&starting_after=0";
    let r = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}?{query}"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), made);
    let path = format!("/v1/responses/{id}");
    let (to_a, to_b) = (stored_calls(&a), stored_calls(&b));
    assert_eq!(
        to_a,
        [(
            path.clone(),
            Some(query.to_owned()),
            Some("Bearer sk-upstream-a".to_owned())
        )]
    );
    assert_eq!(
        to_b,
        [(
            path.clone(),
            Some(query.to_owned()),
            Some("Bearer sk-upstream-b".to_owned())
        )]
    );

    // Streamed: the upstream's events.
    let r = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}?stream=true"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("event: response.completed\ndata: {") && text.contains(&id),
        "{text}"
    );

    // Its input items.
    let r = call(
        &gw,
        reqwest::Method::GET,
        &format!("/v1/responses/{id}/input_items?limit=10&order=asc"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let items: Value = r.json().await.unwrap();
    assert_eq!(items["object"], "list", "{items}");
    assert_eq!(items["data"][0]["content"], "hi", "{items}");
    assert_eq!(
        stored_calls(&b).last().unwrap().1.as_deref(),
        Some("limit=10&order=asc")
    );

    // Cancelled (the fake answers with the response), deleted, then gone.
    let r = call(&gw, reqwest::Method::POST, &format!("{path}/cancel")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], id.as_str());
    let r = call(&gw, reqwest::Method::DELETE, &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    let (status, e) = error_of(call(&gw, reqwest::Method::GET, &path).await).await;
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "not_found");
    assert_eq!(e["param"], Value::Null);
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("'{id}'")) && message.contains("store: true"),
        "{e}"
    );
    let (status, _) =
        error_of(call(&gw, reqwest::Method::DELETE, "/v1/responses/resp_nope").await).await;
    assert_eq!(status, 404);
    // Each upstream asked once, though two models point at the second.
    let asked = |up: &FakeUpstream| {
        stored_calls(up)
            .iter()
            .filter(|c| c.0 == "/v1/responses/resp_nope")
            .count()
    };
    assert_eq!((asked(&a), asked(&b)), (1, 1));

    // Not an id: refused here, no upstream asked.
    let (to_a, to_b) = (stored_calls(&a).len(), stored_calls(&b).len());
    for bad in ["..%2Fx", "a%2Fb", "a%20b", &"r".repeat(300)] {
        let (status, e) =
            error_of(call(&gw, reqwest::Method::GET, &format!("/v1/responses/{bad}")).await).await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["param"], "response_id", "{e}");
    }
    assert_eq!(
        (stored_calls(&a).len(), stored_calls(&b).len()),
        (to_a, to_b)
    );

    // Behind the key check as every /v1 route.
    let r = gw.get(&path).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// An upstream that cannot be reached does not hide a response another holds;
/// when none answers, the client is told that one failed (503, naming its model),
/// not that the response does not exist.
#[tokio::test]
async fn an_unreachable_upstream_is_a_503_when_no_other_answers() {
    let a = FakeUpstream::start().await.unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = gateway(&format!(
        "{}{}",
        responses_model("down", &format!("http://127.0.0.1:{closed}/v1"), "KEY_B"),
        responses_model("up", &a.base_url(), "KEY_A"),
    ))
    .await;
    let made = stored(&gw, KEY, "up", json!("hi")).await;
    let id = made["id"].as_str().unwrap();
    let r = call(&gw, reqwest::Method::GET, &format!("/v1/responses/{id}")).await;
    assert_eq!(r.status(), 200);

    let (status, e) =
        error_of(call(&gw, reqwest::Method::GET, "/v1/responses/resp_other").await).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["code"], "upstream_unavailable", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("model `down`"),
        "{e}"
    );
}

/// Calls on stored responses count against the key's requests per minute, as a
/// completion does: OpenAI's `x-ratelimit-*` headers on an answer, and past the
/// limit a 429 with `Retry-After` that reaches no upstream.
#[tokio::test]
async fn calls_on_stored_responses_count_against_the_keys_limit() {
    let up = FakeUpstream::start().await.unwrap();
    let limited = "sk-limited-0123456789";
    let toml = format!(
        "[[keys]]\nname = \"limited\"\nkey = \"{limited}\"\nrpm = 3\n\n{}",
        responses_model("stored", &up.base_url(), "KEY_A")
    );
    let env = MapEnv::new([("KEY_A", "sk-upstream-a")]);
    let gw = Gateway::start_with_env(&toml, env).await;
    let made = stored(&gw, limited, "stored", json!("hi")).await;
    let id = made["id"].as_str().unwrap();
    let get = || {
        gw.client
            .get(gw.url(&format!("/v1/responses/{id}")))
            .bearer_auth(limited)
            .send()
    };
    let r = get().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "1");
    assert_eq!(get().await.unwrap().status(), 200);
    let asked = stored_calls(&up).len();
    let r = get().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(
        stored_calls(&up).len(),
        asked,
        "a refused call reached the upstream"
    );
}
