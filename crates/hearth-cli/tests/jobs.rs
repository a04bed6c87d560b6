//! `hearth jobs submit`: the real binary against a real server started here (the
//! models played by the fake upstream, scripts run in the real sandbox).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use hearth_testkit::FakeUpstream;
use serde_json::{Value, json};

mod common;
use common::{PNG, hearth, serve_in_process, venv};

const KEY: &str = "sk-cli-test-1";

/// Writes a small CSV and JSON (no heavy imports: quick).
const TABLE: &str = "import json\n\nwith open(\"/output/table.csv\", \"w\") as f:\n    f.write(\"x,y\\n1,3\\n2,1\\n\")\nwith open(\"/output/summary.json\", \"w\") as f:\n    json.dump({\"rows\": 2}, f)\nprint(\"done\")";

/// A Hearth on a loopback port with one key, its models on `up` (the vision one
/// marked `vision = true` when `vision`); stops when the returned sender is dropped.
async fn serve(
    data: &Path,
    up: &FakeUpstream,
    vision: bool,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    // Without `vision`, the default model reads the image, and it is not marked as
    // able to.
    let mut toml = format!(
        "{}[server]\nshutdown_grace_secs = 1\n[storage]\ndata_dir = \"{}\"\n[sandbox]\nvenv = \"{}\"\n[[keys]]\nname = \"cli\"\nkey = \"{KEY}\"\n",
        if vision {
            ""
        } else {
            "default_model = \"eyes\"\n"
        },
        data.display(),
        venv().display()
    );
    for name in ["eyes", "coder"] {
        toml.push_str(&format!(
            "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\nvision = {}\n",
            up.base_url(),
            vision && name == "eyes"
        ));
    }
    if vision {
        toml.push_str(
            "[jobs]\nvision_model = \"eyes\"\nreasoning_model = \"coder\"\ncode_model = \"coder\"\n",
        );
    }
    serve_in_process(&toml).await
}

async fn fake(script: Value) -> FakeUpstream {
    let up = FakeUpstream::start().await.unwrap();
    for (model, replies) in script.as_object().unwrap() {
        up.script_model(
            model,
            replies
                .as_array()
                .unwrap()
                .iter()
                .map(|r| hearth_testkit::scripted(r).unwrap()),
        );
    }
    up
}

/// Runs `hearth` with `args` (off the runtime: the server runs on it).
async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> (i32, String, String) {
    let mut cmd = hearth();
    cmd.args(&args).envs(env);
    common::run_blocking(cmd, None).await
}

/// Checks `out` against snapshot `name`, with what varies from run to run (job ids,
/// the port, times) redacted.
fn snapshot(name: &str, out: &str, base: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[id]",
    );
    settings.add_filter(r" in \d+\.\d s", " in [time]");
    let out = out.replace(base, "http://[server]");
    settings.bind(|| {
        insta::assert_snapshot!(name, out);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_waits_and_lists_the_files() {
    let up = fake(json!({
        "eyes": ["A table: (1, 3), (2, 1)."],
        "coder": ["Write them as CSV.", format!("```python\n{TABLE}\n```")],
    }))
    .await;
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &up, true).await;
    let image = data.path().join("table.png");
    std::fs::write(&image, PNG).unwrap();
    let (code, out, err) = run(
        vec![
            "jobs".into(),
            "submit".into(),
            image.display().to_string(),
            "--prompt".into(),
            "extract the table as CSV".into(),
            "--server".into(),
            base.clone(),
            "--wait".into(),
        ],
        vec![("HEARTH_API_KEY", KEY.into())],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    snapshot("submit_wait_succeeded", &out, &base);
    // The URLs it lists serve the files.
    let url = out
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.ends_with("/table.csv")))
        .unwrap();
    let csv = reqwest::Client::new()
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, "x,y\n1,3\n2,1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_says_why_and_exits_1() {
    let up = fake(json!({})).await;
    let data = tempfile::tempdir().unwrap();
    let (base, _stop) = serve(data.path(), &up, false).await;
    let image = data.path().join("chart.png");
    std::fs::write(&image, PNG).unwrap();
    let submit = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "jobs".into(),
            "submit".into(),
            image.display().to_string(),
            "--server".into(),
            base.clone(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    // Without --wait: the id alone, for scripts.
    let (code, out, err) = run(submit(&[]), vec![("HEARTH_API_KEY", KEY.into())]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().len(), 36, "{out}");
    // With --wait: the step it failed at, and why, in plain words.
    let (code, out, err) = run(submit(&["--wait"]), vec![("HEARTH_API_KEY", KEY.into())]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    snapshot("submit_wait_failed", &out, &base);
    // No key: the server's refusal, with what to do.
    let (code, out, err) = run(submit(&[]), vec![]).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err.trim(),
        "error: missing API key: send `Authorization: Bearer YOUR_KEY` (pass --api-key KEY or set HEARTH_API_KEY)"
    );
    // Not an image.
    std::fs::write(&image, b"%PDF-1.7\n").unwrap();
    let (code, _, err) = run(submit(&["--api-key", KEY]), vec![]).await;
    assert_eq!(code, 1);
    assert!(err.contains("PDF document"), "{err}");
}
