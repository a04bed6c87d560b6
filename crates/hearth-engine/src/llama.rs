//! Everything that touches llama.cpp (through `llama-cpp-2`'s safe wrappers):
//! process-wide initialisation, log routing, loading, context creation, chat
//! templates, tokenization and sampler chains. The rest of the crate sees plain
//! Rust values; llama.cpp's handles are freed by their wrappers' `Drop`.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use hearth_api::ApiError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;

use crate::request::{Grammar, PromptInput, SamplingParams};
use crate::settings::{STEP_TOKENS, Settings};

/// llama.cpp's grammar for any JSON object (from its `grammars/json.gbnf`), with
/// whitespace bounded so a small model cannot pad forever.
const JSON_OBJECT_GBNF: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;

/// How many recent tokens the presence/frequency penalties look at.
const PENALTY_WINDOW: i32 = 1024;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend, initialised once, with llama.cpp's log lines
/// sent to `tracing` (target `llama_cpp`, at debug) instead of stderr.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    BACKEND
        .get_or_init(|| {
            crate::llama_log::install();
            LlamaBackend::init().map_err(|e| format!("cannot initialise llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A load that takes longer than this says how far it got, every quarter; a small
/// model loads within it and says nothing between "loading" and "ready".
const QUIET_LOAD: std::time::Duration = std::time::Duration::from_secs(2);

/// Loads the weights, logging progress every quarter once the load is slow.
pub fn load_model(backend: &LlamaBackend, s: &Settings) -> Result<LlamaModel, String> {
    let name = s.name.clone();
    let mut next = 0.25f32;
    let started = std::time::Instant::now();
    let params = LlamaModelParams::default()
        .with_n_gpu_layers(s.gpu_layers)
        .with_progress_callback(move |p| {
            if p >= next {
                if started.elapsed() >= QUIET_LOAD && p < 1.0 {
                    tracing::info!(model = %name, progress = format!("{:.0}", p * 100.0),
                        "loading {name}: {:.0}%", p * 100.0);
                }
                while next <= p {
                    next += 0.25;
                }
            }
            true
        });
    let placing = crate::device::loading(s, crate::device::Part::Weights);
    let model = LlamaModel::load_from_file(backend, &s.path, &params).map_err(|e| {
        format!(
            "llama.cpp could not load {}: {e} (llama.cpp's warnings above, or its lines at HEARTH_LOG=debug, have the detail)",
            s.path.display()
        )
    })?;
    placing.done(Some(model.n_layer()));
    Ok(model)
}

/// One context shared by `parallel` sequences: a unified KV cache, so a sequence
/// may use any free cell and prefixes can be shared between sequences.
pub fn new_context<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    s: &Settings,
) -> Result<LlamaContext<'m>, String> {
    let threads = i32::try_from(s.threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(s.context))
        .with_n_batch(STEP_TOKENS)
        .with_n_ubatch(STEP_TOKENS)
        .with_n_seq_max(s.parallel)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(true);
    let placing = crate::device::loading(s, crate::device::Part::Context);
    let context = model.new_context(backend, params).map_err(|e| {
        format!(
            "cannot create a context of {} tokens for {}: {e}",
            s.context,
            s.path.display()
        )
    })?;
    placing.done(None);
    Ok(context)
}

/// The GGUF's own chat template, if it has one (ChatML is used otherwise).
pub fn chat_template(model: &LlamaModel) -> Option<LlamaChatTemplate> {
    model.chat_template(None).ok()
}

fn chatml() -> Result<LlamaChatTemplate, ApiError> {
    LlamaChatTemplate::new("chatml").map_err(|_| ApiError::internal())
}

/// Renders messages with `template` (ChatML when there is none, or when llama.cpp
/// does not recognise the model's template).
pub fn render_chat(
    model: &LlamaModel,
    template: Option<&LlamaChatTemplate>,
    messages: &[(String, String)],
) -> Result<String, ApiError> {
    let chat = messages
        .iter()
        .enumerate()
        .map(|(i, (role, content))| {
            LlamaChatMessage::new(role.clone(), content.clone()).map_err(|_| {
                ApiError::invalid_param(
                    format!("messages[{i}].content"),
                    "message content must not contain NUL bytes",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(template) = template {
        match model.apply_chat_template(template, &chat, true) {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::debug!(error = %e, "the model's chat template is not one llama.cpp knows; using ChatML");
            }
        }
    }
    model
        .apply_chat_template(&chatml()?, &chat, true)
        .map_err(|e| {
            tracing::error!(error = %e, "cannot render the chat template");
            ApiError::internal()
        })
}

/// The prompt as tokens, ready to decode.
pub fn tokenize_prompt(
    model: &LlamaModel,
    template: Option<&LlamaChatTemplate>,
    prompt: &PromptInput,
) -> Result<Vec<LlamaToken>, ApiError> {
    let vocab = model.vocab();
    let tokens = match prompt {
        PromptInput::Chat(messages) => {
            let text = render_chat(model, template, messages)?;
            vocab.tokenize(text.as_bytes(), true, true)
        }
        PromptInput::Text(text) => vocab.tokenize(text.as_bytes(), true, true),
        // The intake renders these to text first (it holds the Jinja template).
        PromptInput::Jinja { .. } => return Err(ApiError::internal()),
        PromptInput::Tokens(ids) => {
            let n_vocab = vocab.n_tokens();
            ids.iter()
                .map(|&id| match i32::try_from(id) {
                    Ok(t) if t < n_vocab => Ok(LlamaToken::new(t)),
                    _ => Err(ApiError::invalid_param(
                        "prompt",
                        format!(
                            "token id {id} is outside the model's vocabulary of {n_vocab} tokens"
                        ),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        PromptInput::Fim {
            prefix,
            suffix,
            extra,
        } => {
            let (pre, suf, mid) = (vocab.fim_pre(), vocab.fim_suf(), vocab.fim_mid());
            if [pre, suf, mid].iter().any(|t| t.0 < 0) {
                return Err(ApiError::invalid_param(
                    "suffix",
                    "this model has no fill-in-the-middle tokens, so `suffix` is not supported; use a code model with FIM support (e.g. Qwen2.5-Coder)",
                )
                .with_code("fim_not_supported"));
            }
            // Prefix-suffix-middle order, as llama.cpp's server builds it: other
            // files first (each after FIM_SEP and its name when the model has
            // that token, else after a text separator), then the hole.
            let mut t = Vec::new();
            if vocab.should_add_bos() {
                t.push(vocab.bos());
            }
            let (rep, sep) = (vocab.fim_rep(), vocab.fim_sep());
            if !extra.is_empty() && rep.0 >= 0 {
                t.push(rep);
                t.extend(vocab.tokenize(b"myproject\n", false, false));
            }
            for (name, text) in extra {
                if sep.0 >= 0 {
                    t.push(sep);
                    t.extend(vocab.tokenize(format!("{name}\n").as_bytes(), false, false));
                } else {
                    t.extend(vocab.tokenize(b"\n\n--- snippet ---\n\n", false, false));
                }
                t.extend(vocab.tokenize(text.as_bytes(), false, false));
            }
            if !extra.is_empty() && sep.0 >= 0 {
                t.push(sep);
                t.extend(vocab.tokenize(b"filename\n", false, false));
            }
            t.push(pre);
            t.extend(vocab.tokenize(prefix.as_bytes(), false, false));
            t.push(suf);
            t.extend(vocab.tokenize(suffix.as_bytes(), false, false));
            t.push(mid);
            t
        }
    };
    if tokens.is_empty() {
        return Err(ApiError::invalid_param(
            "prompt",
            "the prompt is empty after tokenization",
        ));
    }
    Ok(tokens)
}

/// `token`'s log probability among the raw logits at batch index `idx` (before
/// temperature and the other samplers, as OpenAI reports it), with the `top`
/// likeliest tokens at that place, each written as [`piece`] writes it.
pub fn logprob(
    model: &LlamaModel,
    ctx: &LlamaContext,
    idx: i32,
    token: LlamaToken,
    top: usize,
    preserved: &[LlamaToken],
) -> hearth_router::TokenLogprob {
    let logits = ctx.get_logits_ith(idx);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let norm = max + sum.ln() as f32;
    let at = |t: usize| logits.get(t).map_or(f32::NEG_INFINITY, |&l| l - norm);
    let entry = |t: LlamaToken| {
        let bytes = piece(model, t, preserved);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (t, &l) in logits.iter().enumerate() {
            if best.len() < top || best.last().is_some_and(|&(_, b)| l > b) {
                let pos = best.partition_point(|&(_, b)| b >= l);
                best.insert(pos, (t, l));
                best.truncate(top);
            }
        }
    }
    let (text, bytes) = entry(token);
    hearth_router::TokenLogprob {
        token: text,
        bytes,
        logprob: at(usize::try_from(token.0).unwrap_or(usize::MAX)),
        top: best
            .into_iter()
            .map(|(t, l)| {
                let (text, bytes) = entry(LlamaToken::new(t as i32));
                (text, bytes, l - norm)
            })
            .collect(),
    }
}

/// The markers the engine reads in an answer (tool calls, thinking) that some
/// vocabularies hold as control tokens, which render as no text: Mistral's
/// `[TOOL_CALLS]`, `[ARGS]`, `[CALL_ID]`, Magistral's `[THINK]` and `[/THINK]`.
const PRESERVED: &[&str] = &[
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "[THINK]",
    "[/THINK]",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
];

/// The control tokens of `model` that are one of those markers: a generated one
/// is written as its text (as llama-server's "preserved tokens" are), so that the
/// tool-call and thinking readers see it.
pub fn preserved_tokens(model: &LlamaModel) -> Vec<LlamaToken> {
    let vocab = model.vocab();
    PRESERVED
        .iter()
        .filter_map(
            |text| match vocab.tokenize(text.as_bytes(), false, true).as_slice() {
                [t] if vocab.is_control(*t) => Some(*t),
                _ => None,
            },
        )
        .collect()
}

/// The bytes a generated token stands for (control tokens render as nothing,
/// but for the `preserved` ones).
pub fn piece(model: &LlamaModel, token: LlamaToken, preserved: &[LlamaToken]) -> Vec<u8> {
    model
        .vocab()
        .token_to_piece(token, preserved.contains(&token), None)
}

pub fn is_end_of_generation(model: &LlamaModel, token: LlamaToken) -> bool {
    model.vocab().is_eog(token)
}

/// One request's sampling: its chain (logit bias, penalties, then greedy, or the
/// top-k → top-p → min-p → temperature → seeded draw pipeline) and, for JSON
/// mode and structured outputs, the grammar apart from it.
///
/// The grammar is checked lazily, as llama.cpp's own `common_sampler` does: the
/// chain picks a token, the grammar judges that one token, and only when it
/// refuses is the step sampled again with the grammar over the whole vocabulary.
/// Judging all 49,152 tokens of a vocabulary at every step cost a small model
/// 40 % of its decode speed (bench/RESULTS.md, "Structured outputs").
pub struct Sampling {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
    /// What a grammar that allows no token at all ends with.
    eos: LlamaToken,
}

impl Sampling {
    /// Samples the next token from the logits at batch index `idx`, and records
    /// it (penalties' history, the grammar's state).
    pub fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        let Some(grammar) = self.grammar.as_mut() else {
            return self.chain.sample(ctx, idx);
        };
        let mut all = ctx.token_data_array_ith(idx);
        self.chain.apply(&mut all);
        let allowed = all.selected_token().filter(|&t| {
            let mut one = LlamaTokenDataArray::from_iter([LlamaTokenData::new(t, 1.0, 0.0)], false);
            grammar.apply(&mut one);
            one.data.first().is_some_and(|d| d.logit().is_finite())
        });
        let token = match allowed {
            Some(t) => t,
            None => {
                let mut all = ctx.token_data_array_ith(idx);
                grammar.apply(&mut all);
                self.chain.apply(&mut all);
                match all.selected_token() {
                    Some(t) => t,
                    // The grammar allows nothing: end the answer rather than feed
                    // it a token it refuses (llama.cpp aborts on that).
                    None => return self.eos,
                }
            }
        };
        grammar.accept(token);
        self.chain.accept(token);
        token
    }
}

/// The sampling of one request (see [`Sampling`]).
pub fn sampler(model: &LlamaModel, p: &SamplingParams) -> Result<Sampling, ApiError> {
    let mut chain = Vec::new();
    let mut grammar = None;
    if !p.logit_bias.is_empty() {
        let n_vocab = model.n_vocab();
        let biases = p
            .logit_bias
            .iter()
            .map(|&(id, bias)| match i32::try_from(id) {
                // -100 means "never", as in OpenAI's API.
                Ok(t) if t < n_vocab => Ok(LlamaLogitBias::new(
                    LlamaToken::new(t),
                    if bias <= -100.0 {
                        f32::NEG_INFINITY
                    } else {
                        bias
                    },
                )),
                _ => Err(ApiError::invalid_param(
                    "logit_bias",
                    format!("token id {id} is outside the model's vocabulary of {n_vocab} tokens"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if let Some(g) = &p.grammar {
        let gbnf = match g {
            Grammar::JsonObject => JSON_OBJECT_GBNF.to_owned(),
            Grammar::Gbnf(g) => g.clone(),
            Grammar::JsonSchema(schema) => {
                llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
                    ApiError::invalid_param(
                        "response_format",
                        format!("cannot use this JSON schema: {e}"),
                    )
                })?
            }
        };
        grammar = Some(LlamaSampler::grammar(model, &gbnf, "root").map_err(|e| {
            tracing::error!(error = %e, "grammar rejected");
            ApiError::invalid_param(
                "response_format",
                format!("cannot build a grammar for `response_format`: {e}"),
            )
        })?);
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            PENALTY_WINDOW,
            1.0,
            p.frequency_penalty,
            p.presence_penalty,
        ));
    }
    if p.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if p.top_k > 0 {
            chain.push(LlamaSampler::top_k(p.top_k));
        }
        if p.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(p.top_p, 1));
        }
        if p.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(p.min_p, 1));
        }
        chain.push(LlamaSampler::temp(p.temperature));
        // u32::MAX is llama.cpp's "pick a random seed".
        chain.push(LlamaSampler::dist(p.seed.unwrap_or(u32::MAX)));
    }
    Ok(Sampling {
        chain: LlamaSampler::chain_simple(chain),
        grammar,
        eos: model.vocab().eos(),
    })
}
