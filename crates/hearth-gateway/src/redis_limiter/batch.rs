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

/// Every slot (a key with its limits) in `KEYS`, each once. `ARGV`: the entries,
/// two each, in arrival order: the slot's index (positive admits, negative
/// settles) and the tokens (to admit; or to give back, negative: to take); then
/// the slots' limits, rpm and tpm, two per slot in `KEYS`' order.
///
/// The buckets are [`crate::LocalLimiter`]'s: `r` requests and `t` tokens, refilled
/// continuously to Redis's own clock (`TIME`, so replicas with skewed clocks agree),
/// `at` the time of the levels; a missing hash is full buckets. Each hash is read
/// once and written once per call (its levels carried between the entries), so two
/// entries of one key see each other in order. An admission answers four integers:
/// `requests left, tokens left, ms until requests full, ms until tokens full`, or
/// `-1, request wait ms, token wait ms, 0` (a refusal takes nothing); a settlement
/// answers nothing. A request larger than the minute's budget waits for a full
/// bucket and runs it into debt. Each hash written expires once both buckets would
/// be full again (the caps keep an absurd debt an integer Redis can take).
/// Straight-line code: no closures, no string formatting (Redis writes a Lua
/// number as `%.17g`, exactly), `math`'s functions as locals (a global lookup
/// each), and as few arguments per entry as it can: Redis turns each into a
/// string object and `tonumber` parses it again.
const SCRIPT: &str = r#"
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max
local t = redis.call('TIME')
local now = t[1] * 1000 + floor(t[2] / 1000)
local entries = #ARGV - 2 * #KEYS
local rpms, tpms = {}, {}
for k = 1, #KEYS do
  rpms[k] = tonumber(ARGV[entries + 2 * k - 1])
  tpms[k] = tonumber(ARGV[entries + 2 * k])
end
local levels, order, out, no = {}, {}, {}, 0
for i = 1, entries, 2 do
  local k = tonumber(ARGV[i])
  local n = tonumber(ARGV[i + 1])
  local admit = k > 0
  if not admit then k = -k end
  local rpm, tpm, key = rpms[k], tpms[k], KEYS[k]
  local s = levels[key]
  if s == nil then
    local h = redis.call('HMGET', key, 'r', 't', 'at')
    s = {tonumber(h[1]), tonumber(h[2]), tonumber(h[3]), 0, 0, false}
    levels[key] = s
  end
  local r = s[1] or rpm
  local tk = s[2] or tpm
  local dt = now - (s[3] or now)
  if dt < 0 then dt = 0 end
  if rpm > 0 then r = min(rpm, r + dt * rpm / 60000) end
  if tpm > 0 then tk = min(tpm, tk + dt * tpm / 60000) end
  local take = true
  if admit then
    local rwait, twait = 0, 0
    if rpm > 0 and r < 1 then rwait = min(1e15, ceil((1 - r) * 60000 / rpm)) end
    if tpm > 0 then
      local need = min(n, tpm)
      if tk < need then twait = min(1e15, ceil((need - tk) * 60000 / tpm)) end
    end
    if rwait > 0 or twait > 0 then
      take = false
      out[no + 1], out[no + 2], out[no + 3], out[no + 4] = -1, rwait, twait, 0
    else
      if rpm > 0 then r = r - 1 end
      if tpm > 0 then tk = tk - n end
      local rfull, tfull = 0, 0
      if rpm > 0 then rfull = min(1e15, ceil((rpm - r) * 60000 / rpm)) end
      if tpm > 0 then tfull = min(1e15, ceil((tpm - tk) * 60000 / tpm)) end
      out[no + 1], out[no + 2], out[no + 3], out[no + 4] = floor(max(r, 0)), floor(max(tk, 0)), rfull, tfull
    end
    no = no + 4
  elseif tpm > 0 then
    tk = min(tpm, tk + n)
  end
  if take then
    if not s[6] then order[#order + 1] = key end
    s[1], s[2], s[3], s[4], s[5], s[6] = r, tk, now, rpm, tpm, true
  end
end
for j = 1, #order do
  local key = order[j]
  local s = levels[key]
  local r, tk, rpm, tpm = s[1], s[2], s[4], s[5]
  local rfull, tfull = 0, 0
  if rpm > 0 then rfull = min(1e15, ceil((rpm - r) * 60000 / rpm)) end
  if tpm > 0 then tfull = min(1e15, ceil((tpm - tk) * 60000 / tpm)) end
  redis.call('HSET', key, 'r', r, 't', tk, 'at', now)
  redis.call('PEXPIRE', key, max(rfull, tfull) + 1000)
end
return out
"#;

/// An admission's answer: the script's four integers, or why there are none.
pub(super) type Answer = Result<[i64; 4], Arc<str>>;

/// A slot of a call: a key and the limits its entries are counted against.
type Slot = (Arc<str>, u32, u64);

/// A slot's index in `KEYS` (from 1), and where its settlement is among the entries.
type SlotAt = (usize, Option<usize>);

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

enum Tokens {
    Admit(u64),
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
        let mut slots: HashMap<Slot, SlotAt> = HashMap::new();
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // An admission whose caller stopped waiting (its timeout) is not counted.
            batch.retain(|e| !matches!(&e.op, Op::Admit(_, tx) if tx.is_closed()));
            if !batch.is_empty() {
                self.send(&script, &mut slots, &mut batch).await;
            }
            batch.clear();
            slots.clear();
        }
    }

    /// One script call for `batch`, its answers handed out.
    async fn send(
        &mut self,
        script: &redis::Script,
        slots: &mut HashMap<Slot, SlotAt>,
        batch: &mut Vec<Entry>,
    ) {
        let mut call = script.prepare_invoke();
        let mut limits = Vec::new();
        let mut admissions = 0;
        // (slot, tokens): an admission's slot is positive, a settlement's negative
        // (its tokens saturated: a debt past i64 is a wait as long).
        let mut entries: Vec<(i64, Tokens)> = Vec::with_capacity(batch.len());
        for e in batch.iter() {
            let next = slots.len() + 1;
            let (k, settled_at) = slots
                .entry((e.id.clone(), e.rpm, e.tpm))
                .or_insert_with(|| {
                    call.key(format!("{}:ratelimit:{}", self.prefix, e.id));
                    limits.push((e.rpm, e.tpm));
                    (next, None)
                });
            let k = *k as i64;
            match &e.op {
                Op::Admit(tokens, _) => {
                    admissions += 1;
                    entries.push((k, Tokens::Admit(*tokens)));
                }
                // A key's settlements in one call become one, where the first was:
                // settling is fire-and-forget, so its order against the call's
                // admissions is no one's promise, and half the entries are saved
                // under load (every answered request settles).
                Op::Settle(delta) => match settled_at {
                    Some(at) => {
                        if let Some((_, Tokens::Settle(sum))) = entries.get_mut(*at) {
                            *sum = sum.saturating_add(*delta);
                        }
                    }
                    None => {
                        *settled_at = Some(entries.len());
                        entries.push((-k, Tokens::Settle(*delta)));
                    }
                },
            }
        }
        for (k, tokens) in entries {
            match tokens {
                Tokens::Admit(n) => call.arg(k).arg(n),
                Tokens::Settle(n) => call.arg(k).arg(n),
            };
        }
        for (rpm, tpm) in limits {
            call.arg(rpm).arg(tpm);
        }
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut self.conn)).await;
        let why: Arc<str> = match answer {
            Ok(Ok(v)) if v.len() == 4 * admissions => {
                let mut answers = v.chunks_exact(4);
                for e in batch.drain(..) {
                    if let Op::Admit(_, tx) = e.op
                        && let Some(a) = answers.next()
                    {
                        let mut four = [0; 4];
                        four.copy_from_slice(a);
                        // A caller that stopped waiting has already had its answer.
                        let _ = tx.send(Ok(four));
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
