//! The systemd unit and its environment file.

use crate::manifest::{BINARY_PATH, CONFIG_PATH, DATA_DIR, ENV_PATH, LOG_DIR, Manifest};

/// `/etc/systemd/system/hearth.service`.
pub fn systemd_unit(m: &Manifest) -> String {
    // Binding a port below 1024 needs the one capability, and nothing else.
    let caps = if m.hearth.port() < 1024 {
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
    } else {
        "CapabilityBoundingSet=\n"
    };
    format!(
        "# Hearth on {host}, rendered from deploy.toml by hearth-deploy (release {version}).\n\
         [Unit]\n\
         Description=Hearth AI server\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         # Hearth says READY=1 once it listens. `systemctl reload hearth` upgrades without\n\
         # dropping a request: the running process starts what /opt/hearth/current holds on\n\
         # the same socket, and tells systemd the new main pid once that one is ready.\n\
         Type=notify\n\
         NotifyAccess=main\n\
         User=hearth\n\
         Group=hearth\n\
         EnvironmentFile=-{env}\n\
         # A host problem (no GPU driver, a taken port, a missing launcher) stops the start\n\
         # before a crash loop: doctor writes it to the status file the login banner\n\
         # shows, and checks again at each retry.\n\
         ExecStartPre={bin} doctor --config {config} --status-file /run/hearth/status\n\
         ExecStart={bin} serve --config {config}\n\
         ExecReload=/bin/kill -USR2 $MAINPID\n\
         Restart=always\n\
         RestartSec=15\n\
         {caps}\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         RuntimeDirectory=hearth\n\
         # Kept when the service stops: its status file says why (the login banner reads it).\n\
         RuntimeDirectoryPreserve=yes\n\
         ReadWritePaths={data} {log} /run/hearth\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        host = m.host.name,
        version = m.release.version,
        env = ENV_PATH,
        bin = BINARY_PATH,
        config = CONFIG_PATH,
        data = DATA_DIR,
        log = LOG_DIR,
    )
}

/// `/etc/hearth/hearth.env`: the service's environment. Secrets stay in files
/// (`/etc/hearth/credentials`), not here.
pub fn systemd_env(m: &Manifest) -> String {
    format!(
        "# Environment of hearth.service on {host}, rendered from deploy.toml by hearth-deploy.\n\
         HEARTH_CONFIG={config}\n\
         HOME={data}\n\
         # Model downloads (vLLM, Hugging Face) land under the data folder, which the unit may write.\n\
         HF_HOME={data}/huggingface\n",
        host = m.host.name,
        config = CONFIG_PATH,
        data = DATA_DIR,
    )
}
