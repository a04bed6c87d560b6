//! `[[models]]`: what clients can name, and the backend behind each name.
//!
//! In the file a model is one flat table (`backend = "upstream"` beside `base_url`),
//! as users write it. In Rust it is [`ModelConfig`] with a [`ModelBackend`] enum, so
//! code that builds an upstream never sees an engine field and a field that does not
//! apply to the model's backend is an error that names it (not silently ignored).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::launch::{LaunchConfig, PORT_PLACEHOLDER};
use crate::sampling::{SamplingDefaults, ToolsPolicy};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// llama.cpp in-process (`path` to a GGUF file).
    #[default]
    Embedded,
    /// An OpenAI-compatible server over HTTP (`base_url`).
    Upstream,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Upstream => "upstream",
        }
    }
}

/// One configured model: the fields every backend shares, and its backend's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelToml", into = "ModelToml")]
pub struct ModelConfig {
    /// What clients send as `model`.
    pub name: String,
    /// Other names clients may use for this model.
    pub aliases: Vec<String>,
    pub tags: Vec<String>,
    /// Context window, reported in `/v1/models` (for upstreams) and used to size the engine.
    pub context_length: Option<u32>,
    /// Requests served at once; 1 = strictly sequential, first come first served.
    /// Defaults: 8 for upstreams, `parallel` for the embedded engine.
    pub max_concurrency: Option<usize>,
    /// Requests waiting beyond `max_concurrency`; past it the answer is 429.
    pub max_queue: usize,
    /// Retries of a failure that never ran the request (connect error, 429, 503)
    /// before fallbacks.
    pub retries: u32,
    /// Also retry (and fall back from) a request the backend may have received but
    /// did not answer: the connection broke after it was sent, no answer in time, a
    /// 502 or 504. Off by default: a cloud API may run and bill it twice.
    pub retry_unanswered: bool,
    /// Models tried in order when this one fails.
    pub fallbacks: Vec<String>,
    /// The model reads images (OpenAI `image_url` content parts); required of
    /// `[jobs] vision_model`.
    pub vision: bool,
    /// `[models.defaults]`: sampling values for requests that name none.
    pub defaults: SamplingDefaults,
    /// `tools`: what to do with a request's tools; `None` is the backend's default
    /// ([`ModelConfig::tools_policy`]).
    pub tools: Option<ToolsPolicy>,
    /// `kind`: what the model does: chat (and text completions), or embeddings.
    pub purpose: ModelKind,
    pub backend: ModelBackend,
}

/// `kind = "chat" | "embedding"`: what a model answers. An embedded embedding model
/// is loaded in llama.cpp's embedding mode and answers only `/v1/embeddings`; an
/// upstream one is marked so in `/v1/models` and kept out of the chat UI's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Chat,
    Embedding,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// The backend behind a model, with the settings only it reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelBackend {
    Embedded(EmbeddedConfig),
    Upstream(UpstreamConfig),
}

/// `backend = "embedded"`: a GGUF file served in-process by llama.cpp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddedConfig {
    /// The GGUF file (empty when the file names none: validation reports it, or
    /// sets it from `url`).
    pub path: PathBuf,
    /// Where to download the file from when `path` does not exist yet (at start, in
    /// the background, with progress in the log); `path` defaults to
    /// `data_dir/models/<the URL's file name>`.
    pub url: Option<String>,
    /// The download's SHA-256 (64 hex digits), checked before the file is used.
    pub sha256: Option<String>,
    /// Context size in tokens (shared by all sequences).
    pub context: Option<u32>,
    /// Sequences decoded together (continuous batching).
    pub parallel: Option<u32>,
    /// CPU threads for decoding; defaults to the number of physical cores.
    pub threads: Option<u32>,
    /// Layers offloaded to the GPU (builds with the `cuda` feature).
    pub gpu_layers: Option<u32>,
    /// `matryoshka = true` (embedding models): trained with Matryoshka
    /// representation learning, so a request's `dimensions` below the model's own
    /// cuts each vector to its first values (scaled back to unit length).
    pub matryoshka: bool,
    /// A multimodal projector GGUF (`mmproj-*.gguf`, as published beside vision
    /// models such as Qwen2.5-VL, Gemma 3 or SmolVLM): with it the model reads
    /// images in chat messages (through llama.cpp's `mtmd`), and says `vision`.
    pub mmproj: Option<PathBuf>,
    /// What a reasoning model's `<think>…</think>` becomes in a chat completion.
    pub reasoning: Reasoning,
}

/// `reasoning`: where the embedded engine puts a reasoning model's thinking
/// (`<think>…</think>`, for a model whose chat template knows those tags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reasoning {
    /// Apart from the reply, as `reasoning_content` (llama-server's and vLLM's
    /// way; the chat UI folds it).
    #[default]
    Split,
    /// Left in the reply, tags and all.
    Inline,
}

/// `backend = "upstream"`: an OpenAI-compatible server over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://vllm:8000/v1` (empty when
    /// the file names none: validation reports it).
    pub base_url: String,
    /// Model name sent upstream; defaults to the model's `name`.
    pub upstream_model: Option<String>,
    /// Environment variable holding the upstream's API key.
    pub api_key_env: Option<String>,
    /// Seconds to connect to the upstream.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the upstream's response headers (first byte).
    pub first_byte_timeout_secs: u64,
    /// Seconds allowed between two chunks of a stream (or for a whole non-streamed body).
    pub idle_timeout_secs: u64,
    /// Largest whole (non-streamed) answer accepted from the upstream, in bytes: past
    /// it the client gets a 502 saying so and the connection is closed, so an
    /// upstream sending an endless body cannot fill Hearth's memory.
    pub max_answer_bytes: u64,
    /// Largest single event of a streamed answer, in bytes: past it the stream ends
    /// with an error event and the connection is closed.
    pub max_event_bytes: u64,
    /// The upstream serves OpenAI's Responses API (`/v1/responses`: vLLM,
    /// llama-server, OpenAI): a `/v1/responses` request for this model goes to it as
    /// the client wrote it (stored responses, `previous_response_id`, built-in tools
    /// are the upstream's), rather than translated to a chat completion.
    pub responses_api: bool,
    /// Hearth runs this server itself (`[models.launch]`). Boxed: most upstreams
    /// are not launched, and the config is copied around whole.
    pub launch: Option<Box<LaunchConfig>>,
}

impl UpstreamConfig {
    /// The base URL, with `{port}` where a managed server's port goes: the one
    /// configured, or for a managed server without one its loopback address.
    pub fn base_url_template(&self) -> String {
        if self.base_url.is_empty() && self.launch.is_some() {
            format!("http://127.0.0.1:{PORT_PLACEHOLDER}/v1")
        } else {
            self.base_url.clone()
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            base_url: String::new(),
            upstream_model: None,
            api_key_env: None,
            connect_timeout_secs: 5,
            first_byte_timeout_secs: 120,
            idle_timeout_secs: 120,
            max_answer_bytes: 64 * 1024 * 1024,
            max_event_bytes: 16 * 1024 * 1024,
            responses_api: false,
            launch: None,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: String::new(),
            aliases: Vec::new(),
            tags: Vec::new(),
            context_length: None,
            max_concurrency: None,
            max_queue: 64,
            retries: 2,
            retry_unanswered: false,
            fallbacks: Vec::new(),
            vision: false,
            defaults: SamplingDefaults::default(),
            tools: None,
            purpose: ModelKind::Chat,
            backend: ModelBackend::Embedded(EmbeddedConfig::default()),
        }
    }
}

impl ModelConfig {
    /// An embedded model named `name` serving the GGUF at `path`, with defaults.
    pub fn embedded(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ModelConfig {
            name: name.into(),
            backend: ModelBackend::Embedded(EmbeddedConfig {
                path: path.into(),
                ..EmbeddedConfig::default()
            }),
            ..ModelConfig::default()
        }
    }

    /// An upstream model named `name` at `base_url`, with defaults.
    pub fn upstream(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        ModelConfig {
            name: name.into(),
            backend: ModelBackend::Upstream(UpstreamConfig {
                base_url: base_url.into(),
                ..UpstreamConfig::default()
            }),
            ..ModelConfig::default()
        }
    }

    /// What this model does with a request's tools: as configured, else passed on
    /// by an upstream and ignored (with a warning) by the embedded engine unless
    /// its config says `tools = "pass"` (see [`ToolsPolicy`]).
    pub fn tools_policy(&self) -> ToolsPolicy {
        self.tools.unwrap_or(match self.backend {
            ModelBackend::Embedded(_) => ToolsPolicy::Ignore,
            ModelBackend::Upstream(_) => ToolsPolicy::Pass,
        })
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            ModelBackend::Embedded(_) => BackendKind::Embedded,
            ModelBackend::Upstream(_) => BackendKind::Upstream,
        }
    }

    pub fn embedded_config(&self) -> Option<&EmbeddedConfig> {
        match &self.backend {
            ModelBackend::Embedded(e) => Some(e),
            ModelBackend::Upstream(_) => None,
        }
    }

    pub fn upstream_config(&self) -> Option<&UpstreamConfig> {
        match &self.backend {
            ModelBackend::Upstream(u) => Some(u),
            ModelBackend::Embedded(_) => None,
        }
    }

    /// Concurrency after defaults: `max_concurrency`, else `parallel` (embedded) or 8.
    pub fn concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(match &self.backend {
            ModelBackend::Embedded(e) => e.parallel.unwrap_or(4) as usize,
            ModelBackend::Upstream(_) => 8,
        })
    }

    /// The model name to send upstream (`upstream_model`, else `name`).
    pub fn upstream_model_name(&self) -> &str {
        self.upstream_config()
            .and_then(|u| u.upstream_model.as_deref())
            .unwrap_or(&self.name)
    }

    /// Context length as reported to clients.
    pub fn reported_context_length(&self) -> Option<u32> {
        self.context_length
            .or(self.embedded_config().and_then(|e| e.context))
    }
}

/// The keys of a `[[models]]` table, by the backend they apply to; the environment
/// overrides (`HEARTH_MODELS_<NAME>_<KEY>`) are matched against them.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "backend",
    "aliases",
    "tags",
    "context_length",
    "max_concurrency",
    "max_queue",
    "retries",
    "retry_unanswered",
    "fallbacks",
    "vision",
    "defaults",
    "tools",
    "kind",
];
pub const EMBEDDED_KEYS: &[&str] = &[
    "path",
    "context",
    "parallel",
    "threads",
    "gpu_layers",
    "matryoshka",
    "mmproj",
    "reasoning",
];
pub const UPSTREAM_KEYS: &[&str] = &[
    "base_url",
    "launch",
    "upstream_model",
    "api_key_env",
    "connect_timeout_secs",
    "first_byte_timeout_secs",
    "idle_timeout_secs",
    "max_answer_bytes",
    "max_event_bytes",
    "responses_api",
];

/// A `[[models]]` table as written: every key of every backend, so unknown keys and
/// type errors are reported by serde at their line; [`ModelConfig`]'s `TryFrom`
/// then refuses the keys that do not apply to the chosen backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    backend: BackendKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_queue: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    retry_unanswered: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fallbacks: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    vision: bool,
    #[serde(default, skip_serializing_if = "SamplingDefaults::is_empty")]
    defaults: SamplingDefaults,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<ToolsPolicy>,
    #[serde(default, skip_serializing_if = "is_chat")]
    kind: ModelKind,

    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_byte_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_answer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_event_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responses_api: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch: Option<Box<LaunchConfig>>,

    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_layers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    matryoshka: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mmproj: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<Reasoning>,
}

fn is_chat(k: &ModelKind) -> bool {
    *k == ModelKind::Chat
}

impl TryFrom<ModelToml> for ModelConfig {
    type Error = String;

    fn try_from(t: ModelToml) -> Result<Self, String> {
        let kind = t.backend;
        let (present, other): (Vec<&str>, BackendKind) = match kind {
            BackendKind::Embedded => (
                [
                    ("base_url", t.base_url.is_some()),
                    ("upstream_model", t.upstream_model.is_some()),
                    ("api_key_env", t.api_key_env.is_some()),
                    ("connect_timeout_secs", t.connect_timeout_secs.is_some()),
                    (
                        "first_byte_timeout_secs",
                        t.first_byte_timeout_secs.is_some(),
                    ),
                    ("idle_timeout_secs", t.idle_timeout_secs.is_some()),
                    ("max_answer_bytes", t.max_answer_bytes.is_some()),
                    ("max_event_bytes", t.max_event_bytes.is_some()),
                    ("responses_api", t.responses_api.is_some()),
                    ("launch", t.launch.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, set)| set.then_some(k))
                .collect(),
                BackendKind::Upstream,
            ),
            BackendKind::Upstream => (
                [
                    ("path", t.path.is_some()),
                    ("url", t.url.is_some()),
                    ("sha256", t.sha256.is_some()),
                    ("context", t.context.is_some()),
                    ("parallel", t.parallel.is_some()),
                    ("threads", t.threads.is_some()),
                    ("gpu_layers", t.gpu_layers.is_some()),
                    ("matryoshka", t.matryoshka.is_some()),
                    ("mmproj", t.mmproj.is_some()),
                    ("reasoning", t.reasoning.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, set)| set.then_some(k))
                .collect(),
                BackendKind::Embedded,
            ),
        };
        if let Some(first) = present.first() {
            let list = present
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let label = if t.name.is_empty() {
                "this model".to_owned()
            } else {
                format!("model `{}`", t.name)
            };
            return Err(format!(
                "{list} {} only to `backend = \"{}\"` models, and {label} has `backend = \"{}\"`: remove `{first}`{} or change `backend`",
                if present.len() == 1 {
                    "applies"
                } else {
                    "apply"
                },
                other.as_str(),
                kind.as_str(),
                if present.len() == 1 {
                    ""
                } else {
                    " and the others"
                },
            ));
        }
        let defaults = ModelConfig::default();
        let has_mmproj = t.mmproj.is_some();
        let backend = match kind {
            BackendKind::Embedded => ModelBackend::Embedded(EmbeddedConfig {
                path: t.path.unwrap_or_default(),
                url: t.url,
                sha256: t.sha256,
                context: t.context,
                parallel: t.parallel,
                threads: t.threads,
                gpu_layers: t.gpu_layers,
                matryoshka: t.matryoshka.unwrap_or(false),
                mmproj: t.mmproj,
                reasoning: t.reasoning.unwrap_or_default(),
            }),
            BackendKind::Upstream => {
                let d = UpstreamConfig::default();
                ModelBackend::Upstream(UpstreamConfig {
                    base_url: t.base_url.unwrap_or_default(),
                    upstream_model: t.upstream_model,
                    api_key_env: t.api_key_env,
                    connect_timeout_secs: t.connect_timeout_secs.unwrap_or(d.connect_timeout_secs),
                    first_byte_timeout_secs: t
                        .first_byte_timeout_secs
                        .unwrap_or(d.first_byte_timeout_secs),
                    idle_timeout_secs: t.idle_timeout_secs.unwrap_or(d.idle_timeout_secs),
                    max_answer_bytes: t.max_answer_bytes.unwrap_or(d.max_answer_bytes),
                    max_event_bytes: t.max_event_bytes.unwrap_or(d.max_event_bytes),
                    responses_api: t.responses_api.unwrap_or(d.responses_api),
                    launch: t.launch,
                })
            }
        };
        Ok(ModelConfig {
            name: t.name,
            aliases: t.aliases,
            tags: t.tags,
            context_length: t.context_length,
            max_concurrency: t.max_concurrency,
            max_queue: t.max_queue.unwrap_or(defaults.max_queue),
            retries: t.retries.unwrap_or(defaults.retries),
            retry_unanswered: t.retry_unanswered,
            fallbacks: t.fallbacks,
            // A projector makes an embedded model a vision model.
            vision: t.vision || has_mmproj,
            defaults: t.defaults,
            tools: t.tools,
            purpose: t.kind,
            backend,
        })
    }
}

impl From<ModelConfig> for ModelToml {
    fn from(m: ModelConfig) -> Self {
        let mut t = ModelToml {
            name: m.name,
            backend: BackendKind::Embedded,
            aliases: m.aliases,
            tags: m.tags,
            context_length: m.context_length,
            max_concurrency: m.max_concurrency,
            max_queue: Some(m.max_queue),
            retries: Some(m.retries),
            retry_unanswered: m.retry_unanswered,
            fallbacks: m.fallbacks,
            vision: m.vision,
            defaults: m.defaults,
            tools: m.tools,
            kind: m.purpose,
            ..ModelToml::default()
        };
        match m.backend {
            ModelBackend::Embedded(e) => {
                t.path = Some(e.path);
                t.url = e.url;
                t.sha256 = e.sha256;
                t.context = e.context;
                t.parallel = e.parallel;
                t.threads = e.threads;
                t.gpu_layers = e.gpu_layers;
                t.matryoshka = e.matryoshka.then_some(true);
                t.mmproj = e.mmproj;
                t.reasoning = (e.reasoning != Reasoning::Split).then_some(e.reasoning);
            }
            ModelBackend::Upstream(u) => {
                t.backend = BackendKind::Upstream;
                t.base_url = Some(u.base_url);
                t.upstream_model = u.upstream_model;
                t.api_key_env = u.api_key_env;
                t.connect_timeout_secs = Some(u.connect_timeout_secs);
                t.first_byte_timeout_secs = Some(u.first_byte_timeout_secs);
                t.idle_timeout_secs = Some(u.idle_timeout_secs);
                t.max_answer_bytes = Some(u.max_answer_bytes);
                t.max_event_bytes = Some(u.max_event_bytes);
                t.responses_api = u.responses_api.then_some(true);
                t.launch = u.launch;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ModelConfig, String> {
        toml::from_str::<ModelConfig>(toml_text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn each_backend_reads_its_own_fields() {
        let m = parse("name = \"a\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\nidle_timeout_secs = 7").unwrap();
        let u = m.upstream_config().unwrap();
        assert_eq!(
            (
                u.base_url.as_str(),
                u.idle_timeout_secs,
                u.connect_timeout_secs
            ),
            ("http://x/v1", 7, 5)
        );
        let m = parse("name = \"b\"\npath = \"m.gguf\"\nparallel = 2").unwrap();
        assert_eq!(m.kind(), BackendKind::Embedded);
        assert_eq!(m.concurrency(), 2);
        assert_eq!(m.embedded_config().unwrap().path, PathBuf::from("m.gguf"));
    }

    #[test]
    fn a_field_of_the_other_backend_is_named() {
        let e = parse(
            "name = \"a\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\npath = \"m.gguf\"",
        )
        .unwrap_err();
        assert!(
            e.contains("`path` applies only to `backend = \"embedded\"` models"),
            "{e}"
        );
        assert!(e.contains("model `a`"), "{e}");
        let e =
            parse("name = \"b\"\npath = \"m.gguf\"\nbase_url = \"http://x\"\napi_key_env = \"K\"")
                .unwrap_err();
        assert!(
            e.contains("`base_url`, `api_key_env` apply only to `backend = \"upstream\"` models"),
            "{e}"
        );
        let e = parse("name = \"c\"\npath = \"m.gguf\"\nresponses_api = true").unwrap_err();
        assert!(e.contains("`responses_api` applies only to"), "{e}");
    }

    #[test]
    fn round_trips_through_toml() {
        for m in [
            ModelConfig {
                vision: true,
                ..ModelConfig::upstream("v", "http://h:1/v1")
            },
            ModelConfig::upstream("u", "http://h:1/v1"),
            ModelConfig::embedded("e", "models/x.gguf"),
            parse("name = \"r\"\nbackend = \"upstream\"\nbase_url = \"http://h:1/v1\"\nresponses_api = true")
                .unwrap(),
            parse("name = \"m\"\npath = \"e.gguf\"\nkind = \"embedding\"\nmatryoshka = true").unwrap(),
        ] {
            let text = toml::to_string(&m).unwrap();
            assert_eq!(parse(&text).unwrap(), m, "{text}");
        }
    }
}
