//! [`EmbeddedBackend`]: the router's view of the engine. It turns a request into a
//! job for the engine thread and the thread's events into OpenAI-shaped bodies and
//! chunks.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use hearth_api::{ModelStatus, Usage, chat, completion};
use hearth_config::ModelConfig;
use hearth_router::{Backend, BackendError, Chunk, Reply, Request};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::EngineError;
use crate::gguf;
use crate::request::{self, Endpoint, GenRequest};
use crate::scheduler::{self, Event, Finish, Job, Shared};
use crate::settings::Settings;

/// Token counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompt tokens whose KV cache was reused (prompt cache hits).
    pub reused_prompt_tokens: u64,
    /// Prompt tokens that were prefilled.
    pub prefilled_prompt_tokens: u64,
    pub generated_tokens: u64,
}

/// A GGUF model served in-process by llama.cpp.
pub struct EmbeddedBackend {
    name: String,
    shared: Arc<Shared>,
    // std's Sender is Sync, but a Mutex keeps this type Sync on older toolchains'
    // terms too and costs nothing next to a decode step.
    jobs: Mutex<Sender<Job>>,
}

impl EmbeddedBackend {
    /// Checks the model file (exists, is GGUF, is complete) and starts loading it
    /// on the engine's own thread. Returns at once; [`Backend::status`] says
    /// `loading` until the model can serve, `unavailable` if loading failed.
    pub fn start(cfg: &ModelConfig) -> Result<Arc<EmbeddedBackend>, EngineError> {
        let embedded = cfg.embedded_config().ok_or_else(|| {
            EngineError::Config(format!(
                "model `{}` is not an embedded model (backend = \"{}\")",
                cfg.name,
                cfg.kind().as_str()
            ))
        })?;
        let info = gguf::inspect(&embedded.path)?;
        let settings = Settings::resolve(cfg, &info)?;
        if let Some(trained) = info.context_length()
            && u64::from(settings.context) > trained
        {
            tracing::warn!(model = %cfg.name, context = settings.context, trained,
                "the configured context is longer than the model was trained for; quality may drop past it");
        }
        let shared = Arc::new(Shared::new(settings.context));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("engine-{}", cfg.name))
            .spawn(move || scheduler::run(settings, thread_shared, rx))
            .map_err(EngineError::Spawn)?;
        Ok(Arc::new(EmbeddedBackend {
            name: cfg.name.clone(),
            shared,
            jobs: Mutex::new(tx),
        }))
    }

    /// Counters since start: how much of the prompts came from the prompt cache.
    pub fn stats(&self) -> EngineStats {
        use std::sync::atomic::Ordering::Relaxed;
        EngineStats {
            reused_prompt_tokens: self.shared.reused_tokens.load(Relaxed),
            prefilled_prompt_tokens: self.shared.prefilled_tokens.load(Relaxed),
            generated_tokens: self.shared.generated_tokens.load(Relaxed),
        }
    }

    fn unavailable(&self) -> Option<BackendError> {
        match self.shared.status() {
            ModelStatus::Ready => None,
            ModelStatus::Loading => Some(BackendError::Unavailable(format!(
                "model `{}` is still loading",
                self.name
            ))),
            ModelStatus::Unavailable => Some(BackendError::Unavailable(format!(
                "model `{}` failed to load: {}",
                self.name,
                self.shared
                    .failure()
                    .unwrap_or_else(|| "unknown reason".into())
            ))),
        }
    }

    fn submit(&self, request: GenRequest) -> Result<UnboundedReceiver<Event>, BackendError> {
        let (events, rx) = unbounded_channel();
        let stopped =
            || BackendError::Unavailable(format!("model `{}`: the engine has stopped", self.name));
        let jobs = self.jobs.lock().map_err(|_| stopped())?;
        jobs.send(Job { request, events }).map_err(|_| stopped())?;
        Ok(rx)
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn status(&self) -> ModelStatus {
        self.shared.status()
    }

    fn context_length(&self) -> Option<u32> {
        Some(
            self.shared
                .context
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    async fn call(&self, request: &Request) -> Result<Reply, BackendError> {
        let req =
            request::from_router(request.clone(), &self.name).map_err(BackendError::Invalid)?;
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        let mut rx = self.submit(req.clone())?;
        match rx.recv().await {
            Some(Event::Accepted) => {}
            Some(Event::Error(e)) => return Err(e),
            _ => return Err(ended()),
        }
        let out = Output::new(&req);
        if req.stream {
            Ok(Reply::Stream(stream(out, rx).boxed()))
        } else {
            collect(out, rx).await
        }
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.unavailable().map_or(Ok(()), Err)
    }
}

fn ended() -> BackendError {
    BackendError::Protocol("the engine ended the request without an answer".into())
}

/// The identity and shape of one answer.
struct Output {
    endpoint: Endpoint,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

impl Output {
    fn new(r: &GenRequest) -> Self {
        let prefix = match r.endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        Output {
            endpoint: r.endpoint,
            id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
            model: r.model.clone(),
            created: hearth_api::unix_now(),
            include_usage: r.include_usage,
        }
    }

    fn chunk(&self, v: &Value, usage: Option<Usage>) -> Chunk {
        Chunk {
            data: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            usage,
        }
    }

    fn first(&self) -> Option<Chunk> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chunk(
                &chat::chunk_body(
                    &self.id,
                    &self.model,
                    self.created,
                    json!({"role": "assistant", "content": ""}),
                    None,
                ),
                None,
            )),
            Endpoint::Completion => None,
        }
    }

    fn text(&self, text: &str) -> Chunk {
        let v = match self.endpoint {
            Endpoint::Chat => chat::chunk_body(
                &self.id,
                &self.model,
                self.created,
                json!({"content": text}),
                None,
            ),
            Endpoint::Completion => {
                completion::chunk_body(&self.id, &self.model, self.created, text, None)
            }
        };
        self.chunk(&v, None)
    }

    /// The finish chunk, and the usage chunk when the client asked for it. Exactly
    /// one chunk of a stream carries `usage` for the router's accounting: the usage
    /// chunk when there is one, else the finish chunk.
    fn end(&self, finish: Finish, usage: Usage) -> Vec<Chunk> {
        let reason = Some(finish.as_str());
        let v = match self.endpoint {
            Endpoint::Chat => {
                chat::chunk_body(&self.id, &self.model, self.created, json!({}), reason)
            }
            Endpoint::Completion => {
                completion::chunk_body(&self.id, &self.model, self.created, "", reason)
            }
        };
        if !self.include_usage {
            return vec![self.chunk(&v, Some(usage))];
        }
        let u = match self.endpoint {
            Endpoint::Chat => chat::usage_chunk_body(&self.id, &self.model, self.created, &usage),
            Endpoint::Completion => json!({
                "id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": [], "usage": usage,
            }),
        };
        vec![self.chunk(&v, None), self.chunk(&u, Some(usage))]
    }

    fn body(&self, text: &str, finish: Finish, usage: &Usage) -> Bytes {
        let v = match self.endpoint {
            Endpoint::Chat => {
                chat::completion_body(&self.id, &self.model, text, finish.as_str(), usage)
            }
            Endpoint::Completion => {
                completion::completion_body(&self.id, &self.model, text, finish.as_str(), usage)
            }
        };
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }
}

async fn collect(out: Output, mut rx: UnboundedReceiver<Event>) -> Result<Reply, BackendError> {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                let usage = Usage::new(prompt_tokens.into(), completion_tokens.into());
                return Ok(Reply::Full {
                    body: out.body(&text, finish, &usage),
                    usage: Some(usage),
                });
            }
            Event::Error(e) => return Err(e),
            Event::Accepted => {}
        }
    }
    Err(ended())
}

/// The chunk stream. Dropping it drops `rx`, which the engine notices before its
/// next step and frees the sequence.
fn stream(
    out: Output,
    rx: UnboundedReceiver<Event>,
) -> impl futures::Stream<Item = Result<Chunk, BackendError>> + Send + 'static {
    let queued: VecDeque<Result<Chunk, BackendError>> = out.first().into_iter().map(Ok).collect();
    futures::stream::unfold(
        (out, rx, queued, false),
        |(out, mut rx, mut queued, mut done)| async move {
            loop {
                if let Some(item) = queued.pop_front() {
                    return Some((item, (out, rx, queued, done)));
                }
                if done {
                    return None;
                }
                match rx.recv().await {
                    Some(Event::Text(t)) => queued.push_back(Ok(out.text(&t))),
                    Some(Event::Done {
                        finish,
                        prompt_tokens,
                        completion_tokens,
                    }) => {
                        let usage = Usage::new(prompt_tokens.into(), completion_tokens.into());
                        queued.extend(out.end(finish, usage).into_iter().map(Ok));
                        done = true;
                    }
                    Some(Event::Error(e)) => {
                        queued.push_back(Err(e));
                        done = true;
                    }
                    Some(Event::Accepted) => {}
                    None => {
                        queued.push_back(Err(ended()));
                        done = true;
                    }
                }
            }
        },
    )
}
