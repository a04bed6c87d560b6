//! Loading, overrides and diagnostics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_config::{BackendKind, MapEnv, ModelKind, load_str};

mod common;
use common::errors;

#[test]
fn no_file_serves_the_default_embedded_model() {
    let c = load_str("", "defaults", &MapEnv::default()).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.models.len(), 1);
    assert_eq!(c.models[0].name, "smollm2-135m");
    assert_eq!(c.models[0].kind(), BackendKind::Embedded);
    assert_eq!(c.default_model_name(), Some("smollm2-135m"));
}

#[test]
fn design_example_parses() {
    let text = r#"
default_model = "qwen-coder"
[server]
listen = "127.0.0.1:8080"
[storage]
data_dir = "./data"
[[models]]
name = "smollm2-135m"
backend = "embedded"
path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
context = 8192
parallel = 4
tags = ["general"]
[[models]]
name = "qwen-coder"
backend = "upstream"
base_url = "http://vllm-coder:8000/v1"
upstream_model = "Qwen/Qwen2.5-Coder-7B-Instruct"
api_key_env = "CODER_KEY"
max_concurrency = 1
max_queue = 64
retries = 3
fallbacks = ["smollm2-135m"]
tags = ["code"]
context_length = 32768
aliases = ["coder"]
"#;
    let c = load_str(text, "hearth.toml", &MapEnv::new([("CODER_KEY", "x")])).unwrap();
    let q = c.model("coder").unwrap();
    assert_eq!(q.name, "qwen-coder");
    assert_eq!(q.concurrency(), 1);
    assert_eq!(q.upstream_model_name(), "Qwen/Qwen2.5-Coder-7B-Instruct");
    assert_eq!(
        c.models[0].concurrency(),
        4,
        "embedded concurrency follows parallel"
    );
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = "[server]\nlisten = \"127.0.0.1:8080\"\nlisen = \"x\"\n";
    let e = errors(text, &MapEnv::default());
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("hearth.toml:3: server.lisen: unknown field `lisen`"),
        "{}",
        e[0]
    );
}

#[test]
fn wrong_type_inside_a_model_is_located() {
    let text = "[[models]]\nname = \"a\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\n\n[[models]]\nname = \"b\"\nbackend = \"upstream\"\nbase_url = \"http://y/v1\"\nmax_queue = \"lots\"\n";
    let e = errors(text, &MapEnv::default());
    assert!(
        e[0].starts_with("hearth.toml:10: models[1].max_queue: invalid type"),
        "{}",
        e[0]
    );
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let text = r#"default_model = "ghost"
[server]
listen = "0.0.0.0:8080"
[[models]]
name = "a"
backend = "upstream"
base_url = "ftp://x"
fallbacks = ["a", "missing"]
[[models]]
name = "a"
backend = "upstream"
"#;
    let e = errors(text, &MapEnv::default());
    let joined = e.join("\n");
    for needle in [
        "hearth.toml:1: default_model: no model is named `ghost`",
        "hearth.toml:3: server.listen: listening on 0.0.0.0:8080 (not loopback) requires at least one API key",
        "hearth.toml:7: models[0].base_url: `ftp://x` must start with http:// or https://",
        "hearth.toml:8: models[0].fallbacks[0]: `a` is this model itself",
        "hearth.toml:8: models[0].fallbacks[1]: no model is named `missing`",
        "hearth.toml:10: models[1].name: the name `a` is used by two models",
        "hearth.toml:11: models[1].backend: an upstream model needs `base_url`",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
}

#[test]
fn syntax_error_has_a_line() {
    let e = errors("[server\nlisten = 1\n", &MapEnv::default());
    assert!(e[0].starts_with("hearth.toml:1:"), "{}", e[0]);
}

#[test]
fn env_overrides_sections_models_and_keys() {
    let text =
        "[[models]]\nname = \"qwen-coder\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\n";
    let env = MapEnv::new([
        ("HEARTH_SERVER_LISTEN", "0.0.0.0:9000"),
        ("HEARTH_SERVER_ALLOW_PLAIN_HTTP", "true"),
        ("HEARTH_LIMITS_MAX_MESSAGES", "12"),
        ("HEARTH_MODELS_QWEN_CODER_MAX_CONCURRENCY", "1"),
        ("HEARTH_MODELS_QWEN_CODER_TAGS", "[\"code\"]"),
        ("HEARTH_API_KEYS", "sk-aaaaaaaa1, sk-bbbbbbbb2"),
        ("HEARTH_STORAGE_DATA_DIR", "/var/lib/hearth"),
    ]);
    let c = load_str(text, "hearth.toml", &env).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:9000");
    assert_eq!(c.limits.max_messages, 12);
    assert_eq!(c.models[0].max_concurrency, Some(1));
    assert_eq!(c.models[0].tags, ["code"]);
    assert_eq!(c.storage.data_dir.to_str(), Some("/var/lib/hearth"));
    let ids: Vec<_> = c.resolved_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["env-1", "env-2"]);
}

#[test]
fn env_errors_name_the_variable() {
    let e = errors("", &MapEnv::new([("HEARTH_SERVER_LISTEN", "nowhere")]));
    assert!(
        e[0].starts_with("environment: HEARTH_SERVER_LISTEN: `nowhere` is not an address"),
        "{}",
        e[0]
    );
    let e = errors("", &MapEnv::new([("HEARTH_MODELS_NOPE_RETRIES", "1")]));
    assert!(
        e[0].contains("HEARTH_MODELS_NOPE_RETRIES: names no configured model"),
        "{}",
        e[0]
    );
}

#[test]
fn keys_resolve_from_env_and_file_and_never_debug_print() {
    let dir = tempfile_dir();
    let file = dir.join("key");
    std::fs::write(&file, "sk-from-file-123\n").unwrap();
    let text = format!(
        "[[keys]]\nname = \"a\"\nkey_env = \"A_KEY\"\nrpm = 5\n[[keys]]\nname = \"b\"\nkey_file = \"{}\"\n",
        file.display()
    );
    let c = load_str(
        &text,
        "hearth.toml",
        &MapEnv::new([("A_KEY", "sk-from-env-123")]),
    )
    .unwrap();
    assert_eq!(c.resolved_keys[0].secret, "sk-from-env-123");
    assert_eq!(c.resolved_keys[0].rpm, 5);
    assert_eq!(c.resolved_keys[1].secret, "sk-from-file-123");
    assert!(
        !format!("{:?}", c.resolved_keys).contains("sk-from"),
        "secrets never in Debug"
    );
    let e = errors(
        "[[keys]]\nname = \"a\"\nkey_env = \"UNSET\"\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].starts_with(
            "hearth.toml:3: keys[0].key_env: the environment variable `UNSET` is not set"
        ),
        "{}",
        e[0]
    );
    let e = errors(
        "[[keys]]\nname = \"a\"\nkey = \"short\"\n",
        &MapEnv::default(),
    );
    assert!(e[0].contains("at least 8 characters"), "{}", e[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_keys_budget_is_tokens_per_calendar_period() {
    let c = load_str(
        "[[keys]]\nname = \"kid\"\nkey = \"sk-kid-12345\"\nbudget_tokens = 200000\nbudget_period = \"day\"\n\
         [[keys]]\nname = \"bot\"\nkey = \"sk-bot-12345\"\nbudget_tokens = 5000000\n\
         [[keys]]\nname = \"me\"\nkey = \"sk-me-123456\"\nbudget_tokens = 0\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    let budgets: Vec<_> = c.resolved_keys.iter().map(|k| k.budget).collect();
    assert_eq!(
        budgets,
        [
            Some(hearth_config::Budget {
                tokens: 200_000,
                period: hearth_config::BudgetPeriod::Day
            }),
            Some(hearth_config::Budget {
                tokens: 5_000_000,
                period: hearth_config::BudgetPeriod::Month
            }),
            None,
        ]
    );
    let e = errors(
        "[[keys]]\nname = \"a\"\nkey = \"sk-a-1234567\"\nbudget_period = \"week\"\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].starts_with(
            "hearth.toml:4: keys[0].budget_period: a budget period needs `budget_tokens`"
        ),
        "{}",
        e[0]
    );
    let e = errors(
        "[[keys]]\nname = \"a\"\nkey = \"sk-a-1234567\"\nbudget_tokens = 5\nbudget_period = \"year\"\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].contains("budget_period") && e[0].contains("year"),
        "{}",
        e[0]
    );
}

#[test]
fn non_loopback_with_a_key_over_https_or_allowed_plain_http_is_fine() {
    let keys = MapEnv::new([("HEARTH_API_KEYS", "sk-12345678")]);
    for extra in [
        "allow_plain_http = true\n",
        "[server.tls]\nmode = \"self-signed\"\n",
        "[server.tls]\nmode = \"files\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    ] {
        let c = load_str(
            &format!("[server]\nlisten = \"0.0.0.0:8080\"\n{extra}"),
            "hearth.toml",
            &keys,
        );
        assert!(c.is_ok(), "{extra}: {c:?}");
    }
}

#[test]
fn plain_http_on_a_public_address_is_refused_unless_allowed() {
    let e = errors(
        "[server]\nlisten = \"0.0.0.0:8080\"\n",
        &MapEnv::new([("HEARTH_API_KEYS", "sk-12345678")]),
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("server.listen"), "{}", e[0]);
    assert!(e[0].contains("plain HTTP on 0.0.0.0:8080"), "{}", e[0]);
    assert!(e[0].contains("allow_plain_http = true"), "{}", e[0]);
    let e = errors(
        "[server.tls]\nmode = \"files\"\ncert = \"c.pem\"\n",
        &MapEnv::default(),
    );
    assert!(
        e.iter()
            .any(|l| l.contains("server.tls.key") && l.contains("needs `key`")),
        "{e:?}"
    );
}

#[test]
fn missing_upstream_key_env_is_an_error() {
    let text = "[[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\napi_key_env = \"NOPE_KEY\"\n";
    let e = errors(text, &MapEnv::default());
    assert!(
        e[0].starts_with(
            "hearth.toml:5: models[0].api_key_env: the environment variable `NOPE_KEY` is not set"
        ),
        "{}",
        e[0]
    );
}

/// A folder of this test process's own (its test removes it at the end).
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn model_overrides_pick_the_model_whose_key_exists() {
    // `a` is a prefix of `a-max`: HEARTH_MODELS_A_MAX_MAX_QUEUE is `a-max`'s max_queue,
    // not a key `max_max_queue` of `a` (it went to `a` before).
    let text = "[[models]]\nname = \"a\"\npath = \"a.gguf\"\n[[models]]\nname = \"a-max\"\npath = \"b.gguf\"\n";
    let env = MapEnv::new([
        ("HEARTH_MODELS_A_MAX_MAX_QUEUE", "3"),
        ("HEARTH_MODELS_A_MAX_QUEUE", "5"),
    ]);
    let c = load_str(text, "hearth.toml", &env).unwrap();
    assert_eq!(c.model("a").unwrap().max_queue, 5);
    assert_eq!(c.model("a-max").unwrap().max_queue, 3);

    let e = errors(text, &MapEnv::new([("HEARTH_MODELS_A_MAX_NOPE", "1")]));
    assert!(
        e[0].starts_with("environment: HEARTH_MODELS_A_MAX_NOPE: model `a` has no key `max_nope`")
            || e[0].starts_with(
                "environment: HEARTH_MODELS_A_MAX_NOPE: model `a-max` has no key `nope`"
            ),
        "{}",
        e[0]
    );

    let twins = "[[models]]\nname = \"x-y\"\npath = \"a.gguf\"\n[[models]]\nname = \"x_y\"\npath = \"b.gguf\"\n";
    let e = errors(twins, &MapEnv::new([("HEARTH_MODELS_X_Y_RETRIES", "1")]));
    assert!(
        e[0].contains("matches more than one model (`x-y`, `x_y`)"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_hearth_variables_are_warned_about_by_name() {
    let env = MapEnv::new([
        ("HEARTH_SERVR_LISTEN", "127.0.0.1:1"),
        ("HEARTH_NONSENSE", "1"),
        ("HEARTH_BIN", "/x/hearth"),
        ("HEARTH_API_KEYS", "sk-12345678"),
    ]);
    let c = load_str("", "defaults", &env).unwrap();
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter().any(|w| w
            .starts_with("environment: HEARTH_SERVR_LISTEN: Hearth does not read this variable")
            && w.ends_with("did you mean HEARTH_SERVER_LISTEN?")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.starts_with("environment: HEARTH_NONSENSE:")),
        "{w:?}"
    );
    assert_eq!(
        c.server.listen, "127.0.0.1:8080",
        "the typo changed nothing"
    );
}

#[test]
fn an_override_the_section_does_not_have_names_the_variable() {
    let e = errors("", &MapEnv::new([("HEARTH_SERVER_LISTN", "x")]));
    assert!(
        e[0].starts_with("environment: HEARTH_SERVER_LISTN: unknown field `listn`"),
        "{}",
        e[0]
    );
}

#[test]
fn a_field_of_the_other_backend_is_an_error_at_its_model() {
    let text = "[[models]]\nname = \"up\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\nparallel = 4\n";
    let e = errors(text, &MapEnv::default());
    assert!(e[0].starts_with("hearth.toml:"), "{}", e[0]);
    assert!(
        e[0].contains("`parallel` applies only to `backend = \"embedded\"` models, and model `up` has `backend = \"upstream\"`"),
        "{}",
        e[0]
    );
    // The same through the environment names the variable.
    let text = "[[models]]\nname = \"up\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\n";
    let e = errors(text, &MapEnv::new([("HEARTH_MODELS_UP_PATH", "m.gguf")]));
    assert!(
        e[0].starts_with("environment: HEARTH_MODELS_UP_PATH: `path` applies only"),
        "{}",
        e[0]
    );
    let c = load_str(text, "hearth.toml", &MapEnv::default()).unwrap();
    assert_eq!(
        c.models[0].upstream_config().unwrap().base_url,
        "http://x/v1"
    );
    assert!(c.models[0].embedded_config().is_none());
}

#[test]
fn a_launched_model_needs_no_base_url_and_its_problems_are_located() {
    let text = r#"
[[models]]
name = "mistral-7b"
backend = "upstream"
max_concurrency = 1
[models.launch]
preset = "vllm"
model = "mistralai/Mistral-7B-Instruct-v0.3"
max_model_len = 8192
gpu_memory_utilization = 0.90
gpus = [0]
extra_args = ["--enable-prefix-caching"]
start = "on_demand"
idle_stop = "30m"
"#;
    let c = load_str(text, "hearth.toml", &MapEnv::default()).unwrap();
    let u = c.models[0].upstream_config().unwrap();
    assert_eq!(u.base_url_template(), "http://127.0.0.1:{port}/v1");
    let l = u.launch.as_ref().unwrap();
    assert_eq!(l.gpus.as_deref(), Some(&[0][..]));
    assert_eq!(
        l.idle_stop().unwrap(),
        Some(std::time::Duration::from_secs(1800))
    );

    let e = errors(
        "[[models]]\nname = \"x\"\nbackend = \"upstream\"\n[models.launch]\ncommand = [\"srv\"]\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].starts_with(
            "hearth.toml:4: models[0].launch: with `port = \"auto\"` the command must take the port"
        ),
        "{}",
        e[0]
    );
    let e = errors(
        "[[models]]\nname = \"x\"\npath = \"m.gguf\"\n[models.launch]\npreset = \"vllm\"\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].contains("`launch` applies only to `backend = \"upstream\"` models"),
        "{}",
        e[0]
    );
}

#[test]
fn log_format_from_the_file_and_the_environment() {
    use hearth_config::{LogFormat, env};
    let c = load_str("", "defaults", &MapEnv::default()).unwrap();
    assert_eq!(c.log.format, LogFormat::Auto);
    let c = load_str(
        "[log]\nformat = \"json\"\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    let c = load_str(
        "[log]\nformat = \"json\"\n",
        "hearth.toml",
        &MapEnv::new([(env::LOG_FORMAT, "text")]),
    )
    .unwrap();
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_bad_log_format_names_the_key_or_the_variable() {
    let file = errors("[log]\nformat = \"pretty\"\n", &MapEnv::default());
    assert_eq!(file.len(), 1);
    assert!(
        file[0].starts_with("hearth.toml:2: log.format: "),
        "{file:?}"
    );
    assert!(file[0].contains("auto"), "{file:?}");
    let env = errors(
        "",
        &MapEnv::new([(hearth_config::env::LOG_FORMAT, "pretty")]),
    );
    assert_eq!(env.len(), 1);
    assert!(env[0].contains("HEARTH_LOG_FORMAT"), "{env:?}");
}

#[test]
fn jobs_defaults_and_a_full_section() {
    let c = load_str("", "defaults", &MapEnv::default()).unwrap();
    assert_eq!(c.jobs.max_repairs, 2);
    assert_eq!(c.jobs.concurrency, 1);
    assert_eq!(c.jobs.max_upload_bytes, 20_000_000);
    assert_eq!(c.jobs.limits.timeout_secs, 120);
    assert_eq!(c.jobs.limits.memory_mb, 2048);
    assert!(!c.jobs.limits.network);
    assert_eq!(c.jobs.critic.block_bandit_severity, "high");
    let text = r#"
[[models]]
name = "vl"
backend = "upstream"
base_url = "http://vllm-vl:8000/v1"
vision = true
[[models]]
name = "coder"
backend = "upstream"
base_url = "http://vllm-coder:8000/v1"
[jobs]
vision_model = "vl"
code_model = "coder"
max_repairs = 3
concurrency = 2
[jobs.limits]
cpus = 1.5
memory_mb = 1024
timeout_secs = 30
[jobs.critic]
block_bandit_severity = "medium"
"#;
    let c = load_str(
        text,
        "hearth.toml",
        &MapEnv::new([("HEARTH_JOBS_CONCURRENCY", "4")]),
    )
    .unwrap();
    assert!(c.model("vl").unwrap().vision);
    assert!(!c.model("coder").unwrap().vision);
    assert_eq!(c.jobs.vision_model.as_deref(), Some("vl"));
    assert_eq!((c.jobs.max_repairs, c.jobs.concurrency), (3, 4));
    assert_eq!(c.jobs.limits.cpus, 1.5);
    assert_eq!(c.jobs.critic.block_bandit_severity, "medium");
}

#[test]
fn jobs_problems_name_their_key() {
    let text = r#"
[[models]]
name = "coder"
backend = "upstream"
base_url = "http://vllm-coder:8000/v1"
[jobs]
vision_model = "coder"
code_model = "nope"
concurrency = 65
lease_secs = 1
[jobs.limits]
network = true
memory_mb = 1
[jobs.critic]
block_bandit_severity = "severe"
"#;
    let e = errors(text, &MapEnv::default()).join("\n");
    for want in [
        "jobs.vision_model: model `coder` is not marked `vision = true`",
        "jobs.code_model: no model is named `nope`",
        "jobs.concurrency: must be between 0 and 64",
        "jobs.lease_secs: must be between 3 and 3600",
        "jobs.limits.network: jobs always run without network",
        "jobs.limits.memory_mb: must be at least 64",
        "jobs.critic.block_bandit_severity: `severe` is not a severity",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn acme_needs_public_dns_names_and_port_443() {
    let keys = MapEnv::new([("HEARTH_API_KEYS", "sk-12345678")]);
    let ok = "[server]\nlisten = \"0.0.0.0:443\"\n[server.tls]\nmode = \"acme\"\n\
              domains = [\"gpu.example.com\"]\nemail = \"admin@example.com\"\n";
    let c = load_str(ok, "hearth.toml", &keys).unwrap();
    assert_eq!(c.server.tls.directory_url(), hearth_config::LETS_ENCRYPT);

    let e = errors(
        "[server]\nlisten = \"0.0.0.0:443\"\n[server.tls]\nmode = \"acme\"\n",
        &keys,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("server.tls.domains"), "{}", e[0]);
    assert!(e[0].contains("domains = [\"gpu.example.com\"]"), "{}", e[0]);

    for (domain, says) in [
        ("203.0.113.7", "is an IP address"),
        ("*.example.com", "wildcard needs the DNS-01"),
        ("localhost", "not a public name"),
        ("bad_name.example.com", "not a DNS name"),
    ] {
        let e = errors(
            &format!(
                "[server]\nlisten = \"0.0.0.0:443\"\n[server.tls]\nmode = \"acme\"\ndomains = [\"{domain}\"]\n"
            ),
            &keys,
        );
        assert_eq!(e.len(), 1, "{domain}: {e:?}");
        assert!(
            e[0].contains("server.tls.domains") && e[0].contains(says),
            "{}",
            e[0]
        );
    }

    let e = errors(
        "[server]\nlisten = \"0.0.0.0:8443\"\n[server.tls]\nmode = \"acme\"\n\
         domains = [\"gpu.example.com\"]\nemail = \"not-an-address\"\ndirectory_url = \"http://ca/dir\"\n",
        &keys,
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().any(|l| l.contains("server.tls.email")), "{e:?}");
    assert!(
        e.iter()
            .any(|l| l.contains("server.tls.directory_url") && l.contains("acme-staging-v02")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|l| l.contains("server.listen")
            && l.contains("TLS-ALPN-01")
            && l.contains("0.0.0.0:443")),
        "{e:?}"
    );
}

#[test]
fn an_embedded_model_named_by_url_goes_to_data_dir_models() {
    let c = load_str(
        "[storage]\ndata_dir = \"/srv/hearth\"\n[[models]]\nname = \"q\"\nurl = \"https://example.com/org/repo/resolve/main/q4_k_m.gguf?download=true\"\nsha256 = \"9F2C1D7E4B3A5C6D8E9F0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F\"\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    let e = c.models[0].embedded_config().unwrap();
    assert_eq!(
        e.path,
        std::path::PathBuf::from("/srv/hearth/models/q4_k_m.gguf")
    );
    assert!(
        e.url
            .as_deref()
            .unwrap()
            .starts_with("https://example.com/")
    );
    // An explicit path is where it goes.
    let c = load_str(
        "[[models]]\nname = \"q\"\npath = \"/m/q.gguf\"\nurl = \"http://h/x.gguf\"\n",
        "hearth.toml",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(
        c.models[0].embedded_config().unwrap().path,
        std::path::PathBuf::from("/m/q.gguf")
    );
}

#[test]
fn a_model_url_is_checked() {
    let env = MapEnv::default();
    let e = errors("[[models]]\nname = \"q\"\nurl = \"ftp://h/x.gguf\"\n", &env);
    assert!(
        e.iter()
            .any(|m| m.contains("not an http:// or https:// URL")),
        "{e:?}"
    );
    let e = errors("[[models]]\nname = \"q\"\nurl = \"https://h/dir/\"\n", &env);
    assert!(
        e.iter()
            .any(|m| m.contains("set `path` to where the file goes")),
        "{e:?}"
    );
    let e = errors(
        "[[models]]\nname = \"q\"\nurl = \"https://h/%41.gguf\"\n",
        &env,
    );
    assert!(e.iter().any(|m| m.contains("plain file name")), "{e:?}");
    let e = errors(
        "[[models]]\nname = \"q\"\nurl = \"https://h/x.gguf\"\nsha256 = \"abc\"\n",
        &env,
    );
    assert!(e.iter().any(|m| m.contains("not a SHA-256")), "{e:?}");
    let e = errors(
        "[[models]]\nname = \"q\"\npath = \"m.gguf\"\nsha256 = \"9f2c1d7e4b3a5c6d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f\"\n",
        &env,
    );
    assert!(e.iter().any(|m| m.contains("set `url` too")), "{e:?}");
    let e = errors(
        "[[models]]\nname = \"q\"\nbackend = \"upstream\"\nbase_url = \"http://h/v1\"\nurl = \"https://h/x.gguf\"\n",
        &env,
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`url` applies only to `backend = \"embedded\"`")),
        "{e:?}"
    );
    let e = errors("[[models]]\nname = \"q\"\n", &env);
    assert!(
        e.iter()
            .any(|m| m.contains("or `url` to download one from")),
        "{e:?}"
    );
}

#[test]
fn an_override_name_with_any_characters_is_a_warning_not_a_panic() {
    // Found by fuzzing: a multi-byte character where a section name would end.
    let c = load_str(
        "",
        "hearth.toml",
        &MapEnv::new([("HEARTH_éééé_LISTEN", "x")]),
    )
    .unwrap();
    assert!(
        c.warnings.iter().any(|w| w.key == "HEARTH_éééé_LISTEN"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn embedding_models_are_marked_and_kept_out_of_chat_roles() {
    let ok = r#"
[[models]]
name = "minilm"
kind = "embedding"
path = "models/all-MiniLM-L6-v2.F16.gguf"
[[models]]
name = "chat"
path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
"#;
    let c = load_str(ok, "hearth.toml", &MapEnv::default()).unwrap();
    assert_eq!(c.models[0].purpose, ModelKind::Embedding);
    assert_eq!(c.models[1].purpose, ModelKind::Chat);
    // The first chat model answers requests that name none.
    assert_eq!(c.default_model_name(), Some("chat"));

    let bad = r#"default_model = "minilm"
[jobs]
code_model = "minilm"
[[models]]
name = "minilm"
kind = "embedding"
path = "m.gguf"
vision = true
tools = "reject"
[[models]]
name = "x"
kind = "vectors"
path = "m.gguf"
matryoshka = true
"#;
    let e = errors(bad, &MapEnv::default()).join("\n");
    assert!(e.contains("kind"), "{e}");
    let bad = bad.replace("kind = \"vectors\"\n", "");
    let e = errors(&bad, &MapEnv::default()).join("\n");
    for needle in [
        "hearth.toml:1: default_model: `minilm` is an embedding model",
        "jobs.code_model: model `minilm` is an embedding model",
        "models[0].vision: `vision` applies to chat models",
        "models[0].tools: `tools` applies to chat models",
        "models[1].matryoshka: `matryoshka` applies to embedding models",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in\n{e}");
    }
}

#[test]
fn reasoning_is_split_unless_inline_and_only_for_embedded_models() {
    let text = "[[models]]\nname = \"qwen3\"\npath = \"m.gguf\"\n[[models]]\nname = \"raw\"\npath = \"m.gguf\"\nreasoning = \"inline\"\n";
    let c = load_str(text, "hearth.toml", &MapEnv::default()).unwrap();
    let reasoning: Vec<_> = c
        .models
        .iter()
        .map(|m| m.embedded_config().map(|e| e.reasoning))
        .collect();
    assert_eq!(
        reasoning,
        [
            Some(hearth_config::Reasoning::Split),
            Some(hearth_config::Reasoning::Inline)
        ]
    );
    let e = errors(
        &text.replace("\"inline\"", "\"hidden\""),
        &MapEnv::default(),
    );
    assert!(
        e.iter()
            .any(|m| m.contains("reasoning") && m.contains("split") && m.contains("inline")),
        "{e:?}"
    );
    let e = errors(
        "[[models]]\nname = \"up\"\nbackend = \"upstream\"\nbase_url = \"http://x/v1\"\nreasoning = \"inline\"\n",
        &MapEnv::default(),
    );
    assert!(
        e[0].contains("`reasoning` applies only to `backend = \"embedded\"` models"),
        "{}",
        e[0]
    );
}
