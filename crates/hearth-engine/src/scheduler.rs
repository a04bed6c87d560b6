//! The engine thread: loads the model, then runs the continuous-batching loop.
//!
//! One llama.cpp context holds `parallel` sequences (slots) in a unified KV cache.
//! Every step decodes one batch holding the next token of every generating
//! sequence plus a chunk of pending prompt tokens, so a long prompt is prefilled
//! over several steps while the other streams keep flowing. New requests join
//! between steps. Each slot remembers which tokens its KV cells hold; a request
//! starts in the free slot (or copies from the slot) sharing the longest prefix with
//! its prompt, so a conversation's next turn only prefills its new tokens.
//!
//! The context is both one sequence's limit (intake refuses a prompt + `max_tokens`
//! over it; a reply reaching it ends with `length`) and the number of KV cells all
//! sequences share. A prompt is admitted only when it fits beside what the active
//! sequences hold (a prompt within its share, `cells / parallel`, makes room by
//! ending the reply furthest beyond its share); replies are not reserved, so when
//! their growth fills the cache `make_room` ends the longest with `length` and the
//! step is decoded again without it (docs/models.md, "At the context limit").
//!
//! Once the model is loaded the work is split over two threads sharing it. The
//! `intake` thread takes jobs from the backend's std channel, prepares them
//! (template, tokens, context check, grammar), answers `Accepted` or the error,
//! and hands the prepared requests, in order, over a second std channel to the
//! decode loop here, which only picks them up between steps. Both block on their
//! channel when idle. Each request is answered over a tokio channel of its own; a
//! closed one means the client left: intake skips the job, and the decode loop
//! frees its slot before the next step. Dropping the backend closes the job
//! channel: intake ends, and the decode loop ends once its streams are done.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hearth_api::ModelStatus;
use hearth_router::BackendError;
use llama_cpp_2::DecodeError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::intake::{Intake, IntakeHook, Pending};
use crate::llama;
use crate::request::GenRequest;
use crate::settings::{STEP_TOKENS, Settings};
use crate::text::TextStream;
use crate::vision::{Media, Vision};

/// Prompt tokens prefilled per step while other sequences are generating: small
/// enough that their next token is only briefly delayed, large enough that the
/// prefill still runs near full speed.
const BUSY_PREFILL_CHUNK: usize = 128;

/// Why generation ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What the engine tells a waiting request.
#[derive(Debug)]
pub enum Event {
    /// The prompt was tokenized and fits; generation will follow. `thinking`:
    /// the prompt ends inside the model's thinking (its template opened it).
    Accepted {
        thinking: bool,
    },
    /// More output text (whole characters, stop strings removed).
    Text(String),
    /// The log probability of the token just sampled (when asked for).
    Logprob(hearth_router::TokenLogprob),
    Done {
        finish: Finish,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
    Error(BackendError),
}

pub struct Job {
    pub request: GenRequest,
    pub events: UnboundedSender<Event>,
}

/// State shared between the engine thread and the backend handle.
pub struct Shared {
    state: AtomicU8,
    failure: Mutex<Option<String>>,
    pub context: AtomicU32,
    /// Prompt tokens taken from the prompt cache instead of being prefilled.
    pub reused_tokens: AtomicU64,
    /// Prompt tokens prefilled.
    pub prefilled_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Replies ended with `length` before their own limit because the shared KV
    /// cache was full.
    pub cut_sequences: AtomicU64,
    /// Requests put back in the waiting line, mid-prefill, to make room.
    pub requeued_sequences: AtomicU64,
    /// The backend is being dropped: end every sequence at the next step and exit.
    stopping: AtomicBool,
}

const LOADING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

impl Shared {
    pub fn new(context: u32) -> Self {
        Shared {
            state: AtomicU8::new(LOADING),
            failure: Mutex::new(None),
            context: AtomicU32::new(context),
            reused_tokens: AtomicU64::new(0),
            prefilled_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            cut_sequences: AtomicU64::new(0),
            requeued_sequences: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Asks the engine thread to end its sequences and stop (it may be mid-step).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn status(&self) -> ModelStatus {
        match self.state.load(Ordering::Acquire) {
            LOADING => ModelStatus::Loading,
            READY => ModelStatus::Ready,
            _ => ModelStatus::Unavailable,
        }
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, reason: String) {
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(reason);
        }
        self.state.store(FAILED, Ordering::Release);
    }

    /// The model failed to load (or cannot serve): logged, and said in every answer.
    pub(crate) fn fail_with(&self, model: &str, reason: String) {
        tracing::error!(model = %model, "{reason}");
        self.fail(reason);
    }

    /// Loaded: requests are served from now on.
    pub(crate) fn set_ready(&self) {
        self.state.store(READY, Ordering::Release);
    }
}

/// Marks the model unavailable if its thread unwinds (a panic inside
/// llama-cpp-2), so the router stops sending it work instead of timing out.
pub(crate) struct PanicGuard<'a> {
    shared: &'a Shared,
    model: &'a str,
    thread: &'static str,
}

impl<'a> PanicGuard<'a> {
    pub(crate) fn new(shared: &'a Shared, model: &'a str, thread: &'static str) -> Self {
        PanicGuard {
            shared,
            model,
            thread,
        }
    }
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        // A decode panic unwinds the engine thread twice (the scope re-raises it);
        // it is reported once.
        if std::thread::panicking() && self.shared.state.load(Ordering::Acquire) != FAILED {
            tracing::error!(model = %self.model, thread = self.thread,
                "an engine thread panicked; the model is unavailable");
            self.shared
                .fail("the engine thread stopped unexpectedly; restart hearth".into());
        }
    }
}

/// How chat prompts are written, as the GGUF's chat template says.
pub struct Prompts {
    /// The template as its Jinja source renders here: for the requests whose
    /// tool syntax needs it (see `tools`) or that give `chat_template_kwargs`,
    /// and for every chat of a reasoning model (`think`).
    pub jinja: Option<Arc<crate::jinja::ChatTemplate>>,
    /// The thinking tags the template knows: a reasoning model's.
    pub think: Option<crate::think::Tags>,
}

/// The engine thread's body.
pub fn run(
    settings: Settings,
    shared: Arc<Shared>,
    jobs: Receiver<Job>,
    hook: Option<IntakeHook>,
    prompts: Prompts,
) {
    let guard = |thread| PanicGuard {
        shared: &shared,
        model: &settings.name,
        thread,
    };
    let _guard = guard("engine");
    let started = Instant::now();
    let loaded = llama::backend().and_then(|backend| {
        let bytes = std::fs::metadata(&settings.path).map_or(0, |m| m.len());
        tracing::info!(model = %settings.name, path = %settings.path.display(), bytes, threads = settings.threads,
            parallel = settings.parallel, context = settings.context,
            "loading {} ({})", settings.name, crate::human_bytes(bytes));
        let model = llama::load_model(backend, &settings)?;
        Ok((backend, model))
    });
    let (backend, model) = match loaded {
        Ok(x) => x,
        Err(e) => return fail(&shared, &settings, e),
    };
    let ctx = match llama::new_context(backend, &model, &settings) {
        Ok(c) => c,
        Err(e) => return fail(&shared, &settings, e),
    };
    let vision = match Vision::load(&model, &settings) {
        Ok(v) => v,
        Err(e) => return fail(&shared, &settings, e),
    };
    let template = llama::chat_template(&model);
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        model = %settings.name,
        seconds = format!("{seconds:.2}"),
        chat_template = if template.is_some() { "from the GGUF" } else { "ChatML (the GGUF has none)" },
        "{} ready in {seconds:.1} s", settings.name
    );
    let intake = Intake {
        model: &model,
        vision: vision.as_ref(),
        template,
        jinja: prompts
            .jinja
            .map(|t| crate::intake::Jinja::new(&model, t, prompts.think.is_some())),
        think: prompts.think,
        n_ctx: settings.context as usize,
        hook,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        // One thread beyond `threads`: it is idle between arrivals, and while it
        // prepares it slows the decode threads a little instead of stopping them.
        let spawned = std::thread::Builder::new()
            .name(format!("intake-{}", settings.name))
            .spawn_scoped(scope, || {
                let _guard = guard("intake");
                intake.run(jobs, ready_tx);
            });
        let intake_thread = match spawned {
            Ok(h) => h,
            Err(e) => {
                return fail(
                    &shared,
                    &settings,
                    format!("cannot start the engine's intake thread: {e}"),
                );
            }
        };
        shared.state.store(READY, Ordering::Release);
        {
            let _guard = guard("decode");
            Scheduler::new(&model, vision.as_ref(), ctx, &settings, shared.clone()).run(&ready_rx);
        }
        // Joined here, so that its panic (already reported by its guard) is not
        // raised again by the scope.
        let _ = intake_thread.join();
    });
    tracing::debug!(model = %settings.name, "engine stopped");
}

fn fail(shared: &Shared, settings: &Settings, reason: String) {
    tracing::error!(model = %settings.name, "{reason}");
    shared.fail(reason);
}

/// A request that owns a slot.
struct Active {
    events: UnboundedSender<Event>,
    prompt: Vec<LlamaToken>,
    max_tokens: u32,
    sampler: llama::Sampling,
    text: TextStream,
    generated: u32,
    /// Sampled, sent, and to be decoded in the next step.
    next: Option<LlamaToken>,
    /// Admission order, so prefill is first come, first served.
    order: u64,
    admitted: Instant,
    reused: usize,
    first_token: Option<Instant>,
    logprobs: Option<usize>,
    /// The prompt's images, in order (see `vision`): each evaluated when the
    /// prefill reaches it.
    media: Vec<Media>,
}

impl Active {
    /// The first image at or after prompt position `from`.
    fn media_from(&self, from: usize) -> Option<&Media> {
        self.media.iter().find(|m| m.at >= from)
    }
}

struct Slot {
    seq: i32,
    /// The tokens whose KV cells this sequence holds, in position order.
    cached: Vec<LlamaToken>,
    last_used: u64,
    active: Option<Active>,
}

/// A slot as the full-cache policy ([`choose_room`]) sees it.
#[derive(Debug, Clone, Copy)]
struct SlotState {
    /// The KV cells it holds.
    cached: usize,
    active: Option<SeqState>,
}

#[derive(Debug, Clone, Copy)]
struct SeqState {
    /// Admission order.
    order: u64,
    /// Still reading its prompt: nothing sampled (or sent) yet.
    prefilling: bool,
}

/// What [`Scheduler::make_room`] does about a full cache.
#[derive(Debug, PartialEq, Eq)]
enum Room {
    /// Drop every idle slot's cached prefix.
    DropIdleCaches,
    /// Send slot `i`'s request (prefilling) back to the front of the line.
    Requeue(usize),
    /// End slot `i`'s reply with `length`.
    Cut(usize),
    /// Refuse slot `i`'s request (prefilling, the cache full `parallel` times
    /// in a row): not expected, see [`Scheduler::make_room`].
    Refuse(usize),
    /// Nothing holds cells.
    Nothing,
}

/// The least harmful way to make room, in [`Scheduler::make_room`]'s order;
/// `full` is how many decodes in a row found the cache full.
fn choose_room(slots: &[SlotState], full: usize) -> Room {
    if slots.iter().any(|s| s.active.is_none() && s.cached > 0) {
        return Room::DropIdleCaches;
    }
    let active: Vec<(usize, SeqState)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.active.map(|a| (i, a)))
        .collect();
    let newest_prefilling = active
        .iter()
        .filter(|(_, a)| a.prefilling)
        .max_by_key(|(_, a)| a.order);
    if let Some(&(i, _)) = newest_prefilling
        && active.len() > 1
        && full <= slots.len()
    {
        return Room::Requeue(i);
    }
    match active
        .iter()
        .max_by_key(|(i, a)| (slots[*i].cached, a.order))
    {
        Some(&(i, a)) if a.prefilling => Room::Refuse(i),
        Some(&(i, _)) => Room::Cut(i),
        None => Room::Nothing,
    }
}

struct Scheduler<'m> {
    model: &'m LlamaModel,
    /// The model's projector, when it reads images.
    vision: Option<&'m Vision>,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    slots: Vec<Slot>,
    pending: VecDeque<Pending>,
    /// The longest sequence: the configured context, which intake checks requests against.
    n_ctx: usize,
    /// KV cells shared by all sequences: the context, as llama.cpp rounded it up.
    cells: usize,
    name: String,
    tick: u64,
    /// Decodes in a row that found the KV cache full; 0 after one that did not.
    full: usize,
    shared: Arc<Shared>,
    /// Control tokens written as their text (`llama::preserved_tokens`).
    preserved: Vec<llama_cpp_2::token::LlamaToken>,
}

/// What a batch entry is for.
enum Entry {
    /// One generated token of slot `slot`, its logits at batch index `idx`.
    Gen { slot: usize, idx: i32 },
    /// `n` prompt tokens of slot `slot`; logits at `idx` when the prompt ends here.
    Prefill {
        slot: usize,
        n: usize,
        idx: Option<i32>,
    },
}

impl<'m> Scheduler<'m> {
    fn new(
        model: &'m LlamaModel,
        vision: Option<&'m Vision>,
        ctx: LlamaContext<'m>,
        s: &Settings,
        shared: Arc<Shared>,
    ) -> Self {
        let slots = (0..s.parallel)
            .map(|i| Slot {
                seq: i32::try_from(i).unwrap_or(0),
                cached: Vec::new(),
                last_used: 0,
                active: None,
            })
            .collect();
        let cells = (ctx.n_ctx() as usize).max(s.context as usize);
        Scheduler {
            model,
            vision,
            cells,
            ctx,
            batch: LlamaBatch::new(STEP_TOKENS as usize, 1),
            slots,
            pending: VecDeque::new(),
            n_ctx: s.context as usize,
            name: s.name.clone(),
            tick: 0,
            full: 0,
            shared,
            preserved: llama::preserved_tokens(model),
        }
    }

    fn busy(&self) -> bool {
        !self.pending.is_empty() || self.slots.iter().any(|s| s.active.is_some())
    }

    /// Decodes until intake has ended and every admitted request is done. Only
    /// cheap work happens between steps: prepared requests are taken as they come.
    fn run(mut self, ready: &Receiver<Pending>) {
        let mut open = true;
        loop {
            if self.shared.is_stopping() {
                self.end_all("the engine is shutting down");
                return;
            }
            if !self.busy() {
                if !open {
                    return;
                }
                match ready.recv() {
                    Ok(p) => self.pending.push_back(p),
                    Err(_) => return,
                }
            }
            while open {
                match ready.try_recv() {
                    Ok(p) => self.pending.push_back(p),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            self.drop_cancelled();
            self.admit();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
        }
    }

    fn drop_cancelled(&mut self) {
        self.pending.retain(|p| !p.events.is_closed());
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.events.is_closed()) {
                tracing::debug!(model = %self.name, seq = slot.seq, "client went away; sequence freed");
                slot.active = None;
            }
        }
    }

    /// Moves pending requests into free slots, reusing cached prefixes, in arrival
    /// order: a prompt that does not fit in the cells the active sequences leave
    /// waits, and those behind it wait too, so a long prompt is not overtaken
    /// forever by short ones.
    ///
    /// Every sequence may count on its share of the cache (`cells / parallel`).
    /// A reply beyond its share uses cells nobody needed, so a prompt within its
    /// own share that finds no room takes them back: the longest such reply ends
    /// with `length`, rather than the new request waiting for it, perhaps for
    /// thousands of tokens.
    fn admit(&mut self) {
        while let Some(front) = self.pending.front() {
            let len = front.prompt.len();
            if !self.has_room_for(len) {
                if len < self.share() && self.cut_longest_over_share() {
                    continue;
                }
                return;
            }
            let Some(free) = self.pick_free_slot() else {
                return;
            };
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            self.tick += 1;
            let reused = self.reuse_prefix(free, &p.prompt);
            let reused = self.keep_images_whole(free, reused, &p.media);
            self.shared
                .reused_tokens
                .fetch_add(reused as u64, Ordering::Relaxed);
            if let Some(echo) = &p.echo {
                let _ = p.events.send(Event::Text(echo.clone()));
            }
            let slot = &mut self.slots[free];
            slot.last_used = self.tick;
            slot.active = Some(Active {
                events: p.events,
                prompt: p.prompt,
                max_tokens: p.max_tokens,
                sampler: p.sampler,
                text: p.text,
                generated: 0,
                next: None,
                order: self.tick,
                admitted: Instant::now(),
                reused,
                first_token: None,
                logprobs: p.logprobs,
                media: p.media,
            });
            self.trim_idle_caches(free);
        }
    }

    /// Whether a new prompt of `len` tokens and its first generated token fit in
    /// the shared cache beside the active sequences. With none active every
    /// accepted prompt fits: intake checked it against the context.
    ///
    /// Only prompts are reserved, not replies: reserving `max_tokens` (by default
    /// the rest of the context) would serialise requests that leave it unset.
    /// Replies that outgrow the cache are handled by [`Scheduler::make_room`].
    fn has_room_for(&self, len: usize) -> bool {
        let committed = self.committed_cells();
        committed == 0 || committed + len < self.cells
    }

    /// The cells each sequence may count on.
    fn share(&self) -> usize {
        self.cells / self.slots.len().max(1)
    }

    /// Ends the generating reply holding the most cells beyond its share, if any.
    fn cut_longest_over_share(&mut self) -> bool {
        let share = self.share();
        let over = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i].cached.len() > share
                    && self.slots[i]
                        .active
                        .as_ref()
                        .is_some_and(|a| a.next.is_some())
            })
            .max_by_key(|&i| self.slots[i].cached.len());
        match over {
            Some(i) => {
                self.cut(
                    i,
                    "the reply furthest beyond its share, for a waiting request,",
                );
                true
            }
            None => false,
        }
    }

    /// Cells the active sequences hold, or will once their prompts are in, plus
    /// one each for the token they decode next. Prefixes shared between slots
    /// are counted once per slot: an overestimate, so admission errs on waiting.
    fn committed_cells(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| {
                let a = s.active.as_ref()?;
                Some(s.cached.len().max(a.prompt.len()) + 1)
            })
            .sum()
    }

    /// The free slot whose cache shares the longest prefix with the next pending
    /// prompt; among equals, the least recently used.
    fn pick_free_slot(&self) -> Option<usize> {
        let prompt = &self.pending.front()?.prompt;
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(_, s)| {
                (
                    common_prefix(&s.cached, prompt),
                    std::cmp::Reverse(s.last_used),
                )
            })
            .map(|(i, _)| i)
    }

    /// Makes slot `target` hold the longest cached prefix of `prompt` available in
    /// any slot, leaving at least one prompt token to decode (its logits start the
    /// generation). Returns how many prompt tokens are reused.
    fn reuse_prefix(&mut self, target: usize, prompt: &[LlamaToken]) -> usize {
        let limit = prompt.len().saturating_sub(1);
        let own = common_prefix(&self.slots[target].cached, prompt).min(limit);
        let donor = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != target)
            .map(|(i, s)| (i, common_prefix(&s.cached, prompt).min(limit)))
            .max_by_key(|(_, n)| *n)
            .filter(|(_, n)| *n > own);
        let seq = self.slots[target].seq;
        if let Some((d, n)) = donor {
            let src = self.slots[d].seq;
            let copied = self
                .ctx
                .clear_kv_cache_seq(Some(seq as u32), None, None)
                .is_ok()
                && self
                    .ctx
                    .copy_kv_cache_seq(src, seq, Some(0), Some(n as u32))
                    .is_ok();
            if copied {
                let tokens = self.slots[d].cached[..n].to_vec();
                self.slots[target].cached = tokens;
                return n;
            }
        }
        // Drop what follows the shared prefix; some memory types cannot cut a
        // sequence in the middle, and then the whole sequence goes.
        let cut = matches!(
            self.ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(own as u32), None),
            Ok(true)
        );
        if cut {
            self.slots[target].cached.truncate(own);
            own
        } else {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            self.slots[target].cached.clear();
            0
        }
    }

    /// A reused prefix that ends inside an image's span (not expected: an image's
    /// placeholders come whole) is cut back to the image's start, which is then
    /// evaluated again. Returns the prefix kept.
    fn keep_images_whole(&mut self, slot: usize, reused: usize, media: &[Media]) -> usize {
        let Some(m) = media
            .iter()
            .find(|m| m.at < reused && reused < m.at + m.len)
        else {
            return reused;
        };
        let seq = self.slots[slot].seq;
        let cut = matches!(
            self.ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(m.at as u32), None),
            Ok(true)
        );
        if cut {
            self.slots[slot].cached.truncate(m.at);
            m.at
        } else {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            self.slots[slot].cached.clear();
            0
        }
    }

    /// Evaluates the images that prefilling sequences have reached (their text
    /// before them is in the cache): llama.cpp decodes each one's embeddings
    /// into its sequence on its own, before the step's batch. A failure answers
    /// that request alone.
    fn eval_images(&mut self) {
        let Some(vision) = self.vision else { return };
        for i in 0..self.slots.len() {
            loop {
                let slot = &self.slots[i];
                let Some(a) = slot.active.as_ref().filter(|a| a.next.is_none()) else {
                    break;
                };
                let at = slot.cached.len();
                let Some(m) = a.media_from(at).filter(|m| m.at == at) else {
                    break;
                };
                let (seq, len) = (slot.seq, m.len);
                let started = Instant::now();
                match vision.eval(&mut self.ctx, m, seq, STEP_TOKENS as i32) {
                    Ok(()) => {
                        tracing::debug!(model = %self.name, seq, tokens = len,
                            ms = started.elapsed().as_millis() as u64, "an image evaluated");
                        let s = &mut self.slots[i];
                        if let Some(a) = s.active.as_ref() {
                            s.cached.extend_from_slice(&a.prompt[at..at + len]);
                        }
                        self.shared
                            .prefilled_tokens
                            .fetch_add(len as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(model = %self.name, seq, error = %e, "an image could not be evaluated");
                        if let Some(a) = self.slots[i].active.take() {
                            let _ =
                                a.events
                                    .send(Event::Error(BackendError::Unavailable(format!(
                                        "{e}; the model's context may be full: try again shortly"
                                    ))));
                        }
                        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                        self.slots[i].cached.clear();
                        break;
                    }
                }
            }
        }
    }

    /// Idle slots keep their KV cells for the prompt cache, but every decode step
    /// attends over the whole occupied part of the shared cache: with a small
    /// model, a few thousand stale cells slow every stream by tens of percent.
    /// So idle caches are kept within an eighth of the context, least recently
    /// used first out, except the most recent one (a conversation's next turn);
    /// and never beyond what the active sequences leave free, so that a prompt
    /// just admitted does not run into the cache being full.
    fn trim_idle_caches(&mut self, admitted: usize) {
        let budget = self.n_ctx / 8;
        let room = self.cells.saturating_sub(self.committed_cells());
        let mut idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                i != admitted && self.slots[i].active.is_none() && !self.slots[i].cached.is_empty()
            })
            .collect();
        idle.sort_by_key(|&i| std::cmp::Reverse(self.slots[i].last_used));
        let mut kept = 0;
        for (rank, i) in idle.into_iter().enumerate() {
            let len = self.slots[i].cached.len();
            if kept + len <= room && (rank == 0 || kept + len <= budget) {
                kept += len;
                continue;
            }
            let seq = self.slots[i].seq;
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            self.slots[i].cached.clear();
        }
    }

    /// One decode of all active sequences.
    fn step(&mut self) {
        self.eval_images();
        self.batch.clear();
        let mut entries = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(t) = slot.active.as_ref().and_then(|a| a.next) {
                let idx = self.batch.n_tokens();
                if self
                    .batch
                    .add(t, slot.cached.len() as i32, &[slot.seq], true)
                    .is_err()
                {
                    break;
                }
                entries.push(Entry::Gen { slot: i, idx });
            }
        }
        let generating = !entries.is_empty();
        let cap = if generating {
            BUSY_PREFILL_CHUNK
        } else {
            STEP_TOKENS as usize
        };
        let mut budget = cap.min(STEP_TOKENS as usize - entries.len());
        let mut prefilling: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.active
                    .as_ref()
                    .filter(|a| a.next.is_none())
                    .map(|a| (a.order, i))
            })
            .collect();
        prefilling.sort_unstable();
        for (_, i) in prefilling {
            if budget == 0 {
                break;
            }
            let slot = &self.slots[i];
            let Some(a) = slot.active.as_ref() else {
                continue;
            };
            let start = slot.cached.len();
            // Text up to the next image: the image goes in at the next step.
            let until = a.media_from(start).map_or(a.prompt.len(), |m| m.at);
            let n = (until - start).min(budget);
            if n == 0 {
                continue;
            }
            let mut idx = None;
            for (k, &t) in a.prompt[start..start + n].iter().enumerate() {
                let pos = start + k;
                let last = pos + 1 == a.prompt.len();
                if last {
                    idx = Some(self.batch.n_tokens());
                }
                if self.batch.add(t, pos as i32, &[slot.seq], last).is_err() {
                    break;
                }
            }
            budget -= n;
            entries.push(Entry::Prefill { slot: i, n, idx });
        }
        if entries.is_empty() {
            return;
        }

        match self.ctx.decode(&mut self.batch) {
            Ok(()) => self.full = 0,
            Err(DecodeError::NoKvCacheSlot) => {
                self.full += 1;
                return self.make_room();
            }
            Err(e) => return self.fail_all(&format!("llama.cpp decode failed: {e}")),
        }

        for entry in entries {
            match entry {
                Entry::Gen { slot, idx } => {
                    let s = &mut self.slots[slot];
                    if let Some(t) = s.active.as_mut().and_then(|a| a.next.take()) {
                        s.cached.push(t);
                    }
                    self.sample(slot, idx);
                }
                Entry::Prefill { slot, n, idx } => {
                    self.shared
                        .prefilled_tokens
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let s = &mut self.slots[slot];
                    if let Some(a) = s.active.as_ref() {
                        let start = s.cached.len();
                        s.cached.extend_from_slice(&a.prompt[start..start + n]);
                    }
                    if let Some(idx) = idx {
                        self.sample(slot, idx);
                    }
                }
            }
        }
    }

    /// Samples slot `i`'s next token from the logits at batch index `idx` and
    /// hands its text to the client.
    fn sample(&mut self, i: usize, idx: i32) {
        let model = self.model;
        let n_ctx = self.n_ctx;
        let Some(a) = self.slots[i].active.as_mut() else {
            return;
        };
        let token = a.sampler.sample(&self.ctx, idx);
        if a.first_token.is_none() {
            a.first_token = Some(Instant::now());
        }
        if llama::is_end_of_generation(model, token) {
            return self.finish(i, Finish::Stop);
        }
        if let Some(top) = a.logprobs {
            let lp = llama::logprob(model, &self.ctx, idx, token, top, &self.preserved);
            if a.events.send(Event::Logprob(lp)).is_err() {
                self.slots[i].active = None;
                return;
            }
        }
        a.generated += 1;
        self.shared.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let pushed = a.text.push(&llama::piece(model, token, &self.preserved));
        if !pushed.text.is_empty() && a.events.send(Event::Text(pushed.text)).is_err() {
            self.slots[i].active = None;
            return;
        }
        let cached = self.slots[i].cached.len();
        let Some(a) = self.slots[i].active.as_mut() else {
            return;
        };
        if pushed.stopped {
            self.finish(i, Finish::Stop);
        } else if a.generated >= a.max_tokens || cached >= n_ctx {
            self.finish(i, Finish::Length);
        } else {
            a.next = Some(token);
        }
    }

    fn finish(&mut self, i: usize, finish: Finish) {
        self.tick += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.tick;
        let Some(mut a) = slot.active.take() else {
            return;
        };
        let rest = a.text.finish();
        if !rest.is_empty() {
            let _ = a.events.send(Event::Text(rest));
        }
        let prompt_tokens = u32::try_from(a.prompt.len()).unwrap_or(u32::MAX);
        let _ = a.events.send(Event::Done {
            finish,
            prompt_tokens,
            completion_tokens: a.generated,
        });
        let prefill = a.first_token.map(|t| t - a.admitted);
        let decode = a.first_token.map(|t| t.elapsed());
        tracing::debug!(
            model = %self.name,
            seq = slot.seq,
            prompt_tokens,
            reused_tokens = a.reused,
            completion_tokens = a.generated,
            finish = finish.as_str(),
            prefill_ms = prefill.map(|d| d.as_millis() as u64),
            decode_tok_s = decode.map(|d| f64::from(a.generated) / d.as_secs_f64().max(1e-9)),
            "sequence done"
        );
    }

    /// The shared KV cache has no cell left for this step's batch. llama.cpp found
    /// no room before touching anything (its "failed to find a memory slot" line,
    /// at debug), so the batch is simply built again next step, without what is
    /// freed here; every other sequence's cells and tokens are as they were.
    ///
    /// Room is made with the least harm first:
    /// 1. idle slots' cached prefixes (only the prompt cache loses);
    /// 2. the newest request still prefilling goes back to the front of the
    ///    waiting line: its client has seen nothing yet, and admission holds it
    ///    until its prompt fits again;
    /// 3. the generating sequence holding the most cells (the newest among equals)
    ///    ends with `length`, its text so far intact. The longest, because one
    ///    cut then frees the most room, so the other replies go on untouched; it is
    ///    the reply that has had the largest share, and usually the one whose
    ///    growth filled the cache.
    ///
    /// A sequence alone always fits (intake held prompt + `max_tokens` to the
    /// context), and admission does not take a request back before its prompt
    /// fits, so this does not loop. Should the cache stay full regardless (a
    /// memory type whose room we misjudge), requests stop being sent back after
    /// `parallel` tries in a row and are ended instead, so the loop still ends.
    fn make_room(&mut self) {
        let states: Vec<SlotState> = self
            .slots
            .iter()
            .map(|s| SlotState {
                cached: s.cached.len(),
                active: s.active.as_ref().map(|a| SeqState {
                    order: a.order,
                    prefilling: a.next.is_none(),
                }),
            })
            .collect();
        match choose_room(&states, self.full) {
            Room::DropIdleCaches => {
                for slot in self
                    .slots
                    .iter_mut()
                    .filter(|s| s.active.is_none() && !s.cached.is_empty())
                {
                    let _ = self
                        .ctx
                        .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
                    slot.cached.clear();
                }
                tracing::debug!(model = %self.name, "the KV cache is full; dropped the idle slots' prompt caches");
            }
            Room::Requeue(i) => self.requeue(i),
            Room::Cut(i) => self.cut(i, "the longest reply"),
            Room::Refuse(i) => {
                let seq = self.slots[i].seq;
                if let Some(a) = self.slots[i].active.take() {
                    // Only prompts are left and the cache still has no room: not
                    // expected (see above), and a retry would fail the same way.
                    tracing::warn!(model = %self.name, seq, prompt_tokens = a.prompt.len(), cells = self.cells,
                        retries = self.full, "the KV cache stays full; a request still reading its prompt is refused");
                    let _ = a.events.send(Event::Error(BackendError::Unavailable(
                        "the model's context is full; try again shortly".into(),
                    )));
                }
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                self.slots[i].cached.clear();
            }
            Room::Nothing => {}
        }
    }

    /// Ends slot `i`'s reply with `length` to free its cells for the others; `why`
    /// says which reply, for the log.
    fn cut(&mut self, i: usize, why: &str) {
        let seq = self.slots[i].seq;
        let tokens = self.slots[i].cached.len();
        tracing::info!(model = %self.name, seq, tokens, cells = self.cells, parallel = self.slots.len(),
            "the KV cache shared by the model's sequences is full: {why} ends here with `length`; \
             raise `context` or lower `parallel` if this happens often");
        self.shared.cut_sequences.fetch_add(1, Ordering::Relaxed);
        self.finish(i, Finish::Length);
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.slots[i].cached.clear();
    }

    /// Sends slot `i`'s request, still prefilling, back to the front of the
    /// waiting line and frees its cells. Nothing was sampled yet, so its sampler
    /// and text are untouched and it starts over as if it had just arrived.
    fn requeue(&mut self, i: usize) {
        let seq = self.slots[i].seq;
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.slots[i].cached.clear();
        let Some(a) = self.slots[i].active.take() else {
            return;
        };
        tracing::debug!(model = %self.name, seq, prompt_tokens = a.prompt.len(), cells = self.cells,
            "the KV cache is full: a request still prefilling waits for room again");
        self.shared
            .requeued_sequences
            .fetch_add(1, Ordering::Relaxed);
        self.pending.push_front(Pending {
            events: a.events,
            prompt: a.prompt,
            max_tokens: a.max_tokens,
            sampler: a.sampler,
            text: a.text,
            // Already sent at its first admission.
            echo: None,
            logprobs: a.logprobs,
            media: a.media,
        });
    }

    /// Answers every waiting and generating request with `reason` (shutdown).
    fn end_all(&mut self, reason: &str) {
        for p in self.pending.drain(..) {
            let _ = p
                .events
                .send(Event::Error(BackendError::Unavailable(reason.to_owned())));
        }
        for slot in &mut self.slots {
            if let Some(a) = slot.active.take() {
                let _ = a
                    .events
                    .send(Event::Error(BackendError::Unavailable(reason.to_owned())));
            }
        }
    }

    fn fail_all(&mut self, reason: &str) {
        tracing::error!(model = %self.name, "{reason}");
        for slot in &mut self.slots {
            if let Some(a) = slot.active.take() {
                let _ = a
                    .events
                    .send(Event::Error(BackendError::Unavailable(reason.to_owned())));
            }
            slot.cached.clear();
        }
        self.ctx.clear_kv_cache();
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(cached: usize) -> SlotState {
        SlotState {
            cached,
            active: None,
        }
    }

    fn seq(cached: usize, order: u64, prefilling: bool) -> SlotState {
        SlotState {
            cached,
            active: Some(SeqState { order, prefilling }),
        }
    }

    #[test]
    fn idle_caches_go_first() {
        let slots = [seq(200, 1, false), idle(30), seq(40, 2, true)];
        assert_eq!(choose_room(&slots, 1), Room::DropIdleCaches);
    }

    #[test]
    fn then_the_newest_prefilling_request_waits_again() {
        let slots = [
            seq(200, 1, false),
            seq(40, 2, true),
            seq(90, 3, true),
            idle(0),
        ];
        assert_eq!(choose_room(&slots, 1), Room::Requeue(2));
        // Up to `parallel` full decodes in a row.
        assert_eq!(choose_room(&slots, 4), Room::Requeue(2));
    }

    #[test]
    fn then_the_longest_reply_ends_the_newest_among_equals() {
        let slots = [seq(120, 1, false), seq(200, 2, false), seq(200, 3, false)];
        assert_eq!(choose_room(&slots, 1), Room::Cut(2));
    }

    #[test]
    fn a_cache_that_stays_full_stops_requeueing_and_cuts() {
        let slots = [seq(200, 1, false), seq(40, 2, true)];
        assert_eq!(choose_room(&slots, 2), Room::Requeue(1));
        assert_eq!(choose_room(&slots, 3), Room::Cut(0));
    }

    #[test]
    fn a_prompt_alone_is_not_sent_back_to_wait_for_itself() {
        let slots = [seq(100, 1, true), idle(0)];
        assert_eq!(choose_room(&slots, 1), Room::Refuse(0));
        assert_eq!(choose_room(&[idle(0), idle(0)], 1), Room::Nothing);
    }
}
