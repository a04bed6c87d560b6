//! [`Gateway::complete`]: admission, dispatch, and events that settle their usage.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use hearth_api::{ApiError, Usage};
use hearth_router::{Answer, BackendError, Event, ModelMetrics, Request, Router};
use tracing::Instrument;

use crate::budget::{BudgetState, Budgets};
use crate::limiter::{Limiter, Quota};
use crate::principal::{KeyRing, Principal};

/// The service. One per server, shared by every front end (cheap to share in an
/// `Arc`; everything in it is).
pub struct Gateway {
    router: Arc<Router>,
    limiter: Arc<dyn Limiter>,
    keys: KeyRing,
    /// Keys' token budgets, when any key has one.
    budgets: Option<Arc<Budgets>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

/// An admitted, dispatched request: which model answers, and its events.
pub struct Completion {
    /// The model that answers (a fallback when one was used): its name and metrics.
    pub model: Arc<ModelMetrics>,
    /// `embedded` or `upstream`.
    pub backend: &'static str,
    /// Attempts made, across retries and fallbacks (1 = the first worked).
    pub attempts: u32,
    /// How the request was served differently from how it was asked (the model
    /// ignored its tools): for the client's `X-Hearth-Warning` header.
    pub warning: Option<String>,
    /// A Responses request answered in that API by its upstream: the events are
    /// the upstream's own (see `Dispatched::native_api`).
    pub native_api: bool,
    /// The caller's limits after admission (for `x-ratelimit-*` headers).
    pub quota: Quota,
    /// The answer's events; the usage is settled when they end or are dropped.
    pub events: Metered,
}

impl Completion {
    /// The name of the model that answers.
    pub fn model(&self) -> &str {
        self.model.model()
    }

    /// The request's span: work done for it elsewhere (a task that stores a reply)
    /// runs in it, so its log lines carry the request's id.
    pub fn span(&self) -> &tracing::Span {
        &self.events.span
    }
}

impl Gateway {
    pub fn new(router: Arc<Router>, limiter: Arc<dyn Limiter>, keys: KeyRing) -> Self {
        Gateway {
            router,
            limiter,
            keys,
            budgets: None,
        }
    }

    /// The same gateway, holding keys to their token budgets (`[[keys]]
    /// budget_tokens`) counted in `budgets`.
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = Some(Arc::new(budgets));
        self
    }

    /// Waits (at most `limit`) for the token counts still being written to the
    /// budgets' ledger: for a server that stops.
    pub async fn flush(&self, limit: std::time::Duration) {
        if let Some(b) = &self.budgets {
            b.flush(limit).await;
        }
    }

    /// The models (for listings, model checks and context lengths).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The configured client keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Runs `request` as `who`: admits it against the caller's limits, dispatches it
    /// (the named model, its retries and fallbacks; a model stopped while idle starts
    /// now), and returns once the first event arrived, so a failure before that is
    /// still a plain error the front end can answer with a status. `id` (the
    /// request's or the job's) names the span every log line of the work carries.
    pub async fn complete(
        &self,
        who: &Principal,
        request: Request,
        id: &str,
    ) -> Result<Completion, ApiError> {
        self.run(who, request, id, true).await
    }

    /// As [`Gateway::complete`], for work a request already admitted (an agent
    /// job's model calls, admitted when the job was submitted): never refused by
    /// the caller's limits, but the tokens it uses count against them, so the key's
    /// next requests wait for them.
    pub async fn complete_admitted(
        &self,
        who: &Principal,
        request: Request,
        id: &str,
    ) -> Result<Completion, ApiError> {
        self.run(who, request, id, false).await
    }

    /// Admits one request that is not itself a completion but starts model work
    /// (an agent job submitted, retried or given new code) against the caller's
    /// requests per minute and token budget: 429 with `Retry-After` past them.
    pub async fn admit(&self, who: &Principal) -> Result<Quota, ApiError> {
        let budget = self.check_budget(who).await?;
        if !who.is_limited() {
            return Ok(Quota {
                budget,
                ..Quota::default()
            });
        }
        // Not counted in `hearth_key_requests_total`: the model calls it leads to are.
        let quota = self.limiter.admit(who, 0).await?;
        Ok(Quota { budget, ..quota })
    }

    /// Refuses a key whose token budget is used up for this period; where it
    /// stands when it is not (`None`: the key has none).
    async fn check_budget(&self, who: &Principal) -> Result<Option<BudgetState>, ApiError> {
        match &self.budgets {
            Some(b) if who.budget.is_some() => b.check(who).await,
            _ => Ok(None),
        }
    }

    /// Where the token budget of `who` stands this period (`None`: it has none),
    /// refusing nothing: for a client asking what it has left.
    pub async fn budget(&self, who: &Principal) -> Option<BudgetState> {
        match &self.budgets {
            Some(b) => b.state(who).await,
            None => None,
        }
    }

    async fn run(
        &self,
        who: &Principal,
        mut request: Request,
        id: &str,
        admit: bool,
    ) -> Result<Completion, ApiError> {
        let span = tracing::info_span!("request", id, key = %who.id);
        // A key's tokens are counted from the answer's usage: a stream is asked for
        // it even when its client did not (the client's front end leaves it out).
        if who.tpm > 0 || who.budget.is_some() {
            request.ask_usage();
        }
        // Work already admitted (a job's model calls) still counts in the current
        // period; its state is read without refusing.
        let budget = if admit {
            self.check_budget(who).instrument(span.clone()).await?
        } else {
            self.budget(who).await
        };
        let (estimate, mut quota) = if admit && who.is_limited() {
            let estimate = request.estimated_prompt_tokens();
            let quota = self
                .limiter
                .admit(who, estimate)
                .instrument(span.clone())
                .await?;
            (estimate, quota)
        } else {
            (0, Quota::default())
        };
        quota.budget = budget;
        who.counters.requests.increment(1);
        // With logging at `warn` (the span is off) the dispatch is not wrapped: the
        // wrapper is a copy of the whole dispatch future on the gateway's hottest path.
        let d = if span.is_disabled() {
            self.router.dispatch(request).await?
        } else {
            self.router
                .dispatch(request)
                .instrument(span.clone())
                .await?
        };
        Ok(Completion {
            model: d.metrics,
            backend: d.backend,
            attempts: d.attempts,
            warning: d.warning,
            native_api: d.native_api,
            quota,
            events: Metered {
                inner: d.events,
                who: who.clone(),
                limiter: self.limiter.clone(),
                budget: self.budgets.clone().zip(budget),
                estimate,
                usage: None,
                settled: false,
                span,
            },
        })
    }
}

/// The events of a [`Completion`]. Records the answer's usage as it passes (the last
/// one seen: some upstreams repeat a running total in every chunk) and settles it
/// once, when the stream ends or is dropped (the client left).
pub struct Metered {
    inner: Answer,
    who: Principal,
    limiter: Arc<dyn Limiter>,
    /// The budgets and where this key's stood at admission, when it has one.
    budget: Option<(Arc<Budgets>, BudgetState)>,
    estimate: u64,
    usage: Option<Usage>,
    /// The usage was counted (at the end of the stream, or when it was dropped).
    settled: bool,
    span: tracing::Span,
}

impl Metered {
    /// The usage seen so far (the answer's, once the stream ended).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

impl Stream for Metered {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = {
            let _entered = (!this.span.is_disabled()).then(|| this.span.enter());
            Pin::new(&mut this.inner).poll_next(cx)
        };
        match &next {
            Poll::Ready(Some(Ok(e))) => {
                if let Some(u) = e.usage() {
                    this.usage = Some(u);
                }
            }
            // Settled at the end, before the front end sends its own end (a
            // client's next request already sees the tokens counted).
            Poll::Ready(None) => this.settle(),
            _ => {}
        }
        next
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.settle();
    }
}

impl Metered {
    /// Counts the usage seen against the key, once.
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let Some(u) = self.usage else { return };
        if self.who.tpm > 0 {
            self.limiter
                .settle(&self.who, self.estimate, u.total_tokens);
        }
        if let Some((b, state)) = &self.budget {
            b.settle(&self.who, state, u.total_tokens);
        }
        self.who.counters.prompt_tokens.increment(u.prompt_tokens);
        self.who
            .counters
            .completion_tokens
            .increment(u.completion_tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalLimiter;
    use futures::StreamExt;
    use hearth_api::ChatCompletionRequest;
    use hearth_config::{HealthConfig, ModelConfig};
    use hearth_router::{Backend, EventStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers with a running total of usage in every event (as vLLM's
    /// `continuous_usage_stats` does): 10 prompt tokens, then 1, 2, 3 completion.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Backend for Counting {
        fn kind(&self) -> &'static str {
            "upstream"
        }

        async fn call(&self, _: &Request) -> Result<EventStream, BackendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let events = (1..=3).map(|n| Ok(Event::Usage(Usage::new(10, n))));
            Ok(futures::stream::iter(events).boxed())
        }
    }

    fn gateway() -> (Gateway, Arc<Counting>, Arc<LocalLimiter>) {
        let backend = Arc::new(Counting::default());
        let router = Router::new(
            vec![(
                ModelConfig::upstream("m", "http://127.0.0.1:9/v1"),
                backend.clone() as Arc<dyn Backend>,
            )],
            None,
            HealthConfig::default(),
        );
        let limiter = Arc::new(LocalLimiter::new());
        let g = Gateway::new(Arc::new(router), limiter.clone(), KeyRing::new(&[], 0, 0));
        (g, backend, limiter)
    }

    fn chat() -> Request {
        Request::Chat(
            ChatCompletionRequest::from_value(serde_json::json!({
                "model": "m", "messages": [{"role": "user", "content": "hello there"}]
            }))
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_refused_request_never_reaches_the_backend() {
        let (g, backend, _) = gateway();
        let who = Principal::new("k", 1, 0, false);
        let c = g.complete(&who, chat(), "r1").await.unwrap();
        assert_eq!(c.model(), "m");
        assert!(c.quota.requests.is_some());
        let e = g.complete(&who, chat(), "r2").await.err().unwrap();
        assert_eq!(e.status(), 429);
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn usage_is_settled_once_with_the_answers_last_total() {
        let (g, _, limiter) = gateway();
        // 100 tokens a minute; the request is estimated at a few.
        let who = Principal::new("k", 0, 100, false);
        let mut c = g.complete(&who, chat(), "r1").await.unwrap();
        while c.events.next().await.is_some() {}
        assert_eq!(c.events.usage(), Some(Usage::new(10, 3)));
        drop(c);
        // 13 tokens settled (not 11 + 12 + 13): 87 left, so 87 pass and 88 do not.
        let q = limiter.admit(&who, 87).await.unwrap();
        assert_eq!(q.tokens.unwrap().remaining, 0);
        let who2 = Principal::new("k2", 0, 100, false);
        let c = g.complete(&who2, chat(), "r2").await.unwrap();
        drop(c); // left before any usage: the estimate stands
        assert!(limiter.admit(&who2, 90).await.is_ok());
    }

    /// A ledger in memory.
    #[derive(Default)]
    struct Ledger(std::sync::Mutex<u64>);

    #[async_trait::async_trait]
    impl crate::UsageLedger for Ledger {
        async fn used(&self, _: &str, _: i64) -> Result<u64, String> {
            Ok(*self.0.lock().unwrap())
        }
        async fn add(&self, _: &str, _: i64, tokens: u64) -> Result<u64, String> {
            let mut n = self.0.lock().unwrap();
            *n += tokens;
            Ok(*n)
        }
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_requests_and_jobs_but_not_work_already_admitted() {
        let (g, backend, _) = gateway();
        let ledger = Arc::new(Ledger::default());
        let g = g.with_budgets(Budgets::new(ledger.clone()));
        let who = Principal::new("k", 0, 0, false).with_budget(Some(hearth_config::Budget {
            tokens: 20,
            period: hearth_config::BudgetPeriod::Month,
        }));
        // 13 tokens an answer: the second starts at 13 (under 20), the third at 26.
        // Each says what was left when it was admitted (for its answer's headers).
        for (id, left) in [("r1", 20), ("r2", 7)] {
            let mut c = g.complete(&who, chat(), id).await.unwrap();
            assert_eq!(c.quota.budget.map(|b| b.remaining()), Some(left));
            while c.events.next().await.is_some() {}
        }
        assert_eq!(g.budget(&who).await.map(|b| b.used), Some(26));
        let plain = Principal::new("plain", 0, 0, false);
        assert_eq!(g.budget(&plain).await, None);
        let c = g.complete(&plain, chat(), "p1").await.unwrap();
        assert_eq!(c.quota.budget, None);
        drop(c);
        g.flush(std::time::Duration::from_secs(5)).await;
        assert_eq!(*ledger.0.lock().unwrap(), 26);
        let e = g.complete(&who, chat(), "r3").await.err().unwrap();
        assert_eq!(
            (e.status(), e.code.as_deref()),
            (429, Some("insufficient_quota"))
        );
        assert!(e.retry_after.unwrap() >= 1);
        assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
        assert_eq!(g.admit(&who).await.unwrap_err().status(), 429);
        // A job's model calls, admitted when it was submitted, still run and count.
        let mut c = g.complete_admitted(&who, chat(), "j1").await.unwrap();
        while c.events.next().await.is_some() {}
        drop(c);
        g.flush(std::time::Duration::from_secs(5)).await;
        assert_eq!(*ledger.0.lock().unwrap(), 39);
    }
}
