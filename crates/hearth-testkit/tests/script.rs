//! `fake-upstream --script FILE --record FILE`: replies by model, in order, and a
//! record of what it was sent; its other flags keep working beside them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;

use serde_json::{Value, json};

async fn ask(client: &reqwest::Client, base: &str, model: &str) -> (u16, String) {
    let r = client
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, text)
}

#[tokio::test]
async fn scripted_replies_are_played_per_model_in_order_and_recorded() {
    let dir = tempfile_dir();
    let script = dir.join("script.json");
    let record = dir.join("received.jsonl");
    std::fs::write(
        &script,
        json!({"a": ["a1", {"text": "a2", "delay_ms": 1}], "b": [{"status": 503}], "*": ["any"]})
            .to_string(),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-upstream"))
        .args(["--chunks", "2", "--chunk-delay-ms", "0", "--script"])
        .arg(&script)
        .arg("--record")
        .arg(&record)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    assert_eq!(ask(&client, &base, "a").await, (200, "a1".into()));
    assert_eq!(ask(&client, &base, "b").await.0, 503);
    assert_eq!(ask(&client, &base, "a").await, (200, "a2".into()));
    // Each model's own replies first, then `*`'s, then the default (`--chunks`).
    assert_eq!(ask(&client, &base, "a").await, (200, "any".into()));
    assert_eq!(ask(&client, &base, "c").await, (200, "w0 w1 ".into()));
    let sent: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let models: Vec<_> = sent.iter().map(|b| b["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["a", "b", "a", "a", "c"]);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fake-upstream-script-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
