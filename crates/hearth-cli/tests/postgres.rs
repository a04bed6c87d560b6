//! The real binary on a real Postgres (the private server of
//! `hearth_testkit::postgres`; SKIPPED without PostgreSQL unless
//! `HEARTH_TEST_POSTGRES_REQUIRED=1`): two `hearth serve` processes sharing one
//! database, `hearth doctor`'s database check, and `hearth db import-sqlite`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Served, hearth};
use hearth_store::{ConversationStore, JobStore, Scope};
use hearth_testkit::FakeUpstream;
use hearth_testkit::postgres::{PASSWORD, shared_for};
use serde_json::{Value, json};

/// A config for `hearth serve` on a free loopback port with one upstream model,
/// its files in `data`, and `database_url` when given (else the test sets
/// `HEARTH_DATABASE_URL`).
fn config(dir: &Path, data: &Path, up: &str, database_url: Option<&str>) -> PathBuf {
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n[storage]\ndata_dir = {:?}\n",
        data.display().to_string()
    );
    if let Some(url) = database_url {
        toml.push_str(&format!("database_url = {url:?}\ndatabase_pool_size = 4\n"));
    }
    toml.push_str(&format!(
        "[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{up}\"\nretries = 0\n"
    ));
    let path = dir.join(format!(
        "hearth-{}.toml",
        data.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, toml).unwrap();
    path
}

async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_database_share_the_history() {
    let Some(server) = shared_for("two_servers_on_one_postgres_database_share_the_history") else {
        return;
    };
    let db = server.database();
    let up = FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One gets the URL from its file, the other from HEARTH_DATABASE_URL.
    let one = config(
        dir.path(),
        &dir.path().join("one"),
        &up.base_url(),
        Some(&db.url()),
    );
    let two = config(dir.path(), &dir.path().join("two"), &up.base_url(), None);
    let first = Served::start(hearth().args(["serve", "--config", one.to_str().unwrap()]));
    let second = Served::start(
        hearth()
            .args(["serve", "--config", two.to_str().unwrap()])
            .env("HEARTH_DATABASE_URL", db.url()),
    );
    let http = reqwest::Client::new();
    let (status, body) = api(
        &http,
        reqwest::Method::POST,
        format!("{}/api/hearth/conversations", first.base),
        Some(json!({"title": "shared"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = api(
        &http,
        reqwest::Method::POST,
        format!("{}/api/hearth/conversations/{id}/messages", first.base),
        Some(json!({"content": "hello from one"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The other process reads what the first wrote: the list and the messages.
    let (status, body) = api(
        &http,
        reqwest::Method::GET,
        format!("{}/api/hearth/conversations", second.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    let (status, body) = api(
        &http,
        reqwest::Method::GET,
        format!("{}/api/hearth/conversations/{id}", second.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let conv: Value = serde_json::from_str(&body).unwrap();
    let messages = conv["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{conv}");
    assert_eq!(messages[0]["content"], "hello from one");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["finish_reason"], "stop", "{conv}");
    assert!(!messages[1]["content"].as_str().unwrap().is_empty());
    // And the second's rename shows on the first.
    let (status, body) = api(
        &http,
        reqwest::Method::PATCH,
        format!("{}/api/hearth/conversations/{id}", second.base),
        Some(json!({"title": "renamed by two"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = api(
        &http,
        reqwest::Method::GET,
        format!("{}/api/hearth/conversations/{id}", first.base),
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["title"],
        "renamed by two"
    );

    let (code, log) = first.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("conversations and jobs are stored in Postgres"),
        "{log}"
    );
    assert!(log.contains("hearth:***@127.0.0.1"), "{log}");
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");
    let (code, log) = second.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains(PASSWORD), "the password was logged:\n{log}");
    // Nothing was written to SQLite.
    assert!(!dir.path().join("one/hearth.db").exists());
}

/// `hearth doctor --json` with `config`, and its `database` check.
fn doctor(config: &Path) -> (Value, String) {
    let out: Output = hearth()
        .args(["doctor", "--json", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "database")
        .unwrap_or_else(|| panic!("no database check: {stdout}"))
        .clone();
    assert_eq!(check["group"], "servers");
    (check, stdout)
}

#[test]
fn doctor_checks_the_database_and_says_what_to_do_when_it_cannot_log_in_or_reach_it() {
    let Some(server) = shared_for("doctor_checks_the_database") else {
        return;
    };
    let db = server.database();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = "http://127.0.0.1:9";

    // A new database: reachable, logged in, its tables to be made at start.
    let (c, out) = doctor(&config(dir.path(), &data, up, Some(&db.url())));
    assert_eq!(c["status"], "warn", "{c}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains("PostgreSQL 1") && reason.contains("empty") && reason.contains("pending"),
        "{c}"
    );
    assert!(
        c["remedy"].as_str().unwrap().contains("hearth serve"),
        "{c}"
    );
    assert!(!out.contains(PASSWORD), "{out}");

    // Migrated (as a start does): ok, with the version.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = hearth_store::PgStore::connect(&db.url(), hearth_store::PgOptions::default())
            .await
            .unwrap();
        s.close().await;
    });
    let (c, _) = doctor(&config(dir.path(), &data, up, Some(&db.url())));
    assert_eq!(c["status"], "ok", "{c}");
    assert!(
        c["reason"].as_str().unwrap().contains("schema up to date"),
        "{c}"
    );

    // A wrong password: refused, the remedy says what to fix, no password shown.
    let wrong = server.url_as("hearth", "wrong-secret", db.name());
    let (c, out) = doctor(&config(dir.path(), &data, up, Some(&wrong)));
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["reason"].as_str().unwrap().contains("refused the login"),
        "{c}"
    );
    assert!(c["remedy"].as_str().unwrap().contains("password"), "{c}");
    assert!(!out.contains("wrong-secret"), "{out}");

    // A closed port: unreachable, the remedy says to start it or fix host and port.
    let closed_port = hearth_testkit::ClosedPort::new();
    let port = closed_port.port();
    let closed = format!("postgres://hearth:{PASSWORD}@127.0.0.1:{port}/x");
    let (c, out) = doctor(&config(dir.path(), &data, up, Some(&closed)));
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["reason"].as_str().unwrap().contains("cannot reach"),
        "{c}"
    );
    assert!(
        c["remedy"]
            .as_str()
            .unwrap()
            .contains("start the Postgres server"),
        "{c}"
    );
    assert!(!out.contains(PASSWORD), "{out}");
}

#[test]
fn db_import_sqlite_copies_a_data_folder_once() {
    let Some(server) = shared_for("db_import_sqlite_copies_a_data_folder_once") else {
        return;
    };
    let db = server.database();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (conversation, job) = rt.block_on(async {
        let s = hearth_store::SqliteStore::open(&old).await.unwrap();
        let c = s
            .create_conversation("alice", hearth_store::NewConversation::default())
            .await
            .unwrap();
        s.append_message(&c.id, hearth_store::NewMessage::user("kept"))
            .await
            .unwrap();
        let j = s
            .create_job(
                "alice",
                hearth_store::NewJob {
                    prompt: "plot".into(),
                    image_type: "png".into(),
                    image: hearth_store::NewFile {
                        name: "input.png".into(),
                        sha256: "ab".into(),
                        size: 2,
                        content_type: "image/png".into(),
                        step_id: None,
                    },
                },
            )
            .await
            .unwrap();
        s.close().await;
        (c.id, j.id)
    });
    let cfg = config(
        dir.path(),
        &dir.path().join("new"),
        "http://127.0.0.1:9",
        Some(&db.url()),
    );
    let import = || {
        hearth()
            .args(["db", "import-sqlite", "--from", old.to_str().unwrap()])
            .args(["--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = import();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 conversations, 1 messages, 1 jobs, 0 steps, 1 files"),
        "{stdout}"
    );
    assert!(stdout.contains("hearth:***@127.0.0.1"), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    rt.block_on(async {
        let s = hearth_store::PgStore::connect(
            &db.url(),
            hearth_store::PgOptions {
                keeper: false,
                ..hearth_store::PgOptions::default()
            },
        )
        .await
        .unwrap();
        let m = s.messages(&conversation).await.unwrap();
        assert_eq!(m[0].content, "kept");
        assert!(s.job(&Scope::Owner("alice"), &job).await.unwrap().is_some());
        s.close().await;
    });

    // Again: refused, nothing doubled.
    let out = import();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already holds 1 conversations and 1 jobs"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    // Without a database_url: what to set.
    let sqlite_only = config(
        dir.path(),
        &dir.path().join("plain"),
        "http://127.0.0.1:9",
        None,
    );
    let out = hearth()
        .args(["db", "import-sqlite", "--from", old.to_str().unwrap()])
        .args(["--config", sqlite_only.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("storage.database_url is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A start that cannot use its database stops, and says why and which server,
/// never with the password.
#[test]
fn a_server_that_cannot_use_its_database_stops_and_says_why_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens there, and no other test's server can take the port meanwhile
    // (one did, and sqlx met an HTTP answer instead of a refused connect).
    let closed = hearth_testkit::ClosedPort::new();
    let port = closed.port();
    let run = |url: &str| {
        let cfg = config(
            dir.path(),
            &dir.path().join("data"),
            "http://127.0.0.1:9",
            Some(url),
        );
        let out = hearth()
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run(&format!(
        "postgres://hearth:s3cret-pw@127.0.0.1:{port}/hearth"
    ));
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("cannot reach the database server"), "{text}");
    assert!(
        text.contains(&format!("hearth:***@127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
    // Not a Postgres URL: refused by the config check, before anything starts.
    let (code, text) = run("mysql://hearth:s3cret-pw@db/hearth");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("storage.database_url") && text.contains("not a Postgres URL"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
}

/// `hearth backup` copies a SQLite file: with the history in Postgres it says so and
/// points to pg_dump (exit 2), never copying a stale or empty SQLite file, and never
/// showing the URL's password. No server needed.
#[test]
fn backup_with_postgres_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(
        dir.path(),
        &data,
        "http://127.0.0.1:9/v1",
        Some("postgres://hearth:not-shown-pw@db.internal:5432/hearth"),
    );
    let out = hearth()
        .args(["backup", "--config", config.to_str().unwrap()])
        .arg(dir.path().join("copy.db"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("use pg_dump"), "{stderr}");
    assert!(stderr.contains("hearth:***@db.internal"), "{stderr}");
    assert!(!stderr.contains("not-shown-pw"), "{stderr}");
    assert!(!dir.path().join("copy.db").exists());
}
