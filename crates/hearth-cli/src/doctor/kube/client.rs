//! Reaching the API server: where it is and how to prove who we are, from a
//! kubeconfig (token, token file, client certificate, an `exec` credential plugin;
//! CA data or insecure-skip-tls-verify) or a pod's service account, and GETs over
//! reqwest.

use std::path::{Path, PathBuf};

use hearth_config::env;
use std::time::Duration;

use serde_json::Value;

use super::exec::{self, ClusterInfo, Credential};
use super::values::{parse_yaml, scalar};
use super::{GROUP, KubeOptions};
use crate::doctor::report::Check;

/// Each request's own deadline: a dead API server fails the check, not the shell.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Where a pod finds its service account (in-cluster use, as client-go).
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the API server is and how to prove who we are.
#[derive(Debug)]
pub(super) struct Target {
    server: String,
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    token: Option<String>,
    /// A client certificate and its key, PEM, one after the other.
    identity_pem: Option<Vec<u8>>,
    /// Where this came from, for messages.
    pub(super) source: String,
}

/// Why there is no target: the kubeconfig (or the pod's files), or its exec plugin.
#[derive(Debug)]
pub(super) enum TargetError {
    Config(String),
    Plugin(String),
}

impl From<String> for TargetError {
    fn from(e: String) -> Self {
        TargetError::Config(e)
    }
}

impl Target {
    pub(super) fn load(opts: &KubeOptions) -> Result<Target, TargetError> {
        let path = opts.kubeconfig.clone().or_else(|| {
            match std::env::var_os("KUBECONFIG") {
                // kubectl merges a list; the first file that exists is read here.
                Some(list) => std::env::split_paths(&list).find(|p| p.is_file()),
                None => std::env::var_os("HOME")
                    .map(|h| Path::new(&h).join(".kube/config"))
                    .filter(|p| p.is_file()),
            }
        });
        match path {
            Some(p) => Target::from_kubeconfig(&p, opts.context.as_deref()),
            None => Ok(Target::in_cluster()?),
        }
    }

    fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Target, TargetError> {
        let source = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {source}: {e}"))?;
        let cfg = parse_yaml(&text).map_err(|e| format!("{source}: {e}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let named = |list: &str, name: &str, field: &str| -> Option<Value> {
            cfg[list]
                .as_array()?
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e[field].clone())
        };
        let context_name = context
            .map(str::to_owned)
            .or_else(|| cfg["current-context"].as_str().map(str::to_owned))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("{source} has no current-context; pass --context"))?;
        let ctx = named("contexts", &context_name, "context")
            .ok_or_else(|| format!("{source} has no context {context_name}"))?;
        let cluster_name = ctx["cluster"].as_str().unwrap_or_default();
        let cluster = named("clusters", cluster_name, "cluster")
            .ok_or_else(|| format!("{source}: context {context_name} names cluster {cluster_name:?}, which is not there"))?;
        let user = ctx["user"]
            .as_str()
            .and_then(|u| named("users", u, "user"))
            .unwrap_or(Value::Null);
        let server = cluster["server"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{source}: cluster {cluster_name} has no server"))?
            .trim_end_matches('/')
            .to_owned();
        let ca_pem = data_or_file(&cluster, "certificate-authority", dir)?;
        let mut token = user["token"].as_str().map(str::to_owned);
        if token.is_none()
            && let Some(file) = user["tokenFile"].as_str()
        {
            token = Some(read_trimmed(&dir.join(file))?);
        }
        let cert = data_or_file(&user, "client-certificate", dir)?;
        let key = data_or_file(&user, "client-key", dir)?;
        let mut identity_pem = match (cert, key) {
            (Some(c), Some(k)) => Some(identity(c, k)),
            _ => None,
        };
        let insecure = cluster["insecure-skip-tls-verify"] == true;
        if token.is_none() && identity_pem.is_none() && user["exec"].is_object() {
            let info = ClusterInfo {
                server: &server,
                ca_pem: ca_pem.as_deref(),
                insecure,
                config: cluster["extensions"].as_array().and_then(|list| {
                    list.iter()
                        .find(|e| e["name"] == "client.authentication.k8s.io/exec")
                        .map(|e| &e["extension"])
                }),
            };
            match exec::run(&user["exec"], dir, &info) {
                Ok(Credential::Token(t)) => token = Some(t),
                Ok(Credential::Certificate { cert, key }) => {
                    identity_pem = Some(identity(cert, key));
                }
                Err(e) => {
                    return Err(TargetError::Plugin(format!(
                        "{source} (context {context_name}): {e}"
                    )));
                }
            }
        }
        if token.is_none() && identity_pem.is_none() {
            if user["auth-provider"].is_object() {
                return Err(TargetError::Config(format!(
                    "{source}: user of context {context_name} logs in through an auth-provider plugin (removed from kubectl since 1.26), which hearth doctor does not run; use its exec plugin (e.g. gke-gcloud-auth-plugin, kubelogin), a token or a client certificate"
                )));
            }
            if user["username"].is_string() {
                return Err(TargetError::Config(format!(
                    "{source}: basic auth (username/password) is not supported; use a token or client certificate"
                )));
            }
        }
        Ok(Target {
            server,
            ca_pem,
            insecure,
            token,
            identity_pem,
            source: format!("{source} (context {context_name})"),
        })
    }

    /// Inside a pod: the service account's token and CA, the API server from env.
    fn in_cluster() -> Result<Target, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod (no KUBERNETES_SERVICE_HOST)".to_owned()
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
        let dir = std::env::var_os(env::DOCTOR_SERVICE_ACCOUNT)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT));
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Target {
            server: format!("https://{host}:{port}"),
            ca_pem: Some(
                std::fs::read(dir.join("ca.crt"))
                    .map_err(|e| format!("{}: {e}", dir.join("ca.crt").display()))?,
            ),
            insecure: false,
            token: Some(read_trimmed(&dir.join("token")).map_err(|e| {
                format!("in a pod (KUBERNETES_SERVICE_HOST is set) without a service account token: {e}; the chart's pods mount none (automountServiceAccountToken: false): run it with a kubeconfig, or in a pod whose service account may read the cluster")
            })?),
            identity_pem: None,
            source: "the pod's service account".to_owned(),
        })
    }
}

/// A client certificate and its key, PEM, one after the other (reqwest's `Identity`).
fn identity(mut cert: Vec<u8>, key: Vec<u8>) -> Vec<u8> {
    cert.push(b'\n');
    cert.extend(key);
    cert
}

/// `FIELD-data` (base64) or `FIELD` (a file, relative to the kubeconfig's folder).
fn data_or_file(v: &Value, field: &str, dir: &Path) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine as _;
    if let Some(data) = v[format!("{field}-data")].as_str() {
        let clean: String = data.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map(Some)
            .map_err(|e| format!("{field}-data is not base64: {e}"));
    }
    match v[field].as_str() {
        Some(file) => std::fs::read(dir.join(file))
            .map(Some)
            .map_err(|e| format!("{field} {file}: {e}")),
        None => Ok(None),
    }
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Why a request did not give an answer.
pub(super) enum ApiError {
    Unreachable(String),
    Denied(u16, String),
    Other(String),
}

impl ApiError {
    /// One line for a message of another check's.
    pub(super) fn message(&self) -> String {
        match self {
            ApiError::Unreachable(e) | ApiError::Other(e) => e.clone(),
            ApiError::Denied(status, e) => format!("{status} {e}"),
        }
    }

    pub(super) fn check(&self, name: &'static str, what: &str) -> Check {
        match self {
            ApiError::Unreachable(e) => Check::fail(
                GROUP,
                name,
                format!("cannot {what}: {e}"),
                "check that the cluster runs and the kubeconfig's server is reachable from here (`kubectl cluster-info`)",
            ),
            ApiError::Denied(status, e) => Check::fail(
                GROUP,
                name,
                format!("cannot {what}: {status} {e}"),
                if *status == 401 {
                    "the credentials were refused: renew the kubeconfig's token or certificate"
                } else {
                    "the user may not read this: give it a role that can get and list nodes, pods, storageclasses, ingressclasses, runtimeclasses and customresourcedefinitions"
                },
            ),
            ApiError::Other(e) => Check::fail(GROUP, name, format!("cannot {what}: {e}"), ""),
        }
    }
}

pub(super) struct Api {
    pub(super) server: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    pub(super) fn new(target: &Target) -> Result<Api, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .use_rustls_tls();
        if let Some(pem) = &target.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("certificate-authority: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if target.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &target.identity_pem {
            builder = builder.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| format!("client certificate and key: {e}"))?,
            );
        }
        Ok(Api {
            server: target.server.clone(),
            http: builder.build().map_err(|e| chain(&e))?,
            token: target.token.clone(),
        })
    }

    /// The object at `path`, or `None` on 404.
    pub(super) async fn get(&self, path: &str) -> Result<Option<Value>, ApiError> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.server))
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(chain(&e)))?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| Value::String(format!("unreadable answer: {e}")));
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| scalar(&body));
        match status {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            401 | 403 => Err(ApiError::Denied(status, message)),
            _ => Err(ApiError::Other(format!("{status} {message}"))),
        }
    }

    /// The `items` of a small list (nodes, classes): one answer.
    pub(super) async fn list(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        self.list_pages(path, false).await
    }

    /// The `items` of a list that may be large (every pod of a cluster), page by
    /// page: [`LIST_PAGE`] at a time, following `metadata.continue`.
    pub(super) async fn list_paged(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        self.list_pages(path, true).await
    }

    async fn list_pages(&self, path: &str, paged: bool) -> Result<Vec<Value>, ApiError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = match (&next, paged) {
                (_, false) => path.to_owned(),
                (None, true) => format!("{path}{sep}limit={LIST_PAGE}"),
                (Some(token), true) => format!(
                    "{path}{sep}limit={LIST_PAGE}&continue={}",
                    percent_encode(token)
                ),
            };
            let mut list = match self.get(&page).await? {
                Some(Value::Object(list)) => list,
                Some(_) => return Err(ApiError::Other(format!("{path}: not a list"))),
                None => {
                    return Err(ApiError::Other(format!(
                        "{path}: 404 (an API this cluster does not serve)"
                    )));
                }
            };
            match list.remove("items") {
                Some(Value::Array(page)) => items.extend(page),
                Some(Value::Null) | None => {}
                Some(_) => return Err(ApiError::Other(format!("{path}: items is not a list"))),
            }
            next = list
                .get("metadata")
                .and_then(|m| m.get("continue"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if !paged || next.is_none() || items.len() >= LIST_MAX {
                return Ok(items);
            }
        }
    }
}

/// Items asked for per page of a list.
const LIST_PAGE: usize = 500;
/// The most items read of one list (a bound on a server that never ends one).
const LIST_MAX: usize = 100_000;

/// A `continue` token as a query value (it is base64, perhaps with `=`, `+`, `/`).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An error with its causes: reqwest's own message alone ("builder error", "error
/// sending request") does not say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}
