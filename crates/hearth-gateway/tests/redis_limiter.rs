//! [`RedisLimiter`] against a real private Redis: exact limits across limiters
//! (replicas), token settlement, quota lines, expiry, and both policies while Redis
//! is down, then recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use hearth_config::RedisFailurePolicy;
use hearth_gateway::{Limiter, LocalLimiter, Principal, RedisLimiter, RedisLimiterOptions};
use hearth_testkit::redis::PrivateRedis;

fn limiter(url: &str, policy: RedisFailurePolicy) -> RedisLimiter {
    RedisLimiter::new(RedisLimiterOptions {
        url: url.to_owned(),
        prefix: "hearth-test".into(),
        timeout: Duration::from_millis(250),
        policy,
    })
    .unwrap()
}

fn key(id: &str, rpm: u32, tpm: u64) -> Principal {
    Principal::new(id, rpm, tpm, false)
}

/// Three limiters (each its own connection, as three replicas) and 3 × N requests
/// at once from one key with a limit of N: exactly N pass. Local limiters, one per
/// replica, would let all 3 × N through: that is what Redis is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_exactly_across_replicas() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    const N: u32 = 20;
    let replicas: Vec<Arc<dyn Limiter>> = (0..3)
        .map(|_| Arc::new(limiter(&redis.url(), RedisFailurePolicy::Closed)) as Arc<dyn Limiter>)
        .collect();
    let who = key("team-a", N, 0);
    let tries = (0..3 * N).map(|i| {
        let l = replicas[i as usize % 3].clone();
        let who = who.clone();
        async move { l.admit(&who, 1).await }
    });
    let results = join_all(tries).await;
    let passed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(passed, N as usize, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.status(), 429);
        assert_eq!(r.code.as_deref(), Some("rate_limit_exceeded"));
        assert!(r.retry_after.unwrap() >= 1);
    }
    // Another key has its own bucket.
    assert!(replicas[0].admit(&key("team-b", N, 0), 1).await.is_ok());

    let locals: Vec<LocalLimiter> = (0..3).map(|_| LocalLimiter::new()).collect();
    let mut local_passed = 0;
    for i in 0..3 * N {
        local_passed += usize::from(locals[i as usize % 3].admit(&who, 1).await.is_ok());
    }
    assert_eq!(
        local_passed,
        3 * N as usize,
        "without a shared store each replica counts alone"
    );
}

#[tokio::test]
async fn quota_lines_and_token_settlement() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let l = limiter(&redis.url(), RedisFailurePolicy::Closed);
    let who = key("k", 5, 100);
    let q = l.admit(&who, 60).await.unwrap();
    let (r, t) = (q.requests.unwrap(), q.tokens.unwrap());
    assert_eq!((r.limit, r.remaining), (5, 4));
    assert_eq!((t.limit, t.remaining), (100, 40));
    assert!(t.reset_secs > 30.0 && t.reset_secs <= 36.1, "{t:?}");
    // The answer used 90 tokens, not 60: 10 left, so 20 must wait.
    l.settle(&who, 60, 90);
    let mut refused = None;
    for _ in 0..100 {
        match l.admit(&who, 20).await {
            Err(e) => {
                refused = Some(e);
                break;
            }
            Ok(_) => {
                // Settlement is written in the background; give the 20 back and look again.
                l.settle(&who, 20, 0);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let e = refused.expect("the settled usage is counted");
    assert!(e.message.contains("100 tokens per minute"), "{}", e.message);
    // The hash goes once the buckets would be full again (here about 55 s).
    let ttl: i64 = redis
        .command(&["PTTL", "hearth-test:ratelimit:k"])
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(ttl > 30_000 && ttl <= 61_000, "{ttl}");
}

/// A request larger than the minute's budget waits for a full bucket, then runs
/// it into debt, as the local limiter does; an absurd reported usage is a long
/// wait, never an error or an overflow.
#[tokio::test]
async fn big_requests_and_absurd_usage() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let l = limiter(&redis.url(), RedisFailurePolicy::Closed);
    let who = key("big", 0, 100);
    assert!(l.admit(&who, 500).await.is_ok(), "a full bucket admits it");
    assert_eq!(l.admit(&who, 1).await.unwrap_err().status(), 429);
    let absurd = key("absurd", 0, 1);
    assert!(l.admit(&absurd, 1).await.is_ok());
    l.settle(&absurd, 1, u64::MAX);
    for _ in 0..100 {
        let e = l.admit(&absurd, 1).await.unwrap_err();
        assert_eq!(e.status(), 429, "{e:?}");
        if e.retry_after.unwrap() > 1_000_000 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the absurd usage was never settled");
}

/// Redis killed: open admits (no quota lines), closed answers 503; Redis back on
/// the same address: both count again, without a restart of Hearth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_follows_the_policy_and_recovers() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let open = limiter(&redis.url(), RedisFailurePolicy::Open);
    let closed = limiter(&redis.url(), RedisFailurePolicy::Closed);
    let who = key("k", 2, 0);
    assert!(open.admit(&who, 1).await.unwrap().requests.is_some());

    redis.stop();
    for _ in 0..5 {
        let q = open.admit(&who, 1).await.expect("open admits");
        assert!(q.requests.is_none(), "nothing was counted: {q:?}");
        let e = closed.admit(&who, 1).await.unwrap_err();
        assert_eq!(e.status(), 503);
        assert_eq!(e.code.as_deref(), Some("rate_limit_unavailable"));
        assert_eq!(e.retry_after, Some(1));
    }

    redis.restart();
    // The first call after the cut may still meet the old connection; within a
    // few seconds both count in Redis again (empty: nothing was saved).
    let mut counted = false;
    for _ in 0..100 {
        if closed
            .admit(&who, 1)
            .await
            .is_ok_and(|q| q.requests.is_some())
        {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "the closed limiter never came back");
    assert!(closed.admit(&who, 1).await.is_ok());
    assert_eq!(closed.admit(&who, 1).await.unwrap_err().status(), 429);
    let mut refused = false;
    for _ in 0..100 {
        match open.admit(&who, 1).await {
            Err(e) => {
                assert_eq!(e.status(), 429);
                refused = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(refused, "the open limiter never counted again");
}

/// A Redis with a password: the right one works, a wrong one follows the policy,
/// and neither shows in the limiter's Debug or in its error.
#[tokio::test]
async fn passwords_work_and_never_show() {
    let Some(redis) = PrivateRedis::start_with(Some("hunter2-secret")) else {
        return;
    };
    let good = limiter(&redis.url(), RedisFailurePolicy::Closed);
    assert!(
        good.admit(&key("k", 1, 0), 1)
            .await
            .unwrap()
            .requests
            .is_some()
    );
    assert!(!format!("{good:?}").contains("hunter2"));
    let version = good.check().await.unwrap();
    assert!(
        version.chars().next().unwrap().is_ascii_digit(),
        "{version}"
    );

    let wrong_url = redis.url().replace("hunter2-secret", "wrong-pass");
    let wrong = limiter(&wrong_url, RedisFailurePolicy::Closed);
    let e = wrong.admit(&key("k", 1, 0), 1).await.unwrap_err();
    assert_eq!(e.status(), 503);
    assert!(!e.message.contains("wrong-pass"), "{}", e.message);
    let why = wrong.check().await.unwrap_err();
    assert!(!why.contains("wrong-pass"), "{why}");
    assert!(why.contains("127.0.0.1"), "{why}");
}
