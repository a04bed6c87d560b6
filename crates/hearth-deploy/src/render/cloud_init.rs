//! `#cloud-config` user data for a fresh VM (Ubuntu 22.04/24.04, Debian 12):
//! writes the installer and runs it once, with its output in
//! `/var/log/hearth/install.log` and on the serial console. No `packages:`: that
//! module updates the package lists and upgrades what it names on every image,
//! minutes on a small VM; the installer installs curl only where it is missing.

use super::{indent, install_sh};
use crate::manifest::{INSTALL_LOG, Manifest};

/// Where cloud-init puts the installer on the host (kept, to run again by hand).
pub const INSTALLER_PATH: &str = "/opt/hearth/install.sh";

pub fn cloud_init(m: &Manifest) -> String {
    format!(
        "#cloud-config\n\
         # Hearth on {host}, rendered from deploy.toml by hearth-deploy (release {version}).\n\
         # Supported images: Ubuntu 22.04 and 24.04, Debian 12. Progress: {log}\n\
         # (also on the serial console). Nothing is reported to any third party.\n\
         # The log folder is made first: the output is redirected before any module runs.\n\
         output:\n  \
           all: \"| mkdir -p /var/log/hearth && exec tee -a {log} /dev/console\"\n\
         write_files:\n  \
           - path: {installer}\n    \
             owner: root:root\n    \
             permissions: \"0755\"\n    \
             content: |\n\
         {script}\
         runcmd:\n  \
           - [sh, {installer}]\n",
        host = m.host.name,
        version = m.release.version,
        log = INSTALL_LOG,
        installer = INSTALLER_PATH,
        script = indent(&install_sh(m), 6),
    )
}
