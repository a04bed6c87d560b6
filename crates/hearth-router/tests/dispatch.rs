//! `Router::dispatch` with backend doubles: models that start on demand, and the
//! statuses that send a request to the fallbacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hearth_api::{ChatCompletionRequest, ModelStatus};
use hearth_config::{HealthConfig, ModelConfig};
use hearth_router::{Backend, BackendError, Event, EventStream, Request, Router};

const STOPPED: u8 = 0;
const STARTING: u8 = 1;
const READY: u8 = 2;

/// A model server that is stopped until a request wakes it, then takes a moment
/// to start (as a managed engine stopped while idle does).
#[derive(Default)]
struct OnDemand {
    state: AtomicU8,
    wakes: AtomicUsize,
    /// Wakes fail: the server cannot start.
    broken: bool,
}

#[async_trait]
impl Backend for OnDemand {
    fn kind(&self) -> &'static str {
        "upstream"
    }

    fn status(&self) -> ModelStatus {
        match self.state.load(Ordering::SeqCst) {
            STOPPED => ModelStatus::Stopped,
            STARTING => ModelStatus::Loading,
            _ => ModelStatus::Ready,
        }
    }

    async fn wake(&self) -> Result<(), BackendError> {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if self.broken {
            return Err(BackendError::Unavailable(
                "the server would not start".into(),
            ));
        }
        self.state.store(STARTING, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.state.store(READY, Ordering::SeqCst);
        Ok(())
    }

    async fn call(&self, _: &Request) -> Result<EventStream, BackendError> {
        assert_eq!(self.status(), ModelStatus::Ready, "called before it was up");
        let text = Event::Text {
            index: 0,
            text: "up".into(),
        };
        Ok(futures::stream::iter([Ok(text)]).boxed())
    }
}

fn chat(model: &str) -> Request {
    Request::Chat(
        ChatCompletionRequest::from_value(serde_json::json!({
            "model": model, "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap(),
    )
}

fn model(name: &str, fallbacks: &[&str]) -> ModelConfig {
    ModelConfig {
        fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
        ..ModelConfig::upstream(name, "http://127.0.0.1:9/v1")
    }
}

#[tokio::test]
async fn a_stopped_model_is_started_by_the_request_that_names_it() {
    let backend = Arc::new(OnDemand::default());
    let router = Router::new(
        vec![(model("m", &[]), backend.clone() as Arc<dyn Backend>)],
        None,
        HealthConfig::default(),
    );
    assert_eq!(
        router.model_entry("m").unwrap().status,
        ModelStatus::Stopped
    );
    let mut d = router.dispatch(chat("m")).await.unwrap();
    assert_eq!(d.model(), "m");
    assert!(matches!(
        d.events.next().await,
        Some(Ok(Event::Text { .. }))
    ));
    assert_eq!(backend.wakes.load(Ordering::SeqCst), 1);
    // Once up, it is not woken again.
    router.dispatch(chat("m")).await.unwrap();
    assert_eq!(backend.wakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_model_that_cannot_start_sends_the_request_to_its_fallback() {
    let broken = Arc::new(OnDemand {
        broken: true,
        ..OnDemand::default()
    });
    let fallback = Arc::new(OnDemand::default());
    fallback.state.store(READY, Ordering::SeqCst);
    let router = Router::new(
        vec![
            (model("m", &["f"]), broken.clone() as Arc<dyn Backend>),
            (model("f", &[]), fallback as Arc<dyn Backend>),
        ],
        None,
        HealthConfig::default(),
    );
    let d = router.dispatch(chat("m")).await.unwrap();
    assert_eq!(d.model(), "f");
    assert_eq!(broken.wakes.load(Ordering::SeqCst), 1);

    // Alone, it is a 503 that says the backend is unavailable.
    let router = Router::new(
        vec![(model("m", &[]), broken as Arc<dyn Backend>)],
        None,
        HealthConfig::default(),
    );
    let e = router.dispatch(chat("m")).await.unwrap_err();
    assert_eq!(e.status(), 503);
    assert_eq!(e.code.as_deref(), Some("backend_unavailable"));
}
