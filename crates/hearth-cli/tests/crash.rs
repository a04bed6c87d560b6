//! Crash safety of the real `hearth serve`: killed with SIGKILL mid-reply and
//! mid-job, then restarted on the same data folder; its data folder on a full disk
//! (a small tmpfs in a private user and mount namespace, so the machine's own
//! mounts are never touched); `hearth backup` while it serves.
//!
//! The full-disk test needs `unshare` and unprivileged user namespaces; without
//! them it says SKIPPED and passes, unless `HEARTH_TEST_NAMESPACES_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_testkit::{Behaviour, FakeUpstream};
use serde_json::{Value, json};

mod common;
use common::{PNG, Served, hearth, venv};

/// Writes a small CSV (no heavy imports: quick).
const TABLE: &str =
    "with open(\"/output/table.csv\", \"w\") as f:\n    f.write(\"x,y\\n1,3\\n\")\nprint(\"done\")";

const CONVERSATIONS: &str = "/api/hearth/conversations";

/// A config for `hearth serve` on a free loopback port, its history in `data`, its
/// models (`eyes`, which reads images, and `coder`) on `up`.
fn config(dir: &Path, data: &Path, up: &FakeUpstream) -> PathBuf {
    let mut toml = format!(
        "default_model = \"coder\"\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n\
         [storage]\ndata_dir = {:?}\n[sandbox]\nvenv = {:?}\n\
         [jobs]\nvision_model = \"eyes\"\nreasoning_model = \"coder\"\ncode_model = \"coder\"\n",
        data.display().to_string(),
        venv().display().to_string(),
    );
    for (name, vision) in [("eyes", true), ("coder", false)] {
        toml.push_str(&format!(
            "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\nvision = {vision}\n",
            up.base_url()
        ));
    }
    let path = dir.join("hearth.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn serve(config: &Path) -> Served {
    Served::start(hearth().args(["serve", "--config", config.to_str().unwrap()]))
}

/// A fake upstream, a temporary folder, the history's folder in it (not made
/// yet) and a config for `hearth serve` on them.
async fn setup() -> (FakeUpstream, tempfile::TempDir, PathBuf, PathBuf) {
    let up = FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path(), &data, &up);
    (up, dir, data, config)
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn new_conversation(base: &str) -> String {
    let c: Value = reqwest::Client::new()
        .post(format!("{base}{CONVERSATIONS}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    c["id"].as_str().unwrap().to_owned()
}

/// The events of a reply's SSE stream, as they come.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn send(base: &str, id: &str, content: &str) -> Events {
        let resp = reqwest::Client::new()
            .post(format!("{base}{CONVERSATIONS}/{id}/messages"))
            .json(&json!({"content": content}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event; `None` at the end of the stream (or when it broke).
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = event.trim().strip_prefix("data: ") {
                    return serde_json::from_str(data).ok();
                }
                continue;
            }
            match self.resp.chunk().await {
                Ok(Some(b)) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                _ => return None,
            }
        }
    }

    /// Reads to the end: the last event.
    async fn last(mut self) -> Value {
        let mut last = Value::Null;
        while let Some(e) = self.next().await {
            last = e;
        }
        last
    }
}

/// SIGKILL mid-reply, restart: the user's message once, the reply cut where the
/// last save left it (a prefix of what was streamed) and marked interrupted, one
/// assistant message, and the conversation goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_by_kill_9_is_kept_marked_interrupted_and_the_chat_goes_on() {
    let up = FakeUpstream::start().await.unwrap();
    // 60 pieces, 100 ms apart: six seconds of streaming, saved every 750 ms.
    let words: Vec<String> = (0..60).map(|i| format!("w{i} ")).collect();
    up.push(Behaviour::slow(
        &words.concat(),
        60,
        Duration::from_millis(100),
    ));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path(), &data, &up);

    let served = serve(&config);
    let id = new_conversation(&served.base).await;
    let mut events = Events::send(&served.base, &id, "tell me a long story").await;
    let start = events.next().await.unwrap();
    assert_eq!(start["type"], "start", "{start}");
    let mut streamed = String::new();
    let mut first_delta = None;
    // Past two saves' worth of streaming: at least one partial save happened.
    while first_delta.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(2000)) {
        let e = events.next().await.expect("the stream ended early");
        assert_eq!(e["type"], "delta", "{e}");
        streamed.push_str(e["content"].as_str().unwrap());
        first_delta.get_or_insert_with(Instant::now);
    }
    let log = served.kill();
    // The browser sees a broken stream (no `done`), as it would.
    while let Some(e) = events.next().await {
        assert_eq!(e["type"], "delta", "{e}");
        streamed.push_str(e["content"].as_str().unwrap());
    }

    let served = serve(&config);
    let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
    let messages = c["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{c:#}\n{log}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], "tell me a long story");
    let reply = &messages[1];
    assert_eq!(reply["role"], "assistant");
    assert_eq!(reply["finish_reason"], "interrupted", "{reply}");
    let kept = reply["content"].as_str().unwrap();
    assert!(!kept.is_empty(), "nothing of the reply was kept");
    let full = words.concat();
    assert!(
        full.starts_with(kept) && kept.len() < full.len(),
        "kept {kept:?} of {full:?}"
    );
    // What the browser got and what was saved agree up to where the shorter ends
    // (a piece saved just as the process died may not have reached the socket).
    assert!(
        streamed.starts_with(kept) || kept.starts_with(streamed.as_str()),
        "kept {kept:?}, streamed {streamed:?}"
    );

    // The conversation goes on, the cut reply in its history.
    up.push(Behaviour::ok("Where was I? Yes."));
    let done = Events::send(&served.base, &id, "go on").await.last().await;
    assert_eq!(done["type"], "done", "{done}");
    let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
    let got = common::turns(&c);
    assert_eq!(
        got,
        [
            ("user".into(), "tell me a long story".into(), Value::Null),
            ("assistant".into(), kept.into(), json!("interrupted")),
            ("user".into(), "go on".into(), Value::Null),
            (
                "assistant".into(),
                "Where was I? Yes.".into(),
                json!("stop")
            ),
        ]
    );
    let sent = up.received().last().unwrap().body["messages"].clone();
    assert_eq!(sent[1]["content"], kept, "{sent}");
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// SIGKILL while a job waits on a model, restart: the step it was in is marked
/// interrupted, the job resumes from it at once (not a lease later) and ends; no
/// step is run twice past that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cut_by_kill_9_resumes_from_its_step_after_a_restart() {
    let up = FakeUpstream::start().await.unwrap();
    up.script_model(
        "eyes",
        [Behaviour::Stall, Behaviour::ok("A table: (1, 3).")],
    );
    up.script_model(
        "coder",
        [
            Behaviour::ok("Write it as CSV."),
            Behaviour::ok(&format!("```python\n{TABLE}\n```")),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path(), &data, &up);
    let image = dir.path().join("table.png");
    std::fs::write(&image, PNG).unwrap();

    let served = serve(&config);
    let base = served.base.clone();
    let image_arg = image.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        hearth()
            .args(["jobs", "submit", &image_arg, "--server", &base])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let url = format!("{}/api/jobs/{id}", served.base);
    // Mid-step: the vision model got the request and stalls.
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.hits() == 0 {
        assert!(Instant::now() < deadline, "{:#}", get(&url).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = get(&url).await;
    assert_eq!(job["status"], "running", "{job:#}");
    assert_eq!(job["steps"][0]["status"], "running", "{job:#}");
    let log = served.kill();

    let served = serve(&config);
    let url = format!("{}/api/jobs/{id}", served.base);
    // Well before the killed worker's 30 s lease would have run out: the restart
    // knows at once that its process is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job = get(&url).await;
        if !["queued", "running"].contains(&job["status"].as_str().unwrap()) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "not ended 20 s after the restart: {job:#}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let steps: Vec<(String, String)> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps[..2],
        [
            ("vision".to_owned(), "interrupted".to_owned()),
            ("vision".to_owned(), "succeeded".to_owned())
        ],
        "{job:#}"
    );
    // Each later step ran once (a step is repeated only by a repair, which this
    // job did not need).
    let mut kinds: Vec<&str> = steps[1..].iter().map(|(k, _)| k.as_str()).collect();
    let all = kinds.len();
    kinds.dedup();
    assert_eq!(kinds.len(), all, "{job:#}");
    assert_eq!(job["status"], "succeeded", "{job:#}");
    // Two vision requests in all: the cut one and the rerun.
    let eyes = up
        .received()
        .iter()
        .filter(|r| r.body["model"] == "eyes")
        .count();
    assert_eq!(eyes, 2);
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// `unshare`, with none of the caller's `HEARTH_*` variables (as [`hearth`]).
fn unshare() -> Command {
    let mut c = Command::new("unshare");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HEARTH_") {
            c.env_remove(name);
        }
    }
    c
}

/// Whether this host lets an unprivileged process make a user and mount namespace
/// (and mount a tmpfs in it).
fn namespaces_work() -> bool {
    unshare()
        .args(["-Urm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /tmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `hearth backup` to `out`, run in the mount namespace of `served` (SQLite resolves
/// `/proc/PID/root` to `/`, so the database cannot be opened from outside).
fn backup_in(served: &Served, config: &Path, out: &Path) {
    let o = Command::new("nsenter")
        .args(["-t", &served.child.id().to_string(), "-U", "-m", "--"])
        .arg(env!("CARGO_BIN_EXE_hearth"))
        .args(["backup", "--config"])
        .args([config, out])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

/// Fills the file system of `path` with `path` itself: writes until it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
}

/// The data folder on a full disk: the client is told so (500 `storage_full`,
/// nothing half-written), the server (and its log writer, on the same disk) goes on,
/// the database stays intact, and once space is freed all works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_error_and_service_returns_once_space_is_freed() {
    if !namespaces_work() {
        let why = "this host does not let an unprivileged process make a user and mount namespace (unshare -Urm)";
        if std::env::var("HEARTH_TEST_NAMESPACES_REQUIRED").as_deref() == Ok("1") {
            panic!("{why}, and HEARTH_TEST_NAMESPACES_REQUIRED=1");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let up = FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = config(dir.path(), &data, &up);
    // A private tmpfs of 16 MiB on the data folder, seen by this server only.
    let served = Served::start(unshare().args([
        "-Urm",
        "sh",
        "-c",
        "mount -t tmpfs -o size=16m tmpfs \"$0\" && exec \"$1\" serve --config \"$2\"",
        data.to_str().unwrap(),
        env!("CARGO_BIN_EXE_hearth"),
        config.to_str().unwrap(),
    ]));
    // What the server sees at `data`, from outside its mount namespace.
    let seen = PathBuf::from(format!("/proc/{}/root", served.child.id()))
        .join(data.strip_prefix("/").unwrap());
    assert!(seen.join("hearth.db").exists());
    let id = new_conversation(&served.base).await;
    up.set_default(Behaviour::ok("noted"));
    let done = Events::send(&served.base, &id, "first").await.last().await;
    assert_eq!(done["type"], "done", "{done}");

    // A reply streams as the disk fills: its end cannot be stored. The browser is
    // told so (not "done"); it is stored once space returns.
    let long = "y".repeat(1536 * 1024);
    up.push(Behaviour::slow(&long, 96, Duration::from_millis(10)));
    let mut events = Events::send(&served.base, &id, "a long one").await;
    let start = events.next().await.unwrap();
    assert_eq!(start["type"], "start", "{start}");
    let reply_id = start["message"]["id"].as_str().unwrap().to_owned();
    fill(&seen.join("filler"));
    let last = events.last().await;
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["error"]["code"], "storage_full", "{last}");

    // The log goes on being written (and failing) meanwhile; the write-ahead log may
    // still have room from earlier writes, so send until a write needs new space.
    let big = "x".repeat(256 * 1024);
    let mut refused = None;
    for _ in 0..40 {
        let resp = reqwest::Client::new()
            .post(format!("{}{CONVERSATIONS}/{id}/messages", served.base))
            .json(&json!({"content": big}))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let _ = resp.text().await;
            continue;
        }
        refused = Some((resp.status().as_u16(), resp.json::<Value>().await.unwrap()));
        break;
    }
    let (status, body) = refused.expect("no write was refused on a full disk");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{body}"
    );
    // Reads still work, and show nothing half-written: each user message stored is
    // whole, and answered.
    let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
    let before = c["messages"].as_array().unwrap().clone();
    for m in before.iter().filter(|m| m["id"] != reply_id.as_str()) {
        let content = m["content"].as_str().unwrap();
        match m["role"].as_str().unwrap() {
            "user" => assert!(
                ["first", "a long one", big.as_str()].contains(&content),
                "{}",
                content.len()
            ),
            _ => assert_eq!(m["finish_reason"], "stop", "{m}"),
        }
    }
    // The database is intact: a copy taken now (in the server's namespace, where
    // the tmpfs is; the copy is written outside it) passes the full check.
    backup_in(&served, &config, &dir.path().join("full.db"));
    hearth_store::integrity_check(&dir.path().join("full.db"))
        .await
        .unwrap();

    // Space returns: the reply that could not be stored is, whole...
    std::fs::remove_file(seen.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
        let reply = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == reply_id.as_str())
            .unwrap()
            .clone();
        if reply["finish_reason"] == "stop" {
            assert_eq!(reply["content"], long.as_str());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stored 30 s after space returned: {}",
            reply["finish_reason"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and new requests go through.
    up.set_default(Behaviour::ok("back to normal"));
    let done = Events::send(&served.base, &id, "again").await.last().await;
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(done["message"]["content"], "back to normal", "{done}");
    let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), before.len() + 2);
    backup_in(&served, &config, &dir.path().join("after.db"));
    hearth_store::integrity_check(&dir.path().join("after.db"))
        .await
        .unwrap();
    // Its log file was on the full disk too, and failing to write it cost nothing.
    let logs: Vec<_> = std::fs::read_dir(seen.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        logs.iter()
            .any(|f| f.starts_with("hearth.") && f.ends_with(".log")),
        "{logs:?}"
    );
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("disk is full"),
        "the failure was not logged:\n{log}"
    );
}

/// `hearth backup` while the server serves: a checked copy, its path and size; an
/// existing file kept unless `--force`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_serving_database_and_keeps_an_existing_file() {
    let (_up, dir, data, config) = setup().await;
    let served = serve(&config);
    let id = new_conversation(&served.base).await;
    let done = Events::send(&served.base, &id, "keep me")
        .await
        .last()
        .await;
    assert_eq!(done["type"], "done", "{done}");

    let out = dir.path().join("hearth-backup.db");
    let backup = |force: bool| {
        let (config, out) = (config.clone(), out.clone());
        tokio::task::spawn_blocking(move || {
            let mut cmd = hearth();
            cmd.args(["backup", "--config", config.to_str().unwrap()]);
            if force {
                cmd.arg("--force");
            }
            let o = cmd.arg(&out).output().unwrap();
            (
                o.status.code(),
                String::from_utf8(o.stdout).unwrap(),
                String::from_utf8(o.stderr).unwrap(),
            )
        })
    };
    let filters = |dir: &Path| {
        let mut s = insta::Settings::clone_current();
        s.add_filter(&regex_escape(dir.to_str().unwrap()), "[dir]");
        s.add_filter(r"\d+(\.\d)? (B|kB|MB) \(\d+ bytes\)", "[size]");
        s
    };
    let (code, stdout, stderr) = backup(false).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    filters(dir.path()).bind(|| insta::assert_snapshot!("backup_written", stdout));
    let bytes = std::fs::metadata(&out).unwrap().len();
    assert!(stdout.contains(&format!("({bytes} bytes)")), "{stdout}");
    hearth_store::integrity_check(&out).await.unwrap();

    let (code, stdout, stderr) = backup(false).await.unwrap();
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    filters(dir.path()).bind(|| insta::assert_snapshot!("backup_refuses_to_overwrite", stderr));
    let (code, _, stderr) = backup(true).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");

    // The copy is the history: a server started on it has the conversation.
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(&out, data.join("hearth.db")).unwrap();
    let served = serve(&config);
    let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
    assert_eq!(c["messages"][0]["content"], "keep me", "{c:#}");
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// `s` as a regex that matches it literally.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// `hearth serve` on `config`, which must stop at once with exit code 1: what it
/// said on stderr.
fn refused_start(config: &Path) -> String {
    let out = hearth()
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A damaged database stops the start, saying what to do.
#[tokio::test]
async fn a_damaged_database_stops_the_start_with_what_to_do() {
    let up = FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hearth.db"), vec![0x5a; 64 * 1024]).unwrap();
    let config = config(dir.path(), &data, &up);
    let err = refused_start(&config);
    assert!(
        err.contains("hearth.db is damaged (file is not a database)"),
        "{err}"
    );
    assert!(
        err.contains("restore the latest copy made by `hearth backup`"),
        "{err}"
    );
    // Nothing was written over it.
    assert_eq!(
        std::fs::read(data.join("hearth.db")).unwrap(),
        vec![0x5a; 64 * 1024]
    );
}

/// Runs `sql` on the SQLite database at `db` (Python's sqlite3: a writer beside
/// no running Hearth).
fn sqlite_exec(db: &Path, sql: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A rollback across migrations: `hearth serve` on a data folder a newer Hearth
/// migrated runs on while the newer migrations only add, saying so in its log,
/// and stops with what to do, changing nothing, once one of them raised the
/// database's floor past its own.
#[tokio::test]
async fn a_database_a_newer_hearth_migrated_is_served_or_refused_by_its_floor() {
    let (_up, _dir, data, config) = setup().await;
    let served = serve(&config);
    let id = new_conversation(&served.base).await;
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");

    // The newer release's migration 9001 added a table.
    let db = data.join("hearth.db");
    sqlite_exec(
        &db,
        "CREATE TABLE newer_things (id TEXT PRIMARY KEY);
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9001, 'newer things', 1, X'00', 1);",
    );
    let served = serve(&config);
    let c = get(&format!("{}{CONVERSATIONS}/{id}", served.base)).await;
    assert_eq!(c["id"], id.as_str(), "{c:#}");
    let (code, log) = served.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("was migrated by a newer Hearth (migrations 9001 are unknown to this one)"),
        "{log}"
    );

    // It raised the floor: this Hearth refuses the database and leaves it be.
    sqlite_exec(&db, "UPDATE schema_floor SET version = 9001;");
    let before = std::fs::read(&db).unwrap();
    let err = refused_start(&config);
    assert!(
        err.contains("was migrated by a newer Hearth (migrations 9001 are unknown to this one)"),
        "{err}"
    );
    assert!(
        err.contains("restore the backup taken before the upgrade"),
        "{err}"
    );
    // `hearth doctor` says so before a start is tried.
    let out = hearth()
        .args(["doctor", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("migrated by a newer Hearth (migrations 9001 are unknown to this one, and migration 9001 changed"),
        "{said}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
}
