//! [`EmbeddedBackend`]: the router's view of the engine. It turns a request into a
//! job for the engine thread and the thread's events into the router's typed events
//! (text, finish, usage); the front ends write them in their own wire format.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use hearth_api::{ApiError, EmbeddingsRequest, ModelStatus, Usage};
use hearth_config::{ModelConfig, ModelKind};
use hearth_router::{Backend, BackendError, EventStream, FinishReason, Request};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::oneshot;

use crate::EngineError;
use crate::embed;
use crate::gguf;
use crate::intake::IntakeHook;
use crate::request::{self, GenRequest};
use crate::scheduler::{self, Event, Finish, Job, Shared};
use crate::settings::Settings;
use crate::think;
use crate::tools;

/// Token counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompt tokens whose KV cache was reused (prompt cache hits).
    pub reused_prompt_tokens: u64,
    /// Prompt tokens that were prefilled.
    pub prefilled_prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Replies ended with `length` early because the KV cache shared by the
    /// `parallel` sequences was full (see docs/models.md, "At the context limit").
    pub cut_sequences: u64,
    /// Requests sent back to wait, mid-prefill, to make room in that cache.
    pub requeued_sequences: u64,
}

/// Holds back an engine's loading until [`LoadGate::open`] (see
/// [`EmbeddedBackend::start_gated`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct LoadGate(std::sync::mpsc::Sender<()>);

impl LoadGate {
    pub fn open(self) {
        let _ = self.0.send(());
    }
}

/// A GGUF model served in-process by llama.cpp.
pub struct EmbeddedBackend {
    name: String,
    /// It has a projector (`mmproj`): image parts in chat messages are read.
    vision: bool,
    /// How its chat template calls tools.
    tool_syntax: tools::Syntax,
    /// The tags of its thinking, split from its chat replies (a reasoning model
    /// configured `reasoning = "split"`).
    think: Option<think::Tags>,
    /// Its chat template renders as Jinja here (see `compile_template`).
    jinja: bool,
    shared: Arc<Shared>,
    // std's Sender is Sync, but a Mutex keeps this type Sync on older toolchains'
    // terms too and costs nothing next to a decode step.
    /// `None` once dropped (the engine thread then winds down).
    jobs: Mutex<Option<Jobs>>,
    /// The engine thread, joined when the backend is dropped: a process must not
    /// exit while llama.cpp is mid-decode on another thread (its teardown then
    /// crashes under it).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Where requests go: the generating engine, or an embedding model's thread.
enum Jobs {
    Generate(Sender<Job>),
    Embed(Sender<embed::Job>),
}

impl Drop for EmbeddedBackend {
    /// Ends what the engine is doing (its clients get an error) and waits for its
    /// thread, at most one decode step (or, while loading, the rest of the load).
    fn drop(&mut self) {
        self.shared.stop();
        let jobs = self.jobs.get_mut().unwrap_or_else(|p| p.into_inner());
        drop(jobs.take());
        let thread = self.thread.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }
}

impl EmbeddedBackend {
    /// Checks the model file (exists, is GGUF, is complete) and starts loading it
    /// on the engine's own thread. Returns at once; [`Backend::status`] says
    /// `loading` until the model can serve, `unavailable` if loading failed.
    pub fn start(cfg: &ModelConfig) -> Result<Arc<EmbeddedBackend>, EngineError> {
        Self::start_inner(cfg, None, None)
    }

    /// As [`EmbeddedBackend::start`], but loading waits until the returned gate is
    /// opened (or dropped): tests observe the `loading` state for as long as they
    /// need, rather than betting that loading is slower than their first request.
    #[doc(hidden)]
    pub fn start_gated(cfg: &ModelConfig) -> Result<(Arc<EmbeddedBackend>, LoadGate), EngineError> {
        let (open, gate) = std::sync::mpsc::channel();
        Ok((Self::start_inner(cfg, Some(gate), None)?, LoadGate(open)))
    }

    /// [`EmbeddedBackend::start`], with `hook` run on the engine's intake thread
    /// before each request is prepared (tokenized, its grammar built). For tests
    /// that need to hold preparation at a known point.
    #[doc(hidden)]
    pub fn start_with_intake_hook(
        cfg: &ModelConfig,
        hook: impl FnMut() + Send + 'static,
    ) -> Result<Arc<EmbeddedBackend>, EngineError> {
        Self::start_inner(cfg, None, Some(Box::new(hook)))
    }

    fn start_inner(
        cfg: &ModelConfig,
        gate: Option<std::sync::mpsc::Receiver<()>>,
        hook: Option<IntakeHook>,
    ) -> Result<Arc<EmbeddedBackend>, EngineError> {
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
        let thread_shared = shared.clone();
        if cfg.purpose == ModelKind::Embedding {
            let (tx, rx) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("embed-{}", cfg.name))
                .spawn(move || {
                    if let Some(gate) = gate {
                        let _ = gate.recv();
                    }
                    embed::run(settings, thread_shared, rx);
                })
                .map_err(EngineError::Spawn)?;
            return Ok(Arc::new(EmbeddedBackend {
                name: cfg.name.clone(),
                vision: false,
                tool_syntax: tools::Syntax::Generic,
                think: None,
                jinja: false,
                shared,
                jobs: Mutex::new(Some(Jobs::Embed(tx))),
                thread: Mutex::new(Some(thread)),
            }));
        }
        let vision = settings.mmproj.is_some();
        let template = info
            .get("tokenizer.chat_template")
            .and_then(gguf::MetaValue::as_str);
        let (tool_syntax, jinja) = compile_template(&cfg.name, template);
        let renders = jinja.is_some();
        // A reasoning model's prompts are its template's own rendering: it drops
        // earlier thoughts, and may open the thinking itself.
        let prompts = scheduler::Prompts {
            jinja,
            think: think::Tags::of_template(template),
        };
        let think = prompts
            .think
            .filter(|_| embedded.reasoning == hearth_config::Reasoning::Split);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("engine-{}", cfg.name))
            .spawn(move || {
                if let Some(gate) = gate {
                    // Held until opened (or dropped); a backend dropped meanwhile
                    // never loads.
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        gate.recv_timeout(std::time::Duration::from_millis(20))
                    {
                        if thread_shared.is_stopping() {
                            return;
                        }
                    }
                }
                scheduler::run(settings, thread_shared, rx, hook, prompts);
            })
            .map_err(EngineError::Spawn)?;
        Ok(Arc::new(EmbeddedBackend {
            name: cfg.name.clone(),
            vision,
            tool_syntax,
            think,
            jinja: renders,
            shared,
            jobs: Mutex::new(Some(Jobs::Generate(tx))),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Counters since start: how much of the prompts came from the prompt cache.
    pub fn stats(&self) -> EngineStats {
        use std::sync::atomic::Ordering::Relaxed;
        EngineStats {
            reused_prompt_tokens: self.shared.reused_tokens.load(Relaxed),
            prefilled_prompt_tokens: self.shared.prefilled_tokens.load(Relaxed),
            generated_tokens: self.shared.generated_tokens.load(Relaxed),
            cut_sequences: self.shared.cut_sequences.load(Relaxed),
            requeued_sequences: self.shared.requeued_sequences.load(Relaxed),
        }
    }

    fn unavailable(&self) -> Option<BackendError> {
        match self.shared.status() {
            ModelStatus::Ready => None,
            ModelStatus::Loading => Some(BackendError::Unavailable(format!(
                "model `{}` is still loading",
                self.name
            ))),
            // The engine loads at start and never stops on its own (the other states
            // are a managed server's).
            _ => Some(BackendError::Unavailable(format!(
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
        let jobs = match jobs.as_ref() {
            Some(Jobs::Generate(jobs)) => jobs,
            None => return Err(stopped()),
            Some(Jobs::Embed(_)) => return Err(BackendError::Invalid(
                ApiError::invalid_param(
                    "model",
                    format!(
                        "model `{}` is an embedding model (kind = \"embedding\"): it answers /v1/embeddings only; send chats and completions to a chat model",
                        self.name
                    ),
                )
                .with_code("model_not_supported"),
            )),
        };
        jobs.send(Job { request, events }).map_err(|_| stopped())?;
        Ok(rx)
    }

    /// Sends an embeddings request to the embedding thread; a chat model says it
    /// is not one.
    fn submit_embed(
        &self,
        request: &EmbeddingsRequest,
    ) -> Result<oneshot::Receiver<Result<embed::Embedded, BackendError>>, BackendError> {
        let stopped =
            || BackendError::Unavailable(format!("model `{}`: the engine has stopped", self.name));
        let jobs = self.jobs.lock().map_err(|_| stopped())?;
        let jobs = match jobs.as_ref() {
            Some(Jobs::Embed(jobs)) => jobs,
            None => return Err(stopped()),
            Some(Jobs::Generate(_)) => return Err(BackendError::Invalid(
                ApiError::invalid_param(
                    "model",
                    format!(
                        "model `{}` is a chat model: it does not answer /v1/embeddings; configure an embedding model ([[models]] kind = \"embedding\") and send the request to it",
                        self.name
                    ),
                )
                .with_code("model_not_supported"),
            )),
        };
        let (answer, rx) = oneshot::channel();
        jobs.send(embed::Job {
            inputs: embed::Input::from_items(&request.input.items()),
            dimensions: request.dimensions,
            truncate: request.truncate,
            answer,
        })
        .map_err(|_| stopped())?;
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

    fn placement(&self) -> Option<hearth_api::Placement> {
        crate::device::placement(&self.name)
    }

    fn tool_format(&self) -> Option<&'static str> {
        // An embedding model takes no tools: the router shows this for models
        // with `tools = "pass"`, which only a chat model may say.
        Some(self.tool_syntax.name())
    }

    fn context_length(&self) -> Option<u32> {
        Some(
            self.shared
                .context
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    async fn call(&self, request: &Request) -> Result<EventStream, BackendError> {
        if let Request::Embeddings(r) = request {
            if let Some(e) = self.unavailable() {
                return Err(e);
            }
            let rx = self.submit_embed(r)?;
            let answer = rx.await.map_err(|_| ended())??;
            let mut events: Vec<Result<hearth_router::Event, BackendError>> = answer
                .vectors
                .into_iter()
                .zip(0u32..)
                .map(|(vector, index)| Ok(hearth_router::Event::Embedding { index, vector }))
                .collect();
            events.push(Ok(hearth_router::Event::Usage(Usage::new(
                answer.prompt_tokens,
                0,
            ))));
            return Ok(futures::stream::iter(events).boxed());
        }
        request::check_content(request, &self.name, self.vision).map_err(BackendError::Invalid)?;
        let req = request::from_router_as(request, self.tool_syntax, self.jinja)
            .map_err(BackendError::Invalid)?;
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        // `n` choices are `n` sequences, decoded side by side; a seed given is
        // moved on by one for each further choice, so they differ yet repeat.
        let syntax = req.tools.as_ref().map(|m| m.syntax);
        // Thinking is told apart in chat replies; a text completion is as written.
        let think = self
            .think
            .filter(|_| req.endpoint == request::Endpoint::Chat);
        let mut choices = Vec::new();
        for index in 0..req.choices.max(1) {
            let mut one = req.clone();
            if let Some(seed) = one.params.seed.as_mut() {
                *seed = seed.wrapping_add(index) & 0x7fff_ffff;
            }
            let mut rx = self.submit(one)?;
            let opened = match rx.recv().await {
                Some(Event::Accepted { thinking }) => thinking,
                Some(Event::Error(e)) => return Err(e),
                _ => return Err(ended()),
            };
            let answer = Answer {
                think: think.map(|tags| match opened {
                    true => think::Splitter::opened(tags),
                    false => think::Splitter::new(tags),
                }),
                reader: syntax.map(tools::Reader::new),
                index,
            };
            choices.push(events(rx, answer).boxed());
        }
        match <[_; 1]>::try_from(choices) {
            Ok([one]) => Ok(one),
            Err(choices) => Ok(merged(choices).boxed()),
        }
    }

    fn detail(&self) -> Option<String> {
        (self.shared.status() == ModelStatus::Unavailable).then(|| {
            format!(
                "it failed to load: {}",
                self.shared
                    .failure()
                    .unwrap_or_else(|| "unknown reason".into())
            )
        })
    }

    /// Still loading, or not loaded and why, for the router's answer.
    async fn wake(&self) -> Result<(), BackendError> {
        match self.shared.status() {
            ModelStatus::Loading => Err(BackendError::Unavailable("loading".into())),
            _ => self.unavailable().map_or(Ok(()), Err),
        }
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.unavailable().map_or(Ok(()), Err)
    }
}

/// Several choices' events as one answer: as they come, with one usage at the end
/// (the prompt counted once, as OpenAI counts it, and every choice's tokens).
fn merged(
    choices: Vec<futures::stream::BoxStream<'static, Result<hearth_router::Event, BackendError>>>,
) -> impl futures::Stream<Item = Result<hearth_router::Event, BackendError>> + Send + 'static {
    use hearth_router::Event as Out;
    let all = futures::stream::select_all(choices);
    futures::stream::unfold((all, Some((0u64, 0u64))), |(mut all, counts)| async move {
        let (mut prompt, mut completion) = counts?;
        loop {
            match all.next().await {
                Some(Ok(Out::Usage(u))) => {
                    prompt = prompt.max(u.prompt_tokens);
                    completion += u.completion_tokens;
                }
                Some(other) => return Some((other, (all, Some((prompt, completion))))),
                None => {
                    let usage = Out::Usage(Usage::new(prompt, completion));
                    return Some((Ok(usage), (all, None)));
                }
            }
        }
    })
}

fn ended() -> BackendError {
    BackendError::Protocol("the engine ended the request without an answer".into())
}

/// How a model whose chat template is `source` calls tools, and that template
/// compiled as Jinja (for the syntaxes only its Jinja source writes,
/// `chat_template_kwargs` and reasoning models' prompts). A template that does not compile, or does not
/// render a conversation (with a tool, for such a syntax), is logged: the model
/// then calls tools in the generic format, and its prompts are llama.cpp's.
fn compile_template(
    model: &str,
    source: Option<&str>,
) -> (tools::Syntax, Option<Arc<crate::jinja::ChatTemplate>>) {
    let syntax = tools::Syntax::of_template(source);
    let Some(source) = source else {
        return (syntax, None);
    };
    let probe = crate::jinja::ChatTemplate::new(source).and_then(|t| {
        let tools = serde_json::json!([{"type": "function", "function": {
            "name": "probe", "parameters": {"type": "object", "properties": {}}}}]);
        let messages = serde_json::json!([{"role": "user", "content": "hello"}]);
        let tools = syntax.renders_jinja().then_some(&tools);
        t.render(&messages, tools, "<s>", "</s>").map(|_| t)
    });
    match probe {
        Ok(t) => {
            if syntax.renders_jinja() {
                tracing::info!(
                    model,
                    syntax = syntax.name(),
                    "tool calls in the chat template's own syntax"
                );
            }
            (syntax, Some(Arc::new(t)))
        }
        Err(e) if syntax.needs_jinja() => {
            tracing::warn!(model, syntax = syntax.name(), error = %e,
                "the chat template's Jinja source does not render here; tools use the generic JSON format");
            (tools::Syntax::Generic, None)
        }
        Err(e) if syntax.renders_jinja() => {
            tracing::warn!(model, syntax = syntax.name(), error = %e,
                "the chat template's Jinja source does not render here; Hearth writes the tools' prompt in Qwen's words");
            (syntax, None)
        }
        Err(e) => {
            tracing::debug!(model, error = %e,
                "the chat template's Jinja source does not render here; prompts are llama.cpp's rendering, and chat_template_kwargs are not used");
            (syntax, None)
        }
    }
}

/// Events ready to be sent.
type Pending = VecDeque<Result<hearth_router::Event, BackendError>>;

/// How one choice's text is read: its thinking told apart from its reply, then
/// the reply's tool calls read out.
struct Answer {
    think: Option<think::Splitter>,
    reader: Option<tools::Reader>,
    index: u32,
}

impl Answer {
    /// The router's events for more of the answer's text.
    fn text(&mut self, text: String, out: &mut Pending) {
        match self.think.as_mut() {
            Some(s) => {
                let parts = s.push(&text);
                self.parts(parts, out);
            }
            None => self.reply(text, out),
        }
    }

    /// The answer ended: what was held back, then the finish.
    fn end(&mut self, out: &mut Pending) {
        if let Some(s) = self.think.as_mut() {
            let parts = s.finish();
            self.parts(parts, out);
        }
        if let Some(r) = self.reader.as_mut() {
            out.extend(r.finish(self.index).into_iter().map(Ok));
        }
    }

    fn parts(&mut self, parts: Vec<think::Part>, out: &mut Pending) {
        for p in parts {
            match p {
                think::Part::Thinking(text) => out.push_back(Ok(hearth_router::Event::Reasoning {
                    index: self.index,
                    text,
                })),
                think::Part::Reply(text) => self.reply(text, out),
            }
        }
    }

    fn reply(&mut self, text: String, out: &mut Pending) {
        match self.reader.as_mut() {
            Some(r) => out.extend(r.push(self.index, &text).into_iter().map(Ok)),
            None => out.push_back(Ok(hearth_router::Event::Text {
                index: self.index,
                text,
            })),
        }
    }
}

/// The engine thread's events as the router's: text as it comes (read by
/// `answer`), then the finish and the usage. Dropping the stream drops `rx`, which
/// the engine notices before its next step and frees the sequence.
fn events(
    rx: UnboundedReceiver<Event>,
    answer: Answer,
) -> impl futures::Stream<Item = Result<hearth_router::Event, BackendError>> + Send + 'static {
    use hearth_router::Event as Out;
    futures::stream::unfold(
        (rx, Pending::new(), false, answer),
        move |(mut rx, mut pending, mut done, mut answer)| async move {
            let index = answer.index;
            loop {
                if let Some(item) = pending.pop_front() {
                    return Some((item, (rx, pending, done, answer)));
                }
                if done {
                    return None;
                }
                match rx.recv().await {
                    Some(Event::Logprob(token)) => {
                        pending.push_back(Ok(Out::Logprob { index, token }))
                    }
                    Some(Event::Text(text)) => answer.text(text, &mut pending),
                    Some(Event::Done {
                        finish,
                        prompt_tokens,
                        completion_tokens,
                    }) => {
                        answer.end(&mut pending);
                        let called = answer.reader.as_ref().is_some_and(tools::Reader::called);
                        pending.push_back(Ok(Out::Finish {
                            index,
                            reason: match finish {
                                Finish::Stop if called => FinishReason::ToolCalls,
                                Finish::Stop => FinishReason::Stop,
                                Finish::Length => FinishReason::Length,
                            },
                        }));
                        pending.push_back(Ok(Out::Usage(Usage::new(
                            prompt_tokens.into(),
                            completion_tokens.into(),
                        ))));
                        done = true;
                    }
                    Some(Event::Error(e)) => {
                        pending.push_back(Err(e));
                        done = true;
                    }
                    Some(Event::Accepted { .. }) => {}
                    None => {
                        pending.push_back(Err(ended()));
                        done = true;
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_router::Event as Out;

    /// What `events` says of an answer whose text comes one character at a time.
    async fn said(answer: Answer, text: &str) -> Vec<Out> {
        let (tx, rx) = unbounded_channel();
        for ch in text.chars() {
            tx.send(Event::Text(ch.to_string()))
                .unwrap_or_else(|_| unreachable!());
        }
        tx.send(Event::Done {
            finish: Finish::Stop,
            prompt_tokens: 3,
            completion_tokens: 9,
        })
        .unwrap_or_else(|_| unreachable!());
        events(rx, answer)
            .map(|e| e.unwrap_or_else(|e| unreachable!("{e}")))
            .collect()
            .await
    }

    /// Reasoning and text joined, the tool calls' names, and the finish.
    fn sum(events: &[Out]) -> (String, String, Vec<String>, Option<FinishReason>) {
        let (mut thinking, mut text, mut calls, mut finish) =
            (String::new(), String::new(), Vec::new(), None);
        for e in events {
            match e {
                Out::Reasoning { text: t, .. } => thinking.push_str(t),
                Out::Text { text: t, .. } => text.push_str(t),
                Out::ToolCall { call, .. } => calls.extend(call.name.clone()),
                Out::Finish { reason, .. } => finish = Some(reason.clone()),
                _ => {}
            }
        }
        (thinking, text, calls, finish)
    }

    #[tokio::test]
    async fn thinking_is_reasoning_and_the_rest_the_reply_or_its_calls() {
        let answer = |reader| Answer {
            think: Some(think::Splitter::new(think::Tags::THINK)),
            reader,
            index: 0,
        };
        let got = said(answer(None), "<think>\nGreet back.\n</think>\n\nHello!").await;
        assert_eq!(
            sum(&got),
            (
                "\nGreet back.\n".to_owned(),
                "Hello!".to_owned(),
                vec![],
                Some(FinishReason::Stop)
            )
        );
        // Qwen3 thinks, then calls a tool in Hermes' tags.
        let got = said(
            answer(Some(tools::Reader::new(tools::Syntax::Hermes))),
            "<think>The weather needs a call.</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
        )
        .await;
        assert_eq!(
            sum(&got),
            (
                "The weather needs a call.".to_owned(),
                String::new(),
                vec!["get_weather".to_owned()],
                Some(FinishReason::ToolCalls)
            )
        );
        // Without a splitter (reasoning = "inline", or a text completion) the tags stay.
        let plain = Answer {
            think: None,
            reader: None,
            index: 0,
        };
        let got = said(plain, "<think>a</think>b").await;
        assert_eq!(sum(&got).1, "<think>a</think>b");
    }
}
