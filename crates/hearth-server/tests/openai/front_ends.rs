//! The other front ends on the gateway, Ollama's `/api` and `/v1/responses`, when
//! the backend fails: before the answer began (a status and the front end's own
//! error shape) and after (the stream ends with its own error event).

use hearth_testkit::{Behaviour, FakeUpstream};
use serde_json::{Value, json};

use crate::harness::*;

async fn gateway(up: &FakeUpstream) -> Gateway {
    // No retries: each scripted failure reaches the client.
    Gateway::start(&upstream_model("m", &up.base_url(), "retries = 0")).await
}

#[tokio::test]
async fn ollama_errors_are_ollamas_shape_and_a_broken_stream_ends_with_an_error_line() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = gateway(&up).await;
    let chat = |stream: bool| json!({"model": "m:latest", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});

    // Refused before any answer: the status, Retry-After, {"error": "..."}.
    up.push(Behaviour::Status {
        status: 503,
        retry_after: Some(7),
    });
    let r = gw
        .post("/api/chat")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // Broken mid-stream: the lines so far, then one error line; HTTP 200 was sent.
    up.push(Behaviour::DropMidStream { after: 2 });
    let r = gw.post("/api/chat").json(&chat(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert!(last["error"].is_string(), "{text}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["done"] == false && l["message"]["content"].is_string()),
        "{text}"
    );

    // Unknown model, malformed body: 404 and 400 in Ollama's shape.
    let r = gw
        .post("/api/generate")
        .json(&json!({"model": "ghost", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("'ghost' not found"),
        "{body}"
    );
    let r = gw
        .post("/api/chat")
        .header("content-type", "application/json")
        .body("{\"model\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // Still serving.
    let r = gw
        .post("/api/chat")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"]["content"], "Hello from the fake upstream.");
    assert_eq!(body["model"], "m:latest");
}

/// Ollama's `think` reaches an upstream as the fields vLLM and llama-server read:
/// a switch as `chat_template_kwargs.enable_thinking`, a level as
/// `reasoning_effort`; anything else is a 400 in Ollama's shape, sent nowhere.
#[tokio::test]
async fn ollamas_think_reaches_the_upstream_as_chat_template_kwargs() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = gateway(&up).await;
    let chat = |think: Value| {
        json!({"model": "m", "stream": false, "think": think,
        "messages": [{"role": "user", "content": "hi"}]})
    };
    for think in [json!(false), json!("high")] {
        let r = gw
            .post("/api/chat")
            .json(&chat(think))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = gw
        .post("/api/generate")
        .json(&json!({"model": "m", "prompt": "hi", "stream": false, "think": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent: Vec<Value> = up.received().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[0]["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert_eq!(sent[1]["reasoning_effort"], "high");
    assert_eq!(
        sent[1]["chat_template_kwargs"],
        json!({"reasoning_effort": "high"})
    );
    assert_eq!(
        sent[2]["chat_template_kwargs"],
        json!({"enable_thinking": true})
    );

    let r = gw
        .post("/api/chat")
        .json(&chat(json!("max")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("think must be"),
        "{body}"
    );
    assert_eq!(up.received().len(), 3);
}

#[tokio::test]
async fn a_responses_stream_that_breaks_ends_with_response_failed() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = gateway(&up).await;
    let req = |stream: bool| json!({"model": "m", "input": "hi", "stream": stream});

    up.push(Behaviour::DropMidStream { after: 2 });
    let r = gw
        .post("/v1/responses")
        .json(&req(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &kinds[..2],
        ["response.created", "response.in_progress"],
        "{text}"
    );
    assert!(kinds.contains(&"response.output_text.delta"), "{text}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{text}");
    assert_eq!(last["response"]["status"], "failed");
    assert!(last["response"]["error"]["message"].is_string(), "{last}");
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());

    // Before any answer: the status and OpenAI's error shape.
    up.push(Behaviour::Status {
        status: 429,
        retry_after: Some(3),
    });
    let r = gw
        .post("/v1/responses")
        .json(&req(false))
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(r).await;
    assert_eq!(status, 429);
    let r = gw
        .post("/v1/responses")
        .json(&req(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Hello from the fake upstream."
    );
}

/// The events of an SSE body, whole (`event:` lines and all), without the blank
/// lines between them.
fn sse_events(text: &str) -> Vec<&str> {
    text.split("\n\n").filter(|e| !e.is_empty()).collect()
}

/// A model whose upstream serves the Responses API (`responses_api = true`) gets
/// the request as the client wrote it, `store: false` added when unsaid, and its
/// answer goes back as it came; a fallback without that API answers through the
/// chat translation, and is skipped when the request cannot be translated.
#[tokio::test]
async fn responses_pass_through_and_fall_back_to_the_translation() {
    let up = FakeUpstream::start().await.unwrap();
    let toml = format!(
        "{}{}",
        upstream_model(
            "native",
            &up.base_url(),
            "retries = 0\nresponses_api = true\nupstream_model = \"gpt-x\"\nfallbacks = [\"chat\"]"
        ),
        upstream_model("chat", &up.base_url(), "retries = 0"),
    );
    let gw = Gateway::start(&toml).await;
    let stateful = json!({"model": "native", "input": "hi", "previous_response_id": "resp_0",
                          "tools": [{"type": "web_search"}], "reasoning": {"effort": "low"}});

    // Whole: what only that API has reaches the upstream; its body comes back.
    let r = gw
        .post("/v1/responses")
        .json(&stateful)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["fake_upstream"], true, "{body}");
    assert_eq!(body["usage"]["output_tokens"], 4, "{body}");
    let sent = up.received().pop().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    let mut want = stateful.clone();
    want["model"] = json!("gpt-x");
    want["store"] = json!(false);
    assert_eq!(sent.body, want);
    // `store` as the client said it.
    let mut stored = stateful.clone();
    stored["store"] = json!(true);
    let r = gw.post("/v1/responses").json(&stored).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.received().pop().unwrap().body["store"], true);

    // Streamed: the upstream's events, `event:` lines and numbering as it sent them.
    up.push(Behaviour::ok("Hello there"));
    let mut streamed = stateful.clone();
    streamed["stream"] = json!(true);
    let r = gw
        .post("/v1/responses")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    assert!(
        events[0].starts_with("event: response.created\ndata: {"),
        "{text}"
    );
    assert!(
        events
            .last()
            .unwrap()
            .starts_with("event: response.completed\n"),
        "{text}"
    );
    assert!(text.contains(r#""fake_upstream":true"#), "{text}");

    // Cut mid-stream: the events so far, then an `error` event.
    up.push(Behaviour::DropMidStream { after: 2 });
    let r = gw
        .post("/v1/responses")
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 4, "{text}");
    assert!(
        events[2].starts_with("event: response.output_text.delta\n"),
        "{text}"
    );
    let (head, data) = events[3].split_once('\n').unwrap();
    assert_eq!(head, "event: error", "{text}");
    let e: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(e["type"], "error");
    assert!(e["message"].is_string(), "{e}");

    // The upstream refuses (503): the fallback answers through the translation.
    up.push(Behaviour::Status {
        status: 503,
        retry_after: None,
    });
    let plain = json!({"model": "native", "input": "hi"});
    let r = gw.post("/v1/responses").json(&plain).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "chat", "{body}");
    assert!(body.get("fake_upstream").is_none(), "{body}");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Hello from the fake upstream."
    );
    assert_eq!(up.received().pop().unwrap().path, "/v1/chat/completions");
    // ... unless the request cannot be translated: the fallback is skipped.
    up.push(Behaviour::Status {
        status: 503,
        retry_after: None,
    });
    let hits = up.hits();
    let r = gw
        .post("/v1/responses")
        .json(&stateful)
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(r).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(up.hits(), hits + 1);

    // A model without that API refuses what it cannot translate, naming the setting.
    let mut direct = stateful.clone();
    direct["model"] = json!("chat");
    let r = gw.post("/v1/responses").json(&direct).send().await.unwrap();
    let (status, e) = error_of(r).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["param"], "previous_response_id");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("responses_api = true"),
        "{e}"
    );
    assert_eq!(up.hits(), hits + 1);
}

/// llama.cpp's `/infill` as llama.vim sends it: a completion with `suffix` to the
/// upstream (prefix + `prompt` as the prompt), answered in llama.cpp's shape,
/// whole (only the `response_fields` asked for) or streamed (the last event with
/// `stop: true`); a malformed request is a 400 naming its field.
#[tokio::test]
async fn infill_in_llama_cpp_shape_whole_and_streamed() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = gateway(&up).await;
    let vim = |stream: bool| {
        json!({"model": "m", "id_slot": 0, "input_prefix": "def add(a, b):\n", "input_suffix": "\nprint(add(1, 2))\n",
               "input_extra": [{"filename": "util.py", "text": "def sub(a, b): return a - b\n"}],
               "prompt": "    ", "n_predict": 64, "stop": [], "n_indent": 4, "top_k": 40, "top_p": 0.9,
               "samplers": ["top_k", "top_p", "infill"], "stream": stream, "cache_prompt": true,
               "t_max_prompt_ms": 500, "t_max_predict_ms": 3000})
    };
    let r = gw.post("/infill").json(&vim(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["content"], "Hello from the fake upstream.", "{v}");
    assert_eq!(v["stop"], true);
    assert_eq!(v["stop_type"], "eos");
    assert!(v["timings"]["predicted_ms"].is_number(), "{v}");
    assert_eq!(v["tokens_evaluated"], 5, "{v}");
    let sent = up.received().last().unwrap().body.clone();
    assert_eq!(sent["prompt"], "def add(a, b):\n    ");
    assert_eq!(sent["suffix"], "\nprint(add(1, 2))\n");
    assert_eq!(sent["max_tokens"], 64);
    assert!(sent.get("samplers").is_none(), "{sent}");

    let mut asked = vim(false);
    asked["response_fields"] = json!(["content", "timings/predicted_n"]);
    let v: Value = gw
        .post("/infill")
        .json(&asked)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert!(v["timings/predicted_n"].is_number(), "{v}");

    let r = gw.post("/infill").json(&vim(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (last, pieces) = events.split_last().unwrap();
    assert_eq!(last["stop"], true, "{text}");
    assert!(pieces.iter().all(|e| e["stop"] == false), "{text}");
    let content: String = pieces
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(content, "Hello from the fake upstream.");

    for (body, param) in [
        (json!({"model": "m"}), "input_prefix"),
        (
            json!({"model": "m", "input_prefix": "x", "n_predict": 0}),
            "n_predict",
        ),
        (
            json!({"model": "m", "input_prefix": "x", "input_extra": "nope"}),
            "input_extra",
        ),
    ] {
        let r = gw.post("/infill").json(&body).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}
