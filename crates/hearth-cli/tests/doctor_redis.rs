//! `hearth doctor` on `[limits] backend = "redis"`, against a real private Redis:
//! ok with its version; a wrong password and a closed port are a warn under
//! `on_redis_error = "open"` and a fail under `"closed"`, saying what to do and
//! never showing the password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_testkit::redis::PrivateRedis;
use serde_json::Value;

mod common;
use common::hearth;

/// Runs `hearth doctor --json` on a config with `limits` as its `[limits]`;
/// returns the exit code and the `redis` check.
fn doctor(limits: &str, url: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n\
             [sandbox]\nrequire = []\n[limits]\nbackend = \"redis\"\n{limits}\n\
             [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:9\"\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = hearth()
        .args(["doctor", "--json", "--config", config.to_str().unwrap()])
        .env("HEARTH_REDIS_URL", url)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !stdout.contains("s3cr3t-pw"),
        "the password was shown: {stdout}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .cloned()
        .unwrap_or_else(|| panic!("no redis check: {report:#}"));
    (out.status.code().unwrap(), check)
}

#[test]
fn redis_is_checked_by_version_password_and_policy() {
    let Some(redis) = PrivateRedis::start_with(Some("s3cr3t-pw")) else {
        return;
    };
    let (_, c) = doctor("", &redis.url());
    assert_eq!(c["status"], "ok", "{c}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Redis ") && reason[6..].starts_with(|c: char| c.is_ascii_digit()),
        "{c}"
    );
    assert!(
        c["reason"].as_str().unwrap().contains(":***@127.0.0.1"),
        "{c}"
    );

    let wrong = redis.url().replace("s3cr3t-pw", "not-the-pw");
    let (_, c) = doctor("", &wrong);
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("refused the password"),
        "{c}"
    );
    assert!(!c.to_string().contains("not-the-pw"), "{c}");
    let (code, c) = doctor("on_redis_error = \"closed\"", &wrong);
    assert_eq!(c["status"], "fail", "{c}");
    assert_eq!(code, 1);

    let port = redis.port();
    drop(redis);
    let closed = format!("redis://127.0.0.1:{port}");
    let (code, c) = doctor("on_redis_error = \"closed\"", &closed);
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["reason"].as_str().unwrap().contains("cannot reach Redis"),
        "{c}"
    );
    assert!(
        c["remedy"].as_str().unwrap().contains("HEARTH_REDIS_URL"),
        "{c}"
    );
    assert_eq!(code, 1);
}
