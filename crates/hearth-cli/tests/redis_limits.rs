//! Shared rate limits across replicas: three real `hearth serve` processes, one
//! private Redis (with a password), one key with a limit of N: 3 × N requests,
//! spread over the replicas at once, are answered N times in total. Redis killed:
//! the fail-closed policy answers 503 in OpenAI's shape and counts it in
//! /metrics; Redis back: limits hold again, no restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use hearth_testkit::FakeUpstream;
use hearth_testkit::redis::PrivateRedis;
use serde_json::{Value, json};

mod common;
use common::{Served, hearth};

const KEY: &str = "sk-redis-limits-test-key-0001";
const PASSWORD: &str = "redis-pass-0f3c9";
const N: usize = 12;

fn config(dir: &Path, up: &FakeUpstream) -> std::path::PathBuf {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n\
         [storage]\ndata_dir = {:?}\n\
         [limits]\nbackend = \"redis\"\non_redis_error = \"closed\"\nredis_prefix = \"replicas-test\"\n\
         [[keys]]\nname = \"team\"\nkey_env = \"TEAM_KEY\"\nrpm = {N}\n\
         [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\n",
        dir.join("data").display().to_string(),
        up.base_url()
    );
    let path = dir.join("hearth.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn chat(client: &reqwest::Client, base: &str) -> (u16, Value, Option<String>) {
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let remaining = r
        .headers()
        .get("x-ratelimit-remaining-requests")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap(), remaining)
}

/// `n` requests at once, spread over the replicas in turn.
async fn at_once(
    client: &reqwest::Client,
    replicas: &[Served],
    n: usize,
) -> Vec<(u16, Value, Option<String>)> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, base) = (client.clone(), replicas[i % replicas.len()].base.clone());
        set.spawn(async move { chat(&client, &base).await });
    }
    set.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_limit_and_follow_the_policy_while_redis_is_down() {
    let Some(mut redis) = PrivateRedis::start_with(Some(PASSWORD)) else {
        return;
    };
    let up = FakeUpstream::start().await.unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<Served> = dirs
        .iter()
        .map(|d| {
            let config = config(d.path(), &up);
            Served::start(
                hearth()
                    .args(["serve", "--config", config.to_str().unwrap()])
                    .env("TEAM_KEY", KEY)
                    .env("HEARTH_REDIS_URL", redis.url()),
            )
        })
        .collect();
    let client = reqwest::Client::new();

    let answers = at_once(&client, &replicas, 3 * N).await;
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, N, "{answers:?}");
    for (status, body, remaining) in &answers {
        match status {
            200 => assert!(remaining.is_some(), "quota headers on an admitted answer"),
            429 => {
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("`team`"),
                    "{body}"
                );
            }
            s => panic!("status {s}: {body}"),
        }
    }
    assert_eq!(up.hits(), N, "refused requests never reach the upstream");

    redis.stop();
    for r in &replicas {
        let (status, body, _) = chat(&client, &r.base).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "rate_limit_unavailable", "{body}");
        assert_eq!(body["error"]["type"], "service_unavailable_error", "{body}");
    }
    let metrics = client
        .get(format!("{}/metrics", replicas[0].base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hearth_ratelimit_redis_errors_total{policy=\"closed\"}")),
        "{metrics}"
    );

    // Back, empty: each key's bucket is full again, and it holds across replicas.
    redis.restart();
    let mut back = false;
    for _ in 0..100 {
        if chat(&client, &replicas[0].base).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "requests were still refused after Redis came back");
    let answers = at_once(&client, &replicas, 2 * N).await;
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(ok < N, "{ok} admitted after the first of {N}");

    for r in replicas {
        let (_, log) = r.stop();
        assert!(
            !log.contains(PASSWORD),
            "the Redis password was logged:\n{log}"
        );
        assert!(log.contains("rate limits are counted in Redis"), "{log}");
        assert!(log.contains("Redis cannot be reached"), "{log}");
    }
}
