//! A router request turned into what the scheduler needs: the prompt to render and
//! the sampling parameters, with every unsupported field rejected up front.

use hearth_api::{
    ApiError, ChatCompletionRequest, ChatMessage, CompletionRequest, MessageContent, Prompt,
};
use hearth_router::Request;
use serde_json::Value;

use crate::tools::{self, ToolMode};

/// Defaults for fields a request leaves out: llama.cpp server's, which suit small
/// local models better than OpenAI's (temperature 1, no top-k).
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
pub const DEFAULT_TOP_K: i32 = 40;
pub const DEFAULT_TOP_P: f32 = 0.95;
pub const DEFAULT_MIN_P: f32 = 0.05;

/// What to feed the model.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Messages rendered with the model's chat template: `(role, content)`.
    Chat(Vec<(String, String)>),
    /// Messages and tools in OpenAI's shape, for the template's Jinja source
    /// (`tools::jinja_input`).
    Jinja {
        messages: serde_json::Value,
        tools: serde_json::Value,
    },
    /// Raw text (legacy completions).
    Text(String),
    /// Token ids given by the client.
    Tokens(Vec<u32>),
    /// Fill-in-the-middle: the text before and after the hole, and other files
    /// for context (`(filename, text)`, llama.cpp's `input_extra`).
    Fim {
        prefix: String,
        suffix: String,
        extra: Vec<(String, String)>,
    },
}

/// Sampling and stopping, after defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub seed: Option<u32>,
    pub stop: Vec<String>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// A GBNF grammar the output must follow (JSON mode).
    pub grammar: Option<Grammar>,
    /// OpenAI's `logit_bias`: token id -> bias; -100 bans the token.
    pub logit_bias: Vec<(u32, f32)>,
    /// `logprobs`: each token's log probability, with this many of the likeliest
    /// tokens at its place (`top_logprobs`, 0 to [`MAX_TOP_LOGPROBS`]).
    pub logprobs: Option<usize>,
}

/// The most `top_logprobs` (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u64 = 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON schema (`response_format: {"type": "json_schema", ...}`).
    JsonSchema(String),
    /// A grammar as it is (tool calls in a model's own syntax).
    Gbnf(String),
}

/// Which endpoint's shape the answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub endpoint: Endpoint,
    pub prompt: PromptInput,
    pub params: SamplingParams,
    /// Completions with `echo`: the prompt text comes first in the output.
    pub echo: bool,
    /// The tools a chat request lets the model call (its answer is then JSON
    /// that [`tools::Reader`] reads back).
    pub tools: Option<ToolMode>,
    /// How many choices (`n`): each one is a request of its own to the scheduler.
    pub choices: u32,
    /// The images of a chat's messages (their files' bytes), each standing at a
    /// marker in the messages' text (see `vision`).
    pub images: Vec<Vec<u8>>,
    /// `chat_template_kwargs`: more variables for the chat template's Jinja
    /// source (Qwen3's `enable_thinking`), as vLLM and llama-server take them.
    pub template_kwargs: serde_json::Map<String, Value>,
}

impl GenRequest {
    /// The parameter a context error should name.
    pub fn prompt_param(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Chat => "messages",
            Endpoint::Completion => "prompt",
        }
    }
}

/// What the engine needs of a request: its prompt and sampling, checked. (Streamed
/// or not, and with what usage, is the front end's business: the engine always
/// answers with events.)
#[cfg(test)]
pub fn from_router(request: &Request) -> Result<GenRequest, ApiError> {
    from_router_as(request, tools::Syntax::Generic, false)
}

/// [`from_router`] for a model whose chat template calls tools in `syntax` and,
/// when `jinja`, renders as Jinja here.
pub fn from_router_as(
    request: &Request,
    syntax: tools::Syntax,
    jinja: bool,
) -> Result<GenRequest, ApiError> {
    match request {
        Request::Chat(r) => from_chat(r, syntax, jinja),
        Request::Completion(r) => from_completion(r),
        // The backend sends these to its embedding thread, never here.
        Request::Embeddings(_) => Err(ApiError::invalid_param(
            "model",
            "this model is a chat model: it does not answer /v1/embeddings; configure an embedding model ([[models]] kind = \"embedding\") and send the request to it",
        )
        .with_code("model_not_supported")),
        // The router hands the engine a Responses request as its chat translation.
        Request::Responses(r) => match &r.chat {
            Ok(chat) => from_chat(chat, syntax, jinja),
            Err(e) => Err(e.clone()),
        },
    }
}

/// Refuses a chat request whose messages hold parts the engine cannot read: an
/// image when the model has no projector (`mmproj`), an image given by URL rather
/// than inline, audio... Dropping the part would answer a question about a
/// picture the model never saw. 400, naming the part and what to do instead.
pub fn check_content(request: &Request, model: &str, vision: bool) -> Result<(), ApiError> {
    let Request::Chat(r) = request else {
        return Ok(());
    };
    for (i, m) in r.messages.iter().enumerate() {
        let Some(MessageContent::Parts(parts)) = &m.content else {
            continue;
        };
        for (j, p) in parts.iter().enumerate() {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or("(none)");
            let param = format!("messages[{i}].content[{j}]");
            let message = match kind {
                "text" => continue,
                "image_url" if vision => match image_url(p) {
                    Some(url) if url.starts_with("data:") => continue,
                    Some(_) => format!(
                        "model `{model}` reads images sent inline, as `data:` URLs (data:image/png;base64,...);                          the embedded engine does not fetch URLs: download the image and send its bytes"
                    ),
                    None => "an `image_url` part needs `image_url.url`".to_owned(),
                },
                "image_url" | "image" | "input_image" => format!(
                    "model `{model}` cannot see images (messages[{i}] has an `{kind}` part): it runs on the \
                     embedded engine without a projector; give it the `mmproj` file published with a vision \
                     model (see docs/models.md), or send images to a vision model (an upstream such as \
                     Qwen2.5-VL, marked `vision = true` in its [[models]] entry)"
                ),
                _ => format!(
                    "model `{model}` reads text{}; messages[{i}] has a `{kind}` part, which the \
                     embedded engine cannot use",
                    if vision { " and images" } else { " only" }
                ),
            };
            return Err(ApiError::invalid_param(param, message).with_code("unsupported_content"));
        }
    }
    Ok(())
}

/// The URL of an `image_url` part (`{"image_url": {"url": …}}`, or the URL
/// itself as some clients write it).
fn image_url(part: &Value) -> Option<&str> {
    let v = part.get("image_url")?;
    v.get("url").and_then(Value::as_str).or_else(|| v.as_str())
}

/// Chat messages with each image part a marker in their text (borrowed as they
/// came when they hold none), and the images' bytes in order.
type Marked<'a> = (std::borrow::Cow<'a, [ChatMessage]>, Vec<Vec<u8>>);

/// The chat's messages with each image part a marker in their text, and the
/// images' bytes in order (a `data:` URL's, base64 or as written).
fn with_image_markers(messages: &[ChatMessage]) -> Result<Marked<'_>, ApiError> {
    let has_images = messages.iter().any(|m| {
        matches!(&m.content, Some(MessageContent::Parts(parts))
            if parts.iter().any(|p| p.get("type").and_then(Value::as_str) == Some("image_url")))
    });
    if !has_images {
        return Ok((std::borrow::Cow::Borrowed(messages), Vec::new()));
    }
    let marker = llama_cpp_2::mtmd::mtmd_default_marker();
    let mut images = Vec::new();
    let mut out = messages.to_vec();
    for (i, m) in out.iter_mut().enumerate() {
        let Some(MessageContent::Parts(parts)) = &mut m.content else {
            continue;
        };
        for (j, p) in parts.iter_mut().enumerate() {
            if p.get("type").and_then(Value::as_str) != Some("image_url") {
                continue;
            }
            let url = image_url(p).unwrap_or_default();
            let bytes = data_url_bytes(url).ok_or_else(|| {
                ApiError::invalid_param(
                    format!("messages[{i}].content[{j}].image_url.url"),
                    "not a `data:` URL with a base64 image (data:image/png;base64,...)",
                )
                .with_code("invalid_image")
            })?;
            images.push(bytes);
            *p = serde_json::json!({"type": "text", "text": marker});
        }
    }
    Ok((std::borrow::Cow::Owned(out), images))
}

/// The bytes of a `data:` URL: base64 when it says `;base64`, else its text.
fn data_url_bytes(url: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    if head.ends_with(";base64") {
        let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()
            .filter(|b| !b.is_empty())
    } else {
        (!data.is_empty()).then(|| data.as_bytes().to_vec())
    }
}

/// The most choices (`n`) one request may ask of the embedded engine: each is a
/// sequence of its own, decoded side by side in the batch.
pub const MAX_CHOICES: u32 = 8;

fn check_n(n: Option<u32>) -> Result<u32, ApiError> {
    match n {
        None => Ok(1),
        Some(n @ 1..=MAX_CHOICES) => Ok(n),
        Some(n) => Err(ApiError::invalid_param(
            "n",
            format!(
                "`n` = {n}: the embedded engine answers 1 to {MAX_CHOICES} choices per request"
            ),
        )),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per OpenAI sampling field, shared by both endpoints"
)]
fn sampling(
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    seed: Option<i64>,
    stop: Vec<String>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    grammar: Option<Grammar>,
) -> Result<SamplingParams, ApiError> {
    if let Some(p) = min_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(ApiError::invalid_param(
            "min_p",
            "`min_p` must be between 0 and 1",
        ));
    }
    if max_tokens == Some(0) {
        return Err(ApiError::invalid_param(
            "max_tokens",
            "`max_tokens` must be at least 1",
        ));
    }
    Ok(SamplingParams {
        max_tokens,
        temperature: temperature.unwrap_or(DEFAULT_TEMPERATURE),
        top_p: top_p.unwrap_or(DEFAULT_TOP_P),
        top_k: top_k.unwrap_or(DEFAULT_TOP_K),
        min_p: min_p.unwrap_or(DEFAULT_MIN_P),
        // Seeds are 64-bit on the wire and 32-bit in llama.cpp; fold, don't truncate,
        // so seeds that differ only in the high half still differ.
        seed: seed.map(|s| (s as u64 ^ ((s as u64) >> 32)) as u32 & 0x7fff_ffff),
        stop,
        presence_penalty: presence_penalty.unwrap_or(0.0),
        frequency_penalty: frequency_penalty.unwrap_or(0.0),
        grammar,
        logit_bias: Vec::new(),
        logprobs: None,
    })
}

fn logit_bias(v: Option<&Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let bad = || {
        ApiError::invalid_param(
            "logit_bias",
            "`logit_bias` must map token ids to numbers between -100 and 100",
        )
    };
    let map = v.as_object().ok_or_else(bad)?;
    map.iter()
        .map(|(k, b)| {
            let id = k.parse::<u32>().map_err(|_| bad())?;
            let b = b
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(bad)?;
            Ok((id, b as f32))
        })
        .collect()
}

/// Chat's `logprobs: true` with `top_logprobs: k`.
fn chat_logprobs(r: &ChatCompletionRequest) -> Result<Option<usize>, ApiError> {
    let on = match r.extra.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                "`logprobs` must be true or false",
            ));
        }
    };
    let top = match r.extra.get("top_logprobs") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|k| *k <= MAX_TOP_LOGPROBS)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "top_logprobs",
                        format!(
                            "`top_logprobs` must be a whole number from 0 to {MAX_TOP_LOGPROBS}"
                        ),
                    )
                })?,
        ),
    };
    match (on, top) {
        (true, k) => Ok(Some(k.unwrap_or(0) as usize)),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(ApiError::invalid_param(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        )),
    }
}

/// Legacy completions' `logprobs: k`: the token's log probability and the `k`
/// likeliest.
fn completion_logprobs(v: Option<&Value>) -> Result<Option<usize>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|k| *k <= MAX_TOP_LOGPROBS)
            .map(|k| Some(k as usize))
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "logprobs",
                    format!("`logprobs` must be a whole number from 0 to {MAX_TOP_LOGPROBS}"),
                )
            }),
    }
}

fn response_format(v: Option<&Value>) -> Result<Option<Grammar>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let bad = || {
        ApiError::invalid_param(
            "response_format",
            "`response_format` must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": {\"schema\": {...}}}",
        )
    };
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Grammar::JsonObject)),
        Some("json_schema") => {
            let schema = v
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(bad)?;
            check_schema(schema, "", "response_format")?;
            Ok(Some(Grammar::JsonSchema(schema.to_string())))
        }
        _ => Err(bad()),
    }
}

/// The JSON-schema keywords llama.cpp's grammar enforces (common/json-schema.cpp).
const SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

/// Keywords that describe and do not constrain: accepted as they are.
const SCHEMA_ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// The `format`s the grammar enforces; llama.cpp lets any string through for others.
const SCHEMA_FORMATS: &[&str] = &["date", "time", "date-time", "uuid"];

/// Refuses a schema with a keyword the grammar would not enforce (llama.cpp
/// skips what it does not know, so the output could break the schema the client
/// relies on): 400 naming the keyword and where it stands. `at` is the path so
/// far (`/properties/tags`), `param` the request field the schema came in.
pub(crate) fn check_schema(schema: &Value, at: &str, param: &str) -> Result<(), ApiError> {
    let Value::Object(map) = schema else {
        // `true`/`false` schemas, or a malformed one llama.cpp reports itself.
        return Ok(());
    };
    let unsupported = |what: String| {
        Err(ApiError::invalid_param(
            param,
            format!(
                "{what} (at `{}` of the JSON schema) is not supported by the embedded engine's grammar, so the answer could break it; remove it, or send the request to an upstream model that supports it",
                if at.is_empty() { "/" } else { at }
            ),
        )
        .with_code("unsupported_schema"))
    };
    for (key, value) in map {
        if SCHEMA_ANNOTATIONS.contains(&key.as_str()) {
            continue;
        }
        if !SCHEMA_KEYWORDS.contains(&key.as_str()) {
            return unsupported(format!("the keyword `{key}`"));
        }
        let here = |k: &str| format!("{at}/{k}");
        match (key.as_str(), value) {
            ("format", Value::String(f)) if !SCHEMA_FORMATS.contains(&f.as_str()) => {
                return unsupported(format!("`format: \"{f}\"`"));
            }
            ("properties" | "$defs" | "definitions", Value::Object(subs)) => {
                for (name, sub) in subs {
                    check_schema(sub, &format!("{at}/{key}/{name}"), param)?;
                }
            }
            ("items" | "additionalProperties", sub) => check_schema(sub, &here(key), param)?,
            ("prefixItems" | "anyOf" | "oneOf" | "allOf", Value::Array(subs)) => {
                for (i, sub) in subs.iter().enumerate() {
                    check_schema(sub, &format!("{at}/{key}/{i}"), param)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn from_chat(
    r: &ChatCompletionRequest,
    syntax: tools::Syntax,
    jinja: bool,
) -> Result<GenRequest, ApiError> {
    let choices = check_n(r.n)?;
    let format = response_format(r.response_format.as_ref())?;
    let mut tools = tools::from_chat(r, |schema, param| check_schema(schema, "", param))?;
    // The model's own syntax, unless a reply must follow a response_format too:
    // only the generic format's grammar holds both.
    if let Some(mode) = tools.as_mut()
        && (format.is_none() || mode.choice != tools::Choice::Auto)
    {
        mode.syntax = syntax;
    }
    // With tools, the grammar is the tools' answer: a call, or a reply that
    // follows the response_format when there is one.
    let grammar = match &tools {
        Some(mode) if mode.syntax != tools::Syntax::Generic => mode
            .own_grammar(|schema| {
                llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
                    ApiError::invalid_param(
                        "tools",
                        format!("cannot make a grammar of the tools' schemas: {e}"),
                    )
                })
            })?
            .map(Grammar::Gbnf),
        Some(mode) => {
            let reply = match &format {
                Some(Grammar::JsonSchema(s)) => serde_json::from_str(s).ok(),
                Some(Grammar::JsonObject) => Some(serde_json::json!({"type": "object"})),
                Some(Grammar::Gbnf(_)) | None => None,
            };
            Some(Grammar::JsonSchema(mode.schema(reply.as_ref()).to_string()))
        }
        None => format,
    };
    let params = sampling(
        r.max_output_tokens(),
        r.temperature,
        r.top_p,
        r.top_k,
        r.min_p,
        r.seed,
        r.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default(),
        r.presence_penalty,
        r.frequency_penalty,
        grammar,
    )
    .map_err(|e| match (e.param.as_deref(), r.max_completion_tokens) {
        (Some("max_tokens"), Some(_)) => e.with_param("max_completion_tokens"),
        _ => e,
    })?;
    let params = SamplingParams {
        logit_bias: logit_bias(r.extra.get("logit_bias"))?,
        logprobs: chat_logprobs(r)?,
        ..params
    };
    let (messages, images) = with_image_markers(&r.messages)?;
    let prompt = match &tools {
        Some(mode) if jinja && mode.syntax.renders_jinja() => {
            let (messages, tools) = tools::jinja_input(&messages, mode);
            PromptInput::Jinja { messages, tools }
        }
        _ => PromptInput::Chat(tools::messages(&messages, tools.as_ref())),
    };
    Ok(GenRequest {
        endpoint: Endpoint::Chat,
        prompt,
        params,
        echo: false,
        tools,
        choices,
        images,
        template_kwargs: template_kwargs(r.extra.get("chat_template_kwargs"))?,
    })
}

/// llama.cpp's `input_extra`: `[{"filename": …, "text": …}]`, context from other
/// files for fill-in-the-middle.
fn input_extra(v: Option<&Value>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let bad = || {
        ApiError::invalid_param(
            "input_extra",
            "`input_extra` must be a list of {\"filename\": \"…\", \"text\": \"…\"}",
        )
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            let text = c.get("text").and_then(Value::as_str).ok_or_else(bad)?;
            let name = match c.get("filename") {
                None | Some(Value::Null) => "tmp",
                Some(n) => n.as_str().ok_or_else(bad)?,
            };
            Ok((name.to_owned(), text.to_owned()))
        })
        .collect()
}

fn from_completion(r: &CompletionRequest) -> Result<GenRequest, ApiError> {
    let choices = check_n(r.n)?;
    let grammar = response_format(r.extra.get("response_format"))?;
    let params = sampling(
        r.max_tokens,
        r.temperature,
        r.top_p,
        r.top_k,
        r.min_p,
        r.seed,
        r.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default(),
        r.presence_penalty,
        r.frequency_penalty,
        grammar,
    )?;
    let params = SamplingParams {
        logit_bias: logit_bias(r.extra.get("logit_bias"))?,
        logprobs: completion_logprobs(r.extra.get("logprobs"))?,
        ..params
    };
    let prompt = match (&r.prompt, r.suffix.as_deref()) {
        (p, Some(suffix)) => match p.as_text() {
            Some(prefix) => PromptInput::Fim {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
                extra: input_extra(r.extra.get("input_extra"))?,
            },
            None => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "`suffix` needs `prompt` to be one string",
                ));
            }
        },
        (Prompt::Tokens(t), None) => PromptInput::Tokens(t.clone()),
        (Prompt::TokenLists(l), None) if l.len() == 1 => {
            PromptInput::Tokens(l.first().cloned().unwrap_or_default())
        }
        (p, None) => match p.as_text() {
            Some(t) => PromptInput::Text(t.to_owned()),
            None => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "the embedded engine takes one prompt per request (a string or one list of token ids)",
                ));
            }
        },
    };
    if let PromptInput::Text(t) = &prompt
        && t.is_empty()
    {
        return Err(ApiError::invalid_param(
            "prompt",
            "`prompt` must not be empty",
        ));
    }
    if let PromptInput::Tokens(t) = &prompt
        && t.is_empty()
    {
        return Err(ApiError::invalid_param(
            "prompt",
            "`prompt` must not be empty",
        ));
    }
    Ok(GenRequest {
        endpoint: Endpoint::Completion,
        echo: r.echo.unwrap_or(false),
        tools: None,
        choices,
        prompt,
        params,
        images: Vec::new(),
        template_kwargs: serde_json::Map::new(),
    })
}

/// `chat_template_kwargs`: an object of the template's own variables.
fn template_kwargs(v: Option<&Value>) -> Result<serde_json::Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(serde_json::Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::invalid_param(
            "chat_template_kwargs",
            "`chat_template_kwargs` must be an object of the chat template's variables, e.g. {\"enable_thinking\": false}",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: Value) -> Result<GenRequest, ApiError> {
        from_router(&Request::Chat(
            ChatCompletionRequest::from_value(v).unwrap(),
        ))
    }

    /// Hermes' models get their template's rendering of the tools where it
    /// renders here, and Hearth's rendering of Qwen's words where it does not.
    #[test]
    fn hermes_prompts_are_the_templates_rendering_where_it_renders() {
        let r = Request::Chat(
            ChatCompletionRequest::from_value(
                json!({"messages": [{"role": "user", "content": "Weather?"}],
                "tools": [{"type": "function", "function": {"name": "get_weather",
                    "parameters": {"type": "object", "properties": {}}}}]}),
            )
            .unwrap(),
        );
        let jinja = from_router_as(&r, tools::Syntax::Hermes, true).unwrap();
        assert!(
            matches!(&jinja.prompt, PromptInput::Jinja { tools, .. } if tools[0]["function"]["name"] == "get_weather"),
            "{:?}",
            jinja.prompt
        );
        let own = from_router_as(&r, tools::Syntax::Hermes, false).unwrap();
        assert!(
            matches!(&own.prompt, PromptInput::Chat(turns) if turns[0].1.contains("<tools>")),
            "{:?}",
            own.prompt
        );
    }

    #[test]
    fn image_parts_are_refused_by_name_not_dropped() {
        let req = |content: Value| {
            Request::Chat(
                ChatCompletionRequest::from_value(
                    json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]}),
                )
                .unwrap(),
            )
        };
        let text = req(json!([{"type": "text", "text": "hi"}]));
        assert!(check_content(&text, "small", false).is_ok());
        let image = req(json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
        ]));
        let e = check_content(&image, "small", false).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some("messages[1].content[1]"));
        assert_eq!(e.code.as_deref(), Some("unsupported_content"));
        assert!(
            e.message.starts_with("model `small` cannot see images")
                && e.message.contains("vision = true")
                && e.message.contains("mmproj"),
            "{}",
            e.message
        );
        // With a projector: inline images are read, URLs are not fetched.
        assert!(check_content(&image, "small", true).is_ok());
        let remote = req(
            json!([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]),
        );
        let e = check_content(&remote, "small", true).unwrap_err();
        assert!(e.message.contains("`data:` URLs"), "{}", e.message);
        let audio =
            req(json!([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]));
        for vision in [false, true] {
            assert!(
                check_content(&audio, "small", vision)
                    .unwrap_err()
                    .message
                    .contains("`input_audio`")
            );
        }
    }

    #[test]
    fn images_become_markers_in_the_text_and_bytes_beside_it() {
        // "hello" in base64, and percent-free plain data.
        let r = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVs bG8="}},
            {"type": "text", "text": " and "},
            {"type": "image_url", "image_url": {"url": "data:text/plain,raw"}}
        ]}]}))
        .unwrap();
        let marker = llama_cpp_2::mtmd::mtmd_default_marker();
        assert_eq!(
            r.prompt,
            PromptInput::Chat(vec![(
                "user".into(),
                format!("Compare {marker} and {marker}")
            )])
        );
        assert_eq!(r.images, vec![b"hello".to_vec(), b"raw".to_vec()]);
        let e = chat(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!"}}]}]}))
        .unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        assert_eq!(e.code.as_deref(), Some("invalid_image"));
    }

    #[test]
    fn defaults_and_roles() {
        let r = chat(json!({"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]}))
            .unwrap();
        assert_eq!(r.params.temperature, DEFAULT_TEMPERATURE);
        assert_eq!(
            r.prompt,
            PromptInput::Chat(vec![
                ("system".into(), "be brief".into()),
                ("user".into(), "hi".into())
            ])
        );
    }

    #[test]
    fn rejects_what_the_engine_cannot_do() {
        let base = |extra: Value| {
            let mut v = json!({"messages": [{"role": "user", "content": "hi"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            chat(v)
        };
        assert_eq!(
            base(json!({"n": 9})).unwrap_err().param.as_deref(),
            Some("n")
        );
        assert_eq!(base(json!({"n": 3})).map(|r| r.choices).ok(), Some(3));
        assert_eq!(
            base(json!({"response_format": {"type": "xml"}}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("response_format")
        );
        assert_eq!(
            base(json!({"max_completion_tokens": 0}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_completion_tokens")
        );
        assert_eq!(
            base(json!({"response_format": {"type": "json_object"}}))
                .unwrap()
                .params
                .grammar,
            Some(Grammar::JsonObject)
        );
        let kwargs = base(json!({"chat_template_kwargs": {"enable_thinking": false}}))
            .unwrap()
            .template_kwargs;
        assert_eq!(Value::Object(kwargs), json!({"enable_thinking": false}));
        assert!(
            base(json!({"chat_template_kwargs": null}))
                .unwrap()
                .template_kwargs
                .is_empty()
        );
        let e = base(json!({"chat_template_kwargs": "enable_thinking=false"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("chat_template_kwargs"));
    }

    #[test]
    fn completion_prompts() {
        let c = |v: Value| {
            from_router(&Request::Completion(
                CompletionRequest::from_value(v).unwrap(),
            ))
        };
        assert_eq!(
            c(json!({"prompt": [1, 2]})).unwrap().prompt,
            PromptInput::Tokens(vec![1, 2])
        );
        assert_eq!(
            c(json!({"prompt": "def f(", "suffix": "return x"}))
                .unwrap()
                .prompt,
            PromptInput::Fim {
                prefix: "def f(".into(),
                suffix: "return x".into(),
                extra: Vec::new(),
            }
        );
        assert_eq!(
            c(json!({"prompt": ["a", "b"]}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("prompt")
        );
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_the_grammar_enforces_pass() {
        // What Pydantic writes for nested models, enums, optional fields and lists.
        let schema = json!({
            "$defs": {"Step": {"type": "object", "title": "Step",
                "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"],
                "additionalProperties": false}},
            "type": "object", "title": "Plan",
            "properties": {
                "colour": {"enum": ["red", "blue"], "type": "string"},
                "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 1, "maxItems": 3},
                "note": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "null"}], "default": null},
                "when": {"type": "string", "format": "date-time"},
                "kind": {"const": "plan"}
            },
            "required": ["colour", "steps"], "additionalProperties": false
        });
        assert!(check_schema(&schema, "", "response_format").is_ok());
    }

    #[test]
    fn a_keyword_the_grammar_would_skip_is_a_400_naming_it() {
        for (schema, words) in [
            (
                json!({"type": "object", "patternProperties": {"^x": {}}}),
                "`patternProperties` (at `/`",
            ),
            (
                json!({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": true}}}),
                "`uniqueItems` (at `/properties/tags`",
            ),
            (
                json!({"type": "string", "format": "email"}),
                "`format: \"email\"`",
            ),
            (
                json!({"anyOf": [{"type": "integer"}, {"type": "number", "multipleOf": 2}]}),
                "`multipleOf` (at `/anyOf/1`",
            ),
            (
                json!({"$defs": {"A": {"not": {"type": "null"}}}}),
                "`not` (at `/$defs/A`",
            ),
        ] {
            let e = check_schema(&schema, "", "response_format").unwrap_err();
            assert_eq!(e.param.as_deref(), Some("response_format"));
            assert_eq!(e.code.as_deref(), Some("unsupported_schema"));
            assert!(e.message.contains(words), "{schema}: {}", e.message);
        }
    }
}
