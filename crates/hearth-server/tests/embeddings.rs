//! `/v1/embeddings` behind the real HTTP stack: the embedded embedding model
//! (all-MiniLM-L6-v2 converted to GGUF, `hearth_testkit::test_embedding_model_path`)
//! checked against vectors computed from the original weights by a plain numpy
//! forward pass (tools/embedding-model/reference.json); an upstream's answer
//! passed through as it came; and the bad inputs, each with its status and message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

#[path = "openai/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use base64::Engine as _;
use harness::Gateway;
use hearth_testkit::FakeUpstream;
use serde_json::{Value, json};

/// The reference: sentences, their token ids and vectors.
fn reference() -> Vec<(String, Vec<u64>, Vec<f32>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/embedding-model/reference.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["text"].as_str().unwrap().to_owned(),
                s["token_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap())
                    .collect(),
                floats(&s["embedding"]),
            )
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// `minilm_context`: the embedding model's `context` (its own 512 when `None`).
fn config(upstream: &str, minilm_context: Option<u32>) -> String {
    format!(
        r#"
[[models]]
name = "minilm"
kind = "embedding"
path = "{embed}"
parallel = 4
{context}

[[models]]
name = "smollm2-135m"
path = "{chat}"
context = 512
parallel = 1

[[models]]
name = "remote-embed"
kind = "embedding"
backend = "upstream"
base_url = "{upstream}"
upstream_model = "text-embedding-3-small"
"#,
        embed = hearth_testkit::test_embedding_model_path().display(),
        context = minilm_context.map_or(String::new(), |c| format!("context = {c}")),
        chat = hearth_testkit::test_model_path().display(),
    )
}

/// Waits until every model is loaded (`/ready` is 200 as soon as one is).
async fn ready(gw: &Gateway) {
    let start = Instant::now();
    loop {
        let models = gw.get_json("/v1/models").await;
        let all = models["data"].as_array().unwrap();
        if all.iter().all(|m| m["status"] == "ready") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not ready in 120 s: {models}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn embed(gw: &Gateway, body: Value) -> (u16, Value) {
    let r = gw.post("/v1/embeddings").json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_vectors_match_the_reference_as_floats_and_base64() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&config(&up.base_url(), None)).await;
    ready(&gw).await;
    let reference = reference();
    let texts: Vec<&str> = reference.iter().map(|(t, _, _)| t.as_str()).collect();

    let (code, body) = embed(
        &gw,
        json!({"model": "minilm", "input": texts, "encoding_format": "float"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "minilm");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), reference.len());
    let mut tokens = 0;
    for (i, (text, ids, want)) in reference.iter().enumerate() {
        assert_eq!(data[i]["object"], "embedding");
        assert_eq!(data[i]["index"], i);
        let got = floats(&data[i]["embedding"]);
        assert_eq!(got.len(), 384, "{text}");
        let length = got
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((length - 1.0).abs() < 1e-4, "{text}: length {length}");
        let c = cosine(&got, want);
        assert!(c > 0.999, "{text}: cosine {c} with the reference");
        tokens += ids.len();
    }
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": tokens, "total_tokens": tokens})
    );

    // One string alone; base64 of the same floats.
    let (text, _, want) = &reference[0];
    let (code, body) = embed(
        &gw,
        json!({"model": "minilm", "input": text, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let b = body["data"][0]["embedding"]
        .as_str()
        .expect("a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(cosine(&got, want) > 0.999);

    // Token ids (the reference tokenizer's, [CLS] and [SEP] included) read as the
    // text does.
    let ids: Vec<&Vec<u64>> = reference.iter().map(|(_, ids, _)| ids).collect();
    let (code, body) = embed(&gw, json!({"model": "minilm", "input": ids})).await;
    assert_eq!(code, 200, "{body}");
    for (i, (_, _, want)) in reference.iter().enumerate() {
        let c = cosine(&floats(&body["data"][i]["embedding"]), want);
        assert!(c > 0.999, "token ids of input {i}: cosine {c}");
    }

    // Similar sentences are closer than unrelated ones (the reference's first two
    // are about a cat; the third is not).
    let (_, body) = embed(&gw, json!({"model": "minilm", "input": texts})).await;
    let v: Vec<Vec<f32>> = (0..3)
        .map(|i| floats(&body["data"][i]["embedding"]))
        .collect();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);

    // More inputs than one decode holds (parallel = 4): the same vectors.
    let many: Vec<&str> = texts.iter().cycle().take(11).copied().collect();
    let (code, body) = embed(&gw, json!({"model": "minilm", "input": many})).await;
    assert_eq!(code, 200, "{body}");
    for (i, text) in many.iter().enumerate() {
        let want = &reference.iter().find(|(t, _, _)| t == text).unwrap().2;
        let c = cosine(&floats(&body["data"][i]["embedding"]), want);
        assert!(c > 0.999, "input {i}: cosine {c}");
    }

    // Requests arriving together share decodes: each still gets its own vectors.
    let calls = (0..12).map(|i| {
        let (text, _, want) = reference[i % reference.len()].clone();
        let gw = &gw;
        async move {
            let (code, body) = embed(gw, json!({"model": "minilm", "input": [text, "x"]})).await;
            assert_eq!(code, 200, "{body}");
            let c = cosine(&floats(&body["data"][0]["embedding"]), &want);
            assert!(c > 0.999, "concurrent request {i}: cosine {c}");
            assert_eq!(body["data"].as_array().unwrap().len(), 2);
        }
    });
    futures::future::join_all(calls).await;

    // Listed as an embedding model; the chat model is not.
    let models = gw.get_json("/v1/models").await;
    let kind = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()
            .get("kind")
            .cloned()
    };
    assert_eq!(kind("minilm"), Some(json!("embedding")));
    assert_eq!(kind("smollm2-135m"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_status_and_lose_nothing() {
    let up = FakeUpstream::start().await.unwrap();
    // A context past the model's 512 trained positions: an input longer than
    // those is still refused (llama.cpp would abort the process on it).
    let gw = Gateway::start(&config(&up.base_url(), Some(1024))).await;
    ready(&gw).await;
    let long = "word ".repeat(700);
    for (body, status, param, words) in [
        (
            json!({"model": "minilm", "input": []}),
            400,
            "input",
            "empty list",
        ),
        (
            json!({"model": "minilm", "input": ""}),
            400,
            "input",
            "empty",
        ),
        (
            json!({"model": "minilm", "input": ["a", ""]}),
            400,
            "input",
            "input[1]",
        ),
        (json!({"model": "minilm"}), 400, "input", "required"),
        (json!({"model": "minilm", "input": 3}), 400, "input", ""),
        (
            json!({"model": "minilm", "input": "a", "encoding_format": "hex"}),
            400,
            "encoding_format",
            "",
        ),
        (
            json!({"model": "minilm", "input": "a", "dimensions": 64}),
            400,
            "dimensions",
            "384 dimensions",
        ),
        (
            json!({"model": "minilm", "input": [[101, 99999999]]}),
            400,
            "input",
            "outside the model's vocabulary",
        ),
        (
            json!({"model": "minilm", "input": ["short", long]}),
            400,
            "input",
            "input[1]` is 702 tokens, more than this model reads at once (512)",
        ),
        (
            json!({"model": "smollm2-135m", "input": "a"}),
            400,
            "model",
            "chat model",
        ),
        (
            json!({"model": "ghost", "input": "a"}),
            404,
            "model",
            "ghost",
        ),
    ] {
        let (code, got) = embed(&gw, body.clone()).await;
        assert_eq!(code, status, "{body}: {got}");
        assert_eq!(got["error"]["param"], param, "{body}: {got}");
        let message = got["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{body}: {message}");
    }
    // A chat request to the embedding model.
    let r = gw
        .post("/v1/chat/completions")
        .json(&json!({"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["error"]["code"], "model_not_supported", "{got}");
    // Not JSON at all.
    let r = gw
        .post("/v1/embeddings")
        .header("content-type", "application/json")
        .body("{\"input\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The model still answers.
    let (code, body) = embed(&gw, json!({"model": "minilm", "input": "still here"})).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_gets_the_request_and_its_answer_goes_back_as_it_came() {
    let up = FakeUpstream::start().await.unwrap();
    let gw = Gateway::start(&config(&up.base_url(), None)).await;
    let request = json!({
        "model": "remote-embed", "input": ["one", "three"], "encoding_format": "base64",
        "dimensions": 3, "user": "u-1"
    });
    let r = gw
        .post("/v1/embeddings")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    // The fake's own answer: base64 vectors [index, length, 0.5], its usage.
    let b = body["data"][1]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
    assert_eq!(
        bytes,
        [1.0f32, 5.0, 0.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>()
    );
    assert_eq!(body["usage"]["prompt_tokens"], 8);
    // Sent as the client wrote it, under the upstream's name for the model.
    let got = up.received().pop().unwrap();
    assert_eq!(got.path, "/v1/embeddings");
    let mut want = request.clone();
    want["model"] = json!("text-embedding-3-small");
    assert_eq!(got.body, want);
}

/// `matryoshka = true`: `dimensions` below the model's cuts each vector to its
/// first values, scaled back to unit length; more than the model has, or 0, is a
/// 400. (MiniLM was not trained so; the test checks the cut, not its quality.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matryoshka_model_cuts_vectors_to_the_dimensions_asked() {
    let toml = format!(
        "[[models]]\nname = \"minilm\"\nkind = \"embedding\"\npath = \"{}\"\nmatryoshka = true\n",
        hearth_testkit::test_embedding_model_path().display()
    );
    let gw = Gateway::start(&toml).await;
    ready(&gw).await;
    let (status, full) = embed(&gw, json!({"model": "minilm", "input": "a red fox"})).await;
    assert_eq!(status, 200, "{full}");
    let full = floats(&full["data"][0]["embedding"]);
    assert_eq!(full.len(), 384);
    let (status, cut) = embed(
        &gw,
        json!({"model": "minilm", "input": "a red fox", "dimensions": 128}),
    )
    .await;
    assert_eq!(status, 200, "{cut}");
    let cut = floats(&cut["data"][0]["embedding"]);
    assert_eq!(cut.len(), 128);
    let norm: f32 = cut.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert!(cosine(&cut, &full[..128]) > 0.9999);
    for d in [0, 385] {
        let (status, v) = embed(
            &gw,
            json!({"model": "minilm", "input": "a", "dimensions": d}),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], "dimensions", "{v}");
    }
}
