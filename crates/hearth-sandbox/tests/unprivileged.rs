//! Hearth started by an ordinary user: no cgroup writes, one mapped uid. When the suite
//! runs as root, this re-runs the probe below as `nobody` through `setpriv`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use hearth_sandbox::{Isolation, Options, Sandbox};

#[test]
fn sandbox_works_for_an_ordinary_user() {
    // SAFETY-free check of our own uid through /proc (no libc in this test crate).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return unprivileged_probe();
    }
    // CI keeps its target dir under root's home (often 0700): run a copy of this test
    // binary from a folder `nobody` can reach.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("unprivileged-tests");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "unprivileged_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir("/")
        .output()
        .expect("setpriv (util-linux) is needed to test the unprivileged path as root");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("PROBE RAN AS 65534"), "{stdout}\n{stderr}");
}

#[test]
#[ignore = "helper for sandbox_works_for_an_ordinary_user"]
fn unprivileged_probe() {
    // The system python: the repository's venv may sit under a home `nobody` cannot
    // enter, and the probe needs only the standard library.
    let options = |isolation| Options {
        isolation,
        ..Options::default()
    };
    let sb = Sandbox::new(options(Isolation::Namespaces));
    let o = run_py(
        &sb,
        "import os, socket\n\
         print('UID', os.getuid())\n\
         try:\n\
         \x20   open('/etc/shadow'); print('READ')\n\
         except OSError:\n\
         \x20   print('BLOCKED')\n\
         try:\n\
         \x20   socket.create_connection(('127.0.0.1', 22), timeout=2); print('CONNECTED')\n\
         except OSError:\n\
         \x20   print('BLOCKED')\n\
         print('PIDS', [p for p in os.listdir('/proc') if p.isdigit()])\n\
         open('/output/x.txt', 'w').write('ok')\n\
         print('DONE')",
    );
    assert!(o.success(), "{o:#?}");
    assert_eq!(o.isolation, "namespaces");
    assert!(
        o.stdout.contains("UID 1000\nBLOCKED\nBLOCKED\nPIDS ['1']"),
        "{o:#?}"
    );
    assert_eq!(o.file("x.txt").unwrap().data, b"ok");

    // Without writable cgroups the limits fall back to rlimits, with warnings.
    let mut spec = py("import os\nwhile True:\n    os.fork()\n");
    spec.limits.pids = 32;
    spec.limits.wall_time = Duration::from_secs(10);
    let o = run(&sb, &spec);
    assert!(!o.success() && o.usage.wall_ms < 10_000, "{o:#?}");

    let mut spec = py("chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n");
    spec.limits.memory_bytes = 256 << 20;
    let o = run(&sb, &spec);
    assert!(!o.success(), "{o:#?}");

    let o = run_py(
        &sandbox_with(Isolation::Landlock),
        "import os\ntry:\n    open('/usr/x', 'w')\nexcept OSError:\n    print('BLOCKED')\nprint('DONE')",
    );
    assert!(o.stdout.contains("BLOCKED\nDONE"), "{o:#?}");

    let uid = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = uid
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    println!("PROBE RAN AS {uid}");
}
