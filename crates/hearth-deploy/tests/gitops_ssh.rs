//! `hearth deploy apply --env` for an environment with `target = "ssh"`
//! (issue 14), against a private loopback sshd (`tests/sshd`): the state
//! folder is a temp folder "on the host" (this same machine, as the test's
//! own user), the host key is pinned by a known_hosts file committed in the
//! repository, and the client key is a temp one. The services are those of
//! the local tests (`python3 -m http.server` on loopback ports), so the
//! same checks apply: first deploy, upgrade with the old process gone, a
//! failed health check rolled back, the secret never in the output, the
//! logs, the history, a command line or a file Hearth wrote; then a service
//! removed from the repository is stopped over SSH; a `hearth` kind runs the
//! host's binary (the key given as text, as a CI secret gives it); a compose
//! service is refused on a host without an engine, and runs `docker compose
//! up`/`down` there with a stand-in `docker` (no engine runs here); a
//! connection lost mid-deploy is a clear error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed step fails the test; a skip says so on stderr

mod gitops_fixture;
mod sshd;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_deploy::gitops::{self, ApplyOptions, Selection, Site, SshSettings};
use hearth_deploy::release::{Action, EventOutcome};

use gitops_fixture::*;
use sshd::Sshd;

/// A repository whose `cloud` environment is reached over SSH, and the sshd.
struct SshRepo {
    fx: Fixture,
    sshd: Sshd,
}

impl SshRepo {
    fn new() -> Option<SshRepo> {
        SshRepo::with_host_bin(|_| None)
    }

    /// With a folder of the test's programs first on the host's PATH (`bin`
    /// is given the fixture's temp folder and writes them).
    fn with_host_bin(bin: impl Fn(&Path) -> Option<std::path::PathBuf>) -> Option<SshRepo> {
        let fx = Fixture::new();
        let keys = fx.root.parent().unwrap().join("sshd");
        fs::create_dir_all(&keys).unwrap();
        let sshd = Sshd::start_with_path(&keys, bin(fx.root.parent().unwrap()).as_deref())?;
        write(
            &fx.root.join("hearth-infra.toml"),
            &format!(
                "[environments.homelab]\nrunner = \"homelab\"\n\n[environments.cloud]\nrunner = \"cloud\"\ntarget = \"ssh\"\naddress = \"127.0.0.1\"\nuser = \"{}\"\nport = {}\nknown_hosts = \"ssh/known_hosts\"\n",
                sshd.user, sshd.port
            ),
        );
        fs::create_dir_all(fx.root.join("ssh")).unwrap();
        fs::copy(sshd.known_hosts(), fx.root.join("ssh/known_hosts")).unwrap();
        commit(&fx.root, "cloud over ssh");
        Some(SshRepo { fx, sshd })
    }

    /// The apply's options: the client key from the "CI" (a file), the
    /// host's key from the repository's known_hosts.
    fn options(&self, selection: Selection) -> ApplyOptions {
        ApplyOptions {
            ssh: SshSettings {
                identity: Some(self.sshd.identity()),
                ..SshSettings::default()
            },
            ..self.fx.options("cloud", selection)
        }
    }

    /// The same, with the key given as text (`HEARTH_DEPLOY_SSH_KEY` from a
    /// CI secret) rather than as a file.
    fn options_with_key_text(&self, selection: Selection) -> ApplyOptions {
        let mut opts = self.options(selection);
        opts.ssh.identity = None;
        opts.ssh.key = Some(fs::read_to_string(self.sshd.identity()).unwrap());
        opts
    }

    fn site(&self) -> Site {
        let repo = self.fx.repo();
        let infra = repo.infra().unwrap();
        Site::of(
            &repo.root,
            &infra.environments["cloud"],
            Some(&self.fx.state),
            &self.options(Selection::All).ssh,
        )
        .unwrap()
    }
}

/// Every file under `dir` that holds `needle`, but `except`.
fn files_holding(dir: &Path, needle: &str, except: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if fs::read(&p)
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
                && !except.iter().any(|x| p.ends_with(x))
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

fn wait_gone(pid: u32) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn ssh_apply_deploys_upgrades_rolls_back_removes_and_keeps_the_secret_hidden() {
    let Some(r) = SshRepo::new() else { return };
    let fx = &r.fx;
    let port = free_port();
    let token = "ssh-s3cr3t-VALUE-77e1";
    let secret_line = "secrets = [\"SITE_TOKEN\"]";
    fx.site("site", "cloud", port, "release 1", true, secret_line);
    // The deploy step also records every command line running meanwhile:
    // this machine's ssh client and the host's `sh -c` among them.
    let deploy = fx.root.join("services/site/deploy.sh");
    let text = fs::read_to_string(&deploy).unwrap().replace(
        "set -eu\n",
        "set -eu\nps -eo args >\"$DEPLOY_DATA_DIR/ps.txt\"\n",
    );
    write_exec(&deploy, &text);
    let c1 = commit(&fx.root, "release 1");
    let secrets = [("SITE_TOKEN", token)];

    // First deploy over ssh: release 1 serves.
    let (res, out) = fx.run(&r.options(Selection::All), &secrets);
    res.unwrap();
    assert_eq!(page(port).as_deref(), Some("release 1"), "{out:#?}");
    assert!(
        out.iter().any(|l| l.contains(&format!(
            "cloud is reached over ssh: {}@127.0.0.1",
            r.sshd.user
        ))),
        "{out:#?}"
    );
    let v1 = format!("1-{}", &c1[..7]);
    assert!(
        out.iter()
            .any(|l| l.contains(&format!("site: {v1} is current and healthy"))),
        "{out:#?}"
    );
    // It ran over ssh: sshd let the test's key in.
    assert!(
        r.sshd.log().contains("Accepted publickey"),
        "{}",
        r.sshd.log()
    );
    // The secret reached the service, only as *** in the output, and on
    // no command line.
    let data = fx.state.join("services/site/data");
    assert_eq!(fs::read_to_string(data.join("token-seen")).unwrap(), token);
    assert!(out.iter().any(|l| l.contains("with token ***")), "{out:#?}");
    let ps = fs::read_to_string(data.join("ps.txt")).unwrap();
    assert!(ps.contains("ssh"), "{ps}");
    assert!(!ps.contains(token), "a command line holds the secret: {ps}");
    let pid1 = fx.pid("site").unwrap();

    // Release 2: served, release 1's server gone.
    fx.site("site", "cloud", port, "release 2", true, secret_line);
    write_exec(&deploy, &text);
    let c2 = commit(&fx.root, "release 2");
    let (res, out) = fx.run(
        &r.options(Selection::Since {
            since: c1.clone(),
            head: None,
        }),
        &secrets,
    );
    res.unwrap();
    assert_eq!(page(port).as_deref(), Some("release 2"), "{out:#?}");
    assert!(wait_gone(pid1), "release 1's server {pid1} still runs");
    let v2 = format!("2-{}", &c2[..7]);

    // Release 3 fails its health check: rolled back over ssh, 2 serves again.
    fx.site("site", "cloud", port, "release 3", false, secret_line);
    write_exec(&deploy, &text);
    let c3 = commit(&fx.root, "release 3, broken");
    let (res, out) = fx.run(
        &r.options(Selection::Since {
            since: c2.clone(),
            head: None,
        }),
        &secrets,
    );
    let e = res.unwrap_err().to_string();
    let v3 = format!("3-{}", &c3[..7]);
    assert!(e.contains(&format!("release {v3} was not ready")), "{e}");
    assert!(e.contains(&format!("rolled back to {v2}")), "{e}");
    assert_eq!(page(port).as_deref(), Some("release 2"), "{out:#?}");
    assert!(
        fs::read_link(fx.state.join("services/site/current"))
            .unwrap()
            .ends_with(&v2)
    );

    // Status and history over the same ssh settings.
    let site = r.site();
    let st = gitops::status(&site, Some("cloud"), &|n| {
        (n == "SITE_TOKEN").then(|| token.to_string())
    })
    .unwrap();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].current.as_deref(), Some(v2.as_str()));
    assert_eq!(st[0].commit, c2);
    assert!(st[0].health.as_ref().unwrap().ready, "{st:?}");
    let steps: Vec<(Action, EventOutcome)> = gitops::history(&site, "site")
        .unwrap()
        .iter()
        .map(|e| (e.action, e.outcome))
        .collect();
    assert_eq!(
        steps,
        [
            (Action::Install, EventOutcome::Ok),
            (Action::Upgrade, EventOutcome::Ok),
            (Action::AutoRollback, EventOutcome::Ok),
        ]
    );

    // Nowhere: not in the output, the error, the history, the deploy log,
    // nor any file on the "host" but the one the service itself wrote.
    assert!(!out.iter().any(|l| l.contains(token)), "{out:#?}");
    assert!(!e.contains(token), "{e}");
    let holders = files_holding(&fx.state, token, &["data/token-seen"]);
    assert!(holders.is_empty(), "the secret is in {holders:?}");
    assert!(
        !fs::read_to_string(fx.state.join("services/site/deploy.log"))
            .unwrap()
            .is_empty(),
        "the deploy log is written on the host"
    );

    // The service leaves the repository: the next apply stops it over ssh
    // with its release's stop.sh, and records it.
    let pid2 = fx.pid("site").unwrap();
    fs::remove_dir_all(fx.root.join("services/site")).unwrap();
    let c4 = commit(&fx.root, "site retired");
    let (res, out) = fx.run(
        &r.options(Selection::Since {
            since: c3.clone(),
            head: None,
        }),
        &secrets,
    );
    res.unwrap();
    assert!(
        out.iter()
            .any(|l| l.contains("site: removed (stop.sh ran)")),
        "{out:#?}"
    );
    assert!(
        wait_gone(pid2),
        "the removed service's server {pid2} runs on"
    );
    assert!(page(port).is_none());
    assert!(!fx.state.join("services/site/current").exists());
    let last = gitops::history(&site, "site").unwrap().pop().unwrap();
    assert_eq!(
        (last.action, last.outcome),
        (Action::Remove, EventOutcome::Ok)
    );
    assert_eq!(last.from.as_deref(), Some(v2.as_str()));
    // Once removed, it is not removed again.
    let (res, out) = fx.run(
        &r.options(Selection::Since {
            since: c4,
            head: None,
        }),
        &[],
    );
    res.unwrap();
    assert_eq!(out, ["nothing to deploy to cloud"]);
}

#[test]
fn a_hearth_service_over_ssh_runs_the_hosts_binary_and_a_compose_one_needs_an_engine() {
    let Some(r) = SshRepo::new() else { return };
    let fx = &r.fx;
    let port = free_port();
    // The host's "hearth": serves its release folder, as `hearth serve` would serve /ready.
    let bin = fx.root.parent().unwrap().join("bin/hearth");
    write_exec(
        &bin,
        &format!(
            "#!/bin/sh\n[ \"$1 $2 $3\" = \"serve --config hearth.toml\" ] || exit 2\nexec python3 -m http.server {port} --bind 127.0.0.1\n"
        ),
    );
    let infra = fs::read_to_string(fx.root.join("hearth-infra.toml")).unwrap();
    write(
        &fx.root.join("hearth-infra.toml"),
        &format!("{infra}hearth_bin = \"{}\"\n", bin.display()),
    );
    write(
        &fx.root.join("services/chat/service.toml"),
        &format!(
            "environment = \"cloud\"\nkind = \"hearth\"\n[health]\nurl = \"http://127.0.0.1:{port}/hearth.toml\"\nretries = 20\ninterval = \"250ms\"\n"
        ),
    );
    write(
        &fx.root.join("services/chat/hearth.toml"),
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    commit(&fx.root, "chat");
    let (res, out) = fx.run(&r.options_with_key_text(Selection::All), &[]);
    res.unwrap();
    assert!(
        out.iter()
            .any(|l| l.contains("chat: 1-") && l.contains("healthy")),
        "{out:#?}"
    );
    let pid_file = fx.state.join("services/chat/data/hearth.pid");
    let pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert!(page(port).is_some());

    // A compose service: this host has no container engine, so nothing changes.
    write(
        &fx.root.join("services/web/service.toml"),
        "environment = \"cloud\"\nkind = \"compose\"\n[health]\nurl = \"http://127.0.0.1:18089/\"\n",
    );
    write(
        &fx.root.join("services/web/compose.yaml"),
        "services:\n  web:\n    image: busybox:1.36\n",
    );
    commit(&fx.root, "web");
    let (res, _) = fx.run(&r.options_with_key_text(Selection::All), &[]);
    match res {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("web is a compose service and the host has no container engine"),
                "{e}"
            );
            assert!(!fx.state.join("services/web").exists(), "nothing staged");
            eprintln!("SKIPPED: compose apply over ssh needs a container engine on the host ({e})");
        }
        Ok(()) => eprintln!("a container engine answered on the host: compose over ssh ran"),
    }

    // Removed: its Hearth process is stopped over ssh.
    fs::remove_dir_all(fx.root.join("services/chat")).unwrap();
    fs::remove_dir_all(fx.root.join("services/web")).unwrap();
    commit(&fx.root, "chat retired");
    let (res, out) = fx.run(&r.options_with_key_text(Selection::All), &[]);
    res.unwrap();
    assert!(
        out.iter()
            .any(|l| l.contains("chat: removed (the Hearth instance was stopped)")),
        "{out:#?}"
    );
    assert!(wait_gone(pid), "hearth {pid} still runs");
}

#[test]
fn a_connection_lost_mid_deploy_is_a_clear_error() {
    let Some(mut r) = SshRepo::new() else { return };
    let port = free_port();
    r.fx.site("site", "cloud", port, "one", true, "");
    // The deploy step says it started, then takes its time.
    let started = r.fx.root.parent().unwrap().join("started");
    let deploy = r.fx.root.join("services/site/deploy.sh");
    let text = fs::read_to_string(&deploy).unwrap().replace(
        "set -eu\n",
        &format!("set -eu\ntouch {}\nsleep 30\n", started.display()),
    );
    write_exec(&deploy, &text);
    commit(&r.fx.root, "slow");
    let opts = r.options(Selection::All);
    let (res, out) = std::thread::scope(|s| {
        let apply = s.spawn(|| r.fx.run(&opts, &[]));
        let start = Instant::now();
        while !started.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the deploy step never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r.sshd.cut();
        apply.join().unwrap()
    });
    let e = res.unwrap_err().to_string();
    eprintln!("the error: {e}\nthe output: {out:#?}");
    assert!(e.starts_with("site: "), "{e}");
    assert!(
        e.contains(&format!(
            "the connection to {}@127.0.0.1 failed during deploy.sh: run a step on",
            r.sshd.user
        )),
        "{e}"
    );
    assert!(e.contains("the connection was lost"), "{e}");
    assert!(e.contains("what runs there now is unknown"), "{e}");
    assert!(e.contains("hearth deploy status --env cloud"), "{e}");
}

/// No container engine runs here, so a stand-in `docker` first on the host's
/// PATH plays one: it answers `compose version` and `info`, records every
/// call, and for `compose … up -d` serves the release folder on a port as the
/// project's container would (`down` stops it). What this proves: the engine
/// check, the compose command lines, the variables they get and the health
/// check over ssh; not Docker itself.
#[test]
fn a_compose_service_over_ssh_runs_compose_up_and_down_on_the_host() {
    let port = free_port();
    let Some(r) = SshRepo::with_host_bin(|tmp| {
        let bin = tmp.join("host-bin");
        write_exec(
            &bin.join("docker"),
            &format!(
                r#"#!/bin/sh
log={log}
echo "$*" >>"$log"
case "$*" in
  "compose version" | info) exit 0 ;;
  *" up -d --remove-orphans")
    echo "secret seen: ${{WEB_SECRET:+yes}}" >>"$log"
    pid="$DEPLOY_DATA_DIR/container.pid"
    if [ -f "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; sleep 0.3; fi
    nohup python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &
    echo "$!" >"$pid"
    echo " Container hearth-web-web-1  Started" ;;
  *" down")
    echo "secret seen at down: ${{WEB_SECRET:+yes}}" >>"$log"
    kill "$(cat "$DEPLOY_DATA_DIR/container.pid")"
    rm -f "$DEPLOY_DATA_DIR/container.pid"
    echo " Container hearth-web-web-1  Removed" ;;
  *) echo "unexpected: docker $*" >&2; exit 1 ;;
esac
"#,
                log = tmp.join("docker.log").display()
            ),
        );
        Some(bin)
    }) else {
        return;
    };
    let fx = &r.fx;
    let log = fx.root.parent().unwrap().join("docker.log");
    write(
        &fx.root.join("services/web/service.toml"),
        &format!(
            "environment = \"cloud\"\nkind = \"compose\"\nsecrets = [\"WEB_SECRET\"]\n[health]\nurl = \"http://127.0.0.1:{port}/compose.yaml\"\nretries = 20\ninterval = \"250ms\"\n"
        ),
    );
    write(
        &fx.root.join("services/web/compose.yaml"),
        &format!(
            "services:\n  web:\n    image: busybox:1.36\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    ports: [\"127.0.0.1:{port}:8080\"]\n"
        ),
    );
    let c1 = commit(&fx.root, "web");
    let (res, out) = fx.run(&r.options(Selection::All), &[("WEB_SECRET", "w-5ecret")]);
    res.unwrap();
    assert!(
        out.iter()
            .any(|l| l.contains("[web]  Container hearth-web-web-1  Started")),
        "{out:#?}"
    );
    assert!(
        out.iter()
            .any(|l| l.contains("web: 1-") && l.contains("healthy")),
        "{out:#?}"
    );
    assert!(page(port).is_some());
    let calls = fs::read_to_string(&log).unwrap();
    assert!(calls.contains("compose version\n"), "{calls}");
    assert!(calls.contains("info\n"), "{calls}");
    assert!(
        calls.contains("compose -p hearth-web -f compose.yaml up -d --remove-orphans\n"),
        "{calls}"
    );
    assert!(calls.contains("secret seen: yes"), "{calls}");
    let pid: u32 = fs::read_to_string(fx.state.join("services/web/data/container.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Removed: `docker compose down` on the host, with the secrets its
    // release declares (compose files interpolate them).
    fs::remove_dir_all(fx.root.join("services/web")).unwrap();
    commit(&fx.root, "web retired");
    let (res, out) = fx.run(
        &r.options(Selection::Since {
            since: c1,
            head: None,
        }),
        &[("WEB_SECRET", "w-5ecret")],
    );
    res.unwrap();
    assert!(
        out.iter()
            .any(|l| l.contains("web: removed (docker compose down ran)")),
        "{out:#?}"
    );
    let calls = fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("compose -p hearth-web -f compose.yaml down\n"),
        "{calls}"
    );
    assert!(calls.contains("secret seen at down: yes"), "{calls}");
    assert!(!out.iter().any(|l| l.contains("w-5ecret")), "{out:#?}");
    assert!(wait_gone(pid), "the stand-in container {pid} runs on");
}

/// Two applies to the same SSH environment at once (two runners, or two
/// merges): the second waits for the host's lock, never interleaves.
#[test]
fn two_ssh_applies_at_once_serialize_on_the_hosts_lock() {
    let Some(r) = SshRepo::new() else { return };
    let fx = &r.fx;
    let port = free_port();
    fx.site("site", "cloud", port, "one", true, "");
    let marks = fx.root.parent().unwrap().join("marks");
    let deploy = fx.root.join("services/site/deploy.sh");
    let text = fs::read_to_string(&deploy).unwrap().replace(
        "set -eu\n",
        &format!(
            "set -eu\necho start >>{m}\nsleep 2\necho end >>{m}\n",
            m = marks.display()
        ),
    );
    write_exec(&deploy, &text);
    commit(&fx.root, "slow");
    let opts = r.options(Selection::All);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| fx.run(&opts, &[]));
        // The first is in its deploy step, so it holds the host's lock.
        let start = Instant::now();
        while !fs::read_to_string(&marks).is_ok_and(|m| m.starts_with("start")) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no deploy started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let b = s.spawn(|| fx.run(&opts, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.0.unwrap();
    b.0.unwrap();
    assert!(
        b.1.iter()
            .any(|l| l.starts_with("waiting for another apply on the host (held since")),
        "{:#?}",
        b.1
    );
    assert!(
        b.1.iter().any(|l| l.starts_with("site: unchanged")),
        "{:#?}",
        b.1
    );
    let marks = fs::read_to_string(&marks).unwrap();
    assert_eq!(marks, "start\nend\n");
    assert_eq!(page(port).as_deref(), Some("one"));
}
