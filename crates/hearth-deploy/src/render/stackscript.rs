//! A Linode StackScript: the UDF fields Linode's form shows, then the installer.

use super::install_sh;
use crate::manifest::{INSTALL_LOG, Manifest};

/// The model the form proposes: the first model's `launch.model`, else its name.
fn default_model(m: &Manifest) -> String {
    let first = m.models.first();
    first
        .and_then(|t| t.get("launch")?.get("model")?.as_str())
        .or_else(|| first.and_then(|t| t.get("name")?.as_str()))
        .unwrap_or("")
        .replace(['"', '<', '>'], "")
}

pub fn stackscript(m: &Manifest) -> String {
    format!(
        "#!/bin/bash\n\
         # <UDF name=\"model\" label=\"Model (a Hugging Face id or a GGUF path)\" default=\"{model}\" />\n\
         # <UDF name=\"domain\" label=\"Domain pointing at this Linode, for TLS (optional)\" default=\"{domain}\" />\n\
         # <UDF name=\"admin_email\" label=\"Email for certificate expiry notices (optional)\" default=\"{email}\" />\n\
         # Hearth on {host}, rendered from deploy.toml by hearth-deploy (release {version}).\n\
         # The fields above are recorded in /etc/hearth/stackscript.env; the config itself\n\
         # comes from deploy.toml (re-render it to change the model or the domain).\n\
         set -euo pipefail\n\
         mkdir -p /var/log/hearth /opt/hearth /etc/hearth\n\
         # The install log, mirrored to the serial console (Lish).\n\
         exec > >(tee -a {log} /dev/console) 2>&1\n\
         umask 022\n\
         {{\n  \
           printf 'HEARTH_UDF_MODEL=%q\\n' \"${{MODEL:-}}\"\n  \
           printf 'HEARTH_UDF_DOMAIN=%q\\n' \"${{DOMAIN:-}}\"\n  \
           printf 'HEARTH_UDF_ADMIN_EMAIL=%q\\n' \"${{ADMIN_EMAIL:-}}\"\n\
         }} >/etc/hearth/stackscript.env\n\
         cat >/opt/hearth/install.sh <<'HEARTH_INSTALLER_EOF'\n\
         {script}\
         HEARTH_INSTALLER_EOF\n\
         chmod 0755 /opt/hearth/install.sh\n\
         sh /opt/hearth/install.sh\n",
        model = default_model(m),
        domain = m.hearth.domain.as_deref().unwrap_or(""),
        email = m.hearth.admin_email.as_deref().unwrap_or(""),
        host = m.host.name,
        version = m.release.version,
        log = INSTALL_LOG,
        script = install_sh(m),
    )
}
