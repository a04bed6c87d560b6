//! An embedding model's thread: the GGUF loaded in llama.cpp's embedding mode,
//! and each request's inputs decoded together, as many sequences per decode as
//! fit, each pooled to one vector by the model's own pooling (mean when the GGUF
//! names none) and normalised to unit length, as OpenAI's vectors are.
//!
//! Requests that wait together are answered together: every request queued
//! when a round starts joins it, and their inputs fill the decodes in order (up
//! to `parallel` sequences and `context` tokens per decode), so one-input
//! requests from many clients are batched as one request's list is. An encoder model (BERT) attends in both directions, so a sequence is
//! never split across decodes and can be at most `context` tokens long, and no
//! longer than the model was trained for (llama.cpp aborts past that).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use hearth_api::{ApiError, InputItem};
use hearth_router::BackendError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

use crate::llama;
use crate::scheduler::{PanicGuard, Shared};
use crate::settings::Settings;

/// What one embeddings request asks of the model: its inputs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Text(String),
    Tokens(Vec<u32>),
}

impl Input {
    pub fn from_items(items: &[InputItem<'_>]) -> Vec<Input> {
        items
            .iter()
            .map(|i| match i {
                InputItem::Text(s) => Input::Text((*s).to_owned()),
                InputItem::Tokens(t) => Input::Tokens(t.to_vec()),
            })
            .collect()
    }
}

/// The answer: a unit vector per input, and the tokens read.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u64,
}

pub struct Job {
    pub inputs: Vec<Input>,
    /// As many dimensions as the model has, or a 400.
    pub dimensions: Option<u32>,
    /// Cut inputs longer than the context instead of refusing them.
    pub truncate: bool,
    /// Dropped by the client (it went away): the job is skipped.
    pub answer: oneshot::Sender<Result<Embedded, BackendError>>,
}

/// The thread's body: load, then answer jobs until the backend is dropped.
pub fn run(settings: Settings, shared: Arc<Shared>, jobs: Receiver<Job>) {
    let _guard = PanicGuard::new(&shared, &settings.name, "embed");
    let started = Instant::now();
    let loaded = llama::backend().and_then(|backend| {
        let bytes = std::fs::metadata(&settings.path).map_or(0, |m| m.len());
        tracing::info!(model = %settings.name, path = %settings.path.display(), bytes, threads = settings.threads,
            context = settings.context, "loading {} ({}) as an embedding model", settings.name, crate::human_bytes(bytes));
        let model = llama::load_model(backend, &settings)?;
        Ok((backend, model))
    });
    let (backend, model) = match loaded {
        Ok(x) => x,
        Err(e) => return shared.fail_with(&settings.name, e),
    };
    let pooling = pooling(&model);
    let threads = i32::try_from(settings.threads).unwrap_or(1);
    // A decode holds whole sequences: batch and micro-batch are the context.
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context))
        .with_n_batch(settings.context)
        .with_n_ubatch(settings.context)
        .with_n_seq_max(settings.parallel)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_embeddings(true)
        .with_pooling_type(pooling);
    let placing = crate::device::loading(&settings, crate::device::Part::Context);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => {
            placing.done(None);
            c
        }
        Err(e) => {
            return shared.fail_with(
                &settings.name,
                format!(
                    "cannot create an embedding context of {} tokens for {}: {e}",
                    settings.context,
                    settings.path.display()
                ),
            );
        }
    };
    let dims = usize::try_from(model.n_embd()).unwrap_or(0);
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(model = %settings.name, seconds = format!("{seconds:.2}"), dimensions = dims,
        pooling = ?pooling, "{} ready in {seconds:.1} s ({dims} dimensions)", settings.name);
    shared.set_ready();
    // Past the positions it was trained with, llama.cpp aborts the process (an
    // assertion in its position lookup for BERT): an input is refused first.
    let trained = usize::try_from(model.n_ctx_train()).unwrap_or(0);
    let limits = Limits {
        context: settings.context as usize,
        per_input: (settings.context as usize).min(trained.max(1)),
        sequences: settings.parallel as usize,
        matryoshka: settings.matryoshka,
    };
    while let Ok(first) = jobs.recv() {
        // Every request waiting now joins this round: their inputs share decodes.
        let mut round = vec![first];
        round.extend(jobs.try_iter());
        if shared.is_stopping() {
            for job in round {
                let _ = job.answer.send(Err(stopping(&settings.name)));
            }
            break;
        }
        let round: Vec<Job> = round
            .into_iter()
            .filter(|j| !j.answer.is_closed())
            .collect();
        embed_round(&model, &mut ctx, &limits, round, &shared);
    }
    tracing::debug!(model = %settings.name, "embedding engine stopped");
}

fn stopping(name: &str) -> BackendError {
    BackendError::Unavailable(format!("model `{name}`: the engine has stopped"))
}

/// The GGUF's pooling, or mean pooling for a model that names none (a chat
/// model configured as `kind = "embedding"`), which llama.cpp would otherwise
/// leave unpooled.
fn pooling(model: &LlamaModel) -> LlamaPoolingType {
    let arch = model
        .meta_val_str("general.architecture")
        .unwrap_or_default();
    if model.meta_val_str(&format!("{arch}.pooling_type")).is_ok() {
        LlamaPoolingType::Unspecified
    } else {
        tracing::info!(
            "the GGUF names no pooling type; its embeddings are the mean of its token states"
        );
        LlamaPoolingType::Mean
    }
}

struct Limits {
    /// Tokens per decode.
    context: usize,
    /// Tokens per input: the context, and at most what the model was trained for.
    per_input: usize,
    /// Sequences per decode.
    sequences: usize,
    /// The model was trained so that its vectors' first values hold their meaning
    /// (`matryoshka = true`): `dimensions` below its own cut them.
    matryoshka: bool,
}

/// The inputs' tokens, each checked against the vocabulary and the context. One
/// too long is a 400, or, with `truncate` (Ollama's `/api/embed` default), cut to
/// the context, keeping the model's closing marker ([SEP]) when it had one.
fn tokens(
    model: &LlamaModel,
    inputs: &[Input],
    context: usize,
    truncate: bool,
) -> Result<Vec<Vec<LlamaToken>>, ApiError> {
    let vocab = model.vocab();
    let n_vocab = vocab.n_tokens();
    let label = |i: usize| {
        if inputs.len() == 1 {
            "`input`".to_owned()
        } else {
            format!("`input[{i}]`")
        }
    };
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let mut t = match input {
                // The model's own markers around the text ([CLS] … [SEP] for BERT);
                // markers typed in the text stay text.
                Input::Text(s) => vocab.tokenize(s.as_bytes(), true, false),
                Input::Tokens(ids) => ids
                    .iter()
                    .map(|&id| match i32::try_from(id) {
                        Ok(t) if t < n_vocab => Ok(LlamaToken::new(t)),
                        _ => Err(ApiError::invalid_param(
                            "input",
                            format!(
                                "{}: token id {id} is outside the model's vocabulary of {n_vocab} tokens",
                                label(i)
                            ),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            if t.is_empty() {
                return Err(ApiError::invalid_param(
                    "input",
                    format!("{} is empty after tokenization", label(i)),
                ));
            }
            if t.len() > context && truncate {
                let last = t[t.len() - 1];
                let closing = vocab.is_control(last);
                t.truncate(context);
                if closing && let Some(end) = t.last_mut() {
                    *end = last;
                }
            }
            if t.len() > context {
                return Err(ApiError::invalid_param(
                    "input",
                    format!(
                        "{} is {} tokens, more than this model reads at once ({context}); split it into shorter pieces",
                        label(i),
                        t.len()
                    ),
                )
                .with_code("context_length_exceeded"));
            }
            Ok(t)
        })
        .collect()
}

/// A request of the round that is still to be answered: its sequences, and
/// the vectors so far.
struct Pending {
    job: Job,
    seqs: Vec<Vec<LlamaToken>>,
    vectors: Vec<Vec<f32>>,
}

/// Answers the round's jobs: a job whose inputs are wrong is answered at once;
/// the sequences of the others are decoded together, in their order, as many
/// whole sequences per decode as fit; each job is answered when its last vector
/// is out (or when a decode fails, with the failure).
fn embed_round(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    limits: &Limits,
    round: Vec<Job>,
    shared: &Shared,
) {
    let dims = usize::try_from(model.n_embd()).unwrap_or(0);
    let mut pending: Vec<Pending> = Vec::with_capacity(round.len());
    for job in round {
        match checked(model, limits, dims, &job) {
            Ok(seqs) => pending.push(Pending {
                vectors: Vec::with_capacity(seqs.len()),
                job,
                seqs,
            }),
            Err(e) => {
                let _ = job.answer.send(Err(e));
            }
        }
    }
    // (job, sequence) in order.
    let all: Vec<(usize, usize)> = pending
        .iter()
        .enumerate()
        .flat_map(|(j, p)| (0..p.seqs.len()).map(move |s| (j, s)))
        .collect();
    let mut batch = LlamaBatch::new(limits.context, 1);
    let mut start = 0;
    let mut failure = None;
    while start < all.len() {
        if shared.is_stopping() {
            failure = Some(BackendError::Unavailable("the engine is stopping".into()));
            break;
        }
        // As many whole sequences as fit in one decode, skipping those of clients
        // that went away.
        let mut chosen = Vec::new();
        let mut used = 0;
        let mut end = start;
        while end < all.len() && chosen.len() < limits.sequences {
            let (j, s) = all[end];
            let len = pending[j].seqs[s].len();
            if used + len > limits.context {
                break;
            }
            if !pending[j].job.answer.is_closed() {
                used += len;
                chosen.push((j, s));
            }
            end += 1;
        }
        start = end;
        if chosen.is_empty() {
            continue;
        }
        if let Err(e) = decode(ctx, &mut batch, &pending, &chosen) {
            failure = Some(e);
            break;
        }
        for (id, (j, _)) in (0i32..).zip(&chosen) {
            match ctx.embeddings_seq_ith(id) {
                Ok(v) => {
                    // A Matryoshka cut: the first `dimensions` values, back to unit length.
                    let keep = pending[*j]
                        .job
                        .dimensions
                        .map_or(v.len(), |d| (d as usize).min(v.len()));
                    pending[*j].vectors.push(unit(&v[..keep]))
                }
                Err(e) => {
                    failure = Some(BackendError::Protocol(format!(
                        "llama.cpp gave no pooled embedding: {e}"
                    )));
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }
    for p in pending {
        let result = match &failure {
            Some(e) => Err(e.clone()),
            None if p.vectors.len() == p.seqs.len() => {
                let prompt_tokens = p.seqs.iter().map(|s| s.len() as u64).sum();
                shared
                    .prefilled_tokens
                    .fetch_add(prompt_tokens, std::sync::atomic::Ordering::Relaxed);
                Ok(Embedded {
                    vectors: p.vectors,
                    prompt_tokens,
                })
            }
            // Its client went away: nobody reads the answer.
            None => Err(BackendError::Unavailable("the client went away".into())),
        };
        let _ = p.job.answer.send(result);
    }
}

/// The job's sequences, or why it cannot be answered.
fn checked(
    model: &LlamaModel,
    limits: &Limits,
    dims: usize,
    job: &Job,
) -> Result<Vec<Vec<LlamaToken>>, BackendError> {
    // Cutting a vector short keeps its meaning only for a model trained so
    // (Matryoshka); no GGUF says whether it was, so the config does.
    match job.dimensions.map(|d| d as usize) {
        Some(d) if d == dims => {}
        Some(d) if limits.matryoshka && (1..dims).contains(&d) => {}
        Some(d) if limits.matryoshka => {
            return Err(BackendError::Invalid(ApiError::invalid_param(
                "dimensions",
                format!("`dimensions` must be from 1 to this model's {dims}, not {d}"),
            )));
        }
        Some(d) => {
            return Err(BackendError::Invalid(ApiError::invalid_param(
                "dimensions",
                format!(
                    "this model's vectors have {dims} dimensions and it cannot give {d}; leave out `dimensions` (or ask for {dims}); a model trained for shorter vectors (Matryoshka) can be marked `matryoshka = true` in its [[models]] entry"
                ),
            )));
        }
        None => {}
    }
    tokens(model, &job.inputs, limits.per_input, job.truncate).map_err(BackendError::Invalid)
}

/// One decode of the `chosen` sequences, sequence ids 0, 1, … in that order.
fn decode(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch,
    pending: &[Pending],
    chosen: &[(usize, usize)],
) -> Result<(), BackendError> {
    batch.clear();
    for (id, (j, s)) in (0i32..).zip(chosen) {
        batch
            .add_sequence(&pending[*j].seqs[*s], id, true)
            .map_err(|e| BackendError::Protocol(format!("cannot build a batch: {e}")))?;
    }
    ctx.clear_kv_cache();
    ctx.decode(batch)
        .map_err(|e| BackendError::Protocol(format!("llama.cpp could not decode: {e}")))
}

/// `v` scaled to length 1 (a zero vector stays zero).
pub fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return v.to_vec();
    }
    v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_scaled_to_unit_length() {
        let u = unit(&[3.0, 4.0]);
        assert_eq!(u, vec![0.6, 0.8]);
        assert_eq!(unit(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
