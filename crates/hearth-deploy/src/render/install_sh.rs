//! The POSIX installer: one `sh` script that installs a release and its config.
//!
//! The rendered part is a header of variables and the files' contents (quoted
//! here-documents, so nothing in them is expanded); the logic is the fixed body
//! in `install_body.sh`, the same for every manifest, which keeps it reviewable.

use super::sh_quote;
use super::systemd::{systemd_env, systemd_unit};
use crate::manifest::Manifest;

const BODY: &str = include_str!("install_body.sh");

/// The installer. Environment: `HEARTH_ROOT` (a prefix every path is written
/// under; empty = `/`), `HEARTH_RELEASE_FILE` (a local tarball instead of the
/// download).
pub fn install_sh(m: &Manifest) -> String {
    let h = &m.hearth;
    // `tls = "acme"` needs no other port: the CA's TLS-ALPN-01 check comes to
    // Hearth's own listener (443).
    let ports = h.port().to_string();
    let ssh_port = match &m.host.target {
        crate::manifest::Target::Ssh { port, .. } => *port,
        crate::manifest::Target::Local => 22,
    };
    // Open the firewall only for a listen other machines can reach.
    let firewall = h.firewall && !h.is_loopback();
    format!(
        "#!/bin/sh\n\
         # Hearth installer for host {host}, rendered from deploy.toml by hearth-deploy.\n\
         # Installs release {version} under /opt/hearth and runs it as hearth.service.\n\
         # Environment: HEARTH_ROOT=DIR writes every path under DIR (tests, packagers) and\n\
         # then creates no user, starts nothing and leaves the firewall alone;\n\
         # HEARTH_RELEASE_FILE=FILE installs that tarball instead of downloading it.\n\
         # Running it again changes nothing unless the manifest changed.\n\
         set -eu\n\
         \n\
         HEARTH_VERSION={version_q}\n\
         HEARTH_URL={url}\n\
         HEARTH_SHA256={sha}\n\
         HEARTH_PORTS={ports_q}\n\
         HEARTH_SSH_PORT={ssh_port}\n\
         HEARTH_FIREWALL={firewall}\n\
         \n\
         hearth_toml() {{\n\
         cat <<'HEARTH_TOML_EOF'\n\
         {toml}\
         HEARTH_TOML_EOF\n\
         }}\n\
         \n\
         hearth_unit() {{\n\
         cat <<'HEARTH_UNIT_EOF'\n\
         {unit}\
         HEARTH_UNIT_EOF\n\
         }}\n\
         \n\
         hearth_env() {{\n\
         cat <<'HEARTH_ENV_EOF'\n\
         {env}\
         HEARTH_ENV_EOF\n\
         }}\n\
         \n\
         {body}",
        host = m.host.name,
        version = m.release.version,
        version_q = sh_quote(&m.release.version),
        url = sh_quote(&m.release.url),
        sha = sh_quote(&m.release.sha256),
        ports_q = sh_quote(&ports),
        firewall = u8::from(firewall),
        toml = m.hearth_toml(),
        unit = systemd_unit(m),
        env = systemd_env(m),
        body = BODY,
    )
}
