//! What `hearth serve` prints once it listens, for a person at a terminal: where
//! the UI and the API are, the models and their status, where config, data and
//! logs live, and whether clients need a key. With JSON logs there is no banner:
//! the "hearth is serving" line carries `ui_url` and `api_url` instead.

use std::net::SocketAddr;
use std::path::Path;

/// What the banner shows.
pub struct Banner<'a> {
    pub version: &'a str,
    pub addr: SocketAddr,
    /// `(name, backend kind, status)` of each model.
    pub models: Vec<(String, &'static str, &'static str)>,
    /// The config file, or `None` for the built-in defaults.
    pub config: Option<&'a Path>,
    pub data_dir: &'a Path,
    pub log_dir: &'a Path,
    pub keys: usize,
    /// Served over HTTPS.
    pub tls: bool,
}

/// Label column width: `  Chat UI   ` and the rest line up under it.
const LABEL: usize = 10;

impl Banner<'_> {
    pub fn lines(&self) -> Vec<String> {
        let base = hearth_server::base_url(self.addr, self.tls);
        let row = |label: &str, value: &str| format!("  {label:<LABEL$}{value}");
        let mut out = vec![format!("Hearth v{}", self.version)];
        out.push(row("Chat UI", &format!("{base}/")));
        let access = if self.keys > 0 {
            "API key required"
        } else {
            "no key needed on loopback"
        };
        out.push(row(
            "API",
            &format!("{base}/v1  (OpenAI-compatible; {access})"),
        ));
        if self.addr.ip().is_unspecified() {
            out.push(row(
                "",
                &format!(
                    "listening on every interface: other machines use {}://<this host>:{}/",
                    if self.tls { "https" } else { "http" },
                    self.addr.port()
                ),
            ));
        }
        for (i, (name, kind, status)) in self.models.iter().enumerate() {
            let label = if i == 0 { "Models" } else { "" };
            out.push(row(label, &format!("{name} ({kind}, {status})")));
        }
        let config = self
            .config
            .map_or_else(|| "built-in defaults (no hearth.toml)".to_owned(), shown);
        out.push(row("Config", &config));
        out.push(row("Data", &shown(self.data_dir)));
        out.push(row("Logs", &shown(self.log_dir)));
        out.push(String::new());
        out.push("Press Ctrl+C to stop.".to_owned());
        out
    }
}

/// A path as a person can find it from anywhere: absolute.
fn shown(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banner(listen: &str, keys: usize) -> Vec<String> {
        Banner {
            version: "0.1.0",
            addr: listen.parse().unwrap(),
            models: vec![
                ("smollm2-135m".into(), "embedded", "loading"),
                ("qwen-coder".into(), "upstream", "ready"),
            ],
            config: Some(Path::new("/etc/hearth.toml")),
            data_dir: Path::new("/var/lib/hearth"),
            log_dir: Path::new("/var/lib/hearth/logs"),
            keys,
            tls: false,
        }
        .lines()
    }

    #[test]
    fn loopback_without_keys() {
        assert_eq!(
            banner("127.0.0.1:8080", 0).join("\n"),
            "\
Hearth v0.1.0
  Chat UI   http://127.0.0.1:8080/
  API       http://127.0.0.1:8080/v1  (OpenAI-compatible; no key needed on loopback)
  Models    smollm2-135m (embedded, loading)
            qwen-coder (upstream, ready)
  Config    /etc/hearth.toml
  Data      /var/lib/hearth
  Logs      /var/lib/hearth/logs

Press Ctrl+C to stop."
        );
    }

    #[test]
    fn every_interface_with_keys() {
        let lines = banner("0.0.0.0:8080", 2);
        assert_eq!(
            lines[2],
            "  API       http://127.0.0.1:8080/v1  (OpenAI-compatible; API key required)"
        );
        assert_eq!(
            lines[3],
            "            listening on every interface: other machines use http://<this host>:8080/"
        );
    }
}
