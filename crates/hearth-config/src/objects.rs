//! Where job files (uploads, artifacts) are kept: `[storage] objects` and its
//! `[storage.s3]` table, with the checks and the credentials resolved at start.
//!
//! Secrets come only from the environment or from files: the config names a
//! variable or a path, never the secret itself, and [`S3Credentials`] never
//! prints them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::load::Seg;

/// The standard names S3 tools read the access key from.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// A temporary credential's token, read when set (not required).
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// Where job files live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectsBackend {
    /// `data_dir/files`, named by SHA-256 (`ab/abcdef…`).
    #[default]
    Local,
    /// An S3-compatible bucket (AWS S3, MinIO, Ceph, …) shared by every replica.
    S3,
}

impl ObjectsBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectsBackend::Local => "local",
            ObjectsBackend::S3 => "s3",
        }
    }
}

/// `[storage.s3]`: the bucket job files go to when `objects = "s3"`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The bucket; it must exist (Hearth does not create buckets).
    pub bucket: String,
    /// A folder inside the bucket (`hearth/prod`), so one bucket can hold several
    /// Hearths' files; none by default.
    pub prefix: String,
    /// The server's URL for S3-compatible stores (`http://minio:9000`); AWS's own
    /// endpoint for `region` when unset.
    pub endpoint: Option<String>,
    /// The region requests are signed for; MinIO and most others accept the default.
    pub region: String,
    /// Address the bucket in the path (`http://host/bucket/key`) rather than the
    /// host name (`http://bucket.host/key`): what MinIO and most self-hosted
    /// servers need.
    pub path_style: bool,
    /// The variable holding the access key id.
    pub access_key_env: String,
    /// The variable holding the secret access key.
    pub secret_key_env: String,
    /// A file holding the access key id (wins over `access_key_env`).
    pub access_key_file: Option<PathBuf>,
    /// A file holding the secret access key (wins over `secret_key_env`), e.g. a
    /// mounted Kubernetes Secret.
    pub secret_key_file: Option<PathBuf>,
    /// Allow an `http://` endpoint that is not on loopback (keys and files then
    /// cross the network in clear).
    pub allow_http: bool,
    /// The credentials after resolving the settings above. Never serialized.
    #[serde(skip)]
    pub credentials: Option<S3Credentials>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            access_key_env: AWS_ACCESS_KEY_ID.into(),
            secret_key_env: AWS_SECRET_ACCESS_KEY.into(),
            access_key_file: None,
            secret_key_file: None,
            allow_http: false,
            credentials: None,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(crate::redact_url))
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_env", &self.access_key_env)
            .field("secret_key_env", &self.secret_key_env)
            .field("access_key_file", &self.access_key_file)
            .field("secret_key_file", &self.secret_key_file)
            .field("allow_http", &self.allow_http)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl S3Config {
    /// `s3://bucket/prefix` at the endpoint: how logs and `hearth doctor` name it.
    pub fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(self.prefix.trim_matches('/'));
        }
        if let Some(e) = &self.endpoint {
            s.push_str(" at ");
            s.push_str(&crate::redact_url(e));
        }
        s
    }
}

/// An access key pair. `Debug` shows the key id's first characters only.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("S3Credentials")
            .field("access_key_id", &format!("{shown}…"))
            .field("secret_access_key", &"***")
            .finish()
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Checks `[storage] objects` and `[storage.s3]`, and resolves the credentials
/// into `s3.credentials`.
pub(crate) fn validate(
    objects: ObjectsBackend,
    s3: &mut S3Config,
    env: &dyn Env,
    push: &mut impl FnMut(Vec<Seg>, String),
) {
    if objects != ObjectsBackend::S3 {
        return;
    }
    let at = |k: &str| vec![key("storage"), key("s3"), key(k)];
    if s3.bucket.is_empty() {
        push(
            at("bucket"),
            "`objects = \"s3\"` needs the bucket's name: [storage.s3] bucket = \"hearth-files\" \
             (create it first; Hearth does not create buckets)"
                .into(),
        );
    } else if !valid_bucket(&s3.bucket) {
        push(
            at("bucket"),
            format!(
                "`{}` is not a bucket name: 3 to 63 lowercase letters, digits, `.` and `-`",
                s3.bucket
            ),
        );
    }
    if s3.prefix.split('/').any(|p| p == "." || p == "..")
        || s3.prefix.chars().any(|c| c.is_control() || c == '\\')
    {
        push(
            at("prefix"),
            "must be a plain folder path like \"hearth/prod\" (no `.`, `..` or `\\`)".into(),
        );
    }
    if s3.region.trim().is_empty() {
        push(
            at("region"),
            "must not be empty (e.g. \"us-east-1\")".into(),
        );
    }
    if let Some(p) = s3
        .endpoint
        .as_deref()
        .and_then(|e| endpoint_problem(e, s3.allow_http))
    {
        push(at("endpoint"), p);
    }
    let access = secret(
        "access key id",
        s3.access_key_file.as_ref(),
        &s3.access_key_env,
        env,
    );
    let secret_key = secret(
        "secret access key",
        s3.secret_key_file.as_ref(),
        &s3.secret_key_env,
        env,
    );
    match (access, secret_key) {
        (Ok(a), Ok(s)) => {
            s3.credentials = Some(S3Credentials {
                access_key_id: a,
                secret_access_key: s,
                session_token: env.get(AWS_SESSION_TOKEN).filter(|t| !t.is_empty()),
            });
        }
        (a, s) => {
            if let Err((k, m)) = a {
                push(at(k_name(k, "access")), m);
            }
            if let Err((k, m)) = s {
                push(at(k_name(k, "secret")), m);
            }
        }
    }
}

/// `access_key_env` or `access_key_file`'s name for where a secret came from.
fn k_name(file: bool, which: &str) -> &'static str {
    match (file, which) {
        (true, "access") => "access_key_file",
        (false, "access") => "access_key_env",
        (true, _) => "secret_key_file",
        (false, _) => "secret_key_env",
    }
}

/// A secret from a file (when named) or a variable. The error says which (true:
/// the file) and what to do.
fn secret(
    what: &str,
    file: Option<&PathBuf>,
    var: &str,
    env: &dyn Env,
) -> Result<String, (bool, String)> {
    if let Some(file) = file {
        return match std::fs::read_to_string(file) {
            Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Ok(_) => Err((true, format!("`{}` is empty", file.display()))),
            Err(e) => Err((
                true,
                format!("cannot read the {what} from `{}`: {e}", file.display()),
            )),
        };
    }
    match env.get(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err((
            false,
            format!(
                "`objects = \"s3\"` needs the {what}: set {var} in the environment, or name \
                 another variable here or a file in [storage.s3] {}",
                if what.starts_with("access") {
                    "access_key_file"
                } else {
                    "secret_key_file"
                }
            ),
        )),
    }
}

/// What is wrong with an endpoint URL, if anything.
fn endpoint_problem(endpoint: &str, allow_http: bool) -> Option<String> {
    let shown = crate::redact_url(endpoint);
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Some(format!(
            "`{shown}` is not a URL: write it as http(s)://HOST:PORT, e.g. \"http://minio:9000\""
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Some(format!("`{shown}` names no host"));
    }
    if rest.contains('@') {
        return Some(format!(
            "`{shown}` carries credentials in the URL: give them through access_key_env/secret_key_env or the files instead"
        ));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => None,
        "http" if allow_http || loopback(host) => None,
        "http" => Some(format!(
            "`{shown}` is plain HTTP to another host: keys and files would cross the network in \
             clear; use https://, or set allow_http = true if the network is private"
        )),
        _ => Some(format!("`{shown}` is not an http:// or https:// URL")),
    }
}

fn loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(endpoint_problem("http://127.0.0.1:9000", false).is_none());
        assert!(endpoint_problem("http://[::1]:9000", false).is_none());
        assert!(endpoint_problem("http://localhost:9000", false).is_none());
        assert!(endpoint_problem("https://s3.example.com", false).is_none());
        assert!(endpoint_problem("http://minio:9000", false).is_some());
        assert!(endpoint_problem("http://minio:9000", true).is_none());
        assert!(endpoint_problem("minio:9000", true).is_some());
        assert!(endpoint_problem("http://u:p@minio:9000", true).is_some());
        assert!(endpoint_problem("ftp://minio", true).is_some());
    }

    #[test]
    fn buckets() {
        assert!(valid_bucket("hearth-files"));
        assert!(valid_bucket("a.b-1"));
        assert!(!valid_bucket("Hearth"));
        assert!(!valid_bucket("ab"));
        assert!(!valid_bucket("-ab"));
    }

    #[test]
    fn credentials_never_print() {
        let c = S3Credentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("tok"));
        assert!(shown.contains("AKIA…"));
    }
}
