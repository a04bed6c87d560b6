//! Admission: per-key requests per minute and tokens per minute.
//!
//! [`Limiter`] is the seam: [`LocalLimiter`] counts in this process (token buckets
//! that refill continuously), which is exact for one replica; with several, the
//! counts belong in a store they share: [`crate::RedisLimiter`], behind the same
//! trait. Admission is async for that reason; settlement is fire-and-forget, so
//! the end of a stream never waits on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_api::{ApiError, ErrorKind};

use crate::principal::Principal;

/// Admits requests and settles their real usage.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Admits one request that will use about `tokens` tokens, or refuses it (429
    /// with `Retry-After`). The estimate is corrected by [`Limiter::settle`].
    async fn admit(&self, who: &Principal, tokens: u64) -> Result<Quota, ApiError>;

    /// Corrects the token count once the real usage is known (`actual`, for the
    /// `estimated` admitted). Must not block: a shared store is written in the
    /// background.
    fn settle(&self, who: &Principal, estimated: u64, actual: u64);
}

/// What the limits looked like after a request was admitted, for OpenAI's
/// `x-ratelimit-*` headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    pub requests: Option<QuotaLine>,
    pub tokens: Option<QuotaLine>,
    /// Where the key's token budget stood at admission, when it has one (for the
    /// `x-hearth-budget-*` headers).
    pub budget: Option<crate::BudgetState>,
}

/// One limit: its size per minute, what is left, and the seconds until it is whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaLine {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: f64,
}

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

    fn line(&self, limit: u64) -> QuotaLine {
        QuotaLine {
            limit,
            remaining: self.level.max(0.0) as u64,
            reset_secs: self.wait_for(self.capacity),
        }
    }
}

#[derive(Debug)]
struct KeyBuckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// Token buckets per key, in this process.
#[derive(Debug, Default)]
pub struct LocalLimiter {
    keys: Mutex<HashMap<Arc<str>, KeyBuckets>>,
}

impl LocalLimiter {
    pub fn new() -> Self {
        LocalLimiter::default()
    }

    fn check(&self, who: &Principal, tokens: u64) -> Result<Quota, ApiError> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let b = keys
            .entry(Arc::clone(&who.id))
            .or_insert_with(|| KeyBuckets {
                requests: (who.rpm > 0).then(|| Bucket::new(f64::from(who.rpm), now)),
                tokens: (who.tpm > 0).then(|| Bucket::new(who.tpm as f64, now)),
            });
        if let Some(r) = &mut b.requests {
            r.refill(now);
        }
        if let Some(t) = &mut b.tokens {
            t.refill(now);
        }
        let req_wait = b.requests.as_ref().map_or(0.0, |r| r.wait_for(1.0));
        // A request larger than the whole minute's budget is admitted once the
        // bucket is full, and runs the bucket into debt.
        let tok_wait = b
            .tokens
            .as_ref()
            .map_or(0.0, |t| t.wait_for((tokens as f64).min(t.capacity)));
        if req_wait > 0.0 || tok_wait > 0.0 {
            return Err(rate_limited(who, req_wait, tok_wait));
        }
        let mut q = Quota::default();
        if let Some(r) = &mut b.requests {
            r.level -= 1.0;
            q.requests = Some(r.line(u64::from(who.rpm)));
        }
        if let Some(t) = &mut b.tokens {
            t.level -= tokens as f64;
            q.tokens = Some(t.line(who.tpm));
        }
        Ok(q)
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn admit(&self, who: &Principal, tokens: u64) -> Result<Quota, ApiError> {
        self.check(who, tokens)
    }

    fn settle(&self, who: &Principal, estimated: u64, actual: u64) {
        if who.tpm == 0 {
            return;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = keys.get_mut(&who.id).and_then(|b| b.tokens.as_mut()) {
            t.level = (t.level + estimated as f64 - actual as f64).min(t.capacity);
        }
    }
}

/// The 429 for a request that must wait `req_wait` seconds for its requests
/// bucket and `tok_wait` for its tokens one (either may be 0).
pub(crate) fn rate_limited(who: &Principal, req_wait: f64, tok_wait: f64) -> ApiError {
    let wait = req_wait.max(tok_wait);
    let (what, limit) = if req_wait >= tok_wait {
        ("requests", u64::from(who.rpm))
    } else {
        ("tokens", who.tpm)
    };
    ApiError::new(
        ErrorKind::RateLimited,
        format!(
            "rate limit reached for key `{}`: {limit} {what} per minute; retry in {:.1}s",
            who.id, wait
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_retry_after(retry_secs(wait))
}

/// Whole seconds to wait, at least 1. Never panics: a bucket driven far below zero
/// (an upstream reporting absurd usage) gives a huge `wait`, which saturates.
fn retry_secs(wait: f64) -> u64 {
    Duration::try_from_secs_f64(wait)
        .map_or(u64::MAX, |d| d.as_secs())
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(rpm: u32, tpm: u64) -> Principal {
        Principal::new("k", rpm, tpm, false)
    }

    #[tokio::test]
    async fn requests_per_minute() {
        let rl = LocalLimiter::new();
        let c = who(2, 0);
        assert!(rl.admit(&c, 1).await.is_ok());
        let q = rl.admit(&c, 1).await.unwrap();
        assert_eq!(q.requests.unwrap().remaining, 0);
        let e = rl.admit(&c, 1).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() >= 1);
    }

    #[tokio::test]
    async fn tokens_per_minute_settle() {
        let rl = LocalLimiter::new();
        let c = who(0, 100);
        assert!(rl.admit(&c, 50).await.is_ok());
        rl.settle(&c, 50, 100);
        assert!(rl.admit(&c, 10).await.is_err());
    }

    #[tokio::test]
    async fn absurd_usage_makes_a_long_wait_not_a_panic() {
        // An upstream that reports u64::MAX tokens drives the bucket to -1.8e19; the
        // wait (1e21 s at 1 token per minute) overflowed `Duration::from_secs_f64`.
        let rl = LocalLimiter::new();
        let c = who(0, 1);
        assert!(rl.admit(&c, 1).await.is_ok());
        rl.settle(&c, 1, u64::MAX);
        let e = rl.admit(&c, 1).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert!(e.retry_after.unwrap() > 1_000_000);
    }
}
