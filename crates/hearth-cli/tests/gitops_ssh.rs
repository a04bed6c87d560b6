//! `hearth deploy` GitOps commands for an environment reached over SSH,
//! through the real binary (issue 14): the key comes as text in
//! `HEARTH_DEPLOY_SSH_KEY` (as deploy.yml passes a CI secret), the host key
//! from the repository's known_hosts; apply, status and history go over the
//! private loopback sshd of `crates/hearth-deploy/tests/sshd`; plan shows a
//! removed service and apply stops it there. The deep cases are in
//! crates/hearth-deploy/tests/gitops_ssh.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

mod common;
#[path = "../../hearth-deploy/tests/sshd/mod.rs"]
mod sshd;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{commit, git, hearth, run};
use sshd::{Sshd, free_port};

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_ssh_environment_through_the_cli_with_the_key_from_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("sshd")).unwrap();
    let Some(sshd) = Sshd::start(&tmp.path().join("sshd")) else {
        return;
    };
    let root = tmp.path().join("infra");
    let state = tmp.path().join("state");
    let port = free_port();
    fs::create_dir_all(root.join("services/site/www")).unwrap();
    fs::create_dir_all(root.join("ssh")).unwrap();
    fs::copy(sshd.known_hosts(), root.join("ssh/known_hosts")).unwrap();
    fs::write(
        root.join("hearth-infra.toml"),
        format!(
            "[environments.homelab]\n\n[environments.vps]\nrunner = \"cloud\"\ntarget = \"ssh\"\naddress = \"127.0.0.1\"\nuser = \"{}\"\nport = {}\nknown_hosts = \"ssh/known_hosts\"\nstate_dir = \"{}\"\n",
            sshd.user,
            sshd.port,
            state.display()
        ),
    )
    .unwrap();
    fs::write(
        root.join("services/site/service.toml"),
        format!(
            "environment = \"vps\"\nkind = \"script\"\nsecrets = [\"SITE_TOKEN\"]\n[health]\nurl = \"http://127.0.0.1:{port}/\"\nretries = 8\ninterval = \"250ms\"\n"
        ),
    )
    .unwrap();
    write_exec(
        &root.join("services/site/deploy.sh"),
        &format!(
            "#!/bin/sh\nset -eu\nif [ -f \"$DEPLOY_DATA_DIR/pid\" ]; then kill \"$(cat \"$DEPLOY_DATA_DIR/pid\")\" || true; sleep 0.3; fi\necho \"token is $SITE_TOKEN\"\nnohup python3 -m http.server {port} --bind 127.0.0.1 --directory www >/dev/null 2>&1 &\necho \"$!\" >\"$DEPLOY_DATA_DIR/pid\"\n"
        ),
    );
    write_exec(
        &root.join("services/site/stop.sh"),
        "#!/bin/sh\nset -eu\nkill \"$(cat \"$DEPLOY_DATA_DIR/pid\")\"\nrm -f \"$DEPLOY_DATA_DIR/pid\"\necho \"site stopped\"\n",
    );
    write_exec(&root.join("services/site/health-check.sh"), "#!/bin/sh\n");
    fs::write(root.join("services/site/README.md"), "# site\n").unwrap();
    fs::write(root.join("services/site/www/index.html"), "release 1").unwrap();
    git(&root, &["init", "-q", "-b", "main"]);
    commit(&root, "site on the vps");

    // Whatever happens, the server the service started ends with the test.
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = fs::read_to_string(&self.0) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let pid_file = state.join("services/site/data/pid");
    let _stop = Stop(pid_file.clone());
    let key = fs::read_to_string(sshd.identity()).unwrap();
    let token = "tok-ssh-9a7b-VERY-secret";
    let deploy = |args: &[&str]| {
        let mut c = hearth();
        c.current_dir(&root)
            .arg("deploy")
            .args(args)
            .env("HEARTH_DEPLOY_SSH_KEY", &key)
            .env("SITE_TOKEN", token);
        run(&mut c)
    };

    let (code, out, err) = deploy(&["apply", "--env", "vps", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    let user = &sshd.user;
    assert!(
        out.contains(&format!("vps is reached over ssh: {user}@127.0.0.1")),
        "{out}"
    );
    assert!(out.contains("[site] token is ***"), "{out}");
    assert!(!out.contains(token) && !err.contains(token), "{out}{err}");
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());

    let (code, out, err) = deploy(&["status", "--env", "vps"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("on {user}@127.0.0.1 (environment vps)")),
        "{out}"
    );
    assert!(out.contains("site") && out.contains(" healthy"), "{out}");

    // Without the key, ssh is refused: the key did come from the variable.
    let (code, out, err) = run(hearth()
        .current_dir(&root)
        .args(["deploy", "status", "--env", "vps"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("over ssh failed"), "{err}");

    // The service leaves the repository: plan says so, apply stops it there.
    let pid = fs::read_to_string(&pid_file).unwrap();
    fs::remove_dir_all(root.join("services/site")).unwrap();
    commit(&root, "site retired");
    let (code, out, err) = deploy(&["plan", "--since", "HEAD~1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("vps (runs-on: [self-hosted, cloud]):"),
        "{out}"
    );
    assert!(
        out.contains("site") && out.contains("apply stops it"),
        "{out}"
    );
    let (code, out, err) = deploy(&["apply", "--env", "vps", "--since", "HEAD~1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[site] site stopped"), "{out}");
    assert!(out.contains("site: removed (stop.sh ran)"), "{out}");
    // Stopped: gone, or a zombie waiting for its reaper.
    let alive = || {
        fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    };
    let start = std::time::Instant::now();
    while alive() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the removed service's server runs on"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let (code, out, err) = deploy(&["status", "--env", "vps"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(removed)"), "{out}");

    let (code, out, err) = deploy(&["history", "site", "--env", "vps", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let actions: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].to_string())
        .collect();
    assert_eq!(actions, ["\"install\"", "\"remove\""]);
    assert!(!out.contains(token));
}
