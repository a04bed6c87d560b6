//! Per-key requests-per-minute and tokens-per-minute, as token buckets that refill
//! continuously, with OpenAI's `x-ratelimit-*` headers.
//!
//! Counters are per process; with several replicas they belong in a shared store
//! (DESIGN.md, scale-out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use hearth_api::{ApiError, ErrorKind};

use crate::auth::Caller;

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: f64, now: Instant) -> Self {
        Bucket {
            capacity,
            level: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let per_sec = self.capacity / 60.0;
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + dt * per_sec).min(self.capacity);
        self.updated = now;
    }

    /// Seconds until `amount` is available.
    fn wait_for(&self, amount: f64) -> f64 {
        if self.level >= amount {
            0.0
        } else {
            (amount - self.level) / (self.capacity / 60.0)
        }
    }
}

#[derive(Debug)]
struct KeyBuckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// What the headers report after a request was admitted.
#[derive(Debug, Clone, Default)]
pub struct Quota {
    requests: Option<(u32, u32, f64)>,
    tokens: Option<(u64, u64, f64)>,
}

impl Quota {
    pub fn apply(&self, h: &mut HeaderMap) {
        if let Some((limit, remaining, reset)) = self.requests {
            h.insert("x-ratelimit-limit-requests", HeaderValue::from(limit));
            h.insert(
                "x-ratelimit-remaining-requests",
                HeaderValue::from(remaining),
            );
            if let Ok(v) = HeaderValue::from_str(&fmt_reset(reset)) {
                h.insert("x-ratelimit-reset-requests", v);
            }
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            h.insert("x-ratelimit-limit-tokens", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining-tokens", HeaderValue::from(remaining));
            if let Ok(v) = HeaderValue::from_str(&fmt_reset(reset)) {
                h.insert("x-ratelimit-reset-tokens", v);
            }
        }
    }
}

/// Whole seconds to wait, at least 1. Never panics: a bucket driven far below zero
/// (an upstream reporting absurd usage) gives a huge `wait`, which saturates.
fn retry_secs(wait: f64) -> u64 {
    Duration::try_from_secs_f64(wait)
        .map_or(u64::MAX, |d| d.as_secs())
        .max(1)
}

fn fmt_reset(secs: f64) -> String {
    format!("{:.3}s", secs.max(0.0))
}

#[derive(Default)]
pub struct RateLimiter {
    keys: Mutex<HashMap<Arc<str>, KeyBuckets>>,
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter::default()
    }

    /// Admits one request that will use about `tokens` tokens, or answers 429 with
    /// `Retry-After`. The estimate is corrected by [`RateLimiter::settle`].
    pub fn admit(&self, caller: &Caller, tokens: u64) -> Result<Quota, ApiError> {
        if caller.rpm == 0 && caller.tpm == 0 {
            return Ok(Quota::default());
        }
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let b = keys
            .entry(Arc::clone(&caller.key_id))
            .or_insert_with(|| KeyBuckets {
                requests: (caller.rpm > 0).then(|| Bucket::new(f64::from(caller.rpm), now)),
                tokens: (caller.tpm > 0).then(|| Bucket::new(caller.tpm as f64, now)),
            });
        if let Some(r) = &mut b.requests {
            r.refill(now);
        }
        if let Some(t) = &mut b.tokens {
            t.refill(now);
        }
        let req_wait = b.requests.as_ref().map_or(0.0, |r| r.wait_for(1.0));
        // A request larger than the whole minute's budget is refused outright below.
        let tok_wait = b
            .tokens
            .as_ref()
            .map_or(0.0, |t| t.wait_for((tokens as f64).min(t.capacity)));
        let wait = req_wait.max(tok_wait);
        if wait > 0.0 {
            let what = if req_wait >= tok_wait {
                "requests"
            } else {
                "tokens"
            };
            let limit = if what == "requests" {
                u64::from(caller.rpm)
            } else {
                caller.tpm
            };
            return Err(ApiError::new(
                ErrorKind::RateLimited,
                format!(
                    "rate limit reached for key `{}`: {limit} {what} per minute; retry in {:.1}s",
                    caller.key_id, wait
                ),
            )
            .with_code("rate_limit_exceeded")
            .with_retry_after(retry_secs(wait)));
        }
        let mut q = Quota::default();
        if let Some(r) = &mut b.requests {
            r.level -= 1.0;
            q.requests = Some((caller.rpm, r.level.max(0.0) as u32, r.wait_for(r.capacity)));
        }
        if let Some(t) = &mut b.tokens {
            t.level -= tokens as f64;
            q.tokens = Some((caller.tpm, t.level.max(0.0) as u64, t.wait_for(t.capacity)));
        }
        Ok(q)
    }

    /// Corrects the token bucket once the real usage is known.
    pub fn settle(&self, caller: &Caller, estimated: u64, actual: u64) {
        if caller.tpm == 0 {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = keys.get_mut(&caller.key_id).and_then(|b| b.tokens.as_mut()) {
            t.level = (t.level + estimated as f64 - actual as f64).min(t.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(rpm: u32, tpm: u64) -> Caller {
        Caller {
            key_id: "k".into(),
            rpm,
            tpm,
        }
    }

    #[test]
    fn requests_per_minute() {
        let rl = RateLimiter::new();
        let c = caller(2, 0);
        assert!(rl.admit(&c, 1).is_ok());
        assert!(rl.admit(&c, 1).is_ok());
        let e = rl.admit(&c, 1).unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() >= 1);
    }

    #[test]
    fn tokens_per_minute_settle() {
        let rl = RateLimiter::new();
        let c = caller(0, 100);
        assert!(rl.admit(&c, 50).is_ok());
        rl.settle(&c, 50, 100);
        assert!(rl.admit(&c, 10).is_err());
    }

    #[test]
    fn absurd_usage_makes_a_long_wait_not_a_panic() {
        // An upstream that reports u64::MAX tokens drives the bucket to -1.8e19; the
        // wait (1e21 s at 1 token per minute) overflowed `Duration::from_secs_f64`.
        let rl = RateLimiter::new();
        let c = caller(0, 1);
        assert!(rl.admit(&c, 1).is_ok());
        rl.settle(&c, 1, u64::MAX);
        let e = rl.admit(&c, 1).unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() > 1_000_000);
    }

    #[test]
    fn unlimited_key_has_no_headers() {
        let rl = RateLimiter::new();
        let q = rl.admit(&caller(0, 0), 5).unwrap();
        let mut h = HeaderMap::new();
        q.apply(&mut h);
        assert!(h.is_empty());
    }
}
