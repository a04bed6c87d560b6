//! The fallback for hosts without user namespaces (many containers and pods):
//! Landlock + seccomp + rlimits + cgroups, forced here so it is tested on every host.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use hearth_sandbox::{Isolation, LimitKind};

fn landlock() -> hearth_sandbox::Sandbox {
    sandbox_with(Isolation::Landlock)
}

fn completed(o: &hearth_sandbox::Outcome) -> &str {
    assert!(o.stdout.contains("DONE"), "script did not finish: {o:#?}");
    assert_eq!(o.isolation, "landlock");
    &o.stdout
}

#[test]
fn python_with_numpy_runs_and_writes_output() {
    let o = run_py(
        &landlock(),
        "import numpy as np, os\n\
         open(os.environ['HEARTH_OUTPUT'] + '/sum.txt', 'w').write(str(np.arange(5).sum()))\n\
         open('rel.txt', 'w').write('cwd is the output folder')\n\
         print('DONE')",
    );
    completed(&o);
    assert!(o.success(), "{o:#?}");
    assert_eq!(o.file("sum.txt").unwrap().data, b"10");
    assert!(o.file("rel.txt").is_some());
}

#[test]
fn no_network_at_all() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let o = run_py(
        &landlock(),
        &format!(
            "import socket\n\
             try:\n\
             \x20   socket.create_connection(('127.0.0.1', {port}), timeout=3)\n\
             \x20   print('CONNECTED')\n\
             except OSError as e:\n\
             \x20   print('BLOCKED', e.errno)\n\
             try:\n\
             \x20   socket.getaddrinfo('example.com', 443)\n\
             \x20   print('RESOLVED')\n\
             except OSError as e:\n\
             \x20   print('BLOCKED', e)\n\
             print('DONE')"
        ),
    );
    let out = completed(&o);
    assert_eq!(out.matches("BLOCKED").count(), 2, "{out}");
    assert!(listener.accept().is_err());
}

#[test]
fn host_files_and_proc_are_denied() {
    let data = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    std::fs::write(data.path().join("hearth.db"), "canary").unwrap();
    let o = run_py(
        &landlock(),
        &format!(
            "import os\n\
             for p in ['/etc/shadow', '/etc/passwd', {db:?}, '/proc/1/environ', '/proc/{ppid}/environ', '/proc/self/environ']:\n\
             \x20   try:\n\
             \x20       print('READ', p, open(p).read()[:30])\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', p, e.errno)\n\
             for p in ['/usr/x', '/etc/x', {dir:?} + '/x', '/root/x', '/var/tmp/x']:\n\
             \x20   try:\n\
             \x20       open(p, 'w').write('x'); print('WROTE', p)\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', p, e.errno)\n\
             print('DONE')",
            db = data.path().join("hearth.db").display().to_string(),
            dir = data.path().display().to_string(),
            ppid = std::process::id(),
        ),
    );
    let out = completed(&o);
    assert!(!out.contains("READ") && !out.contains("WROTE"), "{out}");
    assert_eq!(out.matches("BLOCKED").count(), 11, "{out}");
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 1);
}

#[test]
fn escapes_through_syscalls_fail() {
    let o = run_py(
        &landlock(),
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         print('PTRACE', libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())\n\
         print('UNSHARE', libc.unshare(0x10000000), ctypes.get_errno())\n\
         print('SETSID', libc.setsid(), ctypes.get_errno())\n\
         print('KILL', libc.kill(os.getppid(), 0), ctypes.get_errno())\n\
         print('DONE')",
    );
    let out = completed(&o);
    assert!(out.contains("PTRACE -1 1\n"), "{out}");
    assert!(out.contains("UNSHARE -1 1\n"), "{out}");
    assert!(out.contains("SETSID -1 1\n"), "{out}");
    assert!(
        out.contains("KILL -1 1\n"),
        "signals to Hearth are scoped: {out}"
    );
}

#[test]
fn background_child_and_fork_bomb_are_contained() {
    let marker = format!("986.{}", std::process::id());
    let o = run_py(
        &landlock(),
        &format!(
            "import subprocess\n\
             subprocess.Popen(['/bin/sleep', '{marker}'])\n\
             print('DONE')"
        ),
    );
    completed(&o);
    std::thread::sleep(Duration::from_millis(200));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&marker),
            "survivor"
        );
    }

    let mut spec = py("import os\nwhile True:\n    os.fork()\n");
    spec.limits.pids = 32;
    spec.limits.wall_time = Duration::from_secs(10);
    let o = run(&landlock(), &spec);
    assert!(!o.success(), "{o:#?}");
    assert!(
        matches!(o.limit, Some(LimitKind::Pids | LimitKind::Timeout)),
        "{o:#?}"
    );
}

#[test]
fn symlink_in_output_folder_is_not_followed() {
    let secret = tempfile::NamedTempFile::new_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    secret.as_file().write_all(b"host-canary").unwrap();
    let o = run_py(
        &landlock(),
        &format!(
            "import os\n\
             out = os.environ['HEARTH_OUTPUT']\n\
             os.symlink('/etc/shadow', out + '/shadow')\n\
             os.symlink({p:?}, out + '/secret')\n\
             os.symlink('/', out + '/root')\n\
             print('DONE')",
            p = secret.path().display().to_string()
        ),
    );
    completed(&o);
    assert!(o.files.is_empty(), "{o:#?}");
    assert!(o.files_truncated);
}

/// Where user namespaces are denied (a pod under the RuntimeDefault seccomp profile, or
/// inside our own sandbox, whose filter denies them), `Auto` falls back to Landlock and
/// says so. This test runs a copy of its own binary inside a namespace sandbox.
#[test]
fn auto_falls_back_to_landlock_where_user_namespaces_are_denied() {
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let mut spec = hearth_sandbox::Spec {
        argv: [
            "/sandbox/tests",
            "--exact",
            "fallback_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]
        .map(String::from)
        .to_vec(),
        files: vec![("tests".into(), me)],
        env: vec![("HEARTH_SANDBOX_VENV".into(), "/opt/venv".into())],
        ..Default::default()
    };
    spec.limits.wall_time = Duration::from_secs(60);
    spec.limits.file_size_bytes = 256 << 20;
    let o = run(&sandbox(), &spec);
    assert!(o.success(), "{o:#?}");
    assert!(o.stdout.contains("FALLBACK OK"), "{o:#?}");
}

#[test]
#[ignore = "helper for auto_falls_back_to_landlock_where_user_namespaces_are_denied"]
fn fallback_probe() {
    let sb = sandbox_with(Isolation::Auto);
    let o = run_py(&sb, "import numpy\nprint('DONE')");
    completed(&o);
    assert!(o.warnings[0].contains("namespaces unavailable"), "{o:#?}");
    // Later runs go straight to the fallback.
    let o = run_py(&sb, "print('DONE')");
    completed(&o);
    println!("FALLBACK OK");
}
