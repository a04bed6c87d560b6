//! The host Hearth runs on: the config itself, the bind and its keys, ports, the data
//! directory, and the sandbox's isolation.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use hearth_config::{Config, ConfigError, PortSetting, SandboxConfig, TlsMode};
use hearth_sandbox::Sandbox;

use super::probe::{self, human_bytes};
use super::report::Check;
use crate::commands::sandbox as sandbox_command;

const GIB: u64 = 1 << 30;
/// Logs, the SQLite file and pulled models live in data_dir.
const DATA_DIR_WARN: u64 = 5 * GIB;

/// The config loaded, or why it could not be.
pub fn config_ok(config: &Config, source: &str, checks: &mut Vec<Check>) {
    let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    checks.push(Check::ok(
        "config",
        "config",
        format!(
            "{source}: {} model(s) ({}), listen {}",
            config.models.len(),
            names.join(", "),
            config.server.listen
        ),
    ));
    for w in &config.warnings {
        checks.push(Check::warn(
            "config",
            "config",
            w.to_string(),
            "remove or rename the variable (`hearth config check` lists what Hearth reads)",
        ));
    }
}

pub fn config_invalid(error: &ConfigError, checks: &mut Vec<Check>) {
    for d in &error.diagnostics {
        checks.push(Check::fail(
            "config",
            "config",
            d.to_string(),
            "fix that key as the message says; `hearth config check` re-checks the file",
        ));
    }
    // The loader refuses a public bind without keys; say so where binds are checked.
    if let Some(d) = error
        .diagnostics
        .iter()
        .find(|d| d.key == "server.listen" && d.message.contains("API key"))
    {
        checks.push(Check::fail(
            "host",
            "bind",
            d.message.clone(),
            "set HEARTH_API_KEYS or add [[keys]], or listen on 127.0.0.1",
        ));
    }
}

/// Loopback, or public with keys. (Public without keys never loads.)
pub fn bind(config: &Config, checks: &mut Vec<Check>) {
    let listen = &config.server.listen;
    let keys = config.resolved_keys.len();
    let check = match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Check::ok(
            "host",
            "bind",
            format!("loopback only ({listen}), {keys} API key(s)"),
        ),
        Ok(_) if keys > 0 => Check::ok(
            "host",
            "bind",
            format!(
                "public ({listen}) with {keys} API key(s), {}",
                match config.server.tls.mode {
                    hearth_config::TlsMode::Off => "plain HTTP (allow_plain_http)",
                    hearth_config::TlsMode::SelfSigned => "HTTPS (self-signed)",
                    hearth_config::TlsMode::Files => "HTTPS (certificate files)",
                    hearth_config::TlsMode::Acme => "HTTPS (ACME certificate)",
                }
            ),
        ),
        Ok(_) => Check::fail(
            "host",
            "bind",
            format!("public ({listen}) with no API key: anyone who can reach it can use it"),
            "set HEARTH_API_KEYS or add [[keys]], or listen on 127.0.0.1",
        ),
        Err(_) => Check::fail(
            "host",
            "bind",
            format!("server.listen {listen:?} is not an address"),
            "write it as IP:PORT, e.g. 127.0.0.1:8080",
        ),
    };
    checks.push(check);
}

/// Hearth's own address and every fixed engine port are free to bind.
pub fn ports(config: &Config, checks: &mut Vec<Check>) {
    if let Ok(addr) = config.server.listen.parse::<SocketAddr>() {
        checks.push(port_check("listen", addr, true));
    }
    let mut seen: Vec<(u16, &str)> = Vec::new();
    for m in &config.models {
        let Some(launch) = m.upstream_config().and_then(|u| u.launch.as_deref()) else {
            continue;
        };
        let PortSetting::Fixed(port) = launch.port else {
            continue;
        };
        let name = format!("{} port", m.name);
        if let Some((_, other)) = seen.iter().find(|(p, _)| *p == port) {
            checks.push(Check::fail(
                "host",
                name,
                format!("port {port} is also model {other}'s"),
                "give each managed model its own port, or port = \"auto\"",
            ));
            continue;
        }
        seen.push((port, &m.name));
        // Managed servers listen on loopback (the presets pass --host 127.0.0.1).
        checks.push(port_check(
            &name,
            SocketAddr::from(([127, 0, 0, 1], port)),
            false,
        ));
    }
}

/// `[server.tls] mode = "acme"`: each domain resolves to an address of this
/// machine (the CA connects to it on port 443). Warnings, never a fail: Hearth asks
/// the CA again by itself once DNS is right, and a host behind 1:1 NAT (a cloud's
/// public address) does not have its public address on an interface.
pub fn acme_dns(config: &Config, checks: &mut Vec<Check>) {
    if config.server.tls.mode != TlsMode::Acme {
        return;
    }
    for domain in &config.server.tls.domains {
        checks.push(domain_check(domain, Duration::from_secs(5)));
    }
}

fn domain_check(domain: &str, deadline: Duration) -> Check {
    let name = format!("dns {domain}");
    let point = format!(
        "create an A (or AAAA) record for {domain} with this host's public address; Hearth asks for the certificate again by itself once it resolves"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let query = format!("{domain}:443");
    std::thread::spawn(move || {
        let _ = tx.send(query.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
    });
    let addrs = match rx.recv_timeout(deadline) {
        Err(_) => {
            return Check::warn(
                "host",
                name,
                format!("{domain} did not resolve within {} s", deadline.as_secs()),
                "check this host's DNS resolver (/etc/resolv.conf), then the record",
            );
        }
        Ok(Err(e)) => {
            return Check::warn(
                "host",
                name,
                format!("{domain} does not resolve ({e}): no certificate can be issued"),
                point,
            );
        }
        Ok(Ok(a)) => a,
    };
    let mut ips: Vec<std::net::IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    ips.sort();
    ips.dedup();
    let shown = ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ips.is_empty() {
        return Check::warn("host", name, format!("{domain} has no address"), point);
    }
    if ips.iter().all(std::net::IpAddr::is_loopback) {
        return Check::warn(
            "host",
            name,
            format!("{domain} resolves to {shown}, a loopback address: the CA cannot reach it"),
            point,
        );
    }
    // An address this machine has can be bound.
    let local = ips
        .iter()
        .any(|ip| !ip.is_loopback() && std::net::UdpSocket::bind((*ip, 0)).is_ok());
    if local {
        Check::ok(
            "host",
            name,
            format!("{domain} resolves to {shown}, an address of this host"),
        )
    } else {
        Check::warn(
            "host",
            name,
            format!("{domain} resolves to {shown}, not an address of this host"),
            format!(
                "nothing to do behind 1:1 NAT (a cloud's public address) that forwards port 443 here; otherwise {point}"
            ),
        )
    }
}

fn port_check(name: &str, addr: SocketAddr, is_hearth: bool) -> Check {
    let port = addr.port();
    match TcpListener::bind(addr) {
        Ok(_) => Check::ok("host", name, format!("{addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // Run again after install, the port is taken by the Hearth being checked.
            if is_hearth && answers_health(addr) {
                return Check::warn(
                    "host",
                    name,
                    format!("{addr} is in use by a server that answers /health (a running hearth?)"),
                    "nothing to do if it is this Hearth; else stop it (`ss -ltnp 'sport = :{port}'` shows it) or change server.listen"
                        .replace("{port}", &port.to_string()),
                );
            }
            Check::fail(
                "host",
                name,
                format!("{addr} is in use"),
                format!(
                    "stop what holds it (`ss -ltnp 'sport = :{port}'` shows it), or choose another port"
                ),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Check::fail(
            "host",
            name,
            format!("cannot bind {addr}: permission denied"),
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: use 8080, or `sudo setcap cap_net_bind_service=+ep $(which hearth)`",
        ),
        Err(e) => Check::fail(
            "host",
            name,
            format!("cannot bind {addr}: {e}"),
            "listen on 127.0.0.1, 0.0.0.0, or an address this host has (`ip addr`)",
        ),
    }
}

fn answers_health(addr: SocketAddr) -> bool {
    let connect = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let Ok(mut s) = TcpStream::connect_timeout(&connect, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    let n = s.read(&mut head).unwrap_or(0);
    head.get(..n)
        .is_some_and(|h| h.starts_with(b"HTTP/1.1 200") || h.starts_with(b"HTTP/1.0 200"))
}

/// data_dir exists (created when missing: `hearth serve` would create it too), takes a
/// file, and has room.
pub fn data_dir(dir: &Path, checks: &mut Vec<Check>) {
    let shown = dir.display();
    let remedy_perm = format!(
        "create it writable by the user Hearth runs as (`sudo install -d -o $USER {shown}`), or set storage.data_dir"
    );
    if let Err(e) = std::fs::create_dir_all(dir) {
        checks.push(Check::fail(
            "host",
            "data_dir",
            format!("cannot create {shown}: {e}"),
            remedy_perm,
        ));
        return;
    }
    let probe_file = dir.join(format!(".hearth-doctor-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe_file)
        .and_then(|mut f| f.write_all(b"ok"));
    let _ = std::fs::remove_file(&probe_file);
    if let Err(e) = written {
        checks.push(Check::fail(
            "host",
            "data_dir",
            format!("{shown} is not writable: {e}"),
            remedy_perm,
        ));
        return;
    }
    checks.push(match probe::free_bytes(dir) {
        Ok(free) if free < DATA_DIR_WARN => Check::warn(
            "host",
            "data_dir",
            format!("{shown} is writable, but only {} free", human_bytes(free)),
            "free disk there (logs and models grow), or move storage.data_dir to a bigger disk",
        ),
        Ok(free) => Check::ok(
            "host",
            "data_dir",
            format!("{shown} is writable, {} free", human_bytes(free)),
        ),
        Err(e) => Check::warn(
            "host",
            "data_dir",
            format!("{shown} is writable; free space unknown: {e}"),
            "check the disk by hand (`df -h`)",
        ),
    });
}

/// The same probe as `hearth sandbox check`: a required feature missing means agent
/// jobs are refused (fail); an optional one runs with a warning.
pub fn sandbox(config: &SandboxConfig, checks: &mut Vec<Check>) {
    let options = match sandbox_command::options(config) {
        Ok(o) => o,
        Err(e) => {
            checks.push(Check::fail(
                "sandbox",
                "isolation",
                e,
                "fix [sandbox] in the config",
            ));
            return;
        }
    };
    let report = Sandbox::new(options).check();
    let enforced = report.features.iter().filter(|f| f.enforced).count();
    let summary = format!(
        "{}: {enforced} of {} features enforced",
        report.isolation,
        report.features.len()
    );
    // `none`: neither namespaces nor Landlock work, and every run is refused.
    checks.push(if report.isolation == "none" {
        Check::fail(
            "sandbox",
            "isolation",
            format!("{summary}; agent jobs cannot run (namespaces: {})", report.namespaces),
            "enable unprivileged user namespaces, or run on a kernel with Landlock; see docs/sandbox.md",
        )
    } else {
        Check::ok("sandbox", "isolation", summary)
    });
    for f in report.features.iter().filter(|f| !f.enforced) {
        let reason = format!("{} not enforced: {}", f.feature.name(), f.how);
        let remedy = "see docs/sandbox.md (`hearth sandbox check` shows each feature); unprivileged user namespaces and a delegated cgroup enable most";
        checks.push(if f.required {
            Check::fail(
                "sandbox",
                f.feature.name(),
                format!("{reason} (required: agent jobs are refused)"),
                format!("{remedy}; or drop it from sandbox.require"),
            )
        } else {
            Check::warn("sandbox", f.feature.name(), reason, remedy)
        });
    }
}

#[cfg(test)]
mod acme_dns_tests {
    use super::*;

    #[test]
    fn an_acme_domain_is_checked_in_dns_and_never_fails_the_start() {
        let c = domain_check("localhost", Duration::from_secs(5));
        assert!(c.reason.contains("a loopback address"), "{c:?}");
        // RFC 6761: `.invalid` never resolves.
        let c = domain_check("hearth-doctor-test.invalid", Duration::from_secs(5));
        assert!(
            c.reason.contains("does not resolve") || c.reason.contains("did not resolve within"),
            "{c:?}"
        );
        assert!(c.remedy.contains("A (or AAAA) record"), "{c:?}");
        for c in [c, domain_check("localhost", Duration::from_secs(5))] {
            assert_eq!(c.status, super::super::report::Status::Warn, "{c:?}");
        }
    }
}
