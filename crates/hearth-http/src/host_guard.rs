//! DNS rebinding and cross-site requests, for a server that needs no key.
//!
//! Without keys every caller is anonymous, which is safe only because the server
//! listens on loopback. A web page can still reach it through the visitor's
//! browser: by a name that re-resolves to 127.0.0.1 after the page loaded (DNS
//! rebinding: the browser then treats Hearth as the page's own origin and reads
//! every answer), or by a cross-site request (a form post needs no CORS
//! permission to be *sent*). So, on a server without keys:
//! - `Host` must be a loopback name (`localhost`, `*.localhost`, `127.0.0.0/8`,
//!   `[::1]`) or one this server is configured with (`server.allowed_hosts`, the
//!   TLS `names` and ACME `domains`); a request without `Host` (HTTP/1.0) passes.
//! - `Origin`, when a browser sends one, must be such a host too, or be listed in
//!   `server.cors_origins` (`"*"` allows every origin, as it does for CORS).
//!
//! With keys the key is the protection: browsers never add it by themselves.

use axum::http::{HeaderMap, header};
use hearth_api::{ApiError, ErrorKind};
use hearth_config::ServerConfig;

/// The names and origins a keyless server answers to.
#[derive(Debug, Clone, Default)]
pub struct HostGuard {
    /// Lower-case host names beside the loopback ones.
    names: Vec<String>,
    /// `server.cors_origins`, as configured.
    origins: Vec<String>,
    any_origin: bool,
}

impl HostGuard {
    pub fn new(server: &ServerConfig) -> Self {
        let names = server
            .allowed_hosts
            .iter()
            .chain(&server.tls.names)
            .chain(&server.tls.domains)
            .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        HostGuard {
            names,
            origins: server.cors_origins.clone(),
            any_origin: server.cors_origins.iter().any(|o| o == "*"),
        }
    }

    /// Refuses (403) a request whose `Host` or `Origin` is not this server's.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(host) = headers.get(header::HOST) {
            let raw = host.to_str().unwrap_or("");
            if !self.allows_host(host_of(raw)) {
                return Err(ApiError::new(
                    ErrorKind::Permission,
                    format!(
                        "`Host: {}` is not a name of this server: without API keys Hearth answers only to loopback names (localhost, 127.0.0.1, [::1]) and those in server.allowed_hosts, so that no web page can reach it by DNS rebinding",
                        raw.escape_default()
                    ),
                )
                .with_code("host_not_allowed"));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let raw = origin.to_str().unwrap_or("");
            if !self.allows_origin(raw) {
                return Err(ApiError::new(
                    ErrorKind::Permission,
                    format!(
                        "requests from the web page at `{}` are refused: without API keys Hearth takes browser requests only from its own pages and from server.cors_origins",
                        raw.escape_default()
                    ),
                )
                .with_code("origin_not_allowed"));
            }
        }
        Ok(())
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        is_loopback_name(&host) || self.names.contains(&host)
    }

    fn allows_origin(&self, origin: &str) -> bool {
        if self.any_origin || self.origins.iter().any(|o| o == origin) {
            return true;
        }
        match origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        {
            // An origin is scheme://host[:port], nothing after.
            Some(rest) if !rest.contains(['/', '?', '#', '@']) => self.allows_host(host_of(rest)),
            _ => false,
        }
    }
}

/// The host of an authority (`host[:port]`, `[v6]:port`), without the port.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") || host == "[::1]" {
        return true;
    }
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard(extra: &str) -> HostGuard {
        let server: ServerConfig =
            toml::from_str(&format!("allowed_hosts = [\"hearth.lan\"]\n{extra}")).unwrap();
        HostGuard::new(&server)
    }

    fn headers(host: Option<&'static str>, origin: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_static(v));
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn loopback_and_configured_hosts_pass_others_do_not() {
        let g = guard("");
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:3000",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "hearth.lan:8080",
            "hearth.lan.",
        ] {
            let h = headers(Some(ok), None);
            assert!(g.check(&h).is_ok(), "{ok}");
        }
        assert!(
            g.check(&headers(None, None)).is_ok(),
            "HTTP/1.0 without Host"
        );
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.5:8080",
            "[::2]:8080",
            "",
        ] {
            let e = g.check(&headers(Some(bad), None)).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("host_not_allowed"), "{bad}");
            assert_eq!(e.kind.status(), 403);
        }
    }

    #[test]
    fn browser_origins_must_be_this_servers_or_listed() {
        let g = guard("");
        let host = Some("localhost:8080");
        for ok in [
            "http://localhost:8080",
            "https://127.0.0.1",
            "http://hearth.lan:8080",
        ] {
            assert!(g.check(&headers(host, Some(ok))).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost.evil.example",
            "file://",
            "http://localhost@evil.example",
        ] {
            let e = g.check(&headers(host, Some(bad))).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("origin_not_allowed"), "{bad}");
        }
        let listed = guard("cors_origins = [\"https://notes.example\"]");
        assert!(
            listed
                .check(&headers(host, Some("https://notes.example")))
                .is_ok()
        );
        assert!(
            listed
                .check(&headers(host, Some("https://other.example")))
                .is_err()
        );
        let any = guard("cors_origins = [\"*\"]");
        assert!(
            any.check(&headers(host, Some("https://other.example")))
                .is_ok()
        );
        // The TLS names count as this server's.
        let tls = guard("[tls]\nmode = \"self-signed\"\nnames = [\"box.home\"]");
        assert!(
            tls.check(&headers(
                Some("box.home:8443"),
                Some("https://box.home:8443")
            ))
            .is_ok()
        );
    }
}
