//! The admissions and settlements waiting for Redis, sent together: one task per
//! connection drains a queue of them and runs ONE script call for all it found, so
//! Redis pays one script invocation and one socket read per batch, and Hearth one
//! command encoding, instead of one each per request.
//!
//! A batch is whatever is waiting when the task gets to it: nothing waits for more
//! (a lone request goes at once), and under load the batch grows by itself while
//! the previous one is in Redis. The script takes the entries in arrival order, so
//! two admissions of one key in one batch are decided in that order, each seeing
//! what the one before took; it reads each key's hash once and writes it once, and
//! is atomic like any script, so replicas still never both take the last request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::warn_at_most_every;

/// The most entries in one script call: a script holds Redis for its whole run,
/// and a few hundred entries are well under a millisecond.
const MAX_BATCH: usize = 256;

/// How many entries may wait for the task; past it, admissions wait to be queued
/// (within their timeout), so a stalled Redis cannot grow the queue without bound.
pub(super) const QUEUE: usize = 4096;

/// The buckets of every key in `KEYS` (each once), then the entries: five `ARGV`
/// each, in arrival order: the key's index in `KEYS`, the operation (`1` admits
/// `tokens`, `2` settles: gives back `tokens`, negative takes), rpm, tpm, tokens.
///
/// The buckets are [`crate::LocalLimiter`]'s: `r` requests and `t` tokens, refilled
/// continuously to Redis's own clock (`TIME`, so replicas with skewed clocks agree),
/// `at` the time of the levels; a missing hash is full buckets. An admission
/// answers seven integers: `1, 0, 0, requests left, tokens left, ms until requests
/// full, ms until tokens full`, or `0, request wait ms, token wait ms, 0, 0, 0, 0`
/// (a refusal takes nothing); a settlement answers nothing. A request larger than
/// the minute's budget waits for a full bucket and runs it into debt. Each hash
/// written expires once both buckets would be full again (the caps keep an absurd
/// debt an integer Redis can take). Straight-line code: no closures, no string
/// formatting (Redis writes a Lua number as `%.17g`, exactly).
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local levels, order, out = {}, {}, {}
for i = 1, #ARGV, 5 do
  local k = tonumber(ARGV[i])
  local rpm = tonumber(ARGV[i + 2])
  local tpm = tonumber(ARGV[i + 3])
  local n = tonumber(ARGV[i + 4])
  local s = levels[k]
  if s == nil then
    local h = redis.call('HMGET', KEYS[k], 'r', 't', 'at')
    s = {tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), 0, 0, false}
    levels[k] = s
  end
  local r = s[1] or rpm
  local tk = s[2] or tpm
  local dt = now - (s[3] or now)
  if dt < 0 then dt = 0 end
  if rpm > 0 then r = math.min(rpm, r + dt * rpm / 60000) end
  if tpm > 0 then tk = math.min(tpm, tk + dt * tpm / 60000) end
  local take = true
  if ARGV[i + 1] == '1' then
    local rwait, twait = 0, 0
    if rpm > 0 and r < 1 then rwait = math.min(1e15, math.ceil((1 - r) * 60000 / rpm)) end
    if tpm > 0 then
      local need = math.min(n, tpm)
      if tk < need then twait = math.min(1e15, math.ceil((need - tk) * 60000 / tpm)) end
    end
    local o = #out
    if rwait > 0 or twait > 0 then
      take = false
      out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6], out[o + 7] = 0, rwait, twait, 0, 0, 0, 0
    else
      if rpm > 0 then r = r - 1 end
      if tpm > 0 then tk = tk - n end
      local rfull, tfull = 0, 0
      if rpm > 0 then rfull = math.min(1e15, math.ceil((rpm - r) * 60000 / rpm)) end
      if tpm > 0 then tfull = math.min(1e15, math.ceil((tpm - tk) * 60000 / tpm)) end
      out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6], out[o + 7] = 1, 0, 0, math.floor(math.max(r, 0)), math.floor(math.max(tk, 0)), rfull, tfull
    end
  elseif tpm > 0 then
    tk = math.min(tpm, tk + n)
  end
  if take then
    if not s[6] then order[#order + 1] = k end
    s[1], s[2], s[3], s[4], s[5], s[6] = r, tk, now, rpm, tpm, true
  end
end
for j = 1, #order do
  local s = levels[order[j]]
  local r, tk, rpm, tpm = s[1], s[2], s[4], s[5]
  local rfull, tfull = 0, 0
  if rpm > 0 then rfull = math.min(1e15, math.ceil((rpm - r) * 60000 / rpm)) end
  if tpm > 0 then tfull = math.min(1e15, math.ceil((tpm - tk) * 60000 / tpm)) end
  redis.call('HSET', KEYS[order[j]], 'r', r, 't', tk, 'at', now)
  redis.call('PEXPIRE', KEYS[order[j]], math.max(rfull, tfull) + 1000)
end
return out
"#;

/// An admission's answer: the script's seven integers, or why there are none.
pub(super) type Answer = Result<[i64; 7], Arc<str>>;

/// One request's business with Redis.
pub(super) struct Entry {
    /// The principal's id (the Redis key is the prefix and this).
    pub id: Arc<str>,
    pub rpm: u32,
    pub tpm: u64,
    pub op: Op,
}

pub(super) enum Op {
    /// Admits a request of this many tokens; the answer goes back to the caller.
    Admit(u64, oneshot::Sender<Answer>),
    /// Gives back this many tokens (negative: takes them); nobody waits for it.
    Settle(i64),
}

/// What the task needs besides its queue.
pub(super) struct Batcher {
    pub conn: ConnectionManager,
    pub prefix: String,
    pub timeout: Duration,
    pub shown: String,
    pub last_warned_ms: Arc<AtomicU64>,
}

impl Batcher {
    /// Runs until every sender is gone (the limiter was dropped).
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Entry>) {
        let script = redis::Script::new(SCRIPT);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut keys: HashMap<Arc<str>, usize> = HashMap::new();
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // An admission whose caller stopped waiting (its timeout) is not counted.
            batch.retain(|e| !matches!(&e.op, Op::Admit(_, tx) if tx.is_closed()));
            if !batch.is_empty() {
                self.send(&script, &mut keys, &mut batch).await;
            }
            batch.clear();
            keys.clear();
        }
    }

    /// One script call for `batch`, its answers handed out.
    async fn send(
        &mut self,
        script: &redis::Script,
        keys: &mut HashMap<Arc<str>, usize>,
        batch: &mut Vec<Entry>,
    ) {
        let mut call = script.prepare_invoke();
        let mut admissions = 0;
        for e in batch.iter() {
            let next = keys.len() + 1;
            let k = *keys.entry(e.id.clone()).or_insert_with(|| {
                call.key(format!("{}:ratelimit:{}", self.prefix, e.id));
                next
            });
            call.arg(k);
            match &e.op {
                Op::Admit(tokens, _) => {
                    admissions += 1;
                    call.arg(1).arg(e.rpm).arg(e.tpm).arg(*tokens)
                }
                Op::Settle(delta) => call.arg(2).arg(e.rpm).arg(e.tpm).arg(*delta),
            };
        }
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut self.conn)).await;
        let why: Arc<str> = match answer {
            Ok(Ok(v)) if v.len() == 7 * admissions => {
                let mut answers = v.chunks_exact(7);
                for e in batch.drain(..) {
                    if let Op::Admit(_, tx) = e.op
                        && let Some(a) = answers.next()
                    {
                        let mut seven = [0; 7];
                        seven.copy_from_slice(a);
                        // A caller that stopped waiting has already had its answer.
                        let _ = tx.send(Ok(seven));
                    }
                }
                return;
            }
            Ok(Ok(v)) => format!("unexpected answer of {} integers", v.len()).into(),
            Ok(Err(e)) => e.to_string().into(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()).into(),
        };
        for e in batch.drain(..) {
            match e.op {
                Op::Admit(_, tx) => {
                    let _ = tx.send(Err(why.clone()));
                }
                Op::Settle(_) => settle_lost(&self.shown, &self.last_warned_ms),
            }
        }
    }
}

/// A settlement that never reached Redis: the metric, and a warning at most every
/// 10 s.
pub(super) fn settle_lost(shown: &str, last_warned_ms: &AtomicU64) {
    metrics::counter!("hearth_ratelimit_redis_errors_total", "policy" => "settle").increment(1);
    warn_at_most_every(last_warned_ms, || {
        tracing::warn!(redis = %shown, "a request's token usage could not be written to Redis");
    });
}
