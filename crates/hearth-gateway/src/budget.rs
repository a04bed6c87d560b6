//! Token budgets: how many tokens a key may use per calendar period
//! (`[[keys]] budget_tokens`, `budget_period`), counted in a [`UsageLedger`] (the
//! database) so that a budget holds across restarts and is one count for every
//! replica.
//!
//! A request is admitted while the key's count for the period is under its budget,
//! and refused (429 `insufficient_quota`, `Retry-After` until the period renews)
//! once it is not. The answer's tokens are added when it ends, so requests admitted
//! together may take a key past its budget by what they use; the next ones wait for
//! the next period. The count is read from the ledger at most every [`REFRESH`]
//! per key (other replicas' use shows within that) and kept current in between by
//! this process's own settlements. Those are summed per key in memory and written
//! once a second ([`WRITE_EVERY`]), one statement per key whatever the request
//! rate, off the requests' path; [`Budgets::flush`] writes what is left at
//! shutdown.
//!
//! When the ledger cannot be read within [`READ_TIMEOUT`], a request is judged by
//! what this process counted (admitted unless that alone is past the budget) and a
//! warning logged, and the read is not tried again for [`REFRESH`]: a database
//! that is down or slow must neither refuse every budgeted key's requests nor hold
//! each of them. Counts that could not be written are kept and written at the next
//! turn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_api::{ApiError, ErrorKind, civil_from_days, days_from_civil};
use hearth_config::{Budget, BudgetPeriod};

use crate::principal::Principal;

/// How long a count read from the ledger is trusted before it is read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The longest a request waits for its key's count; past it, the request is judged
/// by this process's own count.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the tokens settled since are written to the ledger.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// A count nobody asked about for this long is forgotten (read again if needed).
const FORGET: Duration = Duration::from_secs(60);

/// Where the counts live: tokens per key and period (its start, UTC milliseconds).
#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// The tokens `key` used in the period starting at `period_start`.
    async fn used(&self, key: &str, period_start: i64) -> Result<u64, String>;
    /// Adds `tokens` to that count, atomically; the count after.
    async fn add(&self, key: &str, period_start: i64, tokens: u64) -> Result<u64, String>;
}

/// The budgets of every key that has one, over one ledger. Shared in an `Arc`.
pub struct Budgets {
    ledger: Arc<dyn UsageLedger>,
    counts: Mutex<HashMap<(Arc<str>, i64), Count>>,
    /// One writer at a time (the timer's, or a flush).
    writer: tokio::sync::Mutex<()>,
    /// The timer that writes every [`WRITE_EVERY`] runs.
    timer: AtomicBool,
    /// The time, in UTC milliseconds (a test's own clock).
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
}

/// A key's count in one period, as this process knows it.
#[derive(Default)]
struct Count {
    /// What the ledger said last (counts only grow within a period).
    stored: u64,
    /// When it said it; `None`: read it before trusting `stored`.
    read: Option<Instant>,
    /// Settled here and not yet written.
    unsent: u64,
    /// Being written now.
    sending: u64,
}

impl Count {
    fn used(&self) -> u64 {
        self.stored + self.unsent + self.sending
    }

    fn fresh(&self) -> bool {
        self.read.is_some_and(|r| r.elapsed() < REFRESH)
    }
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets").finish_non_exhaustive()
    }
}

impl Budgets {
    pub fn new(ledger: Arc<dyn UsageLedger>) -> Self {
        Budgets {
            ledger,
            counts: Mutex::new(HashMap::new()),
            writer: tokio::sync::Mutex::new(()),
            timer: AtomicBool::new(false),
            clock: Box::new(now_ms),
        }
    }

    /// The same, on `clock` (UTC milliseconds) instead of the system's.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Admits a request of `who` when its budget (if any) is not used up for this
    /// period, and says where the budget stands (for the answer's headers, and
    /// for [`Budgets::settle`]); else 429 `insufficient_quota` with `Retry-After`
    /// until it renews.
    pub async fn check(&self, who: &Principal) -> Result<Option<BudgetState>, ApiError> {
        let Some(state) = self.state(who).await else {
            return Ok(None);
        };
        if state.used < state.budget.tokens {
            return Ok(Some(state));
        }
        Err(exhausted(who, &state, (self.clock)()))
    }

    /// Where the budget of `who` stands now (`None`: it has none), read as
    /// [`Budgets::check`] reads it.
    pub async fn state(&self, who: &Principal) -> Option<BudgetState> {
        let budget = who.budget?;
        let (start, end) = period_bounds(budget.period, (self.clock)());
        let at = (who.id.clone(), start);
        let known = match self.lock().get_mut(&at) {
            Some(c) if c.fresh() => Some(c.used()),
            // This request reads the count again; those that come meanwhile take the
            // count as it is rather than each read it too.
            Some(c) => {
                c.read = Some(Instant::now());
                None
            }
            None => None,
        };
        let used = match known {
            Some(u) => u,
            None => {
                let read = tokio::time::timeout(READ_TIMEOUT, self.ledger.used(&who.id, start))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer in {READ_TIMEOUT:?}")));
                let mut counts = self.lock();
                let c = counts.entry(at).or_default();
                // A failed read is not tried again for REFRESH either: a database
                // that is down or slow costs this key one wait (and one warning)
                // every 2 s, not one per request.
                c.read = Some(Instant::now());
                match read {
                    Ok(stored) => c.stored = c.stored.max(stored),
                    Err(e) => {
                        tracing::warn!(key = %who.id, error = %e, "the key's token budget cannot be read; judged by this process's own count");
                    }
                }
                c.used()
            }
        };
        if let Some(g) = &who.counters.budget_used {
            g.set(used as f64);
        }
        Some(BudgetState {
            budget,
            used,
            start,
            end,
        })
    }

    /// Adds `tokens` of an answer of `who` to its count for the period it was
    /// admitted in (`state`, from [`Budgets::check`]): at once in this process, in
    /// the ledger within [`WRITE_EVERY`].
    pub fn settle(self: &Arc<Self>, who: &Principal, state: &BudgetState, tokens: u64) {
        if tokens == 0 {
            return;
        }
        self.lock()
            .entry((who.id.clone(), state.start))
            .or_default()
            .unsent += tokens;
        // A load first: no write to a shared cache line on every answer.
        if !self.timer.load(Ordering::Relaxed) && !self.timer.swap(true, Ordering::SeqCst) {
            self.start_timer();
        }
    }

    /// Writes what was settled every [`WRITE_EVERY`], for as long as the budgets
    /// are in use.
    fn start_timer(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a caller outside one): `flush` writes them.
            self.timer.store(false, Ordering::SeqCst);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(WRITE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.write().await;
            }
        });
    }

    /// Writes what is still unwritten (waiting at most `limit`): a stopping server
    /// loses none.
    pub async fn flush(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.write()).await;
    }

    /// One statement per key and period with tokens unwritten; what fails stays
    /// for the next turn. Counts idle for [`FORGET`] are dropped.
    async fn write(&self) {
        let _turn = self.writer.lock().await;
        let batch: Vec<((Arc<str>, i64), u64)> = self
            .lock()
            .iter_mut()
            .filter(|(_, c)| c.unsent > 0)
            .map(|(at, c)| {
                let n = std::mem::take(&mut c.unsent);
                c.sending += n;
                (at.clone(), n)
            })
            .collect();
        for ((key, start), n) in batch {
            let written = self.ledger.add(&key, start, n).await;
            let mut counts = self.lock();
            let c = counts.entry((key.clone(), start)).or_default();
            c.sending -= n;
            match written {
                Ok(total) => {
                    c.stored = c.stored.max(total);
                    c.read = Some(Instant::now());
                }
                Err(e) => {
                    c.unsent += n;
                    tracing::warn!(key = %key, tokens = n, error = %e, "tokens not yet counted against the key's budget; trying again");
                }
            }
        }
        self.lock().retain(|_, c| {
            c.unsent > 0 || c.sending > 0 || c.read.is_some_and(|r| r.elapsed() < FORGET)
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Arc<str>, i64), Count>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a key's budget stands in the current period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetState {
    pub budget: Budget,
    /// Tokens counted in this period so far.
    pub used: u64,
    /// The period: its start and the next one's (UTC milliseconds).
    pub start: i64,
    pub end: i64,
}

impl BudgetState {
    /// Tokens left this period.
    pub fn remaining(&self) -> u64 {
        self.budget.tokens.saturating_sub(self.used)
    }

    /// When the budget renews: `2026-12-03T00:00:00Z`.
    pub fn renews_at(&self) -> String {
        utc(self.end)
    }

    /// When the period began, in the same form.
    pub fn started_at(&self) -> String {
        utc(self.start)
    }
}

fn exhausted(who: &Principal, state: &BudgetState, now: i64) -> ApiError {
    let wait = u64::try_from((state.end - now).max(0))
        .unwrap_or(0)
        .div_ceil(1000)
        .max(1);
    ApiError::new(
        ErrorKind::RateLimited,
        format!(
            "key `{}` has used its budget of {} tokens this {} ({} used); it renews at {}",
            who.id,
            state.budget.tokens,
            state.budget.period.as_str(),
            state.used,
            state.renews_at()
        ),
    )
    .with_code("insufficient_quota")
    .with_retry_after(wait)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const DAY: i64 = 86_400_000;

/// The period holding `now` (UTC milliseconds): its start and the next one's.
pub fn period_bounds(period: BudgetPeriod, now: i64) -> (i64, i64) {
    let day = now.div_euclid(DAY);
    match period {
        BudgetPeriod::Day => (day * DAY, (day + 1) * DAY),
        BudgetPeriod::Week => {
            // 1970-01-01 was a Thursday: Monday is 3 days before.
            let monday = day - (day + 3).rem_euclid(7);
            (monday * DAY, (monday + 7) * DAY)
        }
        BudgetPeriod::Month => {
            let (y, m, _) = civil_from_days(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                days_from_civil(y, m, 1) * DAY,
                days_from_civil(ny, nm, 1) * DAY,
            )
        }
    }
}

/// `2026-12-03T00:00:00Z`.
fn utc(ms: i64) -> String {
    hearth_api::rfc3339(u64::try_from(ms.div_euclid(1000)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize};

    /// 2026-12-02T15:30:00Z, a Wednesday.
    const NOW: i64 = 1_796_225_400_000;

    fn at(ms: i64) -> String {
        utc(ms)
    }

    #[test]
    fn periods_are_utc_days_weeks_from_monday_and_calendar_months() {
        assert_eq!(at(NOW), "2026-12-02T15:30:00Z");
        let b = |p| {
            let (s, e) = period_bounds(p, NOW);
            (at(s), at(e))
        };
        assert_eq!(
            b(BudgetPeriod::Day),
            ("2026-12-02T00:00:00Z".into(), "2026-12-03T00:00:00Z".into())
        );
        assert_eq!(
            b(BudgetPeriod::Week),
            ("2026-11-30T00:00:00Z".into(), "2026-12-07T00:00:00Z".into())
        );
        assert_eq!(
            b(BudgetPeriod::Month),
            ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into())
        );
        // A leap February, and the first millisecond of a period is in it.
        let feb = days_from_civil(2028, 2, 10) * DAY;
        let (s, e) = period_bounds(BudgetPeriod::Month, feb);
        assert_eq!(
            (at(s), at(e)),
            ("2028-02-01T00:00:00Z".into(), "2028-03-01T00:00:00Z".into())
        );
        assert_eq!(period_bounds(BudgetPeriod::Month, s).0, s);
        assert_eq!(period_bounds(BudgetPeriod::Month, s - 1).1, s);
        // A Monday starts each week.
        let monday = days_from_civil(2026, 11, 30) * DAY;
        for offset in 0..7 {
            assert_eq!(
                period_bounds(BudgetPeriod::Week, monday + offset * DAY + 5).0,
                monday
            );
        }
    }

    /// A ledger in memory, that can be made to fail.
    #[derive(Default)]
    struct Memory {
        counts: Mutex<HashMap<(String, i64), u64>>,
        reads: AtomicUsize,
        adds: AtomicUsize,
        broken: AtomicBool,
        failing_adds: AtomicBool,
    }

    #[async_trait]
    impl UsageLedger for Memory {
        async fn used(&self, key: &str, start: i64) -> Result<u64, String> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.broken.load(Ordering::SeqCst) {
                return Err("database is down".into());
            }
            Ok(*self
                .counts
                .lock()
                .unwrap()
                .get(&(key.into(), start))
                .unwrap_or(&0))
        }
        async fn add(&self, key: &str, start: i64, tokens: u64) -> Result<u64, String> {
            self.adds.fetch_add(1, Ordering::SeqCst);
            if self.failing_adds.load(Ordering::SeqCst) {
                return Err("disk full".into());
            }
            let mut c = self.counts.lock().unwrap();
            let n = c.entry((key.into(), start)).or_default();
            *n += tokens;
            Ok(*n)
        }
    }

    /// Budgets on an in-memory ledger, with a clock the test moves (set to `NOW`).
    fn clocked() -> (Arc<Memory>, Arc<AtomicI64>, Arc<Budgets>) {
        let ledger = Arc::new(Memory::default());
        let clock = Arc::new(AtomicI64::new(NOW));
        let c = clock.clone();
        let budgets =
            Arc::new(Budgets::new(ledger.clone()).with_clock(move || c.load(Ordering::SeqCst)));
        (ledger, clock, budgets)
    }

    fn kid(tokens: u64) -> Principal {
        Principal::new("kid", 0, 0, false).with_budget(Some(Budget {
            tokens,
            period: BudgetPeriod::Day,
        }))
    }

    #[tokio::test]
    async fn a_key_is_refused_once_its_budget_is_used_until_the_period_renews() {
        let (ledger, clock, budgets) = clocked();
        let who = kid(100);
        let s = budgets.check(&who).await.unwrap().unwrap();
        assert_eq!((s.used, s.remaining()), (0, 100));
        assert_eq!(s.started_at(), "2026-12-02T00:00:00Z");
        assert_eq!(s.renews_at(), "2026-12-03T00:00:00Z");
        budgets.settle(&who, &s, 60);
        let s = budgets.check(&who).await.unwrap().unwrap(); // 60 < 100
        assert_eq!((s.used, s.remaining()), (60, 40));
        budgets.settle(&who, &s, 60);
        let e = budgets.check(&who).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        assert!(
            e.message.contains("key `kid` has used its budget of 100 tokens this day (120 used); it renews at 2026-12-03T00:00:00Z"),
            "{}",
            e.message
        );
        // 8.5 hours to midnight.
        assert_eq!(e.retry_after, Some(30_600));
        budgets.flush(Duration::from_secs(5)).await;
        assert_eq!(
            ledger.counts.lock().unwrap()[&("kid".into(), period_bounds(BudgetPeriod::Day, NOW).0)],
            120
        );
        // A key without a budget is never refused, and has no state.
        let other = Principal::new("other", 0, 0, false);
        assert_eq!(budgets.check(&other).await.unwrap(), None);
        // The next day starts from zero.
        clock.store(NOW + DAY, Ordering::SeqCst);
        let s = budgets.check(&who).await.unwrap().unwrap();
        assert_eq!((s.used, s.remaining()), (0, 100));
        assert_eq!(budgets.state(&who).await, Some(s));
    }

    #[tokio::test]
    async fn an_answer_counts_in_the_period_it_was_admitted_in() {
        let (ledger, clock, budgets) = clocked();
        let who = kid(100);
        let s = budgets.check(&who).await.unwrap().unwrap();
        // It ends after midnight: yesterday's count gets it, today's starts at 0.
        clock.store(s.end + 5, Ordering::SeqCst);
        budgets.settle(&who, &s, 70);
        budgets.flush(Duration::from_secs(5)).await;
        assert_eq!(ledger.counts.lock().unwrap()[&("kid".into(), s.start)], 70);
        assert_eq!(budgets.state(&who).await.unwrap().used, 0);
    }

    #[tokio::test]
    async fn another_replicas_use_counts_once_the_count_is_read_again() {
        let ledger = Arc::new(Memory::default());
        let one = Arc::new(Budgets::new(ledger.clone()).with_clock(|| NOW));
        let two = Arc::new(Budgets::new(ledger.clone()).with_clock(|| NOW));
        let who = kid(100);
        one.check(&who).await.unwrap();
        let s = two.check(&who).await.unwrap().unwrap();
        two.settle(&who, &s, 150);
        two.flush(Duration::from_secs(5)).await;
        // `one` read the count just now: it trusts it for REFRESH, then reads again.
        let reads = ledger.reads.load(Ordering::SeqCst);
        one.check(&who).await.unwrap();
        assert_eq!(ledger.reads.load(Ordering::SeqCst), reads);
        let at = (Arc::from("kid"), period_bounds(BudgetPeriod::Day, NOW).0);
        one.lock().get_mut(&at).unwrap().read = Some(Instant::now() - REFRESH);
        assert_eq!(one.check(&who).await.unwrap_err().status(), 429);
    }

    #[tokio::test]
    async fn a_ledger_that_cannot_be_read_admits_and_counts_later() {
        let ledger = Arc::new(Memory::default());
        ledger.broken.store(true, Ordering::SeqCst);
        let budgets = Arc::new(Budgets::new(ledger.clone()).with_clock(|| NOW));
        let who = kid(10);
        let s = budgets.check(&who).await.unwrap().unwrap();
        budgets.settle(&who, &s, 50);
        // This process's own count is past the budget; the failed read is not tried
        // again for REFRESH.
        assert_eq!(budgets.check(&who).await.unwrap_err().status(), 429);
        assert_eq!(ledger.reads.load(Ordering::SeqCst), 1);
        budgets.flush(Duration::from_secs(5)).await;
        assert_eq!(ledger.counts.lock().unwrap().values().sum::<u64>(), 50);
    }

    /// A ledger that never answers a read.
    struct Stalled;

    #[async_trait]
    impl UsageLedger for Stalled {
        async fn used(&self, _: &str, _: i64) -> Result<u64, String> {
            std::future::pending().await
        }
        async fn add(&self, _: &str, _: i64, tokens: u64) -> Result<u64, String> {
            Ok(tokens)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_ledger_holds_a_request_for_read_timeout_at_most() {
        let budgets = Budgets::new(Arc::new(Stalled)).with_clock(|| NOW);
        let started = tokio::time::Instant::now();
        budgets.check(&kid(10)).await.unwrap();
        assert_eq!(started.elapsed(), READ_TIMEOUT);
        // Within REFRESH the next request does not wait at all.
        budgets.check(&kid(10)).await.unwrap();
        assert_eq!(started.elapsed(), READ_TIMEOUT);
    }

    #[tokio::test]
    async fn many_answers_are_one_write_per_key_and_a_failed_write_is_kept() {
        let ledger = Arc::new(Memory::default());
        let budgets = Arc::new(Budgets::new(ledger.clone()).with_clock(|| NOW));
        let who = kid(1_000_000);
        let s = budgets.check(&who).await.unwrap().unwrap();
        ledger.failing_adds.store(true, Ordering::SeqCst);
        for _ in 0..500 {
            budgets.settle(&who, &s, 3);
        }
        budgets.flush(Duration::from_secs(5)).await;
        assert_eq!(ledger.adds.load(Ordering::SeqCst), 1);
        assert!(ledger.counts.lock().unwrap().is_empty());
        ledger.failing_adds.store(false, Ordering::SeqCst);
        budgets.settle(&who, &s, 1);
        budgets.flush(Duration::from_secs(5)).await;
        assert_eq!(ledger.adds.load(Ordering::SeqCst), 2);
        assert_eq!(ledger.counts.lock().unwrap().values().sum::<u64>(), 1501);
        // The timer writes without a flush.
        budgets.settle(&who, &s, 9);
        tokio::time::sleep(WRITE_EVERY * 2).await;
        assert_eq!(ledger.counts.lock().unwrap().values().sum::<u64>(), 1510);
    }
}
