//! `hearth-infra.toml` and `services/<name>/service.toml`: parsed, with the
//! line of each key so that `check` can name file and line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The infra file, at the repository's root.
pub const INFRA_FILE: &str = "hearth-infra.toml";

/// Where an environment keeps its services' releases and history on its
/// runner, unless `state_dir` (or `--state-dir`) says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hearth/gitops";

/// One problem found while parsing: its line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub rule: &'static str,
    pub message: String,
}

/// The 1-based line of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.matches('\n').count() + 1)
}

fn parse_problem(text: &str, e: &toml::de::Error) -> Problem {
    Problem {
        line: e.span().map_or(1, |s| line_at(text, s.start)),
        rule: "parse",
        message: e.message().trim().to_string(),
    }
}

/// `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 500ms, 10s, 5m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "{s:?} is not a duration: write e.g. 500ms, 10s, 5m or 1h"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// How an environment's runner reaches the machine its services run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The runner deploys on its own machine.
    Local,
    /// The runner deploys on another machine over SSH.
    Ssh {
        address: String,
        user: String,
        port: u16,
        /// A known_hosts file in the repository (relative to its root) that
        /// pins the host's key; None: ssh's own known_hosts.
        known_hosts: Option<String>,
        /// The hearth binary on that machine, for `kind = "hearth"` services.
        hearth_bin: Option<String>,
    },
}

/// One `[environments.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// The self-hosted runner's label (`runs-on: [self-hosted, LABEL]`).
    pub runner: String,
    pub target: Target,
    /// Where releases and history live on the runner (None: the default).
    pub state_dir: Option<PathBuf>,
    pub description: String,
    /// The line of its table header.
    pub line: usize,
}

impl Environment {
    /// The same entry, wherever it sits in the file (plan compares two commits).
    pub fn same_as(&self, other: &Environment) -> bool {
        let mut a = self.clone();
        a.line = other.line;
        &a == other
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InfraFile {
    environments: Option<BTreeMap<String, Spanned<EnvFile>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvFile {
    runner: Option<String>,
    target: Option<Spanned<String>>,
    state_dir: Option<String>,
    address: Option<String>,
    user: Option<String>,
    port: Option<u16>,
    known_hosts: Option<String>,
    hearth_bin: Option<String>,
    description: Option<String>,
}

/// `hearth-infra.toml`: the environments by name.
#[derive(Debug, Clone, Default)]
pub struct Infra {
    pub environments: BTreeMap<String, Environment>,
}

impl Infra {
    /// Parses the infra file; every problem found, or the environments.
    pub fn parse(text: &str) -> Result<Infra, Vec<Problem>> {
        let file: InfraFile = toml::from_str(text).map_err(|e| vec![parse_problem(text, &e)])?;
        let mut problems = Vec::new();
        let mut environments = BTreeMap::new();
        let Some(envs) = file.environments else {
            return Err(vec![Problem {
                line: 1,
                rule: "infra",
                message: "no [environments.NAME] table: declare at least one environment"
                    .to_string(),
            }]);
        };
        for (name, spanned) in envs {
            let line = line_at(text, spanned.span().start);
            let env = spanned.into_inner();
            if !valid_name(&name) {
                problems.push(Problem {
                    line,
                    rule: "infra",
                    message: format!(
                        "environment name {name:?}: use lower-case letters, digits and '-'"
                    ),
                });
                continue;
            }
            let target = match env
                .target
                .as_ref()
                .map(|t| (t.get_ref().as_str(), t.span()))
            {
                None | Some(("local", _)) => Target::Local,
                Some(("ssh", span)) => match (&env.address, &env.user) {
                    (Some(address), Some(user)) => Target::Ssh {
                        address: address.clone(),
                        user: user.clone(),
                        port: env.port.unwrap_or(22),
                        known_hosts: env.known_hosts.clone(),
                        hearth_bin: env.hearth_bin.clone(),
                    },
                    _ => {
                        problems.push(Problem {
                            line: line_at(text, span.start),
                            rule: "infra",
                            message: format!(
                                "environment {name}: target = \"ssh\" needs address and user"
                            ),
                        });
                        continue;
                    }
                },
                Some((other, span)) => {
                    problems.push(Problem {
                        line: line_at(text, span.start),
                        rule: "infra",
                        message: format!(
                            "environment {name}: target {other:?} is not \"local\" or \"ssh\""
                        ),
                    });
                    continue;
                }
            };
            let runner = env.runner.unwrap_or_else(|| name.clone());
            environments.insert(
                name.clone(),
                Environment {
                    name,
                    runner,
                    target,
                    state_dir: env.state_dir.map(PathBuf::from),
                    description: env.description.unwrap_or_default(),
                    line,
                },
            );
        }
        if problems.is_empty() {
            Ok(Infra { environments })
        } else {
            Err(problems)
        }
    }

    /// The environments in the order the file declares them.
    pub fn in_file_order(&self) -> Vec<&Environment> {
        let mut envs: Vec<&Environment> = self.environments.values().collect();
        envs.sort_by_key(|e| e.line);
        envs
    }

    /// The environment names, for messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// Service and environment names: safe as folder names and compose projects.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with(['-', '_'])
}

/// What a service is and how it is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `deploy.sh` starts or replaces the service; `health-check.sh` judges it.
    Script,
    /// `docker compose up -d` of `compose.yaml`, a project per service.
    Compose,
    /// A Hearth instance run from `hearth.toml`.
    Hearth,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Script => "script",
            Kind::Compose => "compose",
            Kind::Hearth => "hearth",
        }
    }

    /// The files a service of this kind must have, beside `service.toml`.
    pub fn required_files(self) -> &'static [&'static str] {
        match self {
            Kind::Script => &["deploy.sh", "health-check.sh", "README.md"],
            Kind::Compose => &["compose.yaml"],
            Kind::Hearth => &["hearth.toml"],
        }
    }
}

/// What is probed after a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A GET that must answer 200.
    Url(String),
    /// A command run in the release folder (through `sh -c`) that must exit 0.
    Command(String),
}

/// The `[health]` table: the probe, each attempt's timeout, how many attempts,
/// and the pause between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    pub probe: Probe,
    pub timeout: Duration,
    pub retries: u32,
    pub interval: Duration,
}

/// Lines of a service.toml's keys, for check's messages (1 when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    pub environment: usize,
    pub kind: usize,
    pub depends_on: Vec<usize>,
    pub secrets: usize,
    pub health: usize,
}

/// `services/<name>/service.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub environment: String,
    pub kind: Kind,
    pub description: String,
    pub depends_on: Vec<String>,
    /// Names of the variables the deploy step needs from the CI's secrets.
    pub secrets: Vec<String>,
    /// None when the file declares none (check fails it; apply refuses it).
    pub health: Option<HealthSpec>,
    /// How long the deploy step may run.
    pub deploy_timeout: Duration,
    pub lines: Lines,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    environment: Spanned<String>,
    kind: Spanned<String>,
    description: Option<String>,
    depends_on: Option<Vec<Spanned<String>>>,
    secrets: Option<Spanned<toml::Value>>,
    health: Option<Spanned<HealthFile>>,
    deploy: Option<DeployFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    url: Option<String>,
    command: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployFile {
    timeout: Option<String>,
}

/// A secret's name: an environment variable's name, nothing that looks like a value.
pub(crate) fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl Service {
    /// Parses a service.toml; the service (when it parses at all) and every
    /// problem found in it.
    pub fn parse(name: &str, text: &str) -> (Option<Service>, Vec<Problem>) {
        let file: ServiceFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => return (None, vec![parse_problem(text, &e)]),
        };
        let mut problems = Vec::new();
        let at = |span: std::ops::Range<usize>| line_at(text, span.start);
        let kind = match file.kind.get_ref().as_str() {
            "script" => Kind::Script,
            "compose" => Kind::Compose,
            "hearth" => Kind::Hearth,
            other => {
                problems.push(Problem {
                    line: at(file.kind.span()),
                    rule: "kind",
                    message: format!(
                        "kind {other:?} is not one of \"script\", \"compose\", \"hearth\""
                    ),
                });
                return (None, problems);
            }
        };
        let mut secrets = Vec::new();
        let mut secrets_line = 1;
        if let Some(s) = &file.secrets {
            secrets_line = at(s.span());
            match s.get_ref() {
                toml::Value::Array(items) => {
                    for item in items {
                        match item.as_str() {
                            Some(n) if valid_secret_name(n) => secrets.push(n.to_string()),
                            Some(n) => problems.push(Problem {
                                line: secrets_line,
                                rule: "secrets",
                                message: format!(
                                    "secrets lists names only (an environment variable's name, like API_TOKEN); {} is not one",
                                    if n.len() > 40 { "an entry".to_string() } else { format!("{n:?}") }
                                ),
                            }),
                            None => problems.push(Problem {
                                line: secrets_line,
                                rule: "secrets",
                                message: "secrets lists names only, as strings".to_string(),
                            }),
                        }
                    }
                }
                _ => problems.push(Problem {
                    line: secrets_line,
                    rule: "secrets",
                    message: "secrets is a list of names (secrets = [\"API_TOKEN\"]); values come from the CI's secret store, never from the repository".to_string(),
                }),
            }
        }
        let mut health = None;
        let mut health_line = 1;
        if let Some(h) = &file.health {
            health_line = at(h.span());
            let f = h.get_ref();
            let probe = match (&f.url, &f.command) {
                (Some(url), None) => Some(Probe::Url(url.clone())),
                (None, Some(cmd)) => Some(Probe::Command(cmd.clone())),
                (Some(_), Some(_)) => {
                    problems.push(Problem {
                        line: health_line,
                        rule: "health",
                        message: "[health] has both url and command: keep one".to_string(),
                    });
                    None
                }
                (None, None) => None,
            };
            let mut duration = |key: &str, v: &Option<String>, default: Duration| match v {
                None => default,
                Some(s) => parse_duration(s).unwrap_or_else(|e| {
                    problems.push(Problem {
                        line: health_line,
                        rule: "health",
                        message: format!("[health] {key}: {e}"),
                    });
                    default
                }),
            };
            let timeout = duration("timeout", &f.timeout, Duration::from_secs(5));
            let interval = duration("interval", &f.interval, Duration::from_secs(1));
            health = probe.map(|probe| HealthSpec {
                probe,
                timeout,
                retries: f.retries.unwrap_or(10).max(1),
                interval,
            });
        }
        let deploy_timeout = match file.deploy.as_ref().and_then(|d| d.timeout.as_ref()) {
            None => Duration::from_secs(600),
            Some(s) => parse_duration(s).unwrap_or_else(|e| {
                problems.push(Problem {
                    line: 1,
                    rule: "parse",
                    message: format!("[deploy] timeout: {e}"),
                });
                Duration::from_secs(600)
            }),
        };
        let deps = file.depends_on.unwrap_or_default();
        let service = Service {
            name: name.to_string(),
            environment: file.environment.get_ref().clone(),
            kind,
            description: file.description.unwrap_or_default(),
            depends_on: deps.iter().map(|d| d.get_ref().clone()).collect(),
            secrets,
            health,
            deploy_timeout,
            lines: Lines {
                environment: at(file.environment.span()),
                kind: at(file.kind.span()),
                depends_on: deps.iter().map(|d| at(d.span())).collect(),
                secrets: secrets_line,
                health: health_line,
            },
        };
        (Some(service), problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_parses_with_the_lines_of_its_keys() {
        let text = "environment = \"homelab\"\nkind = \"script\"\ndepends_on = [\"db\"]\nsecrets = [\"API_TOKEN\"]\n\n[health]\nurl = \"http://127.0.0.1:1/\"\nretries = 3\n";
        let (s, problems) = Service::parse("web", text);
        assert!(problems.is_empty(), "{problems:?}");
        let s = s.unwrap();
        assert_eq!(s.kind, Kind::Script);
        assert_eq!(s.depends_on, ["db"]);
        assert_eq!(s.lines.depends_on, [3]);
        assert_eq!(s.lines.health, 6);
        assert_eq!(s.health.unwrap().retries, 3);
    }

    #[test]
    fn secret_values_and_unknown_keys_are_problems() {
        let (_, p) = Service::parse(
            "web",
            "environment = \"homelab\"\nkind = \"script\"\nsecrets = { API_TOKEN = \"x\" }\n",
        );
        assert_eq!(p[0].line, 3, "{p:?}");
        assert_eq!(p[0].rule, "secrets");
        let (_, p) = Service::parse("web", "environment = \"a\"\nkind = \"script\"\nport = 1\n");
        assert_eq!((p[0].line, p[0].rule), (3, "parse"), "{p:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
    }
}
