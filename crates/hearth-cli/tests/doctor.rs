//! `hearth doctor`, run as the real binary against fake `nvidia-smi` executables first
//! on `PATH` (their output is nvidia-smi's own format: `--format=csv,noheader,nounits`
//! lines and the table header with `CUDA Version`), a fake device folder, and fake
//! launchers. `PATH` holds only the fakes, `df` and `cat`, so a real driver on the test host
//! changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TABLE_550: &str = "\
Tue Mar 12 10:21:35 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |
| N/A   33C    P0             70W /  700W |     555MiB /  81559MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+
";
const ONE_GPU: &str = "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 81004";

const TABLE_535: &str = "\
Wed Jan 10 09:12:01 2024
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |         Memory-Usage | GPU-Util  Compute M. |
|=========================================+======================+======================|
|   0  NVIDIA A100-SXM4-40GB          On  | 00000000:07:00.0 Off |                    0 |
| N/A   31C    P0              55W / 400W |    627MiB / 40960MiB |      0%      Default |
+-----------------------------------------+----------------------+----------------------+
|   1  NVIDIA A100-SXM4-40GB          On  | 00000000:0F:00.0 Off |                    0 |
| N/A   30C    P0              57W / 400W |  28960MiB / 40960MiB |     41%      Default |
+-----------------------------------------+----------------------+----------------------+
";
const TWO_GPUS: &str = "\
0, NVIDIA A100-SXM4-40GB, 535.104.05, 40960, 40333
1, NVIDIA A100-SXM4-40GB, 535.104.05, 40960, 12000";

/// After a driver upgrade without a reboot; newer drivers add the library's version.
const MISMATCH: &str =
    "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.144";

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A temp folder with `bin/` (only `df` and `cat`), an empty `dev/`, and `hearth.toml` made of
    /// `extra` after a loopback port-0 listen, a data_dir inside, and no required
    /// sandbox feature (what this host enforces is not what these tests are about).
    fn new(extra: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        // `df` for free space, `cat` for the fake scripts.
        for tool in ["df", "cat"] {
            let real = ["/usr/bin", "/bin"]
                .into_iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
        }
        std::fs::write(
            dir.path().join("hearth.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"data\"\n[sandbox]\nrequire = []\n{extra}"
            ),
        )
        .unwrap();
        Host { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An executable script `bin/NAME` (or at a path, when `name` has a `/`).
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = if name.contains('/') {
            PathBuf::from(name)
        } else {
            self.path().join("bin").join(name)
        };
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A fake `nvidia-smi` answering the query form with `csv` and the plain form
    /// with `table`, exiting `code` either way.
    fn nvidia_smi(&self, csv: &str, table: &str, code: i32) {
        self.script(
            "nvidia-smi",
            &format!(
                "case \"$1\" in\n--query-gpu=*) cat <<'EOF'\n{csv}\nEOF\n;;\n*) cat <<'EOF'\n{table}\nEOF\n;;\nesac\nexit {code}\n"
            ),
        );
    }

    fn doctor(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("doctor")
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", self.path().join("bin"))
            .env("HOME", self.path())
            .env("HEARTH_DOCTOR_DEV", self.path().join("dev"))
            .output()
            .unwrap();
        let tmp = self.path().display().to_string();
        let text = |b: &[u8]| String::from_utf8_lossy(b).replace(&tmp, "[TMP]");
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }
}

/// The lines of `groups`' checks, each with its remedy, columns joined by ` | `: the
/// human output aligns on every check's name, sandbox ones included, and those depend
/// on the host.
fn lines_of(out: &str, groups: &[&str]) -> String {
    let mut keep = Vec::new();
    let mut last_kept = false;
    for line in out.lines() {
        if let Some(fix) = line.strip_prefix("      fix: ") {
            if last_kept {
                keep.push(format!("  fix: {fix}"));
            }
            continue;
        }
        let cols: Vec<&str> = line
            .splitn(4, "  ")
            .flat_map(|c| c.split("  "))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        last_kept = cols.len() >= 3 && groups.contains(&cols[1]);
        if last_kept {
            let (head, rest) = cols.split_at(3);
            keep.push(format!("{} | {}", head.join(" | "), rest.join("  ")));
        }
    }
    keep.join("\n")
}

#[test]
fn no_gpu_is_a_warning() {
    let host = Host::new("");
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!(lines_of(&out, &["gpu"]), @r"
    WARN | gpu | nvidia-smi | no NVIDIA GPU: the embedded engine runs on CPU; managed vLLM engines need a GPU
      fix: nothing to do for CPU serving; for GPU serving, install the NVIDIA driver for this kernel (`sudo ubuntu-drivers install`, or your distribution's nvidia-driver package), then reboot
    ");
    assert!(out.lines().last().unwrap().contains("0 fail"), "{out}");
}

/// Built without `--features cuda`, as `make test` builds it: the build check says
/// so, and warns when that leaves a GPU idle (the CUDA cases: doctor/gpu.rs's tests).
#[test]
fn the_build_check_names_a_cpu_build_and_the_gpus_it_leaves_idle() {
    let host = Host::new("");
    let (_, out, _) = host.doctor(&[]);
    insta::assert_snapshot!(lines_of(&out, &["build"]), @"ok | build | hearth | CPU build");
    host.nvidia_smi(ONE_GPU, TABLE_550, 0);
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!(lines_of(&out, &["build"]), @r"
    WARN | build | hearth | this hearth is a CPU build: embedded models will not use the 1 GPU
      fix: install the CUDA release (the `-cuda` tarball) or build with `make build-cuda` (docs/gpu.md); managed engines such as vLLM use the GPUs either way
    ");
}

#[test]
fn one_gpu_with_driver_and_cuda_versions() {
    let host = Host::new("");
    host.nvidia_smi(ONE_GPU, TABLE_550, 0);
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!(lines_of(&out, &["gpu"]), @r"
    ok | gpu | nvidia-smi | driver 550.54.15, CUDA 12.4, 1 GPU
    ok | gpu | gpu 0 | NVIDIA H100 80GB HBM3: 81004 MiB free of 81559 MiB
    ");
}

#[test]
fn two_gpus_and_a_llama_server_too_big_for_them() {
    let host = Host::new(
        "[[models]]\nname = \"big\"\nbackend = \"upstream\"\n[models.launch]\npreset = \"llama-server\"\nmodel = \"big.gguf\"\ngpus = [0, 1]\n",
    );
    host.nvidia_smi(TWO_GPUS, TABLE_535, 0);
    host.script(
        "llama-server",
        "echo 'version: 4743 (d07c6213)' >&2\necho 'built with cc (Ubuntu 13.2.0) for x86_64-linux-gnu' >&2\n",
    );
    // 100 GiB of weights, sparse: nothing is written.
    let gguf = std::fs::File::create(host.path().join("big.gguf")).unwrap();
    gguf.set_len(100 << 30).unwrap();
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 0, "{out}");
    insta::assert_snapshot!(lines_of(&out, &["gpu", "models"]), @r"
    ok | gpu | nvidia-smi | driver 535.104.05, CUDA 12.2, 2 GPUs
    ok | gpu | gpu 0 | NVIDIA A100-SXM4-40GB: 40333 MiB free of 40960 MiB
    ok | gpu | gpu 1 | NVIDIA A100-SXM4-40GB: 12000 MiB free of 40960 MiB
    ok | models | big launcher | [TMP]/bin/llama-server: version: 4743 (d07c6213)
    WARN | models | big memory | about 120.0 GiB needed (100.0 GiB of weights + 20%), more than the 80.0 GiB on GPUs 0, 1 it is given
      fix: use a smaller or quantized model, give it more GPUs (launch.gpus with --tensor-parallel-size in extra_args), or raise gpu_memory_utilization
    ");
}

#[test]
fn driver_library_mismatch_fails_with_a_reboot_remedy() {
    let host = Host::new("");
    host.nvidia_smi(MISMATCH, MISMATCH, 18);
    std::fs::write(host.path().join("dev/nvidia0"), "").unwrap();
    std::fs::write(host.path().join("dev/nvidiactl"), "").unwrap();
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(lines_of(&out, &["gpu"]), @r"
    FAIL | gpu | nvidia-smi | nvidia-smi failed (exit 18): Failed to initialize NVML: Driver/library version mismatch; NVML library version: 550.144
      fix: the loaded kernel module is older than the installed driver libraries (a driver upgrade without a reboot): reboot, or reload the module (`sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia`)
    ");
    assert!(out.lines().last().unwrap().contains("1 fail"), "{out}");
}

#[test]
fn device_node_without_a_working_driver_fails() {
    let host = Host::new("");
    std::fs::write(host.path().join("dev/nvidia0"), "").unwrap();
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[TMP]/dev/nvidia0 exists but nvidia-smi is not installed"),
        "{out}"
    );
    let host = Host::new("");
    host.nvidia_smi(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.",
        "",
        9,
    );
    std::fs::write(host.path().join("dev/nvidiactl"), "").unwrap();
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("kernel module is not loaded"), "{out}");
}

#[test]
fn vllm_without_gpu_or_an_importable_vllm_fails() {
    let host = Host::new(
        "[[models]]\nname = \"qwen\"\nbackend = \"upstream\"\n[models.launch]\npreset = \"vllm\"\nmodel = \"Qwen/Qwen2.5-0.5B-Instruct\"\n",
    );
    // A venv's python that has no vllm, named in the shebang of the `vllm` script.
    let python = host.script(
        &host.path().join("python3").display().to_string(),
        "echo 'Traceback (most recent call last):' >&2\necho '  File \"<string>\", line 1, in <module>' >&2\necho \"ModuleNotFoundError: No module named 'vllm'\" >&2\nexit 1\n",
    );
    let vllm = host.path().join("bin/vllm");
    std::fs::write(
        &vllm,
        format!(
            "#!{}\nfrom vllm.entrypoints.cli.main import main\n",
            python.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&vllm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    let models = lines_of(&out, &["gpu", "models"]);
    insta::assert_snapshot!(models.lines().filter(|l| !l.contains("model cache") && !l.contains("free disk there")).collect::<Vec<_>>().join("\n"), @r"
    FAIL | gpu | nvidia-smi | no NVIDIA GPU (no nvidia-smi, no [TMP]/dev/nvidia*), but model qwen (vLLM) needs one
      fix: run on a host with an NVIDIA GPU and its driver, or serve that model on CPU (preset llama-server without gpus, or an embedded GGUF)
    FAIL | models | qwen launcher | [TMP]/python3 cannot import vllm: ModuleNotFoundError: No module named 'vllm'
      fix: install vLLM into that Python (`[TMP]/python3 -m pip install vllm`), or set launch.program to the vllm of a venv that has it
    ok | models | qwen memory | not local; size unknown
    ");
    // Where the weights will download: under HOME, the temp folder.
    assert!(
        out.contains("qwen model cache") && out.contains("[TMP]/.cache/huggingface/hub"),
        "{out}"
    );

    // With vllm importable, the launcher is fine.
    host.script(&python.display().to_string(), "echo 0.8.5\n");
    let (_, out, _) = host.doctor(&[]);
    assert!(
        out.contains("vllm 0.8.5 (imported by [TMP]/python3)"),
        "{out}"
    );
}

#[test]
fn missing_llama_server_fails() {
    let host = Host::new(
        "[[models]]\nname = \"smol\"\nbackend = \"upstream\"\n[models.launch]\npreset = \"llama-server\"\nmodel = \"smol.gguf\"\n",
    );
    std::fs::write(host.path().join("smol.gguf"), vec![0u8; 4096]).unwrap();
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    insta::assert_snapshot!(lines_of(&out, &["models"]).lines().next().unwrap(), @"FAIL | models | smol launcher | `llama-server` not found on PATH");
}

#[test]
fn a_taken_engine_port_fails() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let host = Host::new(&format!(
        "[[models]]\nname = \"custom\"\nbackend = \"upstream\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n[models.launch]\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 600\"]\nport = {port}\n"
    ));
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    let lines = lines_of(&out, &["host"]).replace(&port.to_string(), "PORT");
    assert!(
        lines.contains("FAIL | host | custom port | 127.0.0.1:PORT is in use\n  fix: stop what holds it (`ss -ltnp 'sport = :PORT'` shows it), or choose another port"),
        "{lines}"
    );
    assert!(out.contains("custom launcher  /bin/sh: /bin/sh"), "{out}");
    drop(taken);
}

#[test]
fn json_has_every_check_and_the_summary() {
    let host = Host::new("");
    host.nvidia_smi(MISMATCH, MISMATCH, 18);
    std::fs::write(host.path().join("dev/nvidia0"), "").unwrap();
    let (code, out, _) = host.doctor(&["--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let checks = v["checks"].as_array().unwrap();
    for c in checks {
        for key in ["group", "name", "status", "reason", "remedy"] {
            assert!(c[key].is_string(), "{c}");
        }
    }
    let count = |s: &str| checks.iter().filter(|c| c["status"] == s).count();
    assert_eq!(v["summary"]["ok"], count("ok"));
    assert_eq!(v["summary"]["warn"], count("warn"));
    assert_eq!(v["summary"]["fail"], count("fail"));
    let gpu = checks.iter().find(|c| c["group"] == "gpu").unwrap();
    assert_eq!(gpu["status"], "fail");
    assert!(gpu["remedy"].as_str().unwrap().contains("reboot"));
}

#[test]
fn invalid_config_is_a_fail_and_unreadable_config_exit_2() {
    let host = Host::new("[[models]]\nname = \"a\"\nfallbacks = [\"ghost\"]\npath = \"a.gguf\"\n");
    let (code, out, _) = host.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    let config = lines_of(&out, &["config"]);
    assert!(
        config.starts_with("FAIL | config | config | hearth.toml:"),
        "{config}"
    );
    assert!(config.contains("ghost"), "{config}");

    let (code, out, _) = host.doctor(&["--config", "nope.toml"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read nope.toml"), "{out}");
    let (code, _, err) = host.doctor(&["--bogus"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn public_bind_without_keys_fails_and_with_keys_passes() {
    let host = Host::new("");
    std::fs::write(
        host.path().join("public.toml"),
        "[server]\nlisten = \"0.0.0.0:0\"\n[storage]\ndata_dir = \"data\"\n",
    )
    .unwrap();
    let (code, out, _) = host.doctor(&["--config", "public.toml"]);
    assert_eq!(code, 1, "{out}");
    let bind = lines_of(&out, &["host"]);
    assert!(
        bind.starts_with("FAIL | host | bind | listening on 0.0.0.0:0"),
        "{bind}"
    );
    assert!(bind.contains("fix: set HEARTH_API_KEYS"), "{bind}");

    std::fs::write(
        host.path().join("public.toml"),
        "[server]\nlisten = \"0.0.0.0:0\"\n[server.tls]\nmode = \"self-signed\"\n[storage]\ndata_dir = \"data\"\n[sandbox]\nrequire = []\n[[keys]]\nname = \"ci\"\nkey = \"sk-test-123\"\n",
    )
    .unwrap();
    let (code, out, _) = host.doctor(&["--config", "public.toml"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        lines_of(&out, &["host"]).contains(
            "ok | host | bind | public (0.0.0.0:0) with 1 API key(s), HTTPS (self-signed)"
        ),
        "{out}"
    );
}

#[test]
fn help_documents_flags() {
    let host = Host::new("");
    let (code, out, _) = host.doctor(&["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn a_failing_doctor_says_why_in_the_status_file_the_banner_shows() {
    let host = Host::new("");
    std::fs::write(
        host.path().join("public.toml"),
        "[server]\nlisten = \"0.0.0.0:0\"\n[storage]\ndata_dir = \"data\"\n",
    )
    .unwrap();
    let status = host.path().join("run/status");
    let (code, _, _) = host.doctor(&[
        "--config",
        "public.toml",
        "--status-file",
        status.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let text = std::fs::read_to_string(&status).unwrap();
    assert!(
        text.contains(": not started: `hearth doctor` found"),
        "{text}"
    );
    assert!(text.contains("  FAIL"), "{text}");
    assert!(text.contains("fix: set HEARTH_API_KEYS"), "{text}");
    assert!(!text.contains("\n  ok "), "only the failures: {text}");
}
