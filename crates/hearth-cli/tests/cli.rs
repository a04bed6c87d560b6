//! The real `hearth` binary: help, config check, refusing unsafe binds, and a
//! serve round trip with the access log and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{Served, hearth, run};

#[test]
fn help_lists_commands_and_examples() {
    let (code, out, _) = run(hearth().arg("--help"));
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn serve_help_documents_flags() {
    let (code, out, _) = run(hearth().args(["serve", "--help"]));
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

/// `hearth --version`: the version, the commit it was built from (this checkout's
/// HEAD, or `HEARTH_BUILD_COMMIT` when the build set it) and its build features.
#[test]
fn version_names_commit_and_features() {
    let (code, out, _) = run(hearth().arg("--version"));
    assert_eq!(code, 0);
    let (_, rest) = out.split_once(" (commit ").expect("no commit in --version");
    let commit = rest.split(',').next().unwrap();
    // What the binary's build saw: this test is compiled in the same environment.
    let expected = match option_env!("HEARTH_BUILD_COMMIT") {
        Some(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    assert_eq!(commit, expected, "--version printed {out:?}");
    // The short flag prints the same line.
    assert_eq!(run(hearth().arg("-V")).1, out);
    // Built without `--features cuda`, as `make test` builds it.
    let redacted = out
        .replacen(env!("CARGO_PKG_VERSION"), "[version]", 1)
        .replacen(commit, "[commit]", 1);
    insta::assert_snapshot!(redacted, @"hearth [version] (commit [commit], features: cpu)");
}

#[test]
fn config_check_reports_every_problem_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"0.0.0.0:8080\"\n\n[[models]]\nname = \"coder\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:8000/v1\"\nfallbacks = [\"ghost\"]\n",
    )
    .unwrap();
    let (code, out, err) =
        run(hearth()
            .current_dir(dir.path())
            .args(["config", "check", "hearth.toml"]));
    assert_eq!(code, 1);
    assert_eq!(out, "");
    insta::assert_snapshot!(err);
}

#[test]
fn config_check_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hearth.toml"), "[server]\nport = 8080\n").unwrap();
    let (code, _, err) =
        run(hearth()
            .current_dir(dir.path())
            .args(["config", "check", "hearth.toml"]));
    assert_eq!(code, 1);
    insta::assert_snapshot!(err);
}

#[test]
fn config_check_ok() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hearth.toml"),
        "[[models]]\nname = \"coder\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
    )
    .unwrap();
    let (code, out, _) =
        run(hearth()
            .current_dir(dir.path())
            .args(["config", "check", "hearth.toml"]));
    assert_eq!(code, 0);
    insta::assert_snapshot!(out, @"ok: 1 model(s) (coder), listen 127.0.0.1:8080, 0 API key(s)");
}

#[test]
fn config_check_shows_the_command_of_each_managed_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hearth.toml"),
        "[[models]]\nname = \"mistral-7b\"\nbackend = \"upstream\"\nmax_concurrency = 1\n[models.launch]\npreset = \"vllm\"\nmodel = \"mistralai/Mistral-7B-Instruct-v0.3\"\nmax_model_len = 8192\n",
    )
    .unwrap();
    let (code, out, _) =
        run(hearth()
            .current_dir(dir.path())
            .args(["config", "check", "hearth.toml"]));
    assert_eq!(code, 0);
    insta::assert_snapshot!(out, @r"
    ok: 1 model(s) (mistral-7b), listen 127.0.0.1:8080, 0 API key(s)
    launch mistral-7b: vllm serve mistralai/Mistral-7B-Instruct-v0.3 --host 127.0.0.1 --port {port} --served-model-name mistral-7b --max-model-len 8192 --max-num-seqs 1
    ");
}

#[test]
fn config_check_names_a_field_of_the_other_backend_and_warns_of_unknown_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hearth.toml"),
        "[[models]]\nname = \"coder\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:8000/v1\"\nparallel = 2\n",
    )
    .unwrap();
    let (code, out, err) =
        run(hearth()
            .current_dir(dir.path())
            .args(["config", "check", "hearth.toml"]));
    assert_eq!((code, out.as_str()), (1, ""));
    insta::assert_snapshot!(err, @r#"error: hearth.toml:1: models[0]: `parallel` applies only to `backend = "embedded"` models, and model `coder` has `backend = "upstream"`: remove `parallel` or change `backend`"#);

    std::fs::write(
        dir.path().join("hearth.toml"),
        "[[models]]\nname = \"coder\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
    )
    .unwrap();
    let (code, out, err) = run(hearth()
        .current_dir(dir.path())
        .env("HEARTH_SERVR_LISTEN", "0.0.0.0:1")
        .args(["config", "check", "hearth.toml"]));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ok: 1 model(s) (coder), listen 127.0.0.1:8080"),
        "{out}"
    );
    insta::assert_snapshot!(err, @"warning: environment: HEARTH_SERVR_LISTEN: Hearth does not read this variable; it is ignored; did you mean HEARTH_SERVER_LISTEN?");
}

#[test]
fn non_loopback_bind_without_keys_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        run(hearth()
            .current_dir(dir.path())
            .args(["serve", "--listen", "0.0.0.0:0"]));
    assert_eq!(code, 2);
    assert!(err.contains("requires at least one API key"), "{err}");
    assert!(
        err.contains("HEARTH_API_KEYS"),
        "says how to add one: {err}"
    );
}

/// The day's log file under `dir/data/logs` (named `hearth.<date>.log`): its text,
/// and its access lines.
fn access_log(dir: &std::path::Path) -> (String, Vec<serde_json::Value>) {
    let file = std::fs::read_dir(dir.join("data/logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("hearth.") && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let access = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "hearth::access")
        .collect();
    (text, access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_requests_and_shuts_down_gracefully() {
    let up = hearth_testkit::FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[[keys]]\nname = \"alice\"\nkey_env = \"ALICE_KEY\"\n[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\napi_key_env = \"UP_KEY\"\n",
            dir.path().join("data").display(),
            up.base_url()
        ),
    )
    .unwrap();
    let served = Served::start(
        hearth()
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env("ALICE_KEY", "sk-alice-secret-value")
            .env("UP_KEY", "sk-upstream-secret-value"),
    );
    let base = served.base.clone();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth("sk-alice-secret-value")
        .header("x-request-id", "cli-test-req-1")
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "cli-test-req-1");
    r.bytes().await.unwrap();
    assert_eq!(
        up.received()[0].authorization.as_deref(),
        Some("Bearer sk-upstream-secret-value")
    );
    // Error paths with keys in the header: a wrong key, a right one without its
    // scheme. Neither answer nor log may show them.
    for auth in ["Bearer sk-wrong-secret-value", "sk-alice-secret-value"] {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .header("authorization", auth)
            .json(&serde_json::json!({"model": "m", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("secret-value"), "{body}");
    }

    let (code, stdout) = served.stop();
    common::keep_logs(dir.path(), "serve_logs_requests");
    assert_eq!(code, Some(0), "clean exit on SIGTERM");

    let (text, access) = access_log(dir.path());
    let access: Vec<serde_json::Value> = access
        .into_iter()
        .filter(|v| v["request_id"] == "cli-test-req-1")
        .collect();
    assert_eq!(access.len(), 1, "one line per request:\n{text}");
    let line = &access[0];
    assert_eq!(line["key_id"], "alice");
    assert_eq!(line["model"], "m");
    assert_eq!(line["backend"], "upstream");
    assert_eq!(line["status"], 200);
    assert_eq!(line["prompt_tokens"], 5);
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(line["ttft_ms"].as_f64().is_some());
    assert!(stdout.contains("cli-test-req-1"), "also on stdout");
    for secret in [
        "sk-alice-secret-value",
        "sk-upstream-secret-value",
        "sk-wrong-secret-value",
    ] {
        assert!(
            !text.contains(secret) && !stdout.contains(secret),
            "secrets never logged"
        );
    }
    assert!(
        text.contains("shutting down"),
        "shutdown is logged and flushed"
    );
}

/// `server.workers` event loops share the socket: the threads exist, requests on
/// many connections at once are all answered, and SIGTERM drains every loop's
/// streams before a clean exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_runs_the_configured_workers_and_drains_them_all() {
    let up = hearth_testkit::FakeUpstream::start().await.unwrap();
    up.set_default(hearth_testkit::Behaviour::slow(
        "one two three four five six",
        6,
        Duration::from_millis(150),
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 3\n[storage]\ndata_dir = \"{}\"\n[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nmax_concurrency = 16\n",
            dir.path().join("data").display(),
            up.base_url()
        ),
    )
    .unwrap();
    let served = Served::start(hearth().args(["serve", "--config", config.to_str().unwrap()]));
    let base = served.base.clone();
    let start = Instant::now();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", served.child.id()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect();
    for name in ["hearth-http-1", "hearth-http-2"] {
        assert!(threads.iter().any(|t| t == name), "{name} in {threads:?}");
    }
    assert!(!threads.iter().any(|t| t == "hearth-http-3"), "{threads:?}");

    // Twelve streams, each on its own connection, all in flight at SIGTERM.
    let streams: Vec<_> = (0..12)
        .map(|_| {
            let url = format!("{base}/v1/chat/completions");
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let r = client
                    .post(url)
                    .json(&serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap()
            })
        })
        .collect();
    while up.active() < 12 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "streams did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for s in streams {
        let body = s.await.unwrap();
        assert!(
            body.contains(r#""finish_reason":"stop""#) && body.ends_with("data: [DONE]\n\n"),
            "every stream ends whole: {body}"
        );
    }
    let mut served = served;
    let status = tokio::task::spawn_blocking(move || served.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
}

/// Two Hearth processes on one data directory (two replicas on one SQLite file): the
/// second's start must not mark the first's streaming reply interrupted (it used
/// to: every start marked every unfinished reply), and the first's reply ends as
/// it should, seen from either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_leave_each_others_replies_alone() {
    let up = hearth_testkit::FakeUpstream::start().await.unwrap();
    // Three pieces two seconds apart: the first process writes nothing of its reply
    // for two seconds, while the second starts and looks.
    up.set_default(hearth_testkit::Behaviour::slow(
        "one two three",
        3,
        Duration::from_secs(2),
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"{}\"\n[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\n",
            dir.path().join("data").display(),
            up.base_url()
        ),
    )
    .unwrap();
    let first = Served::start(hearth().args(["serve", "--config", config.to_str().unwrap()]));
    let client = reqwest::Client::new();
    let api = |base: &str, path: &str| format!("{base}/api/hearth/conversations{path}");
    let conv: serde_json::Value = client
        .post(api(&first.base, ""))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = conv["id"].as_str().unwrap().to_owned();
    // The reply starts: its first piece came, so the reply is stored, streaming.
    let mut reply = client
        .post(api(&first.base, &format!("/{id}/messages")))
        .json(&serde_json::json!({"content": "count"}))
        .send()
        .await
        .unwrap();
    let mut events = String::new();
    while !events.contains(r#""type":"delta""#) {
        let chunk = reply.chunk().await.unwrap().expect("the reply ended early");
        events.push_str(std::str::from_utf8(&chunk).unwrap());
    }

    let second = Served::start(hearth().args(["serve", "--config", config.to_str().unwrap()]));
    let seen: serde_json::Value = client
        .get(api(&second.base, &format!("/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["messages"][1]["role"], "assistant");
    assert_eq!(
        seen["messages"][1]["finish_reason"],
        serde_json::Value::Null,
        "still streaming, as the second process sees it: {seen}"
    );

    while let Some(chunk) = reply.chunk().await.unwrap() {
        events.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(events.contains(r#""type":"done""#), "{events}");
    let seen: serde_json::Value = client
        .get(api(&second.base, &format!("/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["messages"][1]["finish_reason"], "stop", "{seen}");
    assert_eq!(seen["messages"][1]["content"], "one two three");
    assert_eq!(second.stop().0, Some(0));
    assert_eq!(first.stop().0, Some(0));
}

/// A managed model server outlives no `hearth serve` killed with SIGKILL (it gets
/// SIGKILL from the kernel: a parent-death signal), and a SIGTERM'd one stops it.
#[tokio::test]
async fn a_killed_hearth_leaves_no_model_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let config = dir.path().join("hearth.toml");
    let fake = hearth_testkit::fake_upstream_exe();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[[models]]\nname = \"m\"\nbackend = \"upstream\"\n\
             [models.launch]\ncommand = [{:?}, \"--port\", \"{{port}}\", \"--pid-file\", {:?}]\n",
            dir.path().join("data").display().to_string(),
            fake.display().to_string(),
            pids.display().to_string(),
        ),
    )
    .unwrap();
    async fn engine_pid(served: &Served) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: serde_json::Value = reqwest::get(format!("{}/v1/models", served.base))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["data"][0]["status"] == "ready" {
                return u32::try_from(v["data"][0]["engine"]["pid"].as_u64().unwrap()).unwrap();
            }
            assert!(Instant::now() < deadline, "never ready: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let gone = |pid: u32| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if !hearth_testkit::pid_alive(pid) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let served = Served::start(hearth().args(["serve", "--config", config.to_str().unwrap()]));
    let pid = engine_pid(&served).await;
    assert_eq!(
        std::fs::read_to_string(&pids).unwrap().trim(),
        pid.to_string()
    );
    served.kill();
    assert!(gone(pid), "the model server {pid} outlived a killed hearth");

    let served = Served::start(hearth().args(["serve", "--config", config.to_str().unwrap()]));
    let pid = engine_pid(&served).await;
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        gone(pid),
        "the model server {pid} outlived a stopped hearth"
    );
    assert!(log.contains("model server stopped"), "{log}");
}

/// `hearth deploy`: renderings from the example manifest, and a local status.
#[test]
fn deploy_renders_every_kind_and_reports_an_empty_host() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/gpu-vm.toml"
    );
    for kind in [
        "cloud-init",
        "stackscript",
        "install-sh",
        "systemd-unit",
        "systemd-env",
        "hearth-toml",
        "compose",
    ] {
        let (code, out, err) =
            run(hearth().args(["deploy", "render", kind, "--manifest", example]));
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(out.len() > 50, "{kind}: {out}");
    }
    let (_, cloud, _) = run(hearth().args(["deploy", "render", "cloud-init", "-m", example]));
    assert!(cloud.starts_with("#cloud-config\n"), "{cloud}");
    let (_, toml, _) = run(hearth().args(["deploy", "render", "hearth-toml", "-m", example]));
    assert!(
        toml.contains("[server.tls]\nmode = \"self-signed\""),
        "{toml}"
    );

    let (code, _, err) = run(hearth().args(["deploy", "render", "kubernetes", "-m", example]));
    assert_eq!(code, 2);
    assert!(
        err.contains("`kubernetes` is not a rendering; one of: cloud-init"),
        "{err}"
    );

    // Over SSH: a host that refuses the connection fails the apply, saying so,
    // and nothing is done.
    let dir = tempfile::tempdir().unwrap();
    let closed = hearth_testkit::ClosedPort::new();
    let port = closed.port();
    let manifest = dir.path().join("deploy.toml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(example).unwrap().replace(
            "address = \"203.0.113.10\"",
            &format!("address = \"127.0.0.1\"\nport = {port}"),
        ),
    )
    .unwrap();
    let tarball = dir.path().join("hearth.tar.gz");
    std::fs::write(&tarball, b"not used").unwrap();
    let (code, _, err) = run(hearth().args([
        "deploy",
        "apply",
        "-m",
        manifest.to_str().unwrap(),
        "--tarball",
        tarball.to_str().unwrap(),
        "--known-hosts",
        dir.path().join("known_hosts").to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ssh could not connect"), "{err}");

    let (code, out, err) = run(hearth().args([
        "deploy",
        "status",
        "--root",
        dir.path().to_str().unwrap(),
        "--health-url",
        "http://127.0.0.1:9/ready",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no release installed"), "{out}");
}

#[test]
fn status_prints_the_status_file_or_says_hearth_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("status");
    let (code, _, err) = run(hearth().args(["status", "--file", file.to_str().unwrap()]));
    assert_eq!(code, 3);
    assert!(
        err.contains("it is not running, or `server.status_file` is not set"),
        "{err}"
    );
    std::fs::write(
        &file,
        "Hearth 0.1.0: serving\n  Chat UI  https://127.0.0.1:443/\n",
    )
    .unwrap();
    let (code, out, _) = run(hearth().args(["status", "--file", file.to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(out.contains("Chat UI  https://127.0.0.1:443/"), "{out}");
}

/// Each access-log field means what its name says (issue 20): a stream refused
/// with 400 is logged as a stream; the time to first token is to the first
/// content, not to an upstream's empty role chunk; a stream the client leaves is
/// `cancelled`, with the tokens it was sent, and counted in a metric; a whole
/// answer sent is `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_says_what_happened() {
    use hearth_testkit::Behaviour;
    use std::time::Duration;
    let up = hearth_testkit::FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[limits]\nmax_tokens = 100\n[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\n",
            dir.path().join("data").display(),
            up.base_url()
        ),
    )
    .unwrap();
    let served = Served::start(hearth().args([
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let base = served.base.clone();
    let client = reqwest::Client::new();
    let post = |id: &'static str, body: serde_json::Value| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .header("x-request-id", id)
            .json(&body)
            .send()
    };
    let hi = serde_json::json!([{"role": "user", "content": "hi"}]);

    // Refused by the limits, after it was read as a stream request.
    let r = post(
        "refused",
        serde_json::json!({"model": "m", "stream": true, "max_tokens": 1000, "messages": hi}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // A whole answer: hyper drops its body after the last frame without polling
    // it to its end, and it was once logged (and counted) as cancelled.
    let r = post("whole", serde_json::json!({"model": "m", "messages": hi}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = client
        .get(format!("{base}/health"))
        .header("x-request-id", "health")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // A role chunk at once, the content 300 ms later.
    up.push(Behaviour::RoleFirst {
        text: "Hello there".into(),
        chunks: 2,
        delay: Duration::from_millis(300),
    });
    let r = post(
        "slow-first-token",
        serde_json::json!({"model": "m", "stream": true, "messages": hi}),
    )
    .await
    .unwrap();
    r.bytes().await.unwrap();
    // Left after the first content chunk: 4 more were coming.
    up.push(Behaviour::RoleFirst {
        text: "one two three four five".into(),
        chunks: 5,
        delay: Duration::from_millis(200),
    });
    let mut r = post(
        "left-early",
        serde_json::json!({"model": "m", "stream": true, "messages": hi}),
    )
    .await
    .unwrap();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"one") {
        seen.push_str(&String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()));
    }
    drop(r);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hearth_requests_cancelled_total{model=\"m\"} 1"),
        "{metrics}"
    );
    served.stop();

    let (text, access) = access_log(dir.path());
    let line = |id: &str| -> serde_json::Value {
        access
            .iter()
            .find(|v| v["request_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no access line for {id}:\n{text}"))
    };
    let refused = line("refused");
    assert_eq!(
        (&refused["status"], &refused["stream"], &refused["outcome"]),
        (
            &serde_json::json!(400),
            &serde_json::json!(true),
            &serde_json::json!("error")
        ),
        "{refused}"
    );
    for id in ["whole", "health"] {
        let whole = line(id);
        assert_eq!(
            (&whole["status"], &whole["outcome"]),
            (&serde_json::json!(200), &serde_json::json!("completed")),
            "{whole}"
        );
    }
    let slow = line("slow-first-token");
    assert_eq!(slow["outcome"], "completed", "{slow}");
    let ttft = slow["ttft_ms"].as_f64().unwrap();
    assert!(
        ttft >= 250.0,
        "TTFT is to the first content, not the role chunk: {slow}"
    );
    let left = line("left-early");
    assert_eq!(left["status"], 200, "{left}");
    assert_eq!(left["outcome"], "cancelled", "{left}");
    assert_eq!(
        left["completion_tokens"], 1,
        "the tokens it was sent: {left}"
    );
}
