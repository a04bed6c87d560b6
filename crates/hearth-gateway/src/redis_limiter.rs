//! [`RedisLimiter`]: the per-key limits counted in Redis, so that every replica
//! draws on the same buckets and a limit of N means N whatever the replica count.
//!
//! The buckets are those of [`crate::LocalLimiter`] (they refill continuously, a
//! request larger than the minute's budget waits for a full bucket and runs it into
//! debt), kept in one Redis hash per key and changed only by a Lua script that
//! refills, checks and takes, so two replicas can never both take the last request
//! (no read-then-write race). The clock is Redis's own (`TIME`), so replicas with
//! skewed clocks agree. A hash expires once its buckets would be full again: an
//! idle key costs nothing. The admissions and settlements that arrive together go
//! to Redis as one script call ([`batch`]), in their order.
//!
//! Redis unreachable, or slower than `redis_timeout_ms`: the configured policy. Open
//! admits the request (a warning at most every 10 s and
//! `hearth_ratelimit_redis_errors_total`); closed refuses it with 503
//! `rate_limit_unavailable`. The connection comes back by itself when Redis does.

mod batch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hearth_api::{ApiError, ErrorKind};
use hearth_config::{RedisFailurePolicy, redact_url};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

use crate::limiter::{Limiter, Quota, QuotaLine, rate_limited};
use crate::principal::Principal;
use batch::{Batcher, Entry, Op};

/// How often the open policy logs that Redis is unreachable.
const WARN_EVERY_MS: u64 = 10_000;

/// Per-key limits in Redis, shared by every replica pointed at it.
pub struct RedisLimiter {
    conn: ConnectionManager,
    /// To the task that sends them to Redis in batches.
    queue: mpsc::Sender<Entry>,
    prefix: String,
    timeout: Duration,
    policy: RedisFailurePolicy,
    /// The URL without its password, for messages.
    shown: String,
    last_warned_ms: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What the configuration says about Redis.
#[derive(Debug, Clone)]
pub struct RedisLimiterOptions {
    pub url: String,
    pub prefix: String,
    pub timeout: Duration,
    pub policy: RedisFailurePolicy,
}

impl RedisLimiter {
    /// A limiter that connects on first use (and again whenever the connection is
    /// lost): Hearth starts, and serves by its policy, while Redis is down. Must be
    /// called inside a Tokio runtime. Fails only on a URL that is not Redis's.
    pub fn new(o: RedisLimiterOptions) -> Result<Self, String> {
        let shown = redact_url(&o.url);
        let client = redis::Client::open(o.url.as_str()).map_err(|e| format!("`{shown}`: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(o.timeout))
            .set_response_timeout(Some(o.timeout))
            // One quick retry inside a call; the manager reconnects in the
            // background after a failure, so a down Redis never holds requests.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = client
            .get_connection_manager_lazy(config)
            .map_err(|e| format!("`{shown}`: {e}"))?;
        let last_warned_ms = Arc::new(AtomicU64::new(0));
        let (queue, rx) = mpsc::channel(batch::QUEUE);
        // Ends when the limiter (the queue's only sender) is dropped.
        tokio::spawn(
            Batcher {
                conn: conn.clone(),
                prefix: o.prefix.clone(),
                timeout: o.timeout,
                shown: shown.clone(),
                last_warned_ms: last_warned_ms.clone(),
            }
            .run(rx),
        );
        Ok(RedisLimiter {
            conn,
            queue,
            prefix: o.prefix,
            timeout: o.timeout,
            policy: o.policy,
            shown,
            last_warned_ms,
        })
    }

    /// Pings Redis: `Ok(server version)` or why not. For `hearth doctor` and the
    /// start-up log.
    pub async fn check(&self) -> Result<String, String> {
        let mut conn = self.conn.clone();
        let info = tokio::time::timeout(
            self.timeout.max(Duration::from_secs(2)),
            redis::cmd("INFO")
                .arg("server")
                .query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| format!("{} did not answer in time", self.shown))?
        .map_err(|e| format!("{}: {e}", self.shown))?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned())
    }

    /// Redis failed an admission: the policy's answer.
    fn unavailable(&self, who: &Principal, why: &str) -> Result<Quota, ApiError> {
        let policy = match self.policy {
            RedisFailurePolicy::Open => "open",
            RedisFailurePolicy::Closed => "closed",
        };
        metrics::counter!("hearth_ratelimit_redis_errors_total", "policy" => policy).increment(1);
        match self.policy {
            RedisFailurePolicy::Open => {
                warn_at_most_every(&self.last_warned_ms, || {
                    tracing::warn!(
                        redis = %self.shown,
                        error = %why,
                        key = %who.id,
                        "rate limits are not enforced: Redis cannot be reached (on_redis_error = \"open\"); requests are admitted until it is back"
                    );
                });
                Ok(Quota::default())
            }
            RedisFailurePolicy::Closed => {
                warn_at_most_every(&self.last_warned_ms, || {
                    tracing::warn!(
                        redis = %self.shown,
                        error = %why,
                        "requests are refused: Redis cannot be reached (on_redis_error = \"closed\")"
                    );
                });
                Err(ApiError::new(
                    ErrorKind::Unavailable,
                    "rate limits cannot be checked right now (their store, Redis, does not answer); retry shortly",
                )
                .with_code("rate_limit_unavailable")
                .with_retry_after(1))
            }
        }
    }
}

fn warn_at_most_every(last: &AtomicU64, warn: impl FnOnce()) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let before = last.load(Ordering::Relaxed);
    if now.saturating_sub(before) >= WARN_EVERY_MS
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn();
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn admit(&self, who: &Principal, tokens: u64) -> Result<Quota, ApiError> {
        let (tx, rx) = oneshot::channel();
        let entry = Entry {
            id: who.id.clone(),
            rpm: who.rpm,
            tpm: who.tpm,
            op: Op::Admit(tokens, tx),
        };
        // The timeout covers the wait for a place in the queue, the batch before
        // this one, and this one's round trip.
        let answer = tokio::time::timeout(self.timeout, async {
            self.queue
                .send(entry)
                .await
                .map_err(|_| Arc::<str>::from("the limiter's Redis task has stopped"))?;
            rx.await
                .map_err(|_| Arc::<str>::from("the limiter's Redis task has stopped"))?
        })
        .await;
        let v = match answer {
            Ok(Ok(v)) => v,
            Ok(Err(why)) => return self.unavailable(who, &why),
            Err(_) => {
                return self.unavailable(
                    who,
                    &format!("no answer within {} ms", self.timeout.as_millis()),
                );
            }
        };
        let ms = |i: usize| v[i].max(0) as f64 / 1000.0;
        if v[0] < 0 {
            return Err(rate_limited(who, ms(1), ms(2)));
        }
        let mut q = Quota::default();
        if who.rpm > 0 {
            q.requests = Some(QuotaLine {
                limit: u64::from(who.rpm),
                remaining: v[0] as u64,
                reset_secs: ms(2),
            });
        }
        if who.tpm > 0 {
            q.tokens = Some(QuotaLine {
                limit: who.tpm,
                remaining: v[1].max(0) as u64,
                reset_secs: ms(3),
            });
        }
        Ok(q)
    }

    fn settle(&self, who: &Principal, estimated: u64, actual: u64) {
        if who.tpm == 0 || estimated == actual {
            return;
        }
        // Given back (or, past the estimate, taken): a signed count, saturated.
        let delta = i128::from(estimated) - i128::from(actual);
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        let entry = Entry {
            id: who.id.clone(),
            rpm: who.rpm,
            tpm: who.tpm,
            op: Op::Settle(delta),
        };
        match self.queue.try_send(entry) {
            Ok(()) => {}
            // A full queue (a burst, or Redis slow): wait for a place off the
            // caller's path rather than lose the usage.
            Err(mpsc::error::TrySendError::Full(entry)) => {
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    return batch::settle_lost(&self.shown, &self.last_warned_ms);
                };
                let queue = self.queue.clone();
                let timeout = self.timeout;
                let shown = self.shown.clone();
                let last = self.last_warned_ms.clone();
                rt.spawn(async move {
                    if !matches!(
                        tokio::time::timeout(timeout, queue.send(entry)).await,
                        Ok(Ok(()))
                    ) {
                        batch::settle_lost(&shown, &last);
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                batch::settle_lost(&self.shown, &self.last_warned_ms);
            }
        }
    }
}
