//! The intake thread: turns a job into a request ready to decode (chat template,
//! tokens, context check, sampler chain with its grammar) away from the decode loop.
//!
//! Preparation can take far longer than a decode step (a large JSON schema becomes
//! a large grammar; a long prompt is tokenized in one go), and every open stream
//! would wait for it if the decode loop did it. Here it runs on its own thread,
//! which reads the model only, while the decode thread owns the context.
//! Jobs are prepared one at a time, in arrival order, so requests keep their
//! first-come, first-served order on their way to the decode loop.

use std::sync::mpsc::{Receiver, SendError, Sender};

use hearth_api::ApiError;
use hearth_router::BackendError;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::llama;
use crate::request::{GenRequest, PromptInput};
use crate::scheduler::{Event, Job};
use crate::text::TextStream;

/// Runs on the intake thread before each job is prepared. Tests use it to hold
/// preparation at a known point; production engines have none.
pub type IntakeHook = Box<dyn FnMut() + Send>;

/// A request accepted and ready for a slot.
pub struct Pending {
    pub events: UnboundedSender<Event>,
    pub prompt: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub sampler: crate::llama::Sampling,
    pub text: TextStream,
    pub echo: Option<String>,
    /// Each token's log probability, with this many of the likeliest beside it.
    pub logprobs: Option<usize>,
    /// The prompt's images (placeholders in `prompt`), for the decode thread.
    pub media: Vec<crate::vision::Media>,
}

pub struct Intake<'m> {
    pub model: &'m LlamaModel,
    /// The model's projector, when it reads images.
    pub vision: Option<&'m crate::vision::Vision>,
    pub template: Option<LlamaChatTemplate>,
    /// The template's Jinja source, for prompts that need it.
    pub jinja: Option<Jinja>,
    /// The model's thinking tags, when it is a reasoning model.
    pub think: Option<crate::think::Tags>,
    pub n_ctx: usize,
    pub hook: Option<IntakeHook>,
}

impl Intake<'_> {
    /// Prepares jobs until the backend is dropped (its job channel closes) or the
    /// decode loop is gone. Blocks while there is nothing to prepare.
    pub fn run(mut self, jobs: Receiver<Job>, ready: Sender<Pending>) {
        for Job { request, events } in jobs.iter() {
            // The client may have left while the job waited behind others.
            if events.is_closed() {
                continue;
            }
            if let Some(hook) = self.hook.as_mut() {
                hook();
            }
            let (pending, thinking) = match self.prepare(&request, events.clone()) {
                Ok(p) => p,
                Err(e) => {
                    let _ = events.send(Event::Error(BackendError::Invalid(e)));
                    continue;
                }
            };
            if events.send(Event::Accepted { thinking }).is_err() {
                continue;
            }
            if let Err(SendError(p)) = ready.send(pending) {
                // Only a panic ends the decode loop while jobs still come; answer
                // instead of leaving the request waiting for tokens that never come.
                let _ = p.events.send(Event::Error(BackendError::Unavailable(
                    "the engine stopped unexpectedly; restart hearth".into(),
                )));
                return;
            }
        }
    }

    /// The request ready to decode, and whether its prompt ends inside the
    /// model's thinking.
    fn prepare(
        &self,
        r: &GenRequest,
        events: UnboundedSender<Event>,
    ) -> Result<(Pending, bool), ApiError> {
        let keep_bos = !r.images.is_empty();
        let kwargs = &r.template_kwargs;
        // A chat's prompt as text: by the template's Jinja source where the
        // request or the model needs it, else by llama.cpp's template API.
        let rendered = match &r.prompt {
            PromptInput::Jinja { messages, tools } => {
                let jinja = self.jinja.as_ref().ok_or_else(ApiError::internal)?;
                Some(jinja.render(messages, Some(tools), kwargs, keep_bos)?)
            }
            PromptInput::Chat(messages) => Some(
                match self
                    .jinja
                    .as_ref()
                    .filter(|j| j.chats || !kwargs.is_empty())
                {
                    Some(jinja) => {
                        let turns: serde_json::Value = messages
                            .iter()
                            .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
                            .collect();
                        jinja.render(&turns, None, kwargs, keep_bos)?
                    }
                    None => llama::render_chat(self.model, self.template.as_ref(), messages)?,
                },
            ),
            _ => None,
        };
        let thinking = rendered
            .as_deref()
            .zip(self.think)
            .is_some_and(|(t, tags)| tags.opened_by(t));
        let rendered = rendered.map(PromptInput::Text);
        let input = rendered.as_ref().unwrap_or(&r.prompt);
        let (prompt, media) = match (input, r.images.is_empty(), self.vision) {
            (_, true, _) => (
                llama::tokenize_prompt(self.model, self.template.as_ref(), input)?,
                Vec::new(),
            ),
            // Chat messages rendered above.
            (PromptInput::Text(text), false, Some(vision)) => {
                vision.tokenize(self.model, text, &r.images)?
            }
            _ => {
                return Err(ApiError::invalid_param(
                    "messages",
                    "this model reads no images (it has no `mmproj` projector)",
                )
                .with_code("unsupported_content"));
            }
        };
        if prompt
            .last()
            .is_some_and(|t| crate::vision::is_placeholder(*t))
        {
            return Err(ApiError::invalid_param(
                "messages",
                "the prompt ends with an image: the chat template put no text after it",
            ));
        }
        let n_prompt = prompt.len();
        let room = self.n_ctx.saturating_sub(n_prompt);
        let asked = r.params.max_tokens.map(|m| m as usize);
        if room == 0 || asked.is_some_and(|m| m > room) {
            let completion = asked.unwrap_or(0);
            return Err(ApiError::invalid_param(
                r.prompt_param(),
                format!(
                    "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the {}, {} for the completion). Please reduce the length of the {} or the completion.",
                    self.n_ctx,
                    n_prompt + completion,
                    n_prompt,
                    r.prompt_param(),
                    completion,
                    r.prompt_param()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let sampler = llama::sampler(self.model, &r.params)?;
        let echo = match (&r.prompt, r.echo) {
            (PromptInput::Text(t), true) => Some(t.clone()),
            _ => None,
        };
        let pending = Pending {
            events,
            max_tokens: u32::try_from(asked.unwrap_or(room)).unwrap_or(u32::MAX),
            prompt,
            sampler,
            text: TextStream::new(r.params.stop.clone()),
            echo,
            logprobs: r.params.logprobs,
            media,
        };
        Ok((pending, thinking))
    }
}

/// A chat template's Jinja source, with the model's BOS and EOS text it writes.
pub struct Jinja {
    template: std::sync::Arc<crate::jinja::ChatTemplate>,
    bos: String,
    eos: String,
    /// Every chat prompt is rendered by it, not only those that need it (tools
    /// in the template's own words, `chat_template_kwargs`).
    chats: bool,
}

impl Jinja {
    pub fn new(
        model: &LlamaModel,
        template: std::sync::Arc<crate::jinja::ChatTemplate>,
        chats: bool,
    ) -> Self {
        let vocab = model.vocab();
        let text = |t: llama_cpp_2::token::LlamaToken| {
            if t.0 < 0 {
                return String::new();
            }
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        Jinja {
            template,
            bos: text(vocab.bos()),
            eos: text(vocab.eos()),
            chats,
        }
    }

    /// The prompt text. Its leading BOS is left out unless `keep_bos` (the
    /// tokenizer adds it, where the model wants one; `mtmd`'s tokenizer for
    /// images does not).
    fn render(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        keep_bos: bool,
    ) -> Result<String, ApiError> {
        let text = self
            .template
            .render_with(messages, tools, &self.bos, &self.eos, kwargs)
            .map_err(|e| {
                ApiError::invalid_param(
                    "messages",
                    format!("the model's chat template refuses these messages: {e}"),
                )
            })?;
        match text.strip_prefix(self.bos.as_str()) {
            Some(rest) if !keep_bos && !self.bos.is_empty() => Ok(rest.to_owned()),
            _ => Ok(text),
        }
    }
}
