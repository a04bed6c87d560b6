//! `deploy.toml`: the host, how Hearth runs there, the release, and the models.
//!
//! Parsing and validation happen once, in [`Manifest::from_str`]; every renderer
//! takes a valid [`Manifest`] and cannot fail. An error names the file, the line
//! (when the key is in the file), the key and the fix.
//!
//! The `[[models]]` tables pass through verbatim into the host's
//! `/etc/hearth/hearth.toml`: they are Hearth's own config, validated by
//! `hearth-config` where the CLI loads a manifest, not here.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

/// Where the release is installed on the host.
pub const INSTALL_DIR: &str = "/opt/hearth";
/// The host's Hearth config.
pub const CONFIG_PATH: &str = "/etc/hearth/hearth.toml";
/// The generated admin key (mode 0600, owned by the `hearth` user).
pub const CREDENTIALS_PATH: &str = "/etc/hearth/credentials";
/// The service's environment file.
pub const ENV_PATH: &str = "/etc/hearth/hearth.env";
/// Hearth's data.
pub const DATA_DIR: &str = "/var/lib/hearth";
/// Hearth's logs, and the installer's (`install.log`).
pub const LOG_DIR: &str = "/var/log/hearth";
/// The installer's log, mirrored to the serial console.
pub const INSTALL_LOG: &str = "/var/log/hearth/install.log";
/// The systemd unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/hearth.service";
/// The binary inside a release.
pub const BINARY_PATH: &str = "/opt/hearth/current/bin/hearth";
/// `tls = "files"`: the certificate chain and key Hearth serves (certbot's
/// `fullchain.pem` and `privkey.pem`, copied or linked here), read again on SIGHUP.
pub const TLS_CERT: &str = "/etc/hearth/tls/fullchain.pem";
pub const TLS_KEY: &str = "/etc/hearth/tls/privkey.pem";

/// A parsed, valid `deploy.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub host: Host,
    pub hearth: HearthSettings,
    pub release: Release,
    /// `[[models]]`, verbatim.
    pub models: Vec<toml::Table>,
}

/// `[host]`: which machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub target: Target,
}

/// `host.target`.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// This machine.
    Local,
    /// A machine reached over SSH.
    Ssh {
        address: String,
        user: String,
        port: u16,
    },
}

/// `hearth.tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    SelfSigned,
    Acme,
    Files,
    Off,
}

impl Tls {
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::SelfSigned => "self-signed",
            Tls::Acme => "acme",
            Tls::Files => "files",
            Tls::Off => "off",
        }
    }
}

/// `[hearth]`: how Hearth runs on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HearthSettings {
    /// `ip:port`.
    pub listen: String,
    pub domain: Option<String>,
    pub tls: Tls,
    pub admin_email: Option<String>,
    pub allow_plain_http: bool,
    pub firewall: bool,
}

impl HearthSettings {
    /// The port of `listen` (validated).
    pub fn port(&self) -> u16 {
        split_listen(&self.listen).map_or(0, |(_, p)| p)
    }

    /// The address part of `listen`, without brackets.
    pub fn ip(&self) -> &str {
        split_listen(&self.listen).map_or("", |(ip, _)| ip)
    }

    /// Whether `listen` is reachable only from the host itself.
    pub fn is_loopback(&self) -> bool {
        is_loopback(self.ip())
    }
}

/// `[release]`: which build of Hearth.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub version: String,
    /// The tarball: `…/hearth-VERSION-x86_64-unknown-linux-gnu.tar.gz`.
    pub url: String,
    /// Lowercase hex.
    pub sha256: String,
}

impl Release {
    /// The tarball's file name, as the release publishes it.
    pub fn tarball_name(&self) -> String {
        format!("hearth-{}-x86_64-unknown-linux-gnu.tar.gz", self.version)
    }
}

/// A manifest that cannot be used: where, which key, and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ManifestError {
    /// The file, as given to [`Manifest::from_str`].
    pub path: String,
    /// 1-based line, when the problem is at a place in the file.
    pub line: Option<usize>,
    /// The dotted key (`release.sha256`); empty for a syntax error.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    host: RawHost,
    #[serde(default)]
    hearth: RawHearth,
    release: RawRelease,
    #[serde(default)]
    models: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    target: Spanned<String>,
    address: Option<Spanned<String>>,
    user: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHearth {
    listen: Option<Spanned<String>>,
    domain: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    admin_email: Option<Spanned<String>>,
    #[serde(default)]
    allow_plain_http: bool,
    firewall: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    version: Spanned<String>,
    url: Spanned<String>,
    sha256: Spanned<String>,
}

impl Manifest {
    /// Parses and validates `text`, read from `path` (used only in messages).
    pub fn from_str(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        let at = |span: Option<Range<usize>>, key: &str, message: String| ManifestError {
            path: path.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            key: key.to_owned(),
            message,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            at(
                e.span(),
                "",
                e.message().trim_end().to_owned() + "; see docs/deploy.md for the keys",
            )
        })?;

        let name = raw.host.name.get_ref().trim();
        if name.is_empty() {
            return Err(at(
                Some(raw.host.name.span()),
                "host.name",
                "is empty; name the host (it is used in messages and history)".into(),
            ));
        }
        // The name is written into the host's files (comments of hearth.toml, the
        // installer, units): a line break there would end the comment (found by
        // fuzzing: the rendered hearth.toml was not TOML).
        if name.chars().any(char::is_control) {
            return Err(at(
                Some(raw.host.name.span()),
                "host.name",
                "has a control character (a line break, a tab...); name the host in one line of text"
                    .into(),
            ));
        }
        let target = match raw.host.target.get_ref().as_str() {
            "local" => Target::Local,
            "ssh" => {
                let Some(address) = raw.host.address.filter(|a| !a.get_ref().trim().is_empty())
                else {
                    return Err(at(
                        Some(raw.host.target.span()),
                        "host.address",
                        "is required when `target = \"ssh\"`; give the host's name or IP".into(),
                    ));
                };
                let span = address.span();
                let address = address.into_inner();
                let user = raw.host.user.unwrap_or_else(|| "root".to_owned());
                // Both go to `ssh` as `user@address`: a leading `-` would be read as
                // an option (`-oProxyCommand=...`), other characters have no place.
                for (key, value) in [("host.address", &address), ("host.user", &user)] {
                    let allowed =
                        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
                    if value.starts_with('-') || !value.chars().all(allowed) {
                        return Err(at(
                            Some(span.clone()),
                            key,
                            format!(
                                "`{value}` is not a host name, IP address or user name (letters, digits, `.`, `-`, `_`, `:`; not starting with `-`)"
                            ),
                        ));
                    }
                }
                Target::Ssh {
                    address,
                    user,
                    port: raw.host.port.unwrap_or(22),
                }
            }
            other => {
                return Err(at(
                    Some(raw.host.target.span()),
                    "host.target",
                    format!("`{other}` is not a target; use \"local\" or \"ssh\""),
                ));
            }
        };

        let h = raw.hearth;
        let tls = match h.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
            None | Some(("self-signed", _)) => Tls::SelfSigned,
            Some(("acme", _)) => Tls::Acme,
            Some(("files", _)) => Tls::Files,
            Some(("off", _)) => Tls::Off,
            Some((other, span)) => {
                return Err(at(
                    Some(span),
                    "hearth.tls",
                    format!(
                        "`{other}` is not a TLS mode; use \"self-signed\", \"acme\", \"files\" or \"off\""
                    ),
                ));
            }
        };
        let (listen, listen_span) = match h.listen {
            Some(l) => {
                let span = l.span();
                (l.into_inner(), Some(span))
            }
            None if tls == Tls::Off => ("127.0.0.1:8080".to_owned(), None),
            None => ("0.0.0.0:443".to_owned(), None),
        };
        let Some((ip, _)) = split_listen(&listen) else {
            return Err(at(
                listen_span,
                "hearth.listen",
                format!("`{listen}` is not `ip:port`; e.g. \"0.0.0.0:443\" or \"127.0.0.1:8080\""),
            ));
        };
        if tls == Tls::Off && !is_loopback(ip) && !h.allow_plain_http {
            return Err(at(
                listen_span.or(h.tls.as_ref().map(|t| t.span())),
                "hearth.listen",
                format!(
                    "`{listen}` is reachable from other machines but `tls = \"off\"` sends keys and \
                     prompts in clear text; choose a TLS mode, listen on 127.0.0.1, or set \
                     `allow_plain_http = true` if a proxy in front terminates TLS"
                ),
            ));
        }
        let domain_span = h.domain.as_ref().map(Spanned::span);
        let domain = h
            .domain
            .map(Spanned::into_inner)
            .filter(|d| !d.trim().is_empty());
        let admin_email = h
            .admin_email
            .map(Spanned::into_inner)
            .filter(|e| !e.trim().is_empty());
        if tls == Tls::Acme {
            let span = h.tls.as_ref().map(|t| t.span());
            if domain.is_none() {
                return Err(at(
                    span,
                    "hearth.domain",
                    "is required when `tls = \"acme\"`: Let's Encrypt issues a certificate for a \
                     domain whose DNS points at the host; set `domain = \"llm.example.com\"`"
                        .into(),
                ));
            }
            if admin_email.is_none() {
                return Err(at(
                    span,
                    "hearth.admin_email",
                    "is required when `tls = \"acme\"`: Let's Encrypt sends expiry notices there; \
                     set `admin_email = \"you@example.com\"`"
                        .into(),
                ));
            }
            let domain = domain.as_deref().unwrap_or_default();
            if domain.parse::<std::net::IpAddr>().is_ok() || !domain.contains('.') {
                return Err(at(
                    domain_span,
                    "hearth.domain",
                    format!(
                        "`{domain}` is not a public DNS name: a CA certifies names such as \
                         \"llm.example.com\" whose DNS points at the host (for an IP address \
                         use `tls = \"self-signed\"`)"
                    ),
                ));
            }
            // The CA checks the domain with TLS-ALPN-01 on port 443, which is
            // Hearth's own listener.
            if split_listen(&listen).is_some_and(|(_, port)| port != 443) {
                return Err(at(
                    listen_span,
                    "hearth.listen",
                    format!(
                        "`tls = \"acme\"` needs Hearth on port 443 (the CA connects there to \
                         check the domain), but `listen = \"{listen}\"`; use \"0.0.0.0:443\" \
                         or leave `listen` out"
                    ),
                ));
            }
        }
        let r = raw.release;
        let version = r.version.get_ref();
        if version.is_empty()
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        {
            return Err(at(
                Some(r.version.span()),
                "release.version",
                format!(
                    "`{version}` is not a version; use letters, digits, `.`, `-`, `+` (e.g. \"0.7.0\")"
                ),
            ));
        }
        let sha = r.sha256.get_ref();
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(at(
                Some(r.sha256.span()),
                "release.sha256",
                format!(
                    "must be 64 hex digits (got {} characters{}); copy it from the release's \
                     `.sha256` file",
                    sha.chars().count(),
                    if sha.chars().all(|c| c.is_ascii_hexdigit()) {
                        ""
                    } else {
                        ", not all hex"
                    }
                ),
            ));
        }
        let url = r.url.get_ref();
        let release = Release {
            version: version.clone(),
            url: url.clone(),
            sha256: sha.to_ascii_lowercase(),
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(at(
                Some(r.url.span()),
                "release.url",
                format!("`{url}` is not an http(s) URL"),
            ));
        }
        if !url.ends_with(&format!("/{}", release.tarball_name())) {
            return Err(at(
                Some(r.url.span()),
                "release.url",
                format!(
                    "must end with `/{}` (the release's tarball for version {})",
                    release.tarball_name(),
                    release.version
                ),
            ));
        }
        for bad in ['\'', '\n', '"', '\\'] {
            let found = [
                ("host.name", name),
                ("release.url", url.as_str()),
                ("hearth.domain", domain.as_deref().unwrap_or("")),
                ("hearth.admin_email", admin_email.as_deref().unwrap_or("")),
            ]
            .into_iter()
            .find(|(_, v)| v.contains(bad));
            if let Some((key, _)) = found {
                return Err(at(
                    None,
                    key,
                    format!("must not contain {bad:?}: it goes into shell and YAML as is"),
                ));
            }
        }

        let manifest = Manifest {
            host: Host {
                name: name.to_owned(),
                target,
            },
            hearth: HearthSettings {
                listen,
                domain,
                tls,
                admin_email,
                allow_plain_http: h.allow_plain_http,
                firewall: h.firewall.unwrap_or(true),
            },
            release,
            models: raw.models,
        };
        // The installer carries hearth.toml in a here-document ending at a line
        // `HEARTH_…_EOF`; a model's multi-line string must not end it early.
        if manifest
            .hearth_toml()
            .lines()
            .any(|l| l.starts_with("HEARTH_") && l.ends_with("_EOF"))
        {
            return Err(at(
                None,
                "models",
                "a string holds a line `HEARTH_…_EOF`, which the installer reserves; reword it"
                    .into(),
            ));
        }
        Ok(manifest)
    }

    /// The host's `/etc/hearth/hearth.toml`.
    pub fn hearth_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = format!(
            "# /etc/hearth/hearth.toml for host {name}, rendered from deploy.toml by hearth-deploy.\n\
             # Edit deploy.toml and deploy again rather than this file: a deploy rewrites it.\n\
             \n\
             [server]\n\
             listen = {listen}\n\
             # Shown at login (update-motd.d) and by `hearth status`.\n\
             status_file = \"/run/hearth/status\"\n\
             {tls}\
             \n\
             [storage]\n\
             data_dir = {data}\n\
             \n\
             [log]\n\
             dir = {log}\n\
             \n\
             # The admin key, generated on the host by the installer (mode 0600).\n\
             [[keys]]\n\
             name = \"admin\"\n\
             key_file = {cred}\n\
             admin = true\n",
            name = self.host.name,
            tls = self.server_tls(),
            listen = q(&self.hearth.listen),
            data = q(DATA_DIR),
            log = q(LOG_DIR),
            cred = q(CREDENTIALS_PATH),
        );
        if !self.models.is_empty() {
            #[derive(serde::Serialize)]
            struct Models<'a> {
                models: &'a [toml::Table],
            }
            // Tables always serialize; an error here would be a bug in toml.
            let models = toml::to_string(&Models {
                models: &self.models,
            })
            .unwrap_or_default();
            out.push('\n');
            out.push_str(&models);
        }
        out
    }

    /// The `[server.tls]` lines of the host's `hearth.toml` (or the plain-HTTP
    /// permission), after `listen`.
    fn server_tls(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        match self.hearth.tls {
            Tls::Off if self.hearth.allow_plain_http => "allow_plain_http = true\n".into(),
            Tls::Off => String::new(),
            Tls::SelfSigned => {
                let names = self
                    .hearth
                    .domain
                    .as_deref()
                    .map(|d| format!("names = [{}]\n", q(d)))
                    .unwrap_or_default();
                format!("\n[server.tls]\nmode = \"self-signed\"\n{names}")
            }
            // Both are required when parsed.
            Tls::Acme => format!(
                "\n[server.tls]\n\
                 # A certificate from Let's Encrypt, renewed by Hearth itself (kept in data_dir).\n\
                 mode = \"acme\"\n\
                 domains = [{}]\n\
                 email = {}\n",
                q(self.hearth.domain.as_deref().unwrap_or_default()),
                q(self.hearth.admin_email.as_deref().unwrap_or_default())
            ),
            Tls::Files => format!(
                "\n[server.tls]\nmode = \"files\"\ncert = {}\nkey = {}\n",
                q(TLS_CERT),
                q(TLS_KEY)
            ),
        }
    }

    /// Whether any model asks for a GPU: a `launch` table with the vLLM preset or
    /// `gpus`, or an embedded model with `gpu_layers`.
    pub fn wants_gpu(&self) -> bool {
        self.models.iter().any(|m| {
            m.get("gpu_layers").is_some()
                || m.get("launch")
                    .and_then(toml::Value::as_table)
                    .is_some_and(|l| {
                        l.get("preset").and_then(toml::Value::as_str) == Some("vllm")
                            || l.get("gpus").is_some()
                    })
        })
    }

    /// The GPU indexes named by the models' `launch.gpus`, sorted; empty when
    /// none is named (then every GPU is reserved).
    pub fn gpu_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .models
            .iter()
            .filter_map(|m| m.get("launch")?.get("gpus")?.as_array())
            .flatten()
            .filter_map(toml::Value::as_integer)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// `ip:port` or `[v6]:port`.
fn split_listen(listen: &str) -> Option<(&str, u16)> {
    let (ip, port) = listen.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    ip.parse::<std::net::IpAddr>().ok()?;
    Some((ip, port))
}

fn is_loopback(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(split_listen("0.0.0.0:443"), Some(("0.0.0.0", 443)));
        assert_eq!(split_listen("[::1]:8080"), Some(("::1", 8080)));
        assert_eq!(split_listen("localhost:80"), None);
        assert_eq!(split_listen("1.2.3.4:0"), None);
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && !is_loopback("0.0.0.0"));
    }

    #[test]
    fn a_host_name_with_a_line_break_is_refused() {
        let text = |name: &str| {
            format!(
                "[host]\nname = {name}\ntarget = \"local\"\n[hearth]\nlisten = \"127.0.0.1:8080\"\n\
                 allow_plain_http = true\n[release]\nversion = \"0.7.0\"\n\
                 url = \"https://example.com/hearth-0.7.0-x86_64-unknown-linux-gnu.tar.gz\"\n\
                 sha256 = \"{}\"\n",
                "a".repeat(64)
            )
        };
        assert!(Manifest::from_str(&text("\"box 1\""), "deploy.toml").is_ok());
        for bad in [r#""box\nrm -rf /""#, r#"" =\box""#, r#""a\tb""#] {
            let e = Manifest::from_str(&text(bad), "deploy.toml").unwrap_err();
            assert_eq!((e.key.as_str(), e.line), ("host.name", Some(2)), "{e}");
        }
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
