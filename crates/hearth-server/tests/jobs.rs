//! `/api/jobs` over a real socket: the whole server (as `hearth serve` builds it:
//! keys, the gateway, the store, the job workers) on a loopback port, the models
//! played by the fake upstream from a script per model, and the real sandbox (ruff,
//! bandit and the script itself, in the venv `make sandbox-venv` builds).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_config::{Config, MapEnv};
use hearth_testkit::FakeUpstream;
use serde_json::{Value, json};

mod log_root;

const VISION: &str = "vision-m";
const PLANNER: &str = "planner";
const CODER: &str = "coder";

const ALICE: &str = "sk-alice-123";
const BOB: &str = "sk-bob-456";
const ADMIN: &str = "sk-admin-789";

/// A 1×1 PNG.
const PNG: [u8; 70] = [
    0x89, 0x50, 0x4e, 0x47, 0xd, 0xa, 0x1a, 0xa, 0x0, 0x0, 0x0, 0xd, 0x49, 0x48, 0x44, 0x52, 0x0,
    0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x1, 0x8, 0x6, 0x0, 0x0, 0x0, 0x1f, 0x15, 0xc4, 0x89, 0x0, 0x0,
    0x0, 0xd, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f, 0xf, 0x0, 0x2,
    0x87, 0x1, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x0, 0x0, 0x0, 0x0, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// Writes a matplotlib chart and a hand-written SVG to /output.
const CHART_AND_SVG: &str = "import os\n\nimport matplotlib.pyplot as plt\n\nassert os.path.exists(\"/input/input.png\")\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.savefig(\"/output/chart.png\")\nwith open(\"/output/plot.svg\", \"w\") as f:\n    f.write('<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>')\nprint(\"chart written\")";

/// Writes a small CSV (no heavy imports: quick).
const CSV: &str = "with open(\"/output/table.csv\", \"w\") as f:\n    f.write(\"x,y\\n1,3\\n\")\nprint(\"table written\")";

fn script(code: &str) -> String {
    format!("Here is the script:\n\n```python\n{code}\n```\n")
}

/// The venv `make sandbox-venv` builds (with ruff and bandit).
fn venv() -> PathBuf {
    let path = std::env::var_os("HEARTH_SANDBOX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-sandbox"));
    assert!(
        path.join("bin/ruff").exists(),
        "sandbox venv with ruff and bandit missing at {} — run `make sandbox-venv`",
        path.display()
    );
    path
}

/// The fake upstream playing each model from its script (model → replies).
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

fn models(code: &[&str]) -> Value {
    json!({
        VISION: ["A line chart with three points: (1, 3), (2, 1), (3, 2)."],
        PLANNER: ["1. Hard-code the points. 2. Plot them. 3. Save the chart."],
        CODER: code.iter().map(|c| script(c)).collect::<Vec<_>>(),
    })
}

/// How many requests named `model`.
fn asked(up: &FakeUpstream, model: &str) -> usize {
    up.received()
        .iter()
        .filter(|r| r.body["model"] == model)
        .count()
}

struct Hearth {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), hearth_server::RunError>>,
}

impl Hearth {
    /// The server with three keys (alice, bob, an admin) and the three models on
    /// `up`, its store in `data`.
    async fn start(data: &std::path::Path, up: &FakeUpstream) -> Hearth {
        Hearth::start_with(data, up, "", "").await
    }

    /// As [`Hearth::start`], with `jobs` added to `[jobs]` and `extra` (tables) at
    /// the end.
    async fn start_with(
        data: &std::path::Path,
        up: &FakeUpstream,
        jobs: &str,
        extra: &str,
    ) -> Hearth {
        log_root::install("jobs");
        let mut toml = format!(
            "[server]\nshutdown_grace_secs = 1\nworkers = 2\n[storage]\ndata_dir = \"{}\"\n[sandbox]\nvenv = \"{}\"\n",
            data.display(),
            venv().display()
        );
        for (name, key, admin) in [
            ("alice", ALICE, false),
            ("bob", BOB, false),
            ("root", ADMIN, true),
        ] {
            toml.push_str(&format!(
                "[[keys]]\nname = \"{name}\"\nkey = \"{key}\"\nadmin = {admin}\n"
            ));
        }
        for name in [VISION, PLANNER, CODER] {
            toml.push_str(&format!(
                "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\nvision = {}\n",
                up.base_url(),
                name == VISION
            ));
        }
        toml.push_str(&format!(
            "[jobs]\nvision_model = \"{VISION}\"\nreasoning_model = \"{PLANNER}\"\ncode_model = \"{CODER}\"\n{jobs}\n[jobs.limits]\nmemory_mb = 512\ntimeout_secs = 30\n{extra}"
        ));
        Hearth::serve(hearth_config::load_str(&toml, "test.toml", &MapEnv::default()).unwrap())
            .await
    }

    async fn serve(config: Config) -> Hearth {
        let server = hearth_server::Server::build(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = rx.await;
        }));
        Hearth {
            base,
            http: reqwest::Client::new(),
            stop: Some(tx),
            task,
        }
    }

    /// Stops it as `hearth serve` does at SIGTERM, and waits until it has.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `method path` as `key`: the status and the body as JSON (or a string).
    async fn call(&self, key: &str, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(key, reqwest::Method::GET, path).await
    }

    /// Posts a multipart body of `parts` as `key`.
    async fn upload(&self, key: &str, parts: &[Part<'_>]) -> (u16, Value) {
        let (ctype, body) = multipart(parts);
        let resp = self
            .http
            .post(self.url("/api/jobs"))
            .bearer_auth(key)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        (status, v)
    }

    /// Submits `image` with `prompt` as alice; the job.
    async fn submit(&self, image: &[u8], prompt: &str) -> Value {
        let (status, job) = self
            .upload(
                ALICE,
                &[
                    Part::file("image", "whiteboard.png", "image/png", image),
                    Part::text("prompt", prompt),
                ],
            )
            .await;
        assert_eq!(status, 201, "{job}");
        job
    }

    /// Polls the job (as alice) until `f` accepts it (at most 60 s).
    async fn wait(&self, id: &str, f: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, job) = self.get(ALICE, &format!("/api/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            if f(&job) {
                return job;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job still {} at step {}",
                job["status"],
                job["step"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finished(&self, id: &str) -> Value {
        self.wait(id, |j| {
            matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

struct Part<'a> {
    name: &'a str,
    file: Option<(&'a str, &'a str)>,
    bytes: &'a [u8],
}

impl<'a> Part<'a> {
    fn file(name: &'a str, file_name: &'a str, ctype: &'a str, bytes: &'a [u8]) -> Self {
        Part {
            name,
            file: Some((file_name, ctype)),
            bytes,
        }
    }
    fn text(name: &'a str, text: &'a str) -> Self {
        Part {
            name,
            file: None,
            bytes: text.as_bytes(),
        }
    }
}

/// A `multipart/form-data` body: its Content-Type and its bytes.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "hearth-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match p.file {
            Some((file_name, ctype)) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{file_name}\"\r\nContent-Type: {ctype}\r\n\r\n",
                    p.name
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", p.name).as_bytes(),
            ),
        }
        body.extend_from_slice(p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn assert_error(v: &Value, status: u16, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{v}");
    let e = &v["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string(),
        "OpenAI error shape: {v}"
    );
    let e = e.as_object().unwrap();
    assert!(e.contains_key("param") && e.contains_key("code"), "{v}");
    assert_eq!(e["code"], code, "{v}");
}

/// The steps as `kind:attempt:status`.
fn steps(job: &Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}:{}", s["kind"], s["attempt"], s["status"]).replace('"', ""))
        .collect()
}

// ---- tests --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_becomes_a_chart_over_http_with_its_steps_streamed() {
    let up = fake(models(&[CHART_AND_SVG])).await;
    let data = tempfile::tempdir().unwrap();
    let hearth = Hearth::start(data.path(), &up).await;
    let job = hearth.submit(&PNG, "plot these numbers").await;
    assert_eq!(job["object"], "job");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["owner"], "alice");
    let id = job["id"].as_str().unwrap().to_owned();

    // The events: the job as it is, every step as it starts and ends, log lines, the
    // end; then the stream closes.
    let resp = hearth
        .http
        .get(hearth.url(&format!("/api/jobs/{id}/events")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    let text = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the event stream ends with the job")
        .unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // The steps in order: those under way when the stream opened are in its first
    // event (the job as it was), the others come as they start.
    assert_eq!(events[0]["type"], "job", "{text}");
    let mut seen: Vec<(String, String)> = events[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].to_string(), s["kind"].to_string()))
        .collect();
    for e in events
        .iter()
        .filter(|e| e["type"] == "step" && e["status"] == "running")
    {
        let step = (e["step_id"].to_string(), e["kind"].to_string());
        if !seen.contains(&step) {
            seen.push(step);
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(_, k)| k.trim_matches('"')).collect();
    assert_eq!(kinds, ["vision", "plan", "code", "critic", "run"], "{text}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "log" && e["line"].as_str().unwrap().contains("chart written")),
        "the script's output is streamed: {text}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "job", "{text}");
    assert_eq!(last["status"], "succeeded", "{text}");
    let end = &events[events.len() - 2];
    assert_eq!(
        (end["type"].as_str(), end["status"].as_str()),
        (Some("status"), Some("succeeded"))
    );

    let (status, job) = hearth.get(ALICE, &format!("/api/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        steps(&job),
        [
            "vision:1:succeeded",
            "plan:1:succeeded",
            "code:1:succeeded",
            "critic:1:succeeded",
            "run:1:succeeded"
        ]
    );
    let files: Vec<(&str, &str)> = job["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["url"].as_str().unwrap()))
        .collect();
    let chart_url = format!("/api/jobs/{id}/files/chart.png");
    assert!(
        files.contains(&("chart.png", chart_url.as_str())),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.0 == "input.png"), "{files:?}");

    // The chart: a real PNG, shown inline.
    let resp = hearth
        .http
        .get(hearth.url(&chart_url))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-disposition"], "inline; filename=\"chart.png\"");
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000);

    // The SVG (with a script in it): a download, never rendered in our origin.
    let resp = hearth
        .http
        .get(hearth.url(&format!("/api/jobs/{id}/files/plot.svg")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "image/svg+xml");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"plot.svg\""
    );
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");

    // Listed, newest first; a missing file is a 404 in the OpenAI shape.
    let (_, list) = hearth.get(ALICE, "/api/jobs?limit=10").await;
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    let (status, v) = hearth
        .get(ALICE, &format!("/api/jobs/{id}/files/nope.png"))
        .await;
    assert_error(&v, status, 404, "file_not_found");
    hearth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_by_what_they_are_with_the_right_status() {
    let up = fake(json!({})).await;
    let data = tempfile::tempdir().unwrap();
    let hearth = Hearth::start(data.path(), &up).await;
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n";

    // A PDF, by its name and type as much as its bytes.
    let (status, v) = hearth
        .upload(
            ALICE,
            &[Part::file("image", "scan.pdf", "application/pdf", pdf)],
        )
        .await;
    assert_error(&v, status, 415, "unsupported_image_type");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("PDF") && message.contains("PNG, JPEG, WebP or GIF"),
        "{message}"
    );
    // A PDF that says it is a PNG.
    let (status, v) = hearth
        .upload(ALICE, &[Part::file("image", "chart.png", "image/png", pdf)])
        .await;
    assert_error(&v, status, 415, "unsupported_image_type");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("PDF"),
        "{v}"
    );
    // A header that declares 100000×100000 pixels (a decompression bomb).
    let mut bomb = PNG.to_vec();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let (status, v) = hearth
        .upload(ALICE, &[Part::file("image", "a.png", "image/png", &bomb)])
        .await;
    assert_error(&v, status, 400, "image_too_large");
    // Malformed multipart: the closing boundary never comes.
    let resp = hearth
        .http
        .post(hearth.url("/api/jobs"))
        .bearer_auth(ALICE)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_error(
        &resp.json().await.unwrap(),
        status,
        400,
        "invalid_multipart",
    );
    // Not multipart at all; no image; a field it does not know.
    let resp = hearth
        .http
        .post(hearth.url("/api/jobs"))
        .bearer_auth(ALICE)
        .json(&json!({"image": "x"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_error(
        &resp.json().await.unwrap(),
        status,
        415,
        "multipart_required",
    );
    let (status, v) = hearth.upload(ALICE, &[Part::text("prompt", "hi")]).await;
    assert_error(&v, status, 400, "missing_image");
    let (status, v) = hearth
        .upload(
            ALICE,
            &[
                Part::file("image", "a.png", "image/png", &PNG),
                Part::text("promt", "typo"),
            ],
        )
        .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("promt")),
        "{v}"
    );
    // Nothing of the above became a job.
    let (_, list) = hearth.get(ALICE, "/api/jobs").await;
    assert_eq!(list["data"], json!([]), "{list}");
    hearth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_max_upload_bytes_is_413() {
    let up = fake(json!({})).await;
    let data = tempfile::tempdir().unwrap();
    // 16 KiB: small enough to test cheaply; the body limit is this, the prompt's
    // limit and 64 KiB for the framing.
    let hearth = Hearth::start_with(
        data.path(),
        &up,
        "max_upload_bytes = 16384",
        "[limits]\nmax_message_bytes = 4096\n",
    )
    .await;
    // Within the body limit but over the image limit: the upload check says so.
    let mut big = PNG.to_vec();
    big.resize(20_000, 0);
    let (status, v) = hearth
        .upload(ALICE, &[Part::file("image", "big.png", "image/png", &big)])
        .await;
    assert_error(&v, status, 413, "upload_too_large");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("16384"),
        "{v}"
    );
    // Past the body limit: refused by its Content-Length before it is read.
    big.resize(200_000, 0);
    let (status, v) = hearth
        .upload(ALICE, &[Part::file("image", "big.png", "image/png", &big)])
        .await;
    assert_error(&v, status, 413, "upload_too_large");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[jobs] max_upload_bytes"),
        "{v}"
    );
    hearth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_belong_to_their_key_and_cancel_stops_them() {
    // The vision model never answers: the job stays at its first step until cancelled.
    let up = fake(json!({VISION: [{"stall": true}, {"stall": true}]})).await;
    let data = tempfile::tempdir().unwrap();
    let hearth = Hearth::start(data.path(), &up).await;
    let job = hearth.submit(&PNG, "").await;
    let id = job["id"].as_str().unwrap().to_owned();
    hearth
        .wait(&id, |j| j["step"] == "vision" && j["status"] == "running")
        .await;

    // Bob sees nothing of alice's job, and cannot touch it.
    for path in [
        format!("/api/jobs/{id}"),
        format!("/api/jobs/{id}/events"),
        format!("/api/jobs/{id}/files/input.png"),
    ] {
        let (status, v) = hearth.get(BOB, &path).await;
        assert_eq!(status, 404, "{path}: {v}");
    }
    for (method, path) in [
        (reqwest::Method::POST, format!("/api/jobs/{id}/cancel")),
        (reqwest::Method::POST, format!("/api/jobs/{id}/retry")),
        (reqwest::Method::DELETE, format!("/api/jobs/{id}")),
    ] {
        let (status, v) = hearth.call(BOB, method, &path).await;
        assert_error(&v, status, 404, "job_not_found");
    }
    let (_, list) = hearth.get(BOB, "/api/jobs").await;
    assert_eq!(list["data"], json!([]), "{list}");
    // No key at all: 401.
    let resp = hearth
        .http
        .get(hearth.url("/api/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // The admin sees it.
    let (status, v) = hearth.get(ADMIN, &format!("/api/jobs/{id}")).await;
    assert_eq!((status, v["owner"].as_str()), (200, Some("alice")), "{v}");
    // A running job can be neither retried nor deleted.
    let (status, v) = hearth
        .call(
            ALICE,
            reqwest::Method::POST,
            &format!("/api/jobs/{id}/retry"),
        )
        .await;
    assert_error(&v, status, 409, "job_conflict");
    let (status, v) = hearth
        .call(ALICE, reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    assert_error(&v, status, 409, "job_conflict");

    // Alice cancels it: the model call is dropped, the job ends cancelled.
    let (status, v) = hearth
        .call(
            ALICE,
            reqwest::Method::POST,
            &format!("/api/jobs/{id}/cancel"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let started = Instant::now();
    let job = hearth.finished(&id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Then it can be deleted.
    let (status, v) = hearth
        .call(ALICE, reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    assert_eq!((status, v["deleted"].as_bool()), (200, Some(true)), "{v}");
    let (status, _) = hearth.get(ALICE, &format!("/api/jobs/{id}")).await;
    assert_eq!(status, 404);
    let (status, v) = hearth.get(ALICE, "/api/jobs/not-a-uuid").await;
    assert_error(&v, status, 400, "invalid_id");
    // A cursor this server did not hand out: 400, as for conversations.
    let (status, v) = hearth.get(ALICE, "/api/jobs?cursor=garbage").await;
    assert_error(&v, status, 400, "invalid_cursor");
    hearth.stop().await;
}

/// A job is admitted against its key's requests per minute when submitted (before
/// its upload is read), and its model calls, never refused mid-job, count against
/// the key's tokens per minute: the key's next requests wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_count_against_their_keys_limits() {
    let up = fake(models(&[CSV])).await;
    let data = tempfile::tempdir().unwrap();
    // Every key: 2 requests and 10 tokens a minute (the fake reports 6 per call).
    let hearth = Hearth::start_with(
        data.path(),
        &up,
        "",
        "[limits]\ndefault_rpm = 2\ndefault_tpm = 10\n",
    )
    .await;
    let job = hearth.submit(&PNG, "").await;
    let id = job["id"].as_str().unwrap();
    let job = hearth.finished(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // Its three model calls used 18 tokens: alice is in debt, bob is not.
    let chat = |key: &'static str| {
        hearth
            .http
            .post(hearth.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": PLANNER, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    let refused = chat(ALICE).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_error(&v, 429, 429, "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens per minute"),
        "{v}"
    );
    let (status, v) = hearth
        .upload(ALICE, &[Part::file("image", "a.png", "image/png", &PNG)])
        .await;
    assert_error(&v, status, 429, "rate_limit_exceeded");
    // Requests per minute: bob's third submission in a minute is refused.
    for _ in 0..2 {
        let (status, v) = hearth
            .upload(BOB, &[Part::file("image", "a.png", "image/png", &PNG)])
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, v) = hearth
        .upload(BOB, &[Part::file("image", "a.png", "image/png", &PNG)])
        .await;
    assert_error(&v, status, 429, "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 requests per minute"),
        "{v}"
    );
    let (status, v) = hearth
        .call(BOB, reqwest::Method::POST, &format!("/api/jobs/{id}/retry"))
        .await;
    assert_error(&v, status, 429, "rate_limit_exceeded");
    hearth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_job_resumes_and_loses_nothing() {
    // The first code request never gets an answer; after the restart, the second
    // gets the script.
    let up = fake(json!({
        VISION: ["a table of two numbers"],
        PLANNER: ["write them as CSV"],
        CODER: [{"stall": true}, script(CSV)],
    }))
    .await;
    let data = tempfile::tempdir().unwrap();
    let hearth = Hearth::start(data.path(), &up).await;
    let job = hearth.submit(&PNG, "extract the table").await;
    let id = job["id"].as_str().unwrap().to_owned();
    hearth.wait(&id, |j| j["step"] == "code").await;
    while asked(&up, CODER) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hearth.stop().await;

    let hearth = Hearth::start(data.path(), &up).await;
    let job = hearth.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        steps(&job),
        [
            "vision:1:succeeded",
            "plan:1:succeeded",
            "code:1:interrupted",
            "code:1:succeeded",
            "critic:1:succeeded",
            "run:1:succeeded"
        ]
    );
    // Nothing that had ended was asked again, and the artifact is there.
    assert_eq!((asked(&up, VISION), asked(&up, PLANNER)), (1, 1));
    let resp = hearth
        .http
        .get(hearth.url(&format!("/api/jobs/{id}/files/table.csv")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(resp.text().await.unwrap(), "x,y\n1,3\n");
    hearth.stop().await;
}

// ---- the real embedded model as every step ---------------------------------------

/// The default SmolLM2 GGUF on the embedded engine as the only model (so every step
/// of a job), marked as reading images when `vision` (it does not).
async fn embedded(data: &std::path::Path, vision: bool) -> Hearth {
    let toml = format!(
        "[server]\nshutdown_grace_secs = 1\n[storage]\ndata_dir = \"{}\"\n[sandbox]\nvenv = \"{}\"\n[[models]]\nname = \"smollm2-135m\"\nbackend = \"embedded\"\npath = \"{}\"\ncontext = 2048\nparallel = 1\nvision = {vision}\n",
        data.display(),
        venv().display(),
        hearth_testkit::test_model_path().display()
    );
    let hearth =
        Hearth::serve(hearth_config::load_str(&toml, "test.toml", &MapEnv::default()).unwrap())
            .await;
    // Loaded: a request before would be answered 503 `model_loading`.
    let start = Instant::now();
    while hearth.get("", "/ready").await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the model did not load"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hearth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_model_as_every_step_fails_at_vision_at_once() {
    let data = tempfile::tempdir().unwrap();
    let hearth = embedded(data.path(), false).await;
    let started = Instant::now();
    let id = hearth.submit(&PNG, "plot these numbers").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = hearth.finished(&id).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (
            job["status"].as_str(),
            job["step"].as_str(),
            job["error_code"].as_str()
        ),
        (Some("failed"), Some("vision"), Some("vision_unsupported")),
        "{job}"
    );
    assert_eq!(steps(&job), ["vision:1:failed"]);
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("`smollm2-135m` cannot read images") && error.contains("vision_model"),
        "{error}"
    );
    hearth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_engine_answers_images_with_a_clear_400() {
    let data = tempfile::tempdir().unwrap();
    // Marked `vision = true` wrongly: the image reaches the engine, which says no.
    let hearth = embedded(data.path(), true).await;
    let resp = hearth
        .http
        .post(hearth.url("/v1/chat/completions"))
        .json(&json!({"model": "smollm2-135m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What does this chart show?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_error(&v, status, 400, "unsupported_content");
    assert_eq!(v["error"]["param"], "messages[0].content[1]", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("model `smollm2-135m` cannot see images")
            && message.contains("mmproj")
            && message.contains("send images to a vision model"),
        "{message}"
    );

    // A job: it fails at the vision step with the engine's words, and does not hang.
    let started = Instant::now();
    let id = hearth.submit(&PNG, "").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = hearth.finished(&id).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (job["status"].as_str(), job["step"].as_str()),
        (Some("failed"), Some("vision")),
        "{job}"
    );
    assert!(
        job["error"].as_str().unwrap().contains("cannot see images"),
        "{job}"
    );
    hearth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_and_runs_code_the_user_edited() {
    let raises = "raise SystemExit(3)";
    let up = fake(models(&[raises, raises])).await;
    let data = tempfile::tempdir().unwrap();
    let hearth = Hearth::start_with(data.path(), &up, "max_repairs = 0", "").await;
    let id = hearth.submit(&PNG, "").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = hearth.finished(&id).await;
    assert_eq!(
        (job["status"].as_str(), job["step"].as_str()),
        (Some("failed"), Some("run")),
        "{job}"
    );

    // Retried: from the failed step, with one more repair (which raises too).
    let (status, v) = hearth
        .call(
            ALICE,
            reqwest::Method::POST,
            &format!("/api/jobs/{id}/retry"),
        )
        .await;
    assert_eq!((status, v["status"].as_str()), (200, Some("queued")), "{v}");
    let job = hearth.finished(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(asked(&up, CODER), 2);

    // The user's own script: critic and run again, no model asked.
    let resp = hearth
        .http
        .put(hearth.url(&format!("/api/jobs/{id}/code")))
        .bearer_auth(ALICE)
        .json(&json!({"code": CSV}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let job = hearth.finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(asked(&up, CODER), 2);
    assert!(
        job["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "table.csv"),
        "{job}"
    );
    // Bad bodies are 400s in the OpenAI shape.
    let resp = hearth
        .http
        .put(hearth.url(&format!("/api/jobs/{id}/code")))
        .bearer_auth(ALICE)
        .json(&json!({"script": CSV}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("script")),
        "{v}"
    );
    hearth.stop().await;
}
