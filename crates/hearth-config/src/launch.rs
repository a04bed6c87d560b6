//! `[models.launch]`: a model server Hearth starts, watches, restarts and stops
//! (vLLM, llama.cpp's `llama-server`, or any OpenAI-compatible server given as a
//! command). The model stays an upstream to the router; this says how its process
//! is run. The command is rendered here ([`LaunchConfig::argv`]) so that
//! `hearth config check` shows exactly what will run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a model's server is launched. Every key is optional; a preset fills in the
/// command and the defaults that suit it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LaunchConfig {
    /// `vllm` or `llama-server`; none with an explicit `command`.
    pub preset: Option<Preset>,
    /// vLLM: the model (a Hugging Face id or a local folder); llama-server: the GGUF file.
    pub model: Option<String>,
    /// The context of one request: vLLM `--max-model-len`; llama-server `-c` times
    /// its parallel slots (`-np`, the model's `max_concurrency`), which share it.
    pub max_model_len: Option<u32>,
    /// vLLM `--gpu-memory-utilization`.
    pub gpu_memory_utilization: Option<f32>,
    /// The GPUs it may use (`CUDA_VISIBLE_DEVICES`); all when unset.
    pub gpus: Option<Vec<u32>>,
    /// Appended to the preset's arguments.
    pub extra_args: Vec<String>,
    /// The whole command as a list (no shell); `{port}` is replaced by the port.
    pub command: Option<Vec<String>>,
    /// The preset's program, when it is not on `PATH` under its usual name
    /// (`vllm`, `llama-server`).
    pub program: Option<String>,
    /// More environment for the process (`HF_HOME`, `HF_TOKEN` come from Hearth's own).
    pub env: BTreeMap<String, String>,
    /// `"auto"` (a free loopback port picked at each start) or a fixed port.
    pub port: PortSetting,
    /// Polled (on the server's host and port) until it answers 200.
    pub ready_path: Option<String>,
    /// How long a start may take before it counts as failed (vLLM may download the
    /// model first: 30 minutes by default, else 5).
    pub ready_timeout: Option<String>,
    pub restart: RestartPolicy,
    /// Failures in a row (exits, or starts that never got ready) after which the
    /// model is `failed` and no longer restarted; 5 by default. A server that stayed
    /// up 10 minutes starts the count again.
    pub max_failures: Option<u32>,
    /// SIGTERM to the process group, then SIGKILL after this long.
    pub stop_timeout: Option<String>,
    /// `eager`: started with Hearth; `on_demand`: started by the first request.
    pub start: StartMode,
    /// Stopped after this long without requests (and started again on demand).
    pub idle_stop: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    #[serde(rename = "vllm")]
    Vllm,
    #[serde(rename = "llama-server")]
    LlamaServer,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Vllm => "vllm",
            Preset::LlamaServer => "llama-server",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restarted when it exits unasked with an error status or a signal.
    #[default]
    OnFailure,
    /// Restarted whenever it exits unasked.
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    #[default]
    Eager,
    OnDemand,
}

/// `port = "auto"` or `port = 8001`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PortSetting {
    #[default]
    Auto,
    Fixed(u16),
}

impl Serialize for PortSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortSetting::Auto => s.serialize_str("auto"),
            PortSetting::Fixed(p) => s.serialize_u16(*p),
        }
    }
}

impl<'de> Deserialize<'de> for PortSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Port(u16),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Port(p) if p > 0 => Ok(PortSetting::Fixed(p)),
            Raw::Word(w) if w == "auto" => Ok(PortSetting::Auto),
            _ => Err(serde::de::Error::custom(
                "`port` is \"auto\" or a port number from 1 to 65535",
            )),
        }
    }
}

/// The placeholder replaced by the engine's port in `command` and `base_url`.
pub const PORT_PLACEHOLDER: &str = "{port}";

impl LaunchConfig {
    /// The program and arguments, with `{port}` still in them. `name` is the model's
    /// served name; `concurrency` its `max_concurrency` after defaults; `context`
    /// the model's `context_length`, if set.
    pub fn argv(
        &self,
        name: &str,
        concurrency: usize,
        context: Option<u32>,
    ) -> Result<Vec<String>, String> {
        let mut argv = match (&self.command, self.preset) {
            (Some(c), None) if !c.is_empty() => return Ok(c.clone()),
            (Some(_), None) => return Err("`command` is empty".into()),
            (Some(_), Some(p)) => {
                return Err(format!(
                    "give either `preset = \"{}\"` or `command`, not both",
                    p.as_str()
                ));
            }
            (None, None) => {
                return Err(
                    "give `preset` (\"vllm\" or \"llama-server\") or the server's `command`".into(),
                );
            }
            (None, Some(p)) => vec![
                self.program
                    .clone()
                    .unwrap_or_else(|| p.as_str().to_owned()),
            ],
        };
        let model = self
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| match self.preset {
                Some(Preset::LlamaServer) => {
                    "`model` (the GGUF file llama-server serves) is required".to_owned()
                }
                _ => "`model` (a Hugging Face id or a local folder) is required".to_owned(),
            })?;
        let context = self.max_model_len.or(context);
        match self.preset {
            Some(Preset::Vllm) => {
                argv.extend(
                    [
                        "serve",
                        model,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        PORT_PLACEHOLDER,
                        "--served-model-name",
                        name,
                    ]
                    .map(str::to_owned),
                );
                if let Some(n) = context {
                    argv.extend(["--max-model-len".to_owned(), n.to_string()]);
                }
                if let Some(g) = self.gpu_memory_utilization {
                    argv.extend(["--gpu-memory-utilization".to_owned(), g.to_string()]);
                }
                // A strictly sequential model never batches: reserving KV memory for
                // batches of 256 it never runs would only take it from the context.
                if concurrency == 1 {
                    argv.extend(["--max-num-seqs".to_owned(), "1".to_owned()]);
                }
            }
            Some(Preset::LlamaServer) => {
                argv.extend(
                    [
                        "-m",
                        model,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        PORT_PLACEHOLDER,
                        "--alias",
                        name,
                    ]
                    .map(str::to_owned),
                );
                // llama-server's `-c` is shared by its `-np` slots: each request gets
                // the model's context only if the whole holds one per slot.
                let slots = concurrency.max(1);
                if let Some(n) = context {
                    let total = u64::from(n).saturating_mul(slots as u64);
                    argv.extend(["-c".to_owned(), total.to_string()]);
                }
                argv.extend(["-np".to_owned(), slots.to_string()]);
            }
            None => {}
        }
        argv.extend(self.extra_args.iter().cloned());
        Ok(argv)
    }

    /// The path polled for readiness.
    pub fn ready_path(&self) -> &str {
        match (&self.ready_path, self.preset) {
            (Some(p), _) => p,
            (None, Some(_)) => "/health",
            // An OpenAI-compatible server answers this once it serves.
            (None, None) => "/v1/models",
        }
    }

    pub fn ready_timeout(&self) -> Result<Duration, String> {
        match &self.ready_timeout {
            Some(t) => parse_duration(t).map_err(|e| format!("`ready_timeout`: {e}")),
            None => Ok(Duration::from_secs(match self.preset {
                Some(Preset::Vllm) => 30 * 60,
                _ => 5 * 60,
            })),
        }
    }

    pub fn max_failures(&self) -> u32 {
        self.max_failures.unwrap_or(5).max(1)
    }

    pub fn stop_timeout(&self) -> Result<Duration, String> {
        match &self.stop_timeout {
            Some(t) => parse_duration(t).map_err(|e| format!("`stop_timeout`: {e}")),
            None => Ok(Duration::from_secs(30)),
        }
    }

    pub fn idle_stop(&self) -> Result<Option<Duration>, String> {
        self.idle_stop
            .as_deref()
            .map(|t| parse_duration(t).map_err(|e| format!("`idle_stop`: {e}")))
            .transpose()
    }

    /// Everything that can be checked before starting: the command renders, the
    /// durations parse, an automatic port has somewhere to go.
    pub fn check(&self, name: &str, concurrency: usize, context: Option<u32>) -> Vec<String> {
        let mut problems = Vec::new();
        match self.argv(name, concurrency, context) {
            Ok(argv) => {
                if self.port == PortSetting::Auto
                    && !argv.iter().any(|a| a.contains(PORT_PLACEHOLDER))
                {
                    problems.push(format!(
                        "with `port = \"auto\"` the command must take the port: put `{PORT_PLACEHOLDER}` where it goes"
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
        for e in [
            self.ready_timeout().err(),
            self.stop_timeout().err(),
            self.idle_stop().err(),
        ]
        .into_iter()
        .flatten()
        {
            problems.push(e);
        }
        if let Some(g) = self.gpu_memory_utilization
            && !(g > 0.0 && g <= 1.0)
        {
            problems.push("`gpu_memory_utilization` is a share, above 0 and at most 1".into());
        }
        if !self.ready_path().starts_with('/') {
            problems.push("`ready_path` starts with `/`".into());
        }
        problems
    }
}

/// `"30s"`, `"20m"`, `"1h"`, `"500ms"`, `"1h30m"`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration (e.g. \"30s\", \"20m\", \"1h\")"))?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "`{s}` is not a duration (e.g. \"30s\", \"20m\", \"1h\")"
                ));
            }
        };
        total = total.saturating_add(d);
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("20m").unwrap(), Duration::from_secs(1200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "m", "10x", "1.5h", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn launch(toml_text: &str) -> LaunchConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn presets_render_their_commands() {
        let v = launch(
            "preset = \"vllm\"\nmodel = \"mistralai/Mistral-7B-Instruct-v0.3\"\nmax_model_len = 8192\ngpu_memory_utilization = 0.9\nextra_args = [\"--enable-prefix-caching\"]",
        );
        insta::assert_snapshot!(v.argv("mistral-7b", 1, None).unwrap().join(" "), @"vllm serve mistralai/Mistral-7B-Instruct-v0.3 --host 127.0.0.1 --port {port} --served-model-name mistral-7b --max-model-len 8192 --gpu-memory-utilization 0.9 --max-num-seqs 1 --enable-prefix-caching");
        // Batching left to vLLM when the model may serve several at once.
        assert!(
            !v.argv("m", 8, None)
                .unwrap()
                .contains(&"--max-num-seqs".to_owned())
        );
        let l = launch(
            "preset = \"llama-server\"\nmodel = \"models/x.gguf\"\nprogram = \"/opt/llama/llama-server\"",
        );
        insta::assert_snapshot!(l.argv("smol", 4, Some(4096)).unwrap().join(" "), @"/opt/llama/llama-server -m models/x.gguf --host 127.0.0.1 --port {port} --alias smol -c 16384 -np 4");
        let g = launch("command = [\"python\", \"-m\", \"my_server\", \"--port\", \"{port}\"]");
        assert_eq!(
            g.argv("m", 1, None).unwrap(),
            ["python", "-m", "my_server", "--port", "{port}"]
        );
        assert_eq!(g.ready_path(), "/v1/models");
        assert_eq!(l.ready_path(), "/health");
    }

    #[test]
    fn what_cannot_run_is_said() {
        let e = launch("preset = \"vllm\"").check("m", 1, None);
        assert!(e[0].contains("`model`"), "{e:?}");
        let e = launch("command = [\"srv\"]").check("m", 1, None);
        assert!(e[0].contains("{port}"), "{e:?}");
        assert!(
            launch("command = [\"srv\"]\nport = 9000")
                .check("m", 1, None)
                .is_empty()
        );
        let e = launch("command = [\"srv\", \"{port}\"]\npreset = \"vllm\"").check("m", 1, None);
        assert!(e[0].contains("not both"), "{e:?}");
        let e =
            launch("command = [\"s\", \"{port}\"]\nready_timeout = \"soon\"").check("m", 1, None);
        assert!(e[0].contains("ready_timeout"), "{e:?}");
        assert!(toml::from_str::<LaunchConfig>("port = \"high\"").is_err());
        assert!(toml::from_str::<LaunchConfig>("start = \"lazy\"").is_err());
    }
}
