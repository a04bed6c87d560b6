//! A compose file: the same Hearth as a container, for hosts that run them.

use crate::manifest::{CONFIG_PATH, DATA_DIR, Manifest};

pub fn compose(m: &Manifest) -> String {
    let h = &m.hearth;
    let port = h.port();
    // The host side binds where the manifest says; inside the container Hearth
    // listens on every address, or the published port would reach nothing.
    let host_ip = if h.ip().contains(':') {
        format!("[{}]", h.ip())
    } else {
        h.ip().to_owned()
    };
    let gpu = if m.wants_gpu() {
        let ids = m.gpu_ids();
        let which = if ids.is_empty() {
            "              count: all\n".to_owned()
        } else {
            format!(
                "              device_ids: [{}]\n",
                ids.iter()
                    .map(|i| format!("\"{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "    deploy:\n      \
               resources:\n        \
                 reservations:\n          \
                   devices:\n            \
                     - driver: nvidia\n\
             {which}              \
                       capabilities: [gpu]\n"
        )
    } else {
        String::new()
    };
    format!(
        "# Hearth on {host}, rendered from deploy.toml by hearth-deploy (release {version}).\n\
         # The image is the one `make dist` would publish for this release.\n\
         # {config} on the host is the one the installer writes (`hearth deploy render hearth-toml`),\n\
         # with the admin key in /etc/hearth/credentials.\n\
         name: hearth\n\
         services:\n  \
           hearth:\n    \
             image: ghcr.io/hearth/hearth:{version}\n    \
             command: [\"serve\", \"--config\", \"{config}\"]\n    \
             environment:\n      \
               HEARTH_SERVER_LISTEN: \"0.0.0.0:{port}\"\n    \
             ports:\n      \
               - \"{host_ip}:{port}:{port}\"\n    \
             volumes:\n      \
               - \"{data}:{data}\"\n      \
               - \"/etc/hearth:/etc/hearth:ro\"\n    \
             restart: unless-stopped\n\
         {gpu}",
        host = m.host.name,
        version = m.release.version,
        config = CONFIG_PATH,
        data = DATA_DIR,
    )
}
