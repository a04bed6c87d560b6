//! The status file (`server.status_file`, `/run/hearth/status` on a deployed
//! host): a few lines for a person logging in, kept current while serving. The
//! login banner (`update-motd.d`) and `hearth status` print it. Written whole
//! under a temporary name and renamed, so a reader never sees half of it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_api::ModelStatus;
use hearth_config::Config;
use hearth_router::Router;

/// How often the file is rewritten while serving.
const EVERY: Duration = Duration::from_secs(5);

/// What the file says now.
pub fn render(
    config: &Config,
    router: &Router,
    addr: std::net::SocketAddr,
    https: Option<&hearth_http::Tls>,
) -> String {
    let tls = https.is_some();
    let base = crate::run::base_url(addr, tls);
    let mut out = String::new();
    let _ = writeln!(out, "Hearth {}: serving", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "  Chat UI  {base}/");
    if addr.ip().is_unspecified() {
        let scheme = if tls { "https" } else { "http" };
        let _ = writeln!(
            out,
            "           from other machines: {scheme}://<this host>:{}/",
            addr.port()
        );
    }
    let key = config
        .keys
        .iter()
        .find_map(|k| k.key_file.as_ref())
        .map(|f| format!("the API key is in {}", f.display()));
    let access = match (config.resolved_keys.len(), key) {
        (0, _) => "no key needed on loopback".to_owned(),
        (_, Some(where_)) => where_,
        (n, None) => format!("{n} API key(s) from the environment"),
    };
    let _ = writeln!(out, "  API      {base}/v1  ({access})");
    // `[server.tls] mode = "acme"`: the certificate, or why there is none yet.
    if let Some(acme) = https.and_then(|t| t.acme_status()) {
        let _ = writeln!(out, "  TLS      {}", acme.line());
    }
    for (i, m) in router.iter().enumerate() {
        let label = if i == 0 { "Models" } else { "" };
        let status = m.status();
        let _ = write!(out, "  {label:<8} {}  {}", m.config.name, status.as_str());
        let engine = m.backend.engine();
        // The backend's own words: a download's progress, why it did not load.
        let detail = matches!(status, ModelStatus::Loading | ModelStatus::Unavailable)
            .then(|| m.backend.detail())
            .flatten();
        if let Some(reason) = engine.as_ref().and_then(|e| e.reason.as_ref())
            && matches!(status, ModelStatus::Failed | ModelStatus::Restarting)
        {
            let _ = write!(out, ": {reason}");
        } else if let Some(d) = &detail {
            let _ = write!(out, ": {d}");
        }
        out.push('\n');
        if status == ModelStatus::Unavailable && detail.is_some() {
            let _ = writeln!(
                out,
                "           next: fix what it says, then `systemctl restart hearth` (`hearth doctor` checks the host)"
            );
        } else if status == ModelStatus::Failed {
            let log = engine.map(|e| e.log).unwrap_or_default();
            let _ = writeln!(
                out,
                "           next: read its log ({log}), run `hearth doctor`, then `systemctl restart hearth`"
            );
        } else if status == ModelStatus::Unavailable {
            let _ = writeln!(
                out,
                "           next: its server does not answer: check it, or `hearth doctor`"
            );
        }
    }
    out
}

/// Writes `text` to `path` whole (a temporary file renamed over it).
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Keeps `path` current until `stop` resolves, then says Hearth stopped (unless
/// it `handed_over` to a new process).
pub async fn keep_written(
    path: PathBuf,
    config: Arc<Config>,
    router: Arc<Router>,
    addr: std::net::SocketAddr,
    tls: Option<Arc<hearth_http::Tls>>,
    stop: impl std::future::Future<Output = ()>,
    handed_over: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut warned = false;
    let mut tick = tokio::time::interval(EVERY);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        let text = render(&config, &router, addr, tls.as_deref());
        if let Err(e) = write(&path, &text)
            && !warned
        {
            warned = true;
            tracing::warn!(path = %path.display(), error = %e, "cannot write the status file (server.status_file)");
        }
    }
    // The process that took over the socket writes the file from now on.
    if handed_over.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let _ = write(
        &path,
        &format!(
            "Hearth {}: stopped (`systemctl status hearth` says why; `hearth doctor` checks the host)\n",
            env!("CARGO_PKG_VERSION")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acme_says_where_the_certificate_stands() {
        let data = tempfile::tempdir().unwrap();
        // A directory nothing answers at: the first order fails, and says why.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/dir", dead.local_addr().unwrap());
        drop(dead);
        let tls_config = hearth_config::TlsConfig {
            mode: hearth_config::TlsMode::Acme,
            domains: vec!["llm.example.com".into()],
            directory_url: Some(url),
            ..Default::default()
        };
        // Bound, as the server's is by the time the task orders.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = listener.local_addr().unwrap().to_string();
        let tls = hearth_http::Tls::from_config(&tls_config, data.path(), &listen)
            .unwrap()
            .unwrap();
        let router = Router::new(Vec::new(), None, hearth_config::HealthConfig::default());
        let addr = "0.0.0.0:443".parse().unwrap();
        let text = render(&Config::default(), &router, addr, Some(&tls));
        assert!(
            text.contains("  TLS      no certificate for llm.example.com yet"),
            "{text}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while tls.acme_status().unwrap().failing.is_none() {
            assert!(std::time::Instant::now() < deadline, "no failure reported");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = render(&Config::default(), &router, addr, Some(&tls));
        assert!(text.contains("last attempt failed"), "{text}");
        // The other modes add no line.
        let text = render(&Config::default(), &router, addr, None);
        assert!(!text.contains("TLS"), "{text}");
    }
}
