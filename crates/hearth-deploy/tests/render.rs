//! The renderings of `deploy/examples/gpu-vm.toml`: snapshots, the facts they
//! share, the manifest's errors, and the installer run for real under a prefix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // helpers fail the test loudly

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_deploy::manifest::{Manifest, ManifestError};
use hearth_deploy::render;

fn example_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/gpu-vm.toml");
    std::fs::read_to_string(&path).unwrap()
}

fn example() -> Manifest {
    Manifest::from_str(&example_text(), "deploy/examples/gpu-vm.toml").unwrap()
}

#[test]
fn snapshots() {
    let m = example();
    for kind in render::KINDS {
        let text = render::render(kind, &m).unwrap();
        insta::assert_snapshot!(kind.replace('-', "_"), text);
    }
    assert!(render::render("helm", &m).is_none());
}

#[test]
fn renderings_agree() {
    let m = example();
    let all: Vec<(&str, String)> = render::KINDS
        .iter()
        .map(|k| (*k, render::render(k, &m).unwrap()))
        .collect();
    let get = |k: &str| &all.iter().find(|(kind, _)| *kind == k).unwrap().1;
    // Every rendering names the release.
    for (kind, text) in &all {
        if *kind != "hearth-toml" && *kind != "systemd-env" {
            assert!(text.contains("0.7.0"), "{kind} does not name the version");
        }
    }
    // The installer is the one that installs; cloud-init and the StackScript carry it whole.
    let install = get("install-sh");
    let indented: String = install
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("      {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        get("cloud-init").contains(&indented),
        "cloud-init carries the installer verbatim"
    );
    // The StackScript carries it with a mark where each form field's answer goes:
    // with the manifest's values (the answers left empty) it is the same installer.
    let carried = get("stackscript")
        .split_once("<<'HEARTH_INSTALLER_EOF'\n")
        .and_then(|(_, rest)| rest.split_once("HEARTH_INSTALLER_EOF\n"))
        .map(|(body, _)| body)
        .expect("the StackScript carries the installer");
    assert_eq!(
        carried
            .replace("@@HEARTH_UDF_MODEL@@", "Qwen/Qwen2.5-Coder-7B-Instruct")
            .replace("@@HEARTH_UDF_DOMAIN@@", "llm.example.com"),
        *install,
        "the StackScript carries the installer"
    );
    // The installer writes the very unit, env and config the other renderings show.
    for kind in ["systemd-unit", "systemd-env", "hearth-toml"] {
        assert!(
            install.contains(get(kind).as_str()),
            "install-sh embeds {kind}"
        );
    }
    // Paths and the port.
    let unit = get("systemd-unit");
    assert!(unit.contains(
        "ExecStart=/opt/hearth/current/bin/hearth serve --config /etc/hearth/hearth.toml"
    ));
    assert!(
        unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "443 < 1024"
    );
    assert!(install.contains("$ROOT/opt/hearth/releases/$HEARTH_VERSION"));
    assert!(install.contains("HEARTH_VERSION='0.7.0'"));
    assert!(install.contains("HEARTH_PORTS='443'"), "443 only");
    let toml = get("hearth-toml");
    assert!(toml.contains("listen = \"0.0.0.0:443\""));
    assert!(
        toml.contains("[server.tls]\nmode = \"self-signed\"\nnames = [\"llm.example.com\"]\n"),
        "{toml}"
    );
    assert!(toml.contains("data_dir = \"/var/lib/hearth\""));
    assert!(toml.contains("key_file = \"/etc/hearth/credentials\""));
    let compose = get("compose");
    assert!(compose.contains("image: ghcr.io/hearth/hearth:0.7.0"));
    assert!(compose.contains("\"0.0.0.0:443:443\""));
    assert!(compose.contains("\"/var/lib/hearth:/var/lib/hearth\""));
    assert!(compose.contains("/etc/hearth:/etc/hearth"));
    assert!(
        compose.contains("device_ids: [\"0\"]"),
        "the model's gpus = [0]"
    );
    // The models pass through verbatim, and parse as the host's config.
    let host: toml::Table = toml::from_str(toml).unwrap();
    assert_eq!(
        host["models"].as_array().unwrap()[0].as_table().unwrap(),
        &m.models[0]
    );
}

// ---- the manifest's errors ----

const MINIMAL: &str = r#"
[host]
name = "box"
target = "local"

[hearth]
tls = "off"

[release]
version = "1.2.3"
url = "https://example.com/hearth-1.2.3-x86_64-unknown-linux-gnu.tar.gz"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn err(text: &str) -> ManifestError {
    Manifest::from_str(text, "deploy.toml").unwrap_err()
}

#[test]
fn minimal_defaults() {
    let m = Manifest::from_str(MINIMAL, "deploy.toml").unwrap();
    assert_eq!(m.hearth.listen, "127.0.0.1:8080");
    assert!(m.hearth.firewall && !m.hearth.allow_plain_http);
    let tls_default = Manifest::from_str(&MINIMAL.replace("tls = \"off\"", ""), "d").unwrap();
    assert_eq!(tls_default.hearth.listen, "0.0.0.0:443");
    let ssh = MINIMAL.replace(
        "target = \"local\"",
        "target = \"ssh\"\naddress = \"10.0.0.2\"",
    );
    let m = Manifest::from_str(&ssh, "d").unwrap();
    assert_eq!(
        m.host.target,
        hearth_deploy::manifest::Target::Ssh {
            address: "10.0.0.2".into(),
            user: "root".into(),
            port: 22
        }
    );
    // Plain HTTP on a port above 1024 needs no capability.
    let unit = render::systemd_unit(&Manifest::from_str(MINIMAL, "d").unwrap());
    assert!(!unit.contains("AmbientCapabilities"));
}

#[test]
fn bad_sha256() {
    let e = err(&MINIMAL.replace(&"0".repeat(64), "abc123"));
    assert_eq!(
        e.to_string(),
        "deploy.toml:12: `release.sha256`: must be 64 hex digits (got 6 characters); copy it from the release's `.sha256` file"
    );
    let e = err(&MINIMAL.replace(&"0".repeat(64), &"z".repeat(64)));
    assert!(
        e.to_string().contains("(got 64 characters, not all hex)"),
        "{e}"
    );
}

#[test]
fn acme_needs_domain_and_email() {
    let acme = MINIMAL.replace("tls = \"off\"", "tls = \"acme\"");
    let e = err(&acme);
    assert_eq!((e.line, e.key.as_str()), (Some(7), "hearth.domain"));
    assert!(
        e.to_string()
            .starts_with("deploy.toml:7: `hearth.domain`: is required when `tls = \"acme\"`"),
        "{e}"
    );
    let e = err(&acme.replace(
        "tls = \"acme\"",
        "tls = \"acme\"\ndomain = \"llm.example.com\"",
    ));
    assert_eq!(e.key, "hearth.admin_email");
    assert!(
        e.to_string()
            .contains("set `admin_email = \"you@example.com\"`"),
        "{e}"
    );
    // A domain is a public DNS name, and the CA checks it on port 443.
    let e = err(&acme.replace(
        "tls = \"acme\"",
        "tls = \"acme\"\ndomain = \"203.0.113.10\"\nadmin_email = \"a@example.com\"",
    ));
    assert_eq!((e.line, e.key.as_str()), (Some(8), "hearth.domain"));
    assert!(e.message.contains("not a public DNS name"), "{e}");
    let e = err(&acme.replace(
        "tls = \"acme\"",
        "tls = \"acme\"\ndomain = \"llm.example.com\"\nadmin_email = \"a@example.com\"\nlisten = \"0.0.0.0:8443\"",
    ));
    assert_eq!((e.line, e.key.as_str()), (Some(10), "hearth.listen"));
    assert!(e.message.contains("needs Hearth on port 443"), "{e}");
}

#[test]
fn acme_renders_its_tls_section_and_opens_only_443() {
    let acme = MINIMAL.replace(
        "tls = \"off\"",
        "tls = \"acme\"\ndomain = \"llm.example.com\"\nadmin_email = \"ops@example.com\"",
    );
    let m = Manifest::from_str(&acme, "deploy.toml").unwrap();
    assert_eq!(m.hearth.listen, "0.0.0.0:443");
    let toml = m.hearth_toml();
    assert!(
        toml.contains(
            "mode = \"acme\"\ndomains = [\"llm.example.com\"]\nemail = \"ops@example.com\"\n"
        ),
        "{toml}"
    );
    // Hearth accepts it as is (a key in the environment stands in for key_file).
    let toml = toml.replace("key_file = \"/etc/hearth/credentials\"", "key_env = \"K\"");
    let config = hearth_config::load_str(
        &toml,
        "hearth.toml",
        &hearth_config::MapEnv::new([("K", "sk-123456789")]),
    )
    .unwrap_or_else(|e| panic!("hearth-config rejects the acme hearth.toml: {e}"));
    assert_eq!(config.server.tls.mode, hearth_config::TlsMode::Acme);
    assert_eq!(config.server.tls.domains, ["llm.example.com"]);
    assert_eq!(
        config.server.tls.directory_url(),
        hearth_config::LETS_ENCRYPT
    );
    // TLS-ALPN-01 comes to Hearth's own port: nothing on 80.
    let install = render::render("install-sh", &m).unwrap();
    assert!(install.contains("HEARTH_PORTS='443'\n"), "443 only");
}

#[test]
fn plain_http_on_a_public_listen() {
    let public = MINIMAL.replace("tls = \"off\"", "tls = \"off\"\nlisten = \"0.0.0.0:8080\"");
    let e = err(&public);
    assert_eq!((e.line, e.key.as_str()), (Some(8), "hearth.listen"));
    assert!(e.message.contains("set `allow_plain_http = true`"), "{e}");
    let allowed = public.replace("tls = \"off\"", "tls = \"off\"\nallow_plain_http = true");
    assert!(
        Manifest::from_str(&allowed, "d")
            .unwrap()
            .hearth
            .allow_plain_http
    );
}

#[test]
fn unknown_key() {
    let e = err(&MINIMAL.replace("tls = \"off\"", "tls = \"off\"\nlisten_on = \"x\""));
    assert_eq!(e.line, Some(8));
    assert!(
        e.to_string()
            .starts_with("deploy.toml:8: unknown field `listen_on`, expected one of"),
        "{e}"
    );
    assert!(e.to_string().contains("`listen`"), "{e}");
}

#[test]
fn other_errors() {
    let e = err(&MINIMAL.replace("tls = \"off\"", "tls = \"on\""));
    assert_eq!(e.key, "hearth.tls");
    assert!(
        e.message
            .contains("\"self-signed\", \"acme\", \"files\" or \"off\"")
    );
    let e = err(&MINIMAL.replace("target = \"local\"", "target = \"ssh\""));
    assert_eq!((e.line, e.key.as_str()), (Some(4), "host.address"));
    let e = err(&MINIMAL.replace("hearth-1.2.3-x86", "hearth-1.2.4-x86"));
    assert!(
        e.to_string()
            .contains("must end with `/hearth-1.2.3-x86_64-unknown-linux-gnu.tar.gz`"),
        "{e}"
    );
    let e = err(&format!(
        "{MINIMAL}\n[[models]]\nname = \"m\"\ndescription = \"a\\nHEARTH_TOML_EOF\\nb\"\n"
    ));
    assert_eq!(e.key, "models", "{e}");
    let e = err("[host]\nname = \"x\"\n");
    assert!(
        e.to_string().contains("missing field `target`") || e.to_string().contains("missing field"),
        "{e}"
    );
}

// ---- the installer, run for real under a prefix ----

/// A fake release: `bin/hearth` as a tiny script, and the tarball's sha256.
fn fake_release(dir: &Path, version: &str) -> (PathBuf, String) {
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("bin")).unwrap();
    let bin = stage.join("bin/hearth");
    std::fs::write(&bin, "#!/bin/sh\necho \"hearth (fake) $*\"\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tarball = dir.join(format!("hearth-{version}-x86_64-unknown-linux-gnu.tar.gz"));
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .arg("bin")
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new("sha256sum").arg(&tarball).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_owned();
    (tarball, sha)
}

/// Every path under `root`: its kind, mode, and content or link target.
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &p, out);
                format!("dir {mode:o}")
            } else {
                format!(
                    "file {mode:o} {}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn run_installer(script: &Path, root: &Path, tarball: &Path) -> std::process::Output {
    Command::new("sh")
        .arg(script)
        .env("HEARTH_ROOT", root)
        .env("HEARTH_RELEASE_FILE", tarball)
        .output()
        .unwrap()
}

#[test]
fn installer_installs_under_a_prefix_and_a_second_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (tarball, sha) = fake_release(tmp.path(), "0.7.0");
    let m = Manifest::from_str(
        &example_text().replace(
            "9f2c1d7e4b3a5c6d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f",
            &sha,
        ),
        "gpu-vm.toml",
    )
    .unwrap();
    let script = tmp.path().join("install.sh");
    std::fs::write(&script, render::install_sh(&m)).unwrap();
    let root = tmp.path().join("root");

    let first = run_installer(&script, &root, &tarball);
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{log}");
    assert!(log.contains("release 0.7.0 verified"), "{log}");

    let before = listing(&root);
    let paths: Vec<&str> = before.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "etc",
            "etc/hearth",
            "etc/hearth/credentials",
            "etc/hearth/hearth.env",
            "etc/hearth/hearth.toml",
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/hearth.service",
            "etc/update-motd.d",
            "etc/update-motd.d/50-hearth",
            "opt",
            "opt/hearth",
            "opt/hearth/current",
            "opt/hearth/releases",
            "opt/hearth/releases/0.7.0",
            "opt/hearth/releases/0.7.0/bin",
            "opt/hearth/releases/0.7.0/bin/hearth",
            "var",
            "var/lib",
            "var/lib/hearth",
            "var/log",
            "var/log/hearth",
        ]
    );
    assert_eq!(before["opt/hearth/current"], "link -> releases/0.7.0");
    let cred = &before["etc/hearth/credentials"];
    assert!(cred.starts_with("file 600 sk-"), "{cred}");
    let key = cred.trim_start_matches("file 600 sk-");
    assert!(
        key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(
        before["etc/hearth/hearth.toml"],
        format!("file 644 {}", m.hearth_toml())
    );
    assert_eq!(
        before["etc/systemd/system/hearth.service"],
        format!("file 644 {}", render::systemd_unit(&m))
    );
    assert_eq!(
        before["etc/hearth/hearth.env"],
        format!("file 644 {}", render::systemd_env(&m))
    );
    assert!(before["opt/hearth/releases/0.7.0/bin/hearth"].starts_with("file 755 #!/bin/sh"));
    assert_eq!(before["var/lib/hearth"], "dir 750");
    // Hearth itself accepts the installed config (the key read from the prefix).
    let installed = std::fs::read_to_string(root.join("etc/hearth/hearth.toml")).unwrap();
    let installed = installed.replace(
        "\"/etc/hearth/credentials\"",
        &format!(
            "{:?}",
            root.join("etc/hearth/credentials").display().to_string()
        ),
    );
    let config =
        hearth_config::load_str(&installed, "hearth.toml", &hearth_config::MapEnv::default())
            .unwrap_or_else(|e| panic!("hearth-config rejects the installed hearth.toml: {e}"));
    assert_eq!(config.server.listen, "0.0.0.0:443");
    assert_eq!(config.models.len(), 1);
    // The installed binary runs through the current link.
    let out = Command::new(root.join("opt/hearth/current/bin/hearth"))
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hearth (fake) doctor\n"
    );

    let second = run_installer(&script, &root, &tarball);
    let log = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{log}");
    assert!(log.contains("nothing to change"), "{log}");
    assert_eq!(listing(&root), before, "the second run changed the root");
}

#[test]
fn installer_with_a_wrong_checksum_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (tarball, _) = fake_release(tmp.path(), "0.7.0");
    let script = tmp.path().join("install.sh");
    std::fs::write(&script, render::install_sh(&example())).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc/hearth")).unwrap();
    std::fs::write(root.join("etc/hearth/credentials"), "sk-keep").unwrap();
    let before = listing(&root);

    let out = run_installer(&script, &root, &tarball);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("checksum mismatch"), "{log}");
    assert!(log.contains("nothing was changed"), "{log}");
    assert_eq!(listing(&root), before);
}

#[test]
fn installer_upgrades_and_keeps_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut key = None;
    for version in ["0.7.0", "0.8.0"] {
        let dir = tmp.path().join(version);
        let (tarball, sha) = fake_release(&dir, version);
        let text = MINIMAL
            .replace("1.2.3", version)
            .replace(&"0".repeat(64), &sha);
        let m = Manifest::from_str(&text, "d").unwrap();
        let script = dir.join("install.sh");
        std::fs::write(&script, render::install_sh(&m)).unwrap();
        let out = run_installer(&script, &root, &tarball);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let l = listing(&root);
        assert_eq!(
            l["opt/hearth/current"],
            format!("link -> releases/{version}")
        );
        let k = l["etc/hearth/credentials"].clone();
        assert_eq!(
            key.get_or_insert(k.clone()),
            &k,
            "the key survives an upgrade"
        );
    }
    // The previous release stays for a rollback.
    assert!(root.join("opt/hearth/releases/0.7.0/bin/hearth").is_file());
}

#[test]
fn installer_takes_a_tarball_with_a_top_folder() {
    // Release tarballs (cargo-dist's among them) often hold one folder named after the archive.
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp
        .path()
        .join("stage/hearth-1.2.3-x86_64-unknown-linux-gnu/bin");
    std::fs::create_dir_all(&top).unwrap();
    std::fs::write(top.join("hearth"), "#!/bin/sh\n").unwrap();
    let tarball = tmp
        .path()
        .join("hearth-1.2.3-x86_64-unknown-linux-gnu.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(tmp.path().join("stage"))
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new("sha256sum").arg(&tarball).output().unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_owned();
    let m = Manifest::from_str(&MINIMAL.replace(&"0".repeat(64), &sha), "d").unwrap();
    let script = tmp.path().join("install.sh");
    std::fs::write(&script, render::install_sh(&m)).unwrap();
    let root = tmp.path().join("root");
    let out = run_installer(&script, &root, &tarball);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = listing(&root);
    assert_eq!(
        l["opt/hearth/releases/1.2.3/bin/hearth"],
        "file 755 #!/bin/sh\n"
    );
    // Loopback plain HTTP: no GPU, no capability, compose binds loopback.
    let compose = render::compose(&m);
    assert!(
        compose.contains("\"127.0.0.1:8080:8080\"") && !compose.contains("deploy:"),
        "{compose}"
    );
}

#[test]
fn an_ssh_address_or_user_that_ssh_would_read_as_an_option_is_refused() {
    let text = example_text();
    for (from, to, key) in [
        (
            "address = \"203.0.113.10\"",
            "address = \"-oProxyCommand=sh\"",
            "host.address",
        ),
        ("user = \"root\"", "user = \"root;id\"", "host.user"),
    ] {
        assert!(text.contains(from), "{from}");
        let e = Manifest::from_str(&text.replace(from, to), "deploy.toml").unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.to_string().contains("not starting with `-`"), "{e}");
    }
}

// ---- the StackScript, run for real under a prefix, with the form's answers ----

/// Renders `manifest_text` (its release replaced by a fake one) as a StackScript and
/// runs it with the form's `answers` under a prefix: the outcome and the root.
fn run_stackscript(
    manifest_text: &str,
    answers: &[(&str, &str)],
) -> (std::process::Output, tempfile::TempDir, Manifest) {
    let tmp = tempfile::tempdir().unwrap();
    let (tarball, sha) = fake_release(tmp.path(), "0.7.0");
    let m = Manifest::from_str(
        &manifest_text.replace(
            "9f2c1d7e4b3a5c6d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f",
            &sha,
        ),
        "deploy.toml",
    )
    .unwrap();
    let script = tmp.path().join("stackscript.sh");
    std::fs::write(&script, render::stackscript(&m)).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .env("HEARTH_ROOT", tmp.path().join("root"))
        .env("HEARTH_RELEASE_FILE", &tarball);
    for (k, v) in answers {
        cmd.env(k, v);
    }
    (cmd.output().unwrap(), tmp, m)
}

/// The installed hearth.toml, as Hearth reads it (its key file under the prefix).
fn installed_config(root: &Path) -> (String, hearth_config::Config) {
    let text = std::fs::read_to_string(root.join("etc/hearth/hearth.toml")).unwrap();
    let readable = text.replace(
        "\"/etc/hearth/credentials\"",
        &format!(
            "{:?}",
            root.join("etc/hearth/credentials").display().to_string()
        ),
    );
    let config =
        hearth_config::load_str(&readable, "hearth.toml", &hearth_config::MapEnv::default())
            .unwrap_or_else(|e| panic!("hearth-config rejects the installed hearth.toml: {e}"));
    (text, config)
}

#[test]
fn stackscript_answers_become_the_installed_config() {
    let (out, tmp, _) = run_stackscript(
        &example_text(),
        &[
            ("MODEL", "meta-llama/Llama-3.1-8B-Instruct"),
            ("DOMAIN", "chat.example.org"),
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let root = tmp.path().join("root");
    let (text, config) = installed_config(&root);
    assert!(!text.contains("@@HEARTH_UDF"), "{text}");
    let launch = config.models[0]
        .upstream_config()
        .unwrap()
        .launch
        .as_ref()
        .unwrap();
    assert_eq!(
        launch.model.as_deref(),
        Some("meta-llama/Llama-3.1-8B-Instruct")
    );
    assert!(text.contains("names = [\"chat.example.org\"]"), "{text}");
    let recorded = std::fs::read_to_string(root.join("etc/hearth/stackscript.env")).unwrap();
    assert!(
        recorded.contains("HEARTH_UDF_MODEL=meta-llama/Llama-3.1-8B-Instruct"),
        "{recorded}"
    );
    assert!(
        recorded.contains("HEARTH_UDF_DOMAIN=chat.example.org"),
        "{recorded}"
    );
}

#[test]
fn stackscript_empty_answers_keep_the_manifests_values() {
    let (out, tmp, m) = run_stackscript(&example_text(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (text, _) = installed_config(&tmp.path().join("root"));
    assert_eq!(text, m.hearth_toml());
}

#[test]
fn stackscript_acme_and_a_model_by_url_take_their_answers() {
    let text = example_text().replace("tls = \"self-signed\"", "tls = \"acme\"");
    let models = text.find("[[models]]").unwrap();
    let text = format!(
        "{}[[models]]\nname = \"smol\"\nurl = \"https://models.example.com/smol/smol-q4.gguf\"\n",
        &text[..models]
    );
    let m = Manifest::from_str(&text, "deploy.toml").unwrap();
    let script = render::stackscript(&m);
    for field in ["name=\"model\"", "name=\"domain\"", "name=\"admin_email\""] {
        assert!(script.contains(field), "{field} missing from the form");
    }
    let (out, tmp, _) = run_stackscript(
        &text,
        &[
            (
                "MODEL",
                "https://mirror.example.net/q/qwen2.5-0.5b-q4_k_m.gguf",
            ),
            ("DOMAIN", "ai.example.org"),
            ("ADMIN_EMAIL", "me@example.org"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, config) = installed_config(&tmp.path().join("root"));
    let e = config.models[0].embedded_config().unwrap();
    assert_eq!(
        e.url.as_deref(),
        Some("https://mirror.example.net/q/qwen2.5-0.5b-q4_k_m.gguf")
    );
    assert!(
        e.path.ends_with("models/qwen2.5-0.5b-q4_k_m.gguf"),
        "{}",
        e.path.display()
    );
    let shown = format!("{:?}", config.server.tls);
    assert!(
        shown.contains("ai.example.org") && shown.contains("me@example.org"),
        "{shown}"
    );
}

#[test]
fn stackscript_refuses_a_hostile_answer_and_installs_nothing() {
    for (field, answer) in [
        ("DOMAIN", "x|y\"; touch /tmp/hearth-pwned"),
        ("MODEL", "Qwen/Qwen2.5 & rm -rf /"),
        ("DOMAIN", "a\nb.example.com"),
    ] {
        let (out, tmp, _) = run_stackscript(&example_text(), &[(field, answer)]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{field}={answer:?} was accepted: {log}"
        );
        let name = field.to_ascii_lowercase();
        assert!(
            log.contains(&format!("the form's {name} field must be")),
            "{log}"
        );
        let root = tmp.path().join("root");
        assert!(!root.join("etc/hearth/hearth.toml").exists());
        assert!(!root.join("opt/hearth/current").exists());
    }
    assert!(!Path::new("/tmp/hearth-pwned").exists());
}

/// A folder to be the installer's whole `PATH`: every command of `/usr/bin` and
/// `/bin` but curl and wget, an `apt-get` that logs its arguments to `apt.log`
/// (and fails when `apt-fails` exists, else "installs" curl), and, with
/// `curl`, a curl that copies `tarball` to its `-o` file.
fn shim_path(dir: &Path, tarball: &Path, curl: bool) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for sys in ["/usr/bin", "/bin"] {
        for e in std::fs::read_dir(sys).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            if ["curl", "wget", "apt-get"].contains(&name.to_str().unwrap_or("")) {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), bin.join(&name));
        }
    }
    let curl_sh = format!(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -o ] && cp {} \"$2\"; shift; done\n",
        tarball.display()
    );
    let apt = format!(
        "#!/bin/sh\necho \"$*\" >> {log}\n[ -e {fails} ] && exit 100\n[ \"$1\" = install ] && printf '%s' '{curl}' > {bin}/curl && chmod +x {bin}/curl\nexit 0\n",
        log = dir.join("apt.log").display(),
        fails = dir.join("apt-fails").display(),
        curl = curl_sh,
        bin = bin.display(),
    );
    std::fs::write(bin.join("apt-get"), apt).unwrap();
    std::fs::set_permissions(bin.join("apt-get"), std::fs::Permissions::from_mode(0o755)).unwrap();
    if curl {
        std::fs::write(bin.join("curl"), curl_sh).unwrap();
        std::fs::set_permissions(bin.join("curl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn installer_installs_curl_with_apt_get_only_where_it_is_missing() {
    for (case, curl, apt_fails) in [
        ("missing", false, false),
        ("there", true, false),
        ("apt fails", false, true),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (tarball, sha) = fake_release(tmp.path(), "0.7.0");
        let text = MINIMAL
            .replace("1.2.3", "0.7.0")
            .replace(&"0".repeat(64), &sha);
        let m = Manifest::from_str(&text, "d").unwrap();
        let script = tmp.path().join("install.sh");
        std::fs::write(&script, render::install_sh(&m)).unwrap();
        let bin = shim_path(tmp.path(), &tarball, curl);
        if apt_fails {
            std::fs::write(tmp.path().join("apt-fails"), "").unwrap();
        }
        let root = tmp.path().join("root");
        // Downloaded (no HEARTH_RELEASE_FILE), under a prefix, with only the shims.
        let out = Command::new(bin.join("sh"))
            .arg(&script)
            .env_clear()
            .env("PATH", &bin)
            .env("HEARTH_ROOT", &root)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let apt = std::fs::read_to_string(tmp.path().join("apt.log")).unwrap_or_default();
        match case {
            "missing" => {
                assert!(out.status.success(), "{case}: {log}");
                assert!(
                    log.contains("installing curl and ca-certificates (apt-get)"),
                    "{log}"
                );
                assert_eq!(
                    apt,
                    "update -qq\ninstall -y -qq --no-install-recommends curl ca-certificates\n"
                );
                assert!(log.contains("release 0.7.0 verified"), "{log}");
            }
            "there" => {
                assert!(out.status.success(), "{case}: {log}");
                assert_eq!(apt, "", "apt-get ran though curl is there");
                assert!(!log.contains("apt-get"), "{log}");
            }
            _ => {
                assert!(!out.status.success(), "{case}: {log}");
                assert!(
                    log.contains("cannot install curl and ca-certificates with apt-get; install curl or wget, or set HEARTH_RELEASE_FILE"),
                    "{log}"
                );
                assert!(!root.exists(), "{case}: the root was written");
            }
        }
    }
}
