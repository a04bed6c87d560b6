//! A kubeconfig user's `exec` credential plugin (EKS' `aws eks get-token`, GKE's
//! `gke-gcloud-auth-plugin`, AKS' `kubelogin`, OIDC's `kubectl oidc-login`): run as
//! client-go runs it, its `ExecCredential` read for a token or a client
//! certificate.
//!
//! The doctor never prompts: `interactiveMode: Always` is refused with what to do,
//! and `IfAvailable`/`Never` plugins run with no terminal on stdin and
//! `spec.interactive: false`, so one that would need a login says so on stderr,
//! which the failure shows. The credential is used once; its expiry is not read.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a plugin may take: a cloud CLI fetching a token takes seconds; one
/// waiting on a browser login never ends.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a failed plugin's stderr shown.
const STDERR_MAX: usize = 1500;

const API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// What a plugin gave.
#[derive(Debug)]
pub(super) enum Credential {
    Token(String),
    /// A client certificate and its key, PEM.
    Certificate {
        cert: Vec<u8>,
        key: Vec<u8>,
    },
}

/// The cluster as the plugin may ask for it (`provideClusterInfo: true`).
pub(super) struct ClusterInfo<'a> {
    pub(super) server: &'a str,
    pub(super) ca_pem: Option<&'a [u8]>,
    pub(super) insecure: bool,
    /// The cluster's `extensions` entry named `client.authentication.k8s.io/exec`.
    pub(super) config: Option<&'a Value>,
}

/// Runs the plugin that `exec` (a kubeconfig user's `exec` object) describes.
/// `dir` is the kubeconfig's folder: a command with a slash is relative to it.
pub(super) fn run(exec: &Value, dir: &Path, cluster: &ClusterInfo) -> Result<Credential, String> {
    let api_version = exec["apiVersion"].as_str().unwrap_or_default();
    if !API_VERSIONS.contains(&api_version) {
        return Err(format!(
            "the exec plugin's apiVersion {api_version:?} is not one Kubernetes still supports ({}): update the plugin and its kubeconfig entry",
            API_VERSIONS.join(", ")
        ));
    }
    let command = exec["command"]
        .as_str()
        .filter(|c| !c.is_empty())
        .ok_or("the exec plugin has no command")?;
    if exec["interactiveMode"] == "Always" {
        return Err(format!(
            "the exec plugin {command} asks for an interactive login (interactiveMode: Always), and hearth doctor does not prompt: log in with `kubectl get nodes` first if the plugin caches its credential, or set interactiveMode: IfAvailable"
        ));
    }
    let program = resolve(command, dir);
    let mut cmd = Command::new(&program);
    for arg in exec["args"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        cmd.arg(arg.as_str().unwrap_or_default());
    }
    for var in exec["env"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
            cmd.env(name, value);
        }
    }
    cmd.env(
        "KUBERNETES_EXEC_INFO",
        exec_info(exec, api_version, cluster).to_string(),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let (status, stdout, stderr) = match run_with_timeout(cmd) {
        Ok(done) => done,
        Err(RunError::Spawn(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = exec["installHint"]
                .as_str()
                .map(|h| format!(": {}", h.trim()))
                .unwrap_or_default();
            return Err(format!(
                "the exec plugin's command {command} is not installed (or not on PATH){hint}"
            ));
        }
        Err(RunError::Spawn(e)) => {
            return Err(format!("cannot run the exec plugin {command}: {e}"));
        }
        Err(RunError::Timeout) => {
            return Err(format!(
                "the exec plugin {command} did not answer within {} s (waiting for a login? hearth doctor does not prompt)",
                TIMEOUT.as_secs()
            ));
        }
    };
    if !status.success() {
        let why = stderr_tail(&stderr);
        return Err(format!(
            "the exec plugin {command} failed ({status}){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    parse(&stdout, api_version).map_err(|e| format!("the exec plugin {command}: {e}"))
}

/// A command with a slash is a path, relative to the kubeconfig (as client-go
/// resolves it); a bare name is looked up on PATH.
fn resolve(command: &str, dir: &Path) -> PathBuf {
    let path = Path::new(command);
    if command.contains('/') && path.is_relative() {
        dir.join(path)
    } else {
        path.to_path_buf()
    }
}

/// `KUBERNETES_EXEC_INFO`: what client-go gives the plugin.
fn exec_info(exec: &Value, api_version: &str, cluster: &ClusterInfo) -> Value {
    let mut spec = json!({ "interactive": false });
    if exec["provideClusterInfo"] == true {
        use base64::Engine as _;
        let mut c = json!({ "server": cluster.server });
        if let Some(ca) = cluster.ca_pem {
            c["certificate-authority-data"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(ca));
        }
        if cluster.insecure {
            c["insecure-skip-tls-verify"] = Value::Bool(true);
        }
        if let Some(config) = cluster.config {
            c["config"] = config.clone();
        }
        spec["cluster"] = c;
    }
    json!({ "apiVersion": api_version, "kind": "ExecCredential", "spec": spec })
}

/// The plugin's stdout: an `ExecCredential` of the apiVersion it was asked for,
/// with a token or a client certificate and key.
fn parse(stdout: &[u8], api_version: &str) -> Result<Credential, String> {
    let v: Value = serde_json::from_slice(stdout)
        .map_err(|e| format!("its output is not an ExecCredential (JSON: {e})"))?;
    if v["kind"] != "ExecCredential" {
        return Err(format!(
            "its output is a {}, not an ExecCredential",
            v["kind"].as_str().unwrap_or("JSON value")
        ));
    }
    if v["apiVersion"] != api_version {
        return Err(format!(
            "it answered apiVersion {}, asked for {api_version}",
            v["apiVersion"]
        ));
    }
    let status = &v["status"];
    if let Some(token) = status["token"].as_str().filter(|t| !t.is_empty()) {
        return Ok(Credential::Token(token.to_owned()));
    }
    match (
        status["clientCertificateData"].as_str(),
        status["clientKeyData"].as_str(),
    ) {
        (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
            Ok(Credential::Certificate {
                cert: cert.as_bytes().to_vec(),
                key: key.as_bytes().to_vec(),
            })
        }
        (Some(_), None) | (None, Some(_)) => Err(
            "its ExecCredential has a client certificate or key without the other".to_owned(),
        ),
        _ => Err("its ExecCredential has neither status.token nor status.clientCertificateData and clientKeyData".to_owned()),
    }
}

enum RunError {
    Spawn(std::io::Error),
    Timeout,
}

/// Runs `cmd` to its end or the timeout (then kills it), reading both pipes meanwhile.
fn run_with_timeout(
    mut cmd: Command,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), RunError> {
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout);
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

/// The end of a plugin's stderr, on one line: where the reason usually is.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join("; ");
    if joined.len() > STDERR_MAX {
        let mut start = joined.len() - STDERR_MAX;
        while !joined.is_char_boundary(start) {
            start += 1;
        }
        format!("…{}", &joined[start..])
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_credential_gives_a_token_or_a_certificate() {
        let v1 = "client.authentication.k8s.io/v1";
        let token = parse(
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t0k","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#,
            v1,
        );
        assert!(matches!(token, Ok(Credential::Token(t)) if t == "t0k"));
        let cert = parse(
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"C","clientKeyData":"K"}}"#,
            v1,
        );
        assert!(matches!(cert, Ok(Credential::Certificate { .. })));
        let wrong = parse(
            br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}}"#,
            v1,
        );
        assert!(matches!(wrong, Err(e) if e.contains("asked for client.authentication.k8s.io/v1")));
        let empty = parse(
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}"#,
            v1,
        );
        assert!(matches!(empty, Err(e) if e.contains("neither status.token")));
    }

    #[test]
    fn exec_info_has_the_cluster_only_when_asked() {
        let cluster = ClusterInfo {
            server: "https://k:6443",
            ca_pem: Some(b"PEM"),
            insecure: false,
            config: None,
        };
        let v1 = "client.authentication.k8s.io/v1";
        let plain = exec_info(&json!({}), v1, &cluster);
        assert_eq!(
            plain,
            json!({"apiVersion": v1, "kind": "ExecCredential", "spec": {"interactive": false}})
        );
        let asked = exec_info(&json!({"provideClusterInfo": true}), v1, &cluster);
        assert_eq!(asked["spec"]["cluster"]["server"], "https://k:6443");
        assert_eq!(
            asked["spec"]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
    }

    #[test]
    fn a_long_stderr_keeps_its_end() {
        let long = "x".repeat(5000) + "\nthe reason\n";
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.ends_with("; the reason"));
        assert!(tail.len() <= STDERR_MAX + 4);
    }
}
