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

/// Pauses every client of `redis` for `ms` (`CLIENT PAUSE`). Not through
/// [`PrivateRedis::command`]: its `QUIT` would wait out the pause.
fn pause(redis: &PrivateRedis, ms: u64) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    s.write_all(format!("CLIENT PAUSE {ms}\r\n").as_bytes())
        .unwrap();
    let mut ok = [0u8; 5];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
}

/// How many script calls (`EVALSHA`) Redis has run since it started.
fn script_calls(redis: &PrivateRedis) -> u64 {
    let stats = redis.command(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Admissions that arrive together go to Redis as one script call, and each is
/// still decided exactly: many keys at once each get their own limit, and two
/// admissions of one key are decided in the order they came (the second sees
/// what the first took).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_arriving_together_share_a_script_call_and_keep_their_order() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let l = Arc::new(limiter(&redis.url(), RedisFailurePolicy::Closed));
    let keys: Vec<Principal> = (0..20).map(|i| key(&format!("k{i}"), 5, 0)).collect();
    let before = script_calls(&redis);
    let tries = (0..200).map(|i| {
        let (l, who) = (l.clone(), keys[i % 20].clone());
        async move { (i % 20, l.admit(&who, 1).await) }
    });
    let results = join_all(tries).await;
    for k in 0..20 {
        let passed = results.iter().filter(|(i, r)| *i == k && r.is_ok()).count();
        assert_eq!(passed, 5, "key k{k}: {results:?}");
    }
    let calls = script_calls(&redis) - before;
    assert!(
        calls < 100,
        "200 admissions at once took {calls} script calls"
    );

    let who = key("ordered", 0, 100);
    let [a, b, c]: [_; 3] = join_all([60, 60, 30].map(|t| l.admit(&who, t)))
        .await
        .try_into()
        .unwrap();
    assert_eq!(a.unwrap().tokens.unwrap().remaining, 40);
    assert_eq!(b.unwrap_err().status(), 429);
    assert_eq!(c.unwrap().tokens.unwrap().remaining, 10);
}

/// A Redis that stalls (here paused by `CLIENT PAUSE`) rather than goes away: the
/// admissions queued behind the stuck call follow the policy within the timeout,
/// and once Redis answers again the limiter counts at once (no backlog of the
/// abandoned ones to work through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_follows_the_policy_within_the_timeout() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let open = Arc::new(limiter(&redis.url(), RedisFailurePolicy::Open));
    let closed = Arc::new(limiter(&redis.url(), RedisFailurePolicy::Closed));
    let who = key("k", 1000, 0);
    assert!(closed.admit(&who, 1).await.is_ok());
    assert!(open.admit(&who, 1).await.is_ok());

    pause(&redis, 1500);
    let paused = std::time::Instant::now();
    let tries = (0..100).map(|i| {
        let (open, closed, who) = (open.clone(), closed.clone(), who.clone());
        async move {
            if i % 2 == 0 {
                let q = open.admit(&who, 1).await.expect("open admits");
                assert!(q.requests.is_none(), "nothing was counted: {q:?}");
            } else {
                let e = closed.admit(&who, 1).await.unwrap_err();
                assert_eq!(e.code.as_deref(), Some("rate_limit_unavailable"));
            }
        }
    });
    join_all(tries).await;
    let waited = paused.elapsed();
    assert!(waited < Duration::from_millis(1000), "{waited:?}");

    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(paused.elapsed())).await;
    let mut counted = false;
    for _ in 0..50 {
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
    assert!(counted, "the limiter never counted again after the stall");
}

/// Settlements that wait together (here five, queued before the limiter's task
/// can run) go as one entry of one script call, and count as they would one by
/// one: given back and taken, summed.
#[tokio::test]
async fn settlements_queued_together_count_as_one_by_one() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let l = limiter(&redis.url(), RedisFailurePolicy::Closed);
    let who = key("s", 0, 1000);
    for _ in 0..5 {
        l.admit(&who, 100).await.unwrap();
    }
    let before = script_calls(&redis);
    for _ in 0..3 {
        l.settle(&who, 100, 50);
    }
    for _ in 0..2 {
        l.settle(&who, 100, 130);
    }
    // 500 left, +150 given back, -60 taken: 590 (and the refill of a few ms).
    let mut left = 0;
    for _ in 0..100 {
        left = l.admit(&who, 0).await.unwrap().tokens.unwrap().remaining;
        if left >= 590 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!((590..600).contains(&left), "{left}");
    let calls = script_calls(&redis) - before;
    assert!(
        calls <= 3,
        "five settlements and a look took {calls} script calls"
    );
}
