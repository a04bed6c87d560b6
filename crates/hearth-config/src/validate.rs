//! Cross-field checks, made once at start so a bad config never half-serves.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::env::{self, Env};
use crate::load::Seg;
use crate::server::{LimitsBackend, TlsMode};
use crate::{Config, ModelBackend, ResolvedKey};

pub(crate) struct Problem {
    pub path: Vec<Seg>,
    pub message: String,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Checks `config` and resolves its keys into `config.resolved_keys`.
pub(crate) fn validate(config: &mut Config, env: &dyn Env) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |path: Vec<Seg>, message: String| {
        out.push(Problem { path, message });
    };

    let listen = config.server.listen.parse::<SocketAddr>();
    if listen.is_err() {
        push(
            vec![key("server"), key("listen")],
            format!(
                "`{}` is not an address; write it as IP:PORT, e.g. \"127.0.0.1:8080\"",
                config.server.listen
            ),
        );
    }

    if config.server.header_timeout_secs == 0 {
        push(
            vec![key("server"), key("header_timeout_secs")],
            "must be at least 1 second: without it a client could hold a connection forever".into(),
        );
    }
    if config.server.body_timeout_secs == 0 {
        push(
            vec![key("server"), key("body_timeout_secs")],
            "must be at least 1 second: without it a client could hold a request forever".into(),
        );
    }

    // An embedded model with a `url` and no `path` goes to data_dir/models.
    let models_dir = config.models_dir();
    for m in &mut config.models {
        if let ModelBackend::Embedded(e) = &mut m.backend
            && e.path.as_os_str().is_empty()
            && let Some(name) = e.url.as_deref().and_then(url_file_name)
        {
            e.path = models_dir.join(name);
        }
    }

    // Model names and aliases are one namespace.
    let mut names = HashSet::new();
    for (i, m) in config.models.iter().enumerate() {
        let at = |k: &str| vec![key("models"), Seg::Index(i), key(k)];
        for (k, why) in m.defaults.problems(config.limits.max_tokens) {
            push(
                vec![key("models"), Seg::Index(i), key("defaults"), key(k)],
                why,
            );
        }
        if m.name.is_empty() {
            push(
                at("name"),
                "every model needs a `name` (what clients send as `model`)".into(),
            );
        } else if !m
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/-@".contains(c))
        {
            push(
                at("name"),
                format!("`{}` may use only letters, digits and . _ : / - @", m.name),
            );
        }
        for n in std::iter::once(&m.name).chain(&m.aliases) {
            if !n.is_empty() && !names.insert(n.clone()) {
                push(
                    at("name"),
                    format!(
                        "the name `{n}` is used by two models (names and aliases must be unique)"
                    ),
                );
            }
        }
        if m.purpose == crate::ModelKind::Chat && m.embedded_config().is_some_and(|e| e.matryoshka)
        {
            push(
                at("matryoshka"),
                format!(
                    "`matryoshka` applies to embedding models, and `{}` is a chat model: remove it or add kind = \"embedding\"",
                    m.name
                ),
            );
        }
        if m.purpose == crate::ModelKind::Embedding {
            let mmproj = m.embedded_config().is_some_and(|e| e.mmproj.is_some());
            let chat_only = [
                ("mmproj", mmproj),
                ("vision", m.vision && !mmproj),
                ("tools", m.tools.is_some()),
                ("defaults", !m.defaults.is_empty()),
            ];
            for (k, set) in chat_only {
                if set {
                    push(
                        at(k),
                        format!(
                            "`{k}` applies to chat models, and `{}` has kind = \"embedding\": remove it",
                            m.name
                        ),
                    );
                }
            }
        }
        match &m.backend {
            ModelBackend::Upstream(u) => {
                if let Some(launch) = &u.launch {
                    for problem in launch.check(&m.name, m.concurrency(), m.context_length) {
                        push(at("launch"), problem);
                    }
                    if !u.base_url.is_empty()
                        && launch.port == crate::PortSetting::Auto
                        && !u.base_url.contains(crate::launch::PORT_PLACEHOLDER)
                    {
                        push(
                            at("base_url"),
                            "with a launched server on `port = \"auto\"` the base URL must say where the port goes (`{port}`), or be left out (http://127.0.0.1:{port}/v1)".into(),
                        );
                    }
                }
                if u.base_url.is_empty() && u.launch.is_none() {
                    push(
                        at("backend"),
                        "an upstream model needs `base_url`, e.g. \"http://127.0.0.1:8000/v1\" (or `[models.launch]` for a server Hearth runs)".into(),
                    );
                } else if !(u.base_url.is_empty()
                    || u.base_url.starts_with("http://")
                    || u.base_url.starts_with("https://"))
                {
                    push(
                        at("base_url"),
                        format!("`{}` must start with http:// or https://", u.base_url),
                    );
                }
                if let Some(var) = &u.api_key_env
                    && env.get(var).is_none_or(|v| v.is_empty())
                {
                    push(
                        at("api_key_env"),
                        format!(
                            "the environment variable `{var}` is not set; export it with the upstream's API key"
                        ),
                    );
                }
                if u.connect_timeout_secs == 0
                    || u.first_byte_timeout_secs == 0
                    || u.idle_timeout_secs == 0
                {
                    push(at("name"), "timeouts must be at least 1 second".into());
                }
                if u.max_answer_bytes < 1024 || u.max_event_bytes < 1024 {
                    push(
                        at(if u.max_answer_bytes < 1024 {
                            "max_answer_bytes"
                        } else {
                            "max_event_bytes"
                        }),
                        "must be at least 1024 bytes".into(),
                    );
                }
            }
            ModelBackend::Embedded(e) => {
                if let Some(url) = &e.url {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        push(
                            at("url"),
                            format!("`{url}` is not an http:// or https:// URL"),
                        );
                    } else if e.path.as_os_str().is_empty() {
                        push(
                            at("url"),
                            format!(
                                "`{url}` does not end in a plain file name (letters, digits, `.`, `-`, `_`); set `path` to where the file goes"
                            ),
                        );
                    }
                } else if e.path.as_os_str().is_empty() {
                    push(
                        at("backend"),
                        "an embedded model needs `path` to a GGUF file, or `url` to download one from".into(),
                    );
                }
                if let Some(h) = &e.sha256
                    && !(h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
                {
                    push(
                        at("sha256"),
                        format!("`{h}` is not a SHA-256 (64 hex digits)"),
                    );
                }
                if e.sha256.is_some() && e.url.is_none() {
                    push(
                        at("sha256"),
                        "`sha256` checks a download: set `url` too, or remove it".into(),
                    );
                }
                if e.parallel == Some(0) {
                    push(at("parallel"), "must be at least 1".into());
                }
                if e.threads == Some(0) {
                    push(at("threads"), "must be at least 1".into());
                }
            }
        }
        if m.max_concurrency == Some(0) {
            push(at("max_concurrency"), "must be at least 1".into());
        }
    }
    for (i, m) in config.models.iter().enumerate() {
        for (j, f) in m.fallbacks.iter().enumerate() {
            let at = vec![
                key("models"),
                Seg::Index(i),
                key("fallbacks"),
                Seg::Index(j),
            ];
            if f == &m.name || m.aliases.contains(f) {
                push(at, format!("`{f}` is this model itself"));
            } else if config.model(f).is_none() {
                push(
                    at,
                    format!("no model is named `{f}`; fallbacks name other [[models]]"),
                );
            }
        }
    }
    if let Some(d) = &config.default_model {
        match config.model(d) {
            None => push(
                vec![key("default_model")],
                format!("no model is named `{d}`"),
            ),
            Some(m) if m.purpose == crate::ModelKind::Embedding => push(
                vec![key("default_model")],
                format!(
                    "`{d}` is an embedding model (kind = \"embedding\"); the default model answers chats: name a chat model"
                ),
            ),
            Some(_) => {}
        }
    }

    // Keys.
    let mut resolved = Vec::new();
    for (i, k) in config.keys.iter().enumerate() {
        let at = |f: &str| vec![key("keys"), Seg::Index(i), key(f)];
        let id = if k.name.is_empty() {
            format!("key-{}", i + 1)
        } else {
            k.name.clone()
        };
        let sources = [k.key.is_some(), k.key_env.is_some(), k.key_file.is_some()];
        let secret = match sources.iter().filter(|s| **s).count() {
            1 => {
                if let Some(s) = &k.key {
                    Some(s.clone())
                } else if let Some(var) = &k.key_env {
                    let v = env.get(var).filter(|v| !v.trim().is_empty());
                    if v.is_none() {
                        push(
                            at("key_env"),
                            format!("the environment variable `{var}` is not set"),
                        );
                    }
                    v
                } else if let Some(file) = &k.key_file {
                    match std::fs::read_to_string(file) {
                        Ok(s) if !s.trim().is_empty() => Some(s),
                        Ok(_) => {
                            push(at("key_file"), format!("`{}` is empty", file.display()));
                            None
                        }
                        Err(e) => {
                            push(
                                at("key_file"),
                                format!("cannot read `{}`: {e}", file.display()),
                            );
                            None
                        }
                    }
                } else {
                    None
                }
            }
            _ => {
                push(
                    vec![key("keys"), Seg::Index(i)],
                    "give the key's secret in exactly one of `key_env`, `key_file` or `key`".into(),
                );
                None
            }
        };
        let budget = match (k.budget_tokens, k.budget_period) {
            (Some(tokens), period) if tokens > 0 => Some(crate::Budget {
                tokens,
                period: period.unwrap_or_default(),
            }),
            (_, Some(_)) => {
                push(
                    at("budget_period"),
                    "a budget period needs `budget_tokens` (the tokens per period, above 0)".into(),
                );
                None
            }
            _ => None,
        };
        if let Some(secret) = secret {
            resolved.push(ResolvedKey {
                id,
                secret: secret.trim().to_owned(),
                rpm: k.rpm.unwrap_or(config.limits.default_rpm),
                tpm: k.tpm.unwrap_or(config.limits.default_tpm),
                admin: k.admin,
                budget,
            });
        }
    }
    if let Some(list) = env.get(env::API_KEYS) {
        for (i, secret) in list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            resolved.push(ResolvedKey {
                id: format!("env-{}", i + 1),
                secret: secret.to_owned(),
                rpm: config.limits.default_rpm,
                tpm: config.limits.default_tpm,
                admin: false,
                budget: None,
            });
        }
    }
    if resolved.iter().any(|k| k.secret.len() < 8) {
        push(
            vec![key("keys")],
            "API keys must be at least 8 characters long".into(),
        );
    }

    if let Ok(addr) = listen
        && !addr.ip().is_loopback()
        && resolved.is_empty()
    {
        push(
            vec![key("server"), key("listen")],
            format!(
                "listening on {addr} (not loopback) requires at least one API key: \
                     set {}=\"your-secret\" or add a [[keys]] entry with key_env or key_file \
                     (or listen on 127.0.0.1)",
                env::API_KEYS
            ),
        );
    }
    if let Ok(addr) = listen
        && !addr.ip().is_loopback()
        && config.server.tls.mode == TlsMode::Off
        && !config.server.allow_plain_http
    {
        push(
            vec![key("server"), key("listen")],
            format!(
                "serving plain HTTP on {addr} (not loopback) would send keys and chats in the clear: \
                 set [server.tls] mode = \"acme\", \"self-signed\" or \"files\", or allow_plain_http = true \
                 when a proxy in front terminates HTTPS (or listen on 127.0.0.1)"
            ),
        );
    }
    let tls = &config.server.tls;
    if tls.mode == TlsMode::Files {
        for (name, value) in [("cert", &tls.cert), ("key", &tls.key)] {
            if value.is_none() {
                push(
                    vec![key("server"), key("tls"), key(name)],
                    format!("`mode = \"files\"` needs `{name}` (a PEM file)"),
                );
            }
        }
    }
    if tls.mode == TlsMode::Acme {
        for (path, message) in acme_problems(tls, listen.as_ref().ok()) {
            let at = match path {
                Some(k) => vec![key("server"), key("tls"), key(k)],
                None => vec![key("server"), key("listen")],
            };
            push(at, message);
        }
    }
    if config.limits.max_body_bytes < 1024 {
        push(
            vec![key("limits"), key("max_body_bytes")],
            "must be at least 1024".into(),
        );
    }
    if config.health.failure_threshold == 0 {
        push(
            vec![key("health"), key("failure_threshold")],
            "must be at least 1".into(),
        );
    }
    if config.health.probe_interval_secs == 0 {
        push(
            vec![key("health"), key("probe_interval_secs")],
            "must be at least 1".into(),
        );
    }
    limits_backend(config, &mut push);
    storage(config, &mut push);
    jobs(config, &mut push);
    let s = &mut config.storage;
    crate::objects::validate(s.objects, &mut s.s3, env, &mut push);
    config.resolved_keys = resolved;
    out
}

/// `[limits]`'s backend: Redis has a `redis://` URL to reach it by, and a timeout.
fn limits_backend(config: &Config, push: &mut impl FnMut(Vec<Seg>, String)) {
    let l = &config.limits;
    let at = |k: &str| vec![key("limits"), key(k)];
    match (&l.backend, l.redis_url.as_deref()) {
        (LimitsBackend::Redis, None) => push(
            at("redis_url"),
            "`backend = \"redis\"` needs `redis_url` (or HEARTH_REDIS_URL), e.g. \"redis://127.0.0.1:6379\"".into(),
        ),
        (_, Some(url)) if url.starts_with("rediss://") => push(
            at("redis_url"),
            "TLS to Redis (rediss://) is not supported yet: reach Redis over a private network with redis://, or through a TLS tunnel (stunnel) on loopback".into(),
        ),
        (_, Some(url)) if !url.starts_with("redis://") => push(
            at("redis_url"),
            format!(
                "`{}` is not a Redis URL: it starts with redis://",
                crate::redact_url(url)
            ),
        ),
        _ => {}
    }
    if l.redis_timeout_ms == 0 || l.redis_timeout_ms > 60_000 {
        push(
            at("redis_timeout_ms"),
            "must be 1 to 60000 (milliseconds)".into(),
        );
    }
    if l.redis_prefix.is_empty() || l.redis_prefix.chars().any(|c| c.is_whitespace()) {
        push(
            at("redis_prefix"),
            "must be a non-empty name without spaces".into(),
        );
    }
}

/// `[storage]`'s database: a Postgres URL, a pool and a timeout in range.
fn storage(config: &Config, push: &mut impl FnMut(Vec<Seg>, String)) {
    let s = &config.storage;
    let at = |k: &str| vec![key("storage"), key(k)];
    if let Some(url) = s.database_url.as_deref() {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if !(scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")) {
            push(
                at("database_url"),
                format!(
                    "`{}` is not a Postgres URL: it is postgres://USER:PASSWORD@HOST:PORT/DATABASE \
                     (unset it to keep SQLite in storage.data_dir)",
                    crate::redact_url(url)
                ),
            );
        }
    }
    if s.database_pool_size == 0 || s.database_pool_size > 1000 {
        push(at("database_pool_size"), "must be 1 to 1000".into());
    }
    if s.database_statement_timeout_secs > 86_400 {
        push(
            at("database_statement_timeout_secs"),
            "must be 0 (no limit) to 86400 (seconds)".into(),
        );
    }
}

/// `[jobs]`: the models it names exist (the vision one can see images), and its
/// numbers are in range.
fn jobs(config: &Config, push: &mut impl FnMut(Vec<Seg>, String)) {
    let j = &config.jobs;
    let at = |k: &[&str]| {
        std::iter::once("jobs")
            .chain(k.iter().copied())
            .map(key)
            .collect::<Vec<_>>()
    };
    for (name, value) in [
        ("vision_model", &j.vision_model),
        ("reasoning_model", &j.reasoning_model),
        ("code_model", &j.code_model),
    ] {
        let Some(model) = value else { continue };
        match config.model(model) {
            None => push(
                at(&[name]),
                format!(
                    "no model is named `{model}`; name one of the [[models]] (or leave it out for `default_model`)"
                ),
            ),
            Some(m) if m.purpose == crate::ModelKind::Embedding => push(
                at(&[name]),
                format!(
                    "model `{}` is an embedding model (kind = \"embedding\"): it cannot write; name a chat model",
                    m.name
                ),
            ),
            Some(m) if name == "vision_model" && !m.vision => push(
                at(&[name]),
                format!(
                    "model `{}` is not marked `vision = true`: set it on that [[models]] entry if the model reads images, or name a vision model (e.g. Qwen2.5-VL)",
                    m.name
                ),
            ),
            Some(_) => {}
        }
    }
    if j.max_repairs > 10 {
        push(at(&["max_repairs"]), "must be at most 10".into());
    }
    // 0: this server runs no jobs (API-only replicas; `hearth worker`s run them).
    if j.concurrency > 64 {
        push(at(&["concurrency"]), "must be between 0 and 64".into());
    }
    if !(3..=3600).contains(&j.lease_secs) {
        push(
            at(&["lease_secs"]),
            "must be between 3 and 3600 (seconds)".into(),
        );
    }
    if j.max_upload_bytes < 1024 {
        push(at(&["max_upload_bytes"]), "must be at least 1024".into());
    }
    if j.max_image_pixels == 0 {
        push(at(&["max_image_pixels"]), "must be at least 1".into());
    }
    let l = &j.limits;
    if !(l.cpus.is_finite() && l.cpus > 0.0) {
        push(
            at(&["limits", "cpus"]),
            "must be more than 0 (cores, e.g. 2 or 0.5)".into(),
        );
    }
    if l.memory_mb < 64 {
        push(
            at(&["limits", "memory_mb"]),
            "must be at least 64 (MiB)".into(),
        );
    }
    if l.timeout_secs == 0 {
        push(at(&["limits", "timeout_secs"]), "must be at least 1".into());
    }
    if l.network {
        push(
            at(&["limits", "network"]),
            "jobs always run without network (the sandbox has none); remove `network = true`"
                .into(),
        );
    }
    if !crate::jobs::BANDIT_SEVERITIES.contains(&j.critic.block_bandit_severity.as_str()) {
        push(
            at(&["critic", "block_bandit_severity"]),
            format!(
                "`{}` is not a severity; use one of {}",
                j.critic.block_bandit_severity,
                crate::jobs::BANDIT_SEVERITIES.join(", ")
            ),
        );
    }
}

/// What keeps `[server.tls] mode = "acme"` from working: (key under
/// `server.tls`, or none for `server.listen`; the message with its fix).
fn acme_problems(
    tls: &crate::TlsConfig,
    listen: Option<&SocketAddr>,
) -> Vec<(Option<&'static str>, String)> {
    let mut out = Vec::new();
    if tls.domains.is_empty() {
        out.push((
            Some("domains"),
            "`mode = \"acme\"` needs the DNS name(s) to get a certificate for, e.g. \
             domains = [\"gpu.example.com\"], each with a DNS record pointing at this machine"
                .to_owned(),
        ));
    }
    for d in &tls.domains {
        let problem = if d.parse::<std::net::IpAddr>().is_ok() {
            Some(format!(
                "`{d}` is an IP address: ACME certificates here are for DNS names; give a DNS name \
                 that points at it, or use mode = \"self-signed\""
            ))
        } else if d.starts_with("*.") {
            Some(format!(
                "`{d}`: a wildcard needs the DNS-01 challenge, which Hearth does not answer; \
                 list each name instead"
            ))
        } else if !is_dns_name(d) {
            Some(format!(
                "`{d}` is not a DNS name (letters, digits, `-` and dots, e.g. \"gpu.example.com\")"
            ))
        } else if !d.contains('.') || d.eq_ignore_ascii_case("localhost") {
            Some(format!(
                "`{d}` is not a public name the CA can look up: give a full name such as \
                 \"gpu.example.com\""
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            out.push((Some("domains"), p));
        }
    }
    if let Some(email) = &tls.email {
        let ok = email
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && !email.starts_with("mailto:")
            && !email.contains(char::is_whitespace);
        if !ok {
            out.push((
                Some("email"),
                format!("`{email}` is not an e-mail address (write it as \"admin@example.com\")"),
            ));
        }
    }
    if let Some(url) = &tls.directory_url
        && !url.starts_with("https://")
    {
        out.push((
            Some("directory_url"),
            format!(
                "`{url}` is not an https:// URL; Let's Encrypt's is \"{}\" (staging: \"{}\")",
                crate::LETS_ENCRYPT,
                crate::LETS_ENCRYPT_STAGING
            ),
        ));
    }
    if let Some(addr) = listen
        && addr.port() != 443
    {
        out.push((
            None,
            format!(
                "`mode = \"acme\"` proves the domain with TLS-ALPN-01, for which the CA connects \
                 to port 443, but Hearth listens on port {}: listen on \"0.0.0.0:443\" (or \"[::]:443\")",
                addr.port()
            ),
        ));
    }
    out
}

/// A DNS name as an ACME order takes it: dot-separated labels of letters, digits
/// and inner hyphens.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The file name a model URL saves to: its last path segment (before any query),
/// when it is a plain name (so it is the same here and to the downloader).
fn url_file_name(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let path = rest.split(['?', '#']).next()?;
    let (_, name) = path.rsplit_once('/')?;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    plain.then_some(name)
}
