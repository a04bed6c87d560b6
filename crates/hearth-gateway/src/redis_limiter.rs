//! [`RedisLimiter`]: the per-key limits counted in Redis, so that every replica
//! draws on the same buckets and a limit of N means N whatever the replica count.
//!
//! The buckets are those of [`crate::LocalLimiter`] (they refill continuously, a
//! request larger than the minute's budget waits for a full bucket and runs it into
//! debt), kept in one Redis hash per key and changed only by Lua scripts: each
//! admission is one script that refills, checks and takes, so two replicas can never
//! both take the last request (no read-then-write race). The clock is Redis's own
//! (`TIME`), so replicas with skewed clocks agree. A hash expires once its buckets
//! would be full again: an idle key costs nothing.
//!
//! Redis unreachable, or slower than `redis_timeout_ms`: the configured policy. Open
//! admits the request (a warning at most every 10 s and
//! `hearth_ratelimit_redis_errors_total`); closed refuses it with 503
//! `rate_limit_unavailable`. The connection comes back by itself when Redis does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hearth_api::{ApiError, ErrorKind};
use hearth_config::{RedisFailurePolicy, redact_url};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::limiter::{Limiter, Quota, QuotaLine, rate_limited};
use crate::principal::Principal;

/// Refills the bucket levels `r` (requests) and `tk` (tokens) to Redis's now, from
/// `KEYS[1]` and `ARGV[1]` (rpm), `ARGV[2]` (tpm). A missing hash is full buckets.
/// Straight-line code: Redis runs it for every limited request (no closures, no
/// string formatting: Redis writes a Lua number as `%.17g`, exactly).
const REFILL: &str = r#"
local key = KEYS[1]
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local h = redis.call('HMGET', key, 'r', 't', 'at')
local r = tonumber(h[1]) or rpm
local tk = tonumber(h[2]) or tpm
local dt = now - (tonumber(h[3]) or now)
if dt < 0 then dt = 0 end
if rpm > 0 then r = math.min(rpm, r + dt * rpm / 60000) end
if tpm > 0 then tk = math.min(tpm, tk + dt * tpm / 60000) end
"#;

/// Writes the levels back; the hash expires once both buckets would be full
/// again (`rfull`, `tfull`: ms until then, capped so that an absurd debt stays an
/// integer Redis can take). Sets `rfull` and `tfull` for the caller.
const STORE: &str = r#"
local rfull, tfull = 0, 0
if rpm > 0 then rfull = math.min(1e15, math.ceil((rpm - r) * 60000 / rpm)) end
if tpm > 0 then tfull = math.min(1e15, math.ceil((tpm - tk) * 60000 / tpm)) end
redis.call('HSET', key, 'r', r, 't', tk, 'at', now)
redis.call('PEXPIRE', key, math.max(rfull, tfull) + 1000)
"#;

/// Admits one request of `ARGV[3]` tokens: `{1, 0, 0, requests left, tokens left,
/// ms until requests full, ms until tokens full}`, or `{0, request wait ms, token
/// wait ms}` (nothing written: a refusal takes nothing).
const ADMIT: &str = r#"
local want = tonumber(ARGV[3])
local rwait = 0
if rpm > 0 and r < 1 then rwait = math.min(1e15, math.ceil((1 - r) * 60000 / rpm)) end
local twait = 0
if tpm > 0 then
  local need = math.min(want, tpm)
  if tk < need then twait = math.min(1e15, math.ceil((need - tk) * 60000 / tpm)) end
end
if rwait > 0 or twait > 0 then return {0, rwait, twait} end
if rpm > 0 then r = r - 1 end
if tpm > 0 then tk = tk - want end
"#;

const ADMITTED: &str = r#"
return {1, 0, 0, math.floor(math.max(r, 0)), math.floor(math.max(tk, 0)), rfull, tfull}
"#;

/// Gives back `ARGV[3]` tokens (negative: takes them) once a request's real usage
/// is known.
const SETTLE: &str = r#"
if tpm > 0 then tk = math.min(tpm, tk + tonumber(ARGV[3])) end
"#;

/// How often the open policy logs that Redis is unreachable.
const WARN_EVERY_MS: u64 = 10_000;

/// Per-key limits in Redis, shared by every replica pointed at it.
pub struct RedisLimiter {
    conn: ConnectionManager,
    admit: redis::Script,
    settle: redis::Script,
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
        Ok(RedisLimiter {
            conn,
            admit: redis::Script::new(&format!("{REFILL}{ADMIT}{STORE}{ADMITTED}")),
            settle: redis::Script::new(&format!("{REFILL}{SETTLE}{STORE}return 1")),
            prefix: o.prefix,
            timeout: o.timeout,
            policy: o.policy,
            shown,
            last_warned_ms: Arc::new(AtomicU64::new(0)),
        })
    }

    fn key(&self, who: &Principal) -> String {
        format!("{}:ratelimit:{}", self.prefix, who.id)
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
        let mut conn = self.conn.clone();
        let mut call = self.admit.key(self.key(who));
        call.arg(who.rpm).arg(who.tpm).arg(tokens);
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut conn)).await;
        let v = match answer {
            Ok(Ok(v)) if v.len() == 7 || (v.len() == 3 && v[0] == 0) => v,
            Ok(Ok(v)) => return self.unavailable(who, &format!("unexpected answer {v:?}")),
            Ok(Err(e)) => return self.unavailable(who, &e.to_string()),
            Err(_) => {
                return self.unavailable(
                    who,
                    &format!("no answer within {} ms", self.timeout.as_millis()),
                );
            }
        };
        let ms = |i: usize| v[i].max(0) as f64 / 1000.0;
        if v[0] != 1 {
            let (req_wait, tok_wait) = (ms(1), ms(2));
            return Err(rate_limited(who, req_wait, tok_wait));
        }
        let mut q = Quota::default();
        if who.rpm > 0 {
            q.requests = Some(QuotaLine {
                limit: u64::from(who.rpm),
                remaining: v[3].max(0) as u64,
                reset_secs: ms(5),
            });
        }
        if who.tpm > 0 {
            q.tokens = Some(QuotaLine {
                limit: who.tpm,
                remaining: v[4].max(0) as u64,
                reset_secs: ms(6),
            });
        }
        Ok(q)
    }

    fn settle(&self, who: &Principal, estimated: u64, actual: u64) {
        if who.tpm == 0 || estimated == actual {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Given back (or, past the estimate, taken): a signed count, saturated.
        let delta = i128::from(estimated) - i128::from(actual);
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        let mut conn = self.conn.clone();
        let script = self.settle.clone();
        let key = self.key(who);
        let (rpm, tpm) = (who.rpm, who.tpm);
        let timeout = self.timeout;
        let shown = self.shown.clone();
        let last = self.last_warned_ms.clone();
        rt.spawn(async move {
            let mut call = script.key(key);
            call.arg(rpm).arg(tpm).arg(delta);
            let r = tokio::time::timeout(timeout, call.invoke_async::<i64>(&mut conn)).await;
            if !matches!(r, Ok(Ok(_))) {
                metrics::counter!("hearth_ratelimit_redis_errors_total", "policy" => "settle")
                    .increment(1);
                warn_at_most_every(&last, || {
                    tracing::warn!(redis = %shown, "a request's token usage could not be written to Redis");
                });
            }
        });
    }
}
