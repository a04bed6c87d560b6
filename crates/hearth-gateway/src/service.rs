//! [`Gateway::complete`]: admission, dispatch, and events that settle their usage.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use hearth_api::{ApiError, Usage};
use hearth_router::{Answer, BackendError, Event, ModelMetrics, Request, Router};
use tracing::Instrument;

use crate::limiter::{Limiter, Quota};
use crate::principal::{KeyRing, Principal};

/// The service. One per server, shared by every front end (cheap to share in an
/// `Arc`; everything in it is).
pub struct Gateway {
    router: Arc<Router>,
    limiter: Arc<dyn Limiter>,
    keys: KeyRing,
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
    /// requests per minute: 429 with `Retry-After` past it.
    pub async fn admit(&self, who: &Principal) -> Result<Quota, ApiError> {
        if !who.is_limited() {
            return Ok(Quota::default());
        }
        // Not counted in `hearth_key_requests_total`: the model calls it leads to are.
        self.limiter.admit(who, 0).await
    }

    async fn run(
        &self,
        who: &Principal,
        request: Request,
        id: &str,
        admit: bool,
    ) -> Result<Completion, ApiError> {
        let span = tracing::info_span!("request", id, key = %who.id);
        let (estimate, quota) = if admit && who.is_limited() {
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
                estimate,
                usage: None,
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
    estimate: u64,
    usage: Option<Usage>,
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
        let _entered = (!this.span.is_disabled()).then(|| this.span.enter());
        let next = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(e))) = &next
            && let Some(u) = e.usage()
        {
            this.usage = Some(u);
        }
        next
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let Some(u) = self.usage else { return };
        if self.who.tpm > 0 {
            self.limiter
                .settle(&self.who, self.estimate, u.total_tokens);
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
}
