//! GPUs: the NVIDIA driver as `nvidia-smi` sees it, and each GPU's memory.
//!
//! `nvidia-smi` is the driver's own tool and ships with it; asking it (rather than
//! linking NVML) keeps the binary free of the driver and tells the same story the user
//! will see when they run it themselves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::probe::{self, RunError};
use super::report::Check;

const GROUP: &str = "gpu";
/// The driver can hang (a GPU fallen off the bus); the doctor must still answer.
const TIMEOUT: Duration = Duration::from_secs(10);
const QUERY: &str = "--query-gpu=index,name,driver_version,memory.total,memory.free";

/// One GPU as `nvidia-smi` lists it; memory in MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub driver: String,
    pub total_mib: u64,
    pub free_mib: u64,
}

/// Checks the driver and lists the GPUs. `dev` is where device nodes live (`/dev`);
/// `needed_by` names a configured model that cannot run without a GPU.
pub fn check(dev: &Path, needed_by: Option<&str>, checks: &mut Vec<Check>) -> Vec<Gpu> {
    let node = device_node(dev);
    let ran = probe::run(
        "nvidia-smi",
        &[QUERY, "--format=csv,noheader,nounits"],
        &BTreeMap::new(),
        TIMEOUT,
    );
    let ran = match ran {
        Ok(r) => r,
        Err(RunError::NotFound) => {
            checks.push(no_driver_tool(node.as_deref(), dev, needed_by));
            return Vec::new();
        }
        Err(RunError::Timeout(_)) => {
            checks.push(Check::fail(
                GROUP,
                "nvidia-smi",
                "nvidia-smi did not answer within 10 s",
                "the driver may be hung (a GPU fallen off the bus): look for NVRM or Xid errors in `sudo dmesg`, then reboot",
            ));
            return Vec::new();
        }
        Err(RunError::Other(e)) => {
            checks.push(Check::fail(
                GROUP,
                "nvidia-smi",
                format!("cannot run nvidia-smi: {e}"),
                "check that nvidia-smi on PATH is the driver's and is executable",
            ));
            return Vec::new();
        }
    };
    if !ran.success() {
        let text = format!("{}\n{}", ran.stdout, ran.stderr);
        let code = ran
            .code
            .map_or_else(|| "a signal".to_owned(), |c| format!("exit {c}"));
        checks.push(smi_failed(
            format!("nvidia-smi failed ({code}): {}", text.trim()),
            node.as_deref(),
            needed_by,
        ));
        return Vec::new();
    }
    let gpus = parse_query(&ran.stdout);
    if gpus.is_empty() {
        checks.push(smi_failed(
            "nvidia-smi lists no GPU".to_owned(),
            node.as_deref(),
            needed_by,
        ));
        return gpus;
    }
    // The query API has no CUDA version on older drivers; the plain table's header has.
    let cuda = probe::run("nvidia-smi", &[], &BTreeMap::new(), TIMEOUT)
        .ok()
        .and_then(|r| parse_cuda_version(&r.stdout))
        .unwrap_or_else(|| "unknown".to_owned());
    let driver = gpus.first().map(|g| g.driver.as_str()).unwrap_or_default();
    checks.push(Check::ok(
        GROUP,
        "nvidia-smi",
        format!(
            "driver {driver}, CUDA {cuda}, {} GPU{}",
            gpus.len(),
            if gpus.len() == 1 { "" } else { "s" }
        ),
    ));
    for g in &gpus {
        checks.push(Check::ok(
            GROUP,
            format!("gpu {}", g.index),
            format!("{}: {} MiB free of {} MiB", g.name, g.free_mib, g.total_mib),
        ));
    }
    gpus
}

/// Whether this binary can use the GPUs found: a CUDA build on a host without one
/// falls back to CPU (a warning: it works, but not as built for); a CPU build on a
/// host with GPUs leaves them idle (a warning); a CUDA build whose kernels do not
/// run on a GPU's compute capability fails there (llama.cpp stops with "no kernel
/// image is available").
pub fn build(gpus: &[Gpu], checks: &mut Vec<Check>) {
    let archs = crate::build_info::cuda_archs();
    let caps = match (archs, gpus.is_empty()) {
        (Some(_), false) => compute_caps(),
        _ => BTreeMap::new(),
    };
    checks.push(build_check(archs, gpus, &caps));
}

const BUILD: &str = "build";

fn build_check(archs: Option<&str>, gpus: &[Gpu], caps: &BTreeMap<u32, u32>) -> Check {
    let features = crate::build_info::features(archs);
    let Some(archs) = archs else {
        return if gpus.is_empty() {
            Check::ok(BUILD, "hearth", "CPU build")
        } else {
            Check::warn(
                BUILD,
                "hearth",
                format!(
                    "this hearth is a CPU build: embedded models will not use the {} GPU{}",
                    gpus.len(),
                    if gpus.len() == 1 { "" } else { "s" }
                ),
                "install the CUDA release (the `-cuda` tarball) or build with `make build-cuda` (docs/gpu.md); managed engines such as vLLM use the GPUs either way",
            )
        };
    };
    if gpus.is_empty() {
        return Check::warn(
            BUILD,
            "hearth",
            format!(
                "this hearth is a {features} build, but no NVIDIA GPU is usable here: embedded models fall back to CPU"
            ),
            "to serve on CPU, nothing (the CPU build is smaller); to use a GPU, see the gpu checks above",
        );
    }
    let unfit: Vec<(&Gpu, u32)> = gpus
        .iter()
        .filter_map(|g| Some((g, *caps.get(&g.index)?)))
        .filter(|&(_, cc)| crate::build_info::runs_on(archs, cc) == Some(false))
        .collect();
    if let Some(&(_, cc)) = unfit.first() {
        let which: Vec<String> = unfit
            .iter()
            .map(|(g, cc)| {
                format!(
                    "gpu {} ({}, compute capability {}.{})",
                    g.index,
                    g.name,
                    cc / 10,
                    cc % 10
                )
            })
            .collect();
        return Check::fail(
            BUILD,
            "hearth",
            format!(
                "this hearth is a {features} build; its GPU kernels do not run on {}",
                which.join(", ")
            ),
            format!(
                "use a build for this GPU: `make build-cuda CUDA_ARCHS={cc}` (docs/gpu.md lists the values), or set gpu_layers = 0 to serve on CPU"
            ),
        );
    }
    Check::ok(
        BUILD,
        "hearth",
        format!("{features} build: embedded models offload their layers to the GPU (gpu_layers)"),
    )
}

/// Each GPU's compute capability (`90` for 9.0), by index; empty when the driver's
/// nvidia-smi is too old to say (before 510) or answers otherwise.
fn compute_caps() -> BTreeMap<u32, u32> {
    let Ok(ran) = probe::run(
        "nvidia-smi",
        &["--query-gpu=index,compute_cap", "--format=csv,noheader"],
        &BTreeMap::new(),
        TIMEOUT,
    ) else {
        return BTreeMap::new();
    };
    if !ran.success() {
        return BTreeMap::new();
    }
    parse_compute_caps(&ran.stdout)
}

/// `0, 9.0` lines; anything else is skipped.
fn parse_compute_caps(out: &str) -> BTreeMap<u32, u32> {
    out.lines()
        .filter_map(|l| {
            let (index, cap) = l.split_once(',')?;
            let (major, minor) = cap.trim().split_once('.')?;
            let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
            (minor < 10).then_some((index.trim().parse().ok()?, major * 10 + minor))
        })
        .collect()
}

/// The first NVIDIA device node (`nvidia0`, `nvidiactl`): present once the kernel
/// module has been loaded, whatever state the user-space driver is in.
fn device_node(dev: &Path) -> Option<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dev)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("nvidia").is_some_and(|rest| {
                rest == "ctl" || (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .map(|n| dev.join(n))
        .collect();
    nodes.sort();
    nodes.into_iter().next()
}

const INSTALL_DRIVER: &str = "install the NVIDIA driver for this kernel (`sudo ubuntu-drivers install`, or your distribution's nvidia-driver package), then reboot";

fn no_driver_tool(node: Option<&Path>, dev: &Path, needed_by: Option<&str>) -> Check {
    match (node, needed_by) {
        (Some(node), _) => Check::fail(
            GROUP,
            "nvidia-smi",
            format!(
                "{} exists but nvidia-smi is not installed: the driver is incomplete",
                node.display()
            ),
            INSTALL_DRIVER,
        ),
        (None, Some(model)) => Check::fail(
            GROUP,
            "nvidia-smi",
            format!(
                "no NVIDIA GPU (no nvidia-smi, no {}/nvidia*), but {model} needs one",
                dev.display()
            ),
            "run on a host with an NVIDIA GPU and its driver, or serve that model on CPU (preset llama-server without gpus, or an embedded GGUF)",
        ),
        (None, None) => Check::warn(
            GROUP,
            "nvidia-smi",
            "no NVIDIA GPU: the embedded engine runs on CPU; managed vLLM engines need a GPU",
            format!("nothing to do for CPU serving; for GPU serving, {INSTALL_DRIVER}"),
        ),
    }
}

/// `nvidia-smi` ran and failed, or found nothing. A fail when the host has an NVIDIA
/// device or a model needs one; else only a warning (a CPU host with leftover tools).
fn smi_failed(reason: String, node: Option<&Path>, needed_by: Option<&str>) -> Check {
    let text = &reason;
    let remedy = if text.contains("version mismatch") {
        "the loaded kernel module is older than the installed driver libraries (a driver upgrade without a reboot): reboot, or reload the module (`sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia`)".to_owned()
    } else if text.contains("couldn't communicate with the NVIDIA driver") {
        format!(
            "the NVIDIA kernel module is not loaded: {INSTALL_DRIVER}; if it is installed, `sudo modprobe nvidia` and look at `sudo dmesg | grep -i nvrm`"
        )
    } else if text.contains("No devices were found") || text.contains("lists no GPU") {
        "the driver sees no GPU: check that the GPU is attached (`lspci | grep -i nvidia`) and look at `sudo dmesg | grep -i nvrm`".to_owned()
    } else {
        "run `nvidia-smi` to see the error, and look at `sudo dmesg | grep -i nvrm`".to_owned()
    };
    match (node, needed_by) {
        (None, None) => Check::warn(GROUP, "nvidia-smi", reason, remedy),
        _ => Check::fail(GROUP, "nvidia-smi", reason, remedy),
    }
}

/// Lines of `--format=csv,noheader,nounits`: `0, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 81004`.
/// The name is whatever lies between the first field and the last three, commas and all.
fn parse_query(out: &str) -> Vec<Gpu> {
    out.lines()
        .filter_map(|line| {
            let (index, rest) = line.trim().split_once(',')?;
            let mut tail = rest.rsplitn(4, ',');
            let free = tail.next()?.trim().parse().ok()?;
            let total = tail.next()?.trim().parse().ok()?;
            let driver = tail.next()?.trim().to_owned();
            let name = tail.next()?.trim().to_owned();
            Some(Gpu {
                index: index.trim().parse().ok()?,
                name,
                driver,
                total_mib: total,
                free_mib: free,
            })
        })
        .collect()
}

/// `CUDA Version: 12.4` from the header of plain `nvidia-smi`.
fn parse_cuda_version(out: &str) -> Option<String> {
    let (_, rest) = out.split_once("CUDA Version:")?;
    rest.split_whitespace()
        .next()
        .map(|v| v.trim_end_matches('|').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::report::Status;
    use super::*;

    #[test]
    fn parses_the_query_csv() {
        let out = "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559, 81004\n\
                   1, NVIDIA GeForce RTX 4090, 550.54.15, 24564, 23941\n\
                   garbage\n";
        let gpus = parse_query(out);
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            gpus[0],
            Gpu {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                driver: "550.54.15".into(),
                total_mib: 81559,
                free_mib: 81004
            }
        );
        assert_eq!(gpus[1].name, "NVIDIA GeForce RTX 4090");
    }

    #[test]
    fn parses_the_cuda_version_from_the_table_header() {
        let header = "| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |";
        assert_eq!(parse_cuda_version(header).as_deref(), Some("12.4"));
        assert_eq!(parse_cuda_version("no header"), None);
    }

    fn h100(index: u32) -> Gpu {
        Gpu {
            index,
            name: "NVIDIA H100 80GB HBM3".into(),
            driver: "580.65.06".into(),
            total_mib: 81559,
            free_mib: 81004,
        }
    }

    #[test]
    fn a_cpu_build_says_when_it_leaves_gpus_idle() {
        let c = build_check(None, &[], &BTreeMap::new());
        assert_eq!((c.status, c.reason.as_str()), (Status::Ok, "CPU build"));
        let c = build_check(None, &[h100(0), h100(1)], &BTreeMap::new());
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            c.reason,
            "this hearth is a CPU build: embedded models will not use the 2 GPUs"
        );
        assert!(c.remedy.contains("make build-cuda"), "{}", c.remedy);
    }

    #[test]
    fn a_cuda_build_without_a_gpu_falls_back_to_cpu() {
        let c = build_check(Some("90"), &[], &BTreeMap::new());
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            c.reason,
            "this hearth is a cuda (sm_90) build, but no NVIDIA GPU is usable here: embedded models fall back to CPU"
        );
    }

    #[test]
    fn a_cuda_build_checks_the_gpus_compute_capability() {
        let caps = parse_compute_caps("0, 9.0\n1, 8.0\nnot a line\n");
        assert_eq!(caps, BTreeMap::from([(0, 90), (1, 80)]));
        let c = build_check(Some("90"), &[h100(0)], &caps);
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            c.reason,
            "cuda (sm_90) build: embedded models offload their layers to the GPU (gpu_layers)"
        );
        let mut a100 = h100(1);
        a100.name = "NVIDIA A100-SXM4-80GB".into();
        let c = build_check(Some("90"), &[h100(0), a100.clone()], &caps);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.reason,
            "this hearth is a cuda (sm_90) build; its GPU kernels do not run on gpu 1 (NVIDIA A100-SXM4-80GB, compute capability 8.0)"
        );
        assert!(c.remedy.contains("CUDA_ARCHS=80"), "{}", c.remedy);
        // A build for both runs on both; an unknown capability is not held against it.
        assert_eq!(
            build_check(Some("80;90"), &[h100(0), a100.clone()], &caps).status,
            Status::Ok
        );
        assert_eq!(
            build_check(Some("90"), &[a100], &BTreeMap::new()).status,
            Status::Ok
        );
    }

    #[test]
    fn finds_device_nodes_but_not_lookalikes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvidia-uvm"), "").unwrap();
        assert_eq!(device_node(dir.path()), None);
        std::fs::write(dir.path().join("nvidia0"), "").unwrap();
        assert_eq!(device_node(dir.path()), Some(dir.path().join("nvidia0")));
    }
}
