//! Managed model servers (`[models.launch]`) run as real processes: the test kit's
//! `fake-upstream` started by Hearth with flags for a slow start, a crash, an exit
//! at start, a child of its own, or a deaf ear to SIGTERM.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Gateway, chat_body, error_of, upstream_model};

/// A managed model named `name` running the fake with `flags`, plus `extra` lines in
/// its `[models.launch]`.
fn managed(name: &str, flags: &[&str], extra: &str) -> String {
    let exe = hearth_testkit::fake_upstream_exe();
    let mut argv = vec![exe.display().to_string(), "--port".into(), "{port}".into()];
    argv.extend(flags.iter().map(|f| (*f).to_owned()));
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nfirst_byte_timeout_secs = 20\n\
         [models.launch]\ncommand = [{}]\nready_timeout = \"20s\"\nstop_timeout = \"2s\"\n{extra}\n",
        argv.join(", ")
    )
}

async fn model(gw: &Gateway, name: &str) -> Value {
    let v = gw.get_json("/v1/models").await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no model {name} in {v}"))
}

/// Polls `/v1/models` until model `name` satisfies `f` (at most `secs`).
async fn wait_model(gw: &Gateway, name: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let m = model(gw, name).await;
        if f(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "model {name} never got there: {m:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

use hearth_testkit::pid_alive as alive;

async fn wait_gone(pids: &[u32], secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes left: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[tokio::test]
async fn a_request_during_start_waits_and_ready_waits_for_the_eager_server() {
    let gw = Gateway::start(&managed(
        "m",
        &["--start-delay-ms", "300", "--load-delay-ms", "1200"],
        "",
    ))
    .await;
    let first = model(&gw, "m").await;
    assert!(
        matches!(first["status"].as_str(), Some("starting" | "loading")),
        "{first}"
    );
    assert_eq!(first["engine"]["start"], "eager");
    assert_eq!(gw.get("/ready").send().await.unwrap().status(), 503);

    // Sent while it starts: it waits in the model's queue and is answered.
    let chat = {
        let client = gw.client.clone();
        let url = gw.url("/v1/chat/completions");
        tokio::spawn(async move { client.post(url).json(&chat_body("m", false)).send().await })
    };
    let loading = wait_model(&gw, "m", 10, |m| m["status"] != "starting").await;
    assert_eq!(
        loading["status"], "loading",
        "answers HTTP, /health still 503"
    );
    assert!(loading["engine"]["pid"].is_u64());
    let resp = chat.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");

    let ready = model(&gw, "m").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["engine"]["attempt"], 1);
    assert_eq!(ready["engine"]["restarts"], 0);
    let ready_check: Value = gw.get_json("/ready").await;
    assert_eq!(ready_check["status"], "ready");
    assert_eq!(ready_check["models"][0]["engine"]["state"], "ready");

    // Its output is in its own log file.
    let log = ready["engine"]["log"].as_str().unwrap().to_owned();
    let dir = Path::new(&log).parent().unwrap();
    let text: String = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        text.contains("stderr fake-upstream: loading model"),
        "{text}"
    );
    assert!(text.contains("hearth ready in"), "{text}");

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("hearth_engine_state{model=\"m\",state=\"ready\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_crash_is_a_502_then_the_server_restarts_and_traffic_resumes() {
    let gw = Gateway::start(&managed("m", &["--crash-after", "2"], "")).await;
    let ready = wait_model(&gw, "m", 20, |m| m["status"] == "ready").await;
    let pid = ready["engine"]["pid"].as_u64().unwrap();
    assert_eq!(gw.chat("m", false).await.status(), 200);

    // The second request is received, and the server dies before answering.
    let (status, err) = error_of(gw.chat("m", false).await).await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["code"], "engine_crashed");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("exited with status 1"),
        "{err}"
    );

    let restarting = wait_model(&gw, "m", 10, |m| m["status"] != "ready").await;
    assert_eq!(restarting["status"], "restarting", "{restarting}");
    assert_eq!(restarting["engine"]["restarts"], 1);
    assert!(
        restarting["engine"]["stderr_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "fake-upstream: crashing on request 2"),
        "{restarting}"
    );
    let again = wait_model(&gw, "m", 20, |m| m["status"] == "ready").await;
    assert_ne!(again["engine"]["pid"].as_u64().unwrap(), pid);
    assert_eq!(again["engine"]["attempt"], 2);
    assert_eq!(gw.chat("m", true).await.status(), 200);
    assert!(!alive(u32::try_from(pid).unwrap()));
}

#[tokio::test]
async fn a_server_that_keeps_failing_is_failed_with_its_stderr_and_the_others_still_serve() {
    let other = hearth_testkit::FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("run/status");
    let toml = format!(
        "[server]\nstatus_file = {:?}\n{}{}",
        status_file.display().to_string(),
        managed(
            "broken",
            &[
                "--exit-at-start",
                "3",
                "--message",
                "CUDA error: out of memory"
            ],
            "max_failures = 2",
        ),
        upstream_model("other", &other.base_url(), "")
    );
    let mut gw = Gateway::start(&toml).await;
    let failed = wait_model(&gw, "broken", 20, |m| m["status"] == "failed").await;
    let engine = &failed["engine"];
    assert!(
        engine["reason"]
            .as_str()
            .unwrap()
            .contains("exited with status 3 before it was ready (2 failures in a row)"),
        "{failed}"
    );
    assert!(
        engine["stderr_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "CUDA error: out of memory"),
        "{failed}"
    );
    assert_eq!(engine["restarts"], 1);
    assert!(engine.get("pid").is_none());

    let (status, err) = error_of(gw.chat("broken", false).await).await;
    assert_eq!(status, 503);
    assert_eq!(err["code"], "model_failed");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("exited with status 3")
    );
    // Hearth stays up for the other model; not ready, as an eager server failed.
    assert_eq!(gw.chat("other", false).await.status(), 200);
    assert_eq!(gw.get("/ready").send().await.unwrap().status(), 503);

    // The login banner's file says so, in words, with what to do.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&status_file).unwrap_or_default();
        if text.contains("broken  failed") {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains(": serving\n"), "{text}");
    assert!(
        text.contains("exited with status 3 before it was ready"),
        "{text}"
    );
    assert!(text.contains("next: read its log ("), "{text}");
    assert!(text.contains("other  ready"), "{text}");
    gw.shutdown();
    gw.task.take().unwrap().await.unwrap().unwrap();
    let text = std::fs::read_to_string(&status_file).unwrap();
    assert!(text.contains(": stopped"), "{text}");
}

#[tokio::test]
async fn a_request_waits_no_longer_than_the_first_byte_timeout_and_a_start_no_longer_than_ready_timeout()
 {
    let toml = managed("slow", &["--load-delay-ms", "60000"], "max_failures = 1")
        .replace(
            "first_byte_timeout_secs = 20",
            "first_byte_timeout_secs = 1",
        )
        .replace("ready_timeout = \"20s\"", "ready_timeout = \"3s\"");
    let gw = Gateway::start(&toml).await;
    wait_model(&gw, "slow", 10, |m| m["status"] == "loading").await;
    let started = std::time::Instant::now();
    let resp = gw.chat("slow", false).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(resp.headers()["retry-after"], "2");
    let (status, err) = error_of(resp).await;
    assert_eq!(status, 503);
    assert_eq!(err["code"], "model_loading");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("is still loading (not ready after 1 s)"),
        "{err}"
    );

    let failed = wait_model(&gw, "slow", 10, |m| m["status"] == "failed").await;
    let reason = failed["engine"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("not ready within 3 s (ready_timeout): `/v1/models` never answered 200"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_missing_program_fails_saying_what_to_do() {
    let gw = Gateway::start(
        "[[models]]\nname = \"v\"\nbackend = \"upstream\"\n[models.launch]\n\
         preset = \"vllm\"\nprogram = \"/nonexistent/vllm\"\nmodel = \"org/m\"\nmax_failures = 1\n",
    )
    .await;
    let failed = wait_model(&gw, "v", 10, |m| m["status"] == "failed").await;
    let reason = failed["engine"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot run `/nonexistent/vllm`: not found"),
        "{reason}"
    );
    assert!(reason.contains("hearth doctor"), "{reason}");
}

#[tokio::test]
async fn stop_kills_the_whole_process_group_even_a_server_deaf_to_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let f = file.display().to_string();
    let mut gw = Gateway::start(&format!(
        "{}{}",
        managed("polite", &["--spawn-child", "--pid-file", &f], ""),
        managed(
            "deaf",
            &["--ignore-sigterm", "--spawn-child", "--pid-file", &f],
            ""
        )
    ))
    .await;
    wait_model(&gw, "polite", 20, |m| m["status"] == "ready").await;
    wait_model(&gw, "deaf", 20, |m| m["status"] == "ready").await;
    let all = pids(&file);
    assert_eq!(all.len(), 4, "two servers and a child each: {all:?}");
    assert!(all.iter().all(|&p| alive(p)));

    gw.shutdown();
    let started = std::time::Instant::now();
    gw.task.take().unwrap().await.unwrap().unwrap();
    // The deaf one got SIGKILL after its 2 s stop_timeout; nothing is left.
    assert!(started.elapsed() >= Duration::from_secs(2));
    wait_gone(&all, 5).await;
}

#[tokio::test]
async fn an_on_demand_server_starts_on_the_first_request_and_stops_when_idle() {
    let other = hearth_testkit::FakeUpstream::start().await.unwrap();
    let toml = format!(
        "{}{}",
        managed(
            "lazy",
            &["--load-delay-ms", "300"],
            "start = \"on_demand\"\nidle_stop = \"1s\""
        ),
        upstream_model("other", &other.base_url(), "")
    );
    let gw = Gateway::start(&toml).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = model(&gw, "lazy").await;
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["engine"]["start"], "on_demand");
    assert!(stopped["engine"].get("pid").is_none());
    // An on-demand server is not part of being ready.
    assert_eq!(gw.get("/ready").send().await.unwrap().status(), 200);

    assert_eq!(gw.chat("lazy", false).await.status(), 200);
    let up = model(&gw, "lazy").await;
    assert_eq!(up["status"], "ready");
    let pid = u32::try_from(up["engine"]["pid"].as_u64().unwrap()).unwrap();

    let idle = wait_model(&gw, "lazy", 10, |m| m["status"] == "stopped").await;
    assert!(idle["engine"].get("pid").is_none());
    wait_gone(&[pid], 5).await;

    // And again on the next request.
    assert_eq!(gw.chat("lazy", true).await.status(), 200);
    assert_eq!(model(&gw, "lazy").await["engine"]["attempt"], 2);
}

/// llama.cpp's `llama-server` (`make -s llama-server-path`), given by
/// `HEARTH_TEST_LLAMA_SERVER`; `make test` builds it and requires it.
#[allow(clippy::print_stderr)] // a skip says why, in the test's output
fn llama_server() -> Option<String> {
    match std::env::var("HEARTH_TEST_LLAMA_SERVER") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("HEARTH_TEST_LLAMA_SERVER_REQUIRED").is_none(),
                "HEARTH_TEST_LLAMA_SERVER is required here: `make -s llama-server-path` gives it"
            );
            eprintln!(
                "skipped: set HEARTH_TEST_LLAMA_SERVER=$(make -s llama-server-path) to run the llama-server preset for real"
            );
            None
        }
    }
}

#[tokio::test]
async fn the_llama_server_preset_serves_the_default_model() {
    let Some(program) = llama_server() else {
        return;
    };
    let gguf = hearth_testkit::test_model_path();
    // One thread: the test runs beside others on a 2-core machine.
    let toml = format!(
        "[[models]]\nname = \"smol\"\nbackend = \"upstream\"\nmax_concurrency = 2\ncontext_length = 1024\n\
         responses_api = true\n\
         [models.launch]\npreset = \"llama-server\"\nprogram = {program:?}\nmodel = {:?}\n\
         extra_args = [\"-t\", \"1\"]\nready_timeout = \"120s\"\n",
        gguf.display().to_string()
    );
    let mut gw = Gateway::start(&toml).await;
    let ready = wait_model(&gw, "smol", 120, |m| m["status"] == "ready").await;
    let pid = u32::try_from(ready["engine"]["pid"].as_u64().unwrap()).unwrap();

    let body = serde_json::json!({
        "model": "smol",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 8,
    });
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{v}"
    );
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");

    let mut stream = body.clone();
    stream["stream"] = true.into();
    let resp = gw
        .post("/v1/chat/completions")
        .json(&stream)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let payloads = crate::harness::sse_payloads(resp).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert!(payloads.len() > 2, "{payloads:?}");

    // `responses_api = true`: /v1/responses goes to llama-server's own, and its
    // answer comes back as it sent it (its `completed_at`, which Hearth's
    // translation does not write), with the usage counted.
    let tokens_out = || async {
        let text = gw.metrics().await;
        text.lines()
            .find(|l| l.starts_with(r#"hearth_tokens_total{model="smol",direction="out"}"#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = tokens_out().await;
    let ask = serde_json::json!({"model": "smol", "input": "Say hi", "max_output_tokens": 6});
    let resp = gw.post("/v1/responses").json(&ask).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response", "{v}");
    assert!(v["completed_at"].is_u64(), "llama-server's own body: {v}");
    let out = v["usage"]["output_tokens"].as_u64().unwrap();
    assert!(out > 0, "{v}");
    assert!(
        !v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{v}"
    );
    assert_eq!(tokens_out().await, before + out);

    // Streamed: its events as they came, `event:` lines and all, ending at
    // `response.completed` (this API sends no `[DONE]`).
    let mut ask_stream = ask.clone();
    ask_stream["stream"] = true.into();
    let resp = gw
        .post("/v1/responses")
        .json(&ask_stream)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(
        events[0].starts_with("event: response.created\ndata: "),
        "{text}"
    );
    assert!(
        text.contains("event: response.output_text.delta\n"),
        "{text}"
    );
    let last = events.last().unwrap();
    assert!(
        last.starts_with("event: response.completed\ndata: "),
        "{text}"
    );
    let done: Value = serde_json::from_str(last.split_once("data: ").unwrap().1).unwrap();
    let out = done["response"]["usage"]["output_tokens"].as_u64().unwrap();
    assert!(out > 0, "{done}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(
        tokens_out().await,
        before + v["usage"]["output_tokens"].as_u64().unwrap() + out
    );

    // What only the upstream can answer goes to it: llama-server says itself that
    // it keeps no responses (the translation would refuse it in Hearth's words).
    let mut chained = ask.clone();
    chained["previous_response_id"] = "resp_earlier".into();
    let resp = gw
        .post("/v1/responses")
        .json(&chained)
        .send()
        .await
        .unwrap();
    let (status, e) = crate::harness::error_of(resp).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("llama.cpp does not support"),
        "{e}"
    );

    // Its loader's lines are in its log: one context per slot (1024 × 2).
    let log = ready["engine"]["log"].as_str().unwrap().to_owned();
    let dir = Path::new(&log).parent().unwrap();
    let text: String = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(text.contains("-c 2048 -np 2"), "{text}");

    gw.shutdown();
    gw.task.take().unwrap().await.unwrap().unwrap();
    wait_gone(&[pid], 5).await;
}

#[tokio::test]
async fn ready_without_a_key_shows_an_engines_state_not_its_stderr() {
    let gw = Gateway::start_with_env(
        &managed(
            "broken",
            &[
                "--exit-at-start",
                "3",
                "--message",
                "secret path /home/me/model",
            ],
            "max_failures = 1",
        ),
        hearth_config::MapEnv::new([("HEARTH_API_KEYS", "sk-test-12345678")]),
    )
    .await;
    // Behind the key, /v1/models has the reason and the stderr lines.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = gw
            .get("/v1/models")
            .bearer_auth("sk-test-12345678")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["data"][0]["status"] == "failed" {
            assert!(v.to_string().contains("secret path"), "{v}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let ready = gw.get("/ready").send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["models"][0]["engine"]["state"], "failed");
    assert!(!ready.to_string().contains("secret path"), "{ready}");
}
