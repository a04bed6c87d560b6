//! Managed models (`[models.launch]`): is the launcher installed, will the weights fit
//! the memory it is given, is there disk where the weights will be downloaded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_config::{Config, LaunchConfig, ModelConfig, Preset};

use super::gpu::Gpu;
use super::probe::{self, RunError, human_bytes};
use super::report::Check;

const GROUP: &str = "models";
/// Importing vLLM loads torch and CUDA: tens of seconds on a cold disk.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Weights are most of the memory; the rest (activations, a modest KV cache, CUDA
/// context) is rarely less than a fifth of them. A rough guide, not a promise.
const OVERHEAD: f64 = 1.2;
/// vLLM's own default `--gpu-memory-utilization`.
const VLLM_DEFAULT_UTILIZATION: f32 = 0.9;
const GIB: u64 = 1 << 30;
/// Below this a download of a 7B model (about 15 GiB) will not fit.
const CACHE_WARN: u64 = 20 * GIB;
const CACHE_FAIL: u64 = 2 * GIB;
const WEIGHT_EXTENSIONS: &[&str] = &["safetensors", "bin", "gguf", "pt", "pth"];

/// The managed models, with their launch settings.
fn managed(config: &Config) -> impl Iterator<Item = (&ModelConfig, &LaunchConfig)> {
    config.models.iter().filter_map(|m| {
        m.upstream_config()
            .and_then(|u| u.launch.as_deref())
            .map(|l| (m, l))
    })
}

/// A model that cannot run without a GPU, named for the GPU check's message.
pub fn needs_gpu(config: &Config) -> Option<String> {
    managed(config).find_map(|(m, l)| {
        if l.preset == Some(Preset::Vllm) {
            Some(format!("model {} (vLLM)", m.name))
        } else if l.gpus.is_some() {
            Some(format!("model {} (it sets gpus)", m.name))
        } else {
            None
        }
    })
}

pub fn check(config: &Config, gpus: &[Gpu], checks: &mut Vec<Check>) {
    for (m, l) in managed(config) {
        checks.push(launcher(&m.name, l));
        let weights = local_weights(l);
        checks.extend(memory(&m.name, l, &weights, gpus));
        if l.preset == Some(Preset::Vllm) && matches!(weights, Weights::NotLocal) {
            checks.push(cache_disk(&m.name, l));
        }
    }
}

fn launcher(model: &str, l: &LaunchConfig) -> Check {
    let name = format!("{model} launcher");
    match (l.preset, l.command.as_deref()) {
        (Some(Preset::Vllm), _) => vllm(&name, l),
        (Some(Preset::LlamaServer), _) => llama_server(&name, l),
        (None, Some([program, ..])) => match probe::which(program) {
            Some(path) => Check::ok(GROUP, name, format!("{program}: {}", path.display())),
            None => Check::fail(
                GROUP,
                name,
                format!(
                    "`{program}` (the command's program) not found{}",
                    on_path(program)
                ),
                "install it, or give its full path as the first element of launch.command",
            ),
        },
        // The config check reports a launch without preset or command.
        (None, _) => Check::fail(
            GROUP,
            name,
            "no preset and no command",
            "set launch.preset (\"vllm\" or \"llama-server\") or launch.command",
        ),
    }
}

fn on_path(program: &str) -> &'static str {
    if program.contains('/') {
        ""
    } else {
        " on PATH"
    }
}

fn vllm(name: &str, l: &LaunchConfig) -> Check {
    let program = l.program.as_deref().unwrap_or("vllm");
    let Some(path) = probe::which(program) else {
        return Check::fail(
            GROUP,
            name,
            format!("`{program}` not found{}", on_path(program)),
            "install vLLM in a venv (`python3 -m venv /opt/vllm && /opt/vllm/bin/pip install vllm`) and set launch.program = \"/opt/vllm/bin/vllm\"",
        );
    };
    // `vllm` is a pip entry-point script: the Python in its shebang is the one that
    // must import vllm (a venv's, usually).
    let Some(python) = shebang_interpreter(&path) else {
        return match probe::run(&path, &["--version"], &l.env, IMPORT_TIMEOUT) {
            Ok(r) if r.success() => Check::ok(
                GROUP,
                name,
                format!("{}: vllm {}", path.display(), r.stdout.trim()),
            ),
            Ok(r) => Check::fail(
                GROUP,
                name,
                format!("`{} --version` failed: {}", path.display(), r.last_line()),
                "reinstall vLLM, or point launch.program at a working vllm",
            ),
            Err(e) => Check::fail(
                GROUP,
                name,
                format!("`{} --version`: {e}", path.display()),
                "reinstall vLLM, or point launch.program at a working vllm",
            ),
        };
    };
    let import = "import vllm, sys; print(vllm.__version__)";
    let remedy = format!(
        "install vLLM into that Python (`{} -m pip install vllm`), or set launch.program to the vllm of a venv that has it",
        python.display()
    );
    match probe::run(&python, &["-c", import], &l.env, IMPORT_TIMEOUT) {
        Ok(r) if r.success() => Check::ok(
            GROUP,
            name,
            format!(
                "vllm {} (imported by {})",
                r.stdout.trim(),
                python.display()
            ),
        ),
        Ok(r) => Check::fail(
            GROUP,
            name,
            format!("{} cannot import vllm: {}", python.display(), r.last_line()),
            remedy,
        ),
        Err(RunError::Timeout(_)) => Check::fail(
            GROUP,
            name,
            format!("importing vllm in {} took over 60 s", python.display()),
            "run the import by hand to see where it hangs (a network mount, a broken CUDA install)",
        ),
        Err(e) => Check::fail(
            GROUP,
            name,
            format!(
                "cannot run {} (from the shebang of {}): {e}",
                python.display(),
                path.display()
            ),
            remedy,
        ),
    }
}

/// The interpreter named by a script's `#!` line; `#!/usr/bin/env python3` is
/// resolved on `PATH`. `None` for a binary.
fn shebang_interpreter(script: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(head.get(..n)?);
    let line = text.lines().next()?.strip_prefix("#!")?;
    let mut words = line.split_whitespace();
    let interpreter = words.next()?;
    if Path::new(interpreter)
        .file_name()
        .is_some_and(|f| f == "env")
    {
        let program = words.find(|w| !w.starts_with('-'))?;
        return probe::which(program);
    }
    Some(PathBuf::from(interpreter))
}

fn llama_server(name: &str, l: &LaunchConfig) -> Check {
    let program = l.program.as_deref().unwrap_or("llama-server");
    let Some(path) = probe::which(program) else {
        return Check::fail(
            GROUP,
            name,
            format!("`{program}` not found{}", on_path(program)),
            "install llama.cpp's llama-server (a release from github.com/ggml-org/llama.cpp, or build it with CMake) and put it on PATH or set launch.program",
        );
    };
    match probe::run(&path, &["--version"], &l.env, VERSION_TIMEOUT) {
        Ok(r) if r.success() => {
            // It prints `version: 4743 (d07c6213)` and the compiler, on stderr.
            let all = format!("{}\n{}", r.stderr, r.stdout);
            let version = all
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("version"))
                .or_else(|| all.lines().map(str::trim).find(|l| !l.is_empty()))
                .unwrap_or("version unknown");
            Check::ok(GROUP, name, format!("{}: {version}", path.display()))
        }
        Ok(r) => Check::fail(
            GROUP,
            name,
            format!("`{} --version` failed: {}", path.display(), r.last_line()),
            "reinstall llama-server (a missing shared library is the usual cause: `ldd` on it shows which)",
        ),
        Err(e) => Check::fail(
            GROUP,
            name,
            format!("`{} --version`: {e}", path.display()),
            "reinstall llama-server, or point launch.program at a working one",
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Weights {
    /// Bytes of weight files at this path.
    Local(u64, PathBuf),
    /// A local path (or the command's `-m`) that is not there.
    Missing(PathBuf),
    /// A local folder without weight files.
    Empty(PathBuf),
    /// A Hugging Face id not yet downloaded, or no model named at all.
    NotLocal,
}

/// The model's weights on this host: the file or folder it names, or for a
/// Hugging Face id its snapshot in the local cache.
fn local_weights(l: &LaunchConfig) -> Weights {
    let named = match (l.preset, l.command.as_deref()) {
        (Some(_), _) => l.model.clone(),
        (None, Some(cmd)) => model_arg(cmd),
        (None, None) => None,
    };
    let Some(named) = named else {
        return Weights::NotLocal;
    };
    let path = PathBuf::from(&named);
    if path.exists() {
        return weights_at(path);
    }
    let looks_local = named.starts_with(['/', '.', '~'])
        || named.ends_with(".gguf")
        || l.preset == Some(Preset::LlamaServer);
    if looks_local {
        return Weights::Missing(path);
    }
    match hub_snapshot(l, &named) {
        Some(snapshot) => weights_at(snapshot),
        None => Weights::NotLocal,
    }
}

fn weights_at(path: PathBuf) -> Weights {
    if path.is_file() {
        let size = path.metadata().map(|m| m.len()).unwrap_or(0);
        return Weights::Local(size, path);
    }
    let size: u64 = std::fs::read_dir(&path)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e))
        })
        // Follows links: a Hugging Face snapshot links each file into its blobs.
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if size == 0 {
        Weights::Empty(path)
    } else {
        Weights::Local(size, path)
    }
}

/// The value of `-m`/`--model` in a command, as llama-server and most servers take it.
fn model_arg(cmd: &[String]) -> Option<String> {
    cmd.iter().enumerate().find_map(|(i, a)| {
        if a == "-m" || a == "--model" {
            cmd.get(i + 1).cloned()
        } else {
            a.strip_prefix("--model=").map(str::to_owned)
        }
    })
}

/// Where the model's server keeps Hugging Face downloads: `HF_HUB_CACHE`, else
/// `HF_HOME/hub`, from the launch's env or Hearth's own, else `~/.cache/huggingface/hub`.
fn hub_cache(l: &LaunchConfig) -> PathBuf {
    let var = |name: &str| {
        l.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    };
    if let Some(hub) = var("HF_HUB_CACHE") {
        return PathBuf::from(hub);
    }
    let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(var("HOME").unwrap_or_else(|| "/root".to_owned()))
            .join(".cache")
            .join("huggingface")
    });
    home.join("hub")
}

fn hub_snapshot(l: &LaunchConfig, id: &str) -> Option<PathBuf> {
    let dir = hub_cache(l)
        .join(format!("models--{}", id.replace('/', "--")))
        .join("snapshots");
    let mut snapshots: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    snapshots.sort();
    snapshots.pop()
}

fn memory(model: &str, l: &LaunchConfig, weights: &Weights, gpus: &[Gpu]) -> Vec<Check> {
    let name = format!("{model} memory");
    let mut checks = Vec::new();
    let wanted: Vec<u32> = l.gpus.clone().unwrap_or_else(|| vec![0]);
    let given: Vec<&Gpu> = gpus.iter().filter(|g| wanted.contains(&g.index)).collect();
    if l.gpus.is_some() && !gpus.is_empty() && given.len() < wanted.len() {
        let have: Vec<String> = gpus.iter().map(|g| g.index.to_string()).collect();
        checks.push(Check::fail(
            GROUP,
            format!("{model} gpus"),
            format!(
                "gpus = {wanted:?} but this host has GPU {}",
                have.join(", ")
            ),
            "use the indices nvidia-smi lists in launch.gpus",
        ));
    }
    let bytes = match weights {
        Weights::Local(bytes, _) => *bytes,
        Weights::NotLocal => {
            checks.push(Check::ok(GROUP, name, "not local; size unknown"));
            return checks;
        }
        Weights::Missing(path) => {
            checks.push(Check::fail(
                GROUP,
                name,
                format!("{} not found", path.display()),
                "download it (`hearth models pull URL`) or fix launch.model",
            ));
            return checks;
        }
        Weights::Empty(path) => {
            checks.push(Check::warn(
                GROUP,
                name,
                format!(
                    "no weight files (*.safetensors, *.bin, *.gguf) in {}",
                    path.display()
                ),
                "point launch.model at the folder that holds the weights",
            ));
            return checks;
        }
    };
    let need = (bytes as f64 * OVERHEAD) as u64;
    let need_text = format!(
        "about {} needed ({} of weights + 20%)",
        human_bytes(need),
        human_bytes(bytes)
    );
    let on_gpu = l.preset == Some(Preset::Vllm) || l.gpus.is_some() || offloads(l);
    if on_gpu {
        if given.is_empty() {
            // The GPU check already says there is none.
            return checks;
        }
        let share = if l.preset == Some(Preset::Vllm) {
            l.gpu_memory_utilization.unwrap_or(VLLM_DEFAULT_UTILIZATION)
        } else {
            1.0
        };
        let total: u64 = given.iter().map(|g| g.total_mib << 20).sum();
        let budget = (total as f64 * f64::from(share)) as u64;
        let which: Vec<String> = given.iter().map(|g| g.index.to_string()).collect();
        let gpu_list = format!(
            "GPU{} {}",
            if which.len() == 1 { "" } else { "s" },
            which.join(", ")
        );
        let budget_text = if l.preset == Some(Preset::Vllm) {
            format!(
                "{} ({share} of {} on {gpu_list})",
                human_bytes(budget),
                human_bytes(total),
            )
        } else {
            format!("{} on {gpu_list}", human_bytes(total))
        };
        let short = given
            .iter()
            .find(|g| (g.free_mib as f64) < g.total_mib as f64 * f64::from(share));
        checks.push(if need > budget {
            Check::warn(
                GROUP,
                name,
                format!("{need_text}, more than the {budget_text} it is given"),
                "use a smaller or quantized model, give it more GPUs (launch.gpus with --tensor-parallel-size in extra_args), or raise gpu_memory_utilization",
            )
        } else if let (Some(g), Some(Preset::Vllm)) = (short, l.preset) {
            Check::warn(
                GROUP,
                name,
                format!(
                    "{need_text}, but GPU {} has only {} MiB free and vLLM claims {share} of {} MiB",
                    g.index, g.free_mib, g.total_mib
                ),
                "stop the other processes on that GPU (nvidia-smi lists them) or lower gpu_memory_utilization",
            )
        } else {
            Check::ok(GROUP, name, format!("{need_text} of {budget_text}"))
        });
    } else {
        let Some(ram) = ram_bytes() else {
            checks.push(Check::ok(GROUP, name, format!("{need_text}; RAM unknown")));
            return checks;
        };
        checks.push(if need > ram {
            Check::warn(
                GROUP,
                name,
                format!("{need_text}, more than this host's {} of RAM", human_bytes(ram)),
                "use a smaller or more quantized GGUF, or offload layers to a GPU (-ngl in extra_args)",
            )
        } else {
            Check::ok(
                GROUP,
                name,
                format!("{need_text} of {} RAM", human_bytes(ram)),
            )
        });
    }
    checks
}

/// A llama.cpp server asked to put layers on the GPU.
fn offloads(l: &LaunchConfig) -> bool {
    l.extra_args
        .iter()
        .chain(l.command.iter().flatten())
        .any(|a| matches!(a.as_str(), "-ngl" | "--n-gpu-layers" | "--gpu-layers"))
}

fn ram_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cache_disk(model: &str, l: &LaunchConfig) -> Check {
    let name = format!("{model} model cache");
    let cache = hub_cache(l);
    match probe::free_bytes(&cache) {
        Ok(free) if free < CACHE_FAIL => Check::fail(
            GROUP,
            name,
            format!(
                "{} free where models download ({})",
                human_bytes(free),
                cache.display()
            ),
            "free disk there, or set HF_HOME in launch.env to a disk with room",
        ),
        Ok(free) if free < CACHE_WARN => Check::warn(
            GROUP,
            name,
            format!(
                "{} free where models download ({}); a 7B model takes about 15 GiB",
                human_bytes(free),
                cache.display()
            ),
            "free disk there, or set HF_HOME in launch.env to a disk with room",
        ),
        Ok(free) => Check::ok(
            GROUP,
            name,
            format!("{} free at {}", human_bytes(free), cache.display()),
        ),
        Err(e) => Check::warn(
            GROUP,
            name,
            format!("free space at {} unknown: {e}", cache.display()),
            "check the disk there by hand (`df -h`)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(toml_text: &str) -> LaunchConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn finds_the_model_argument_of_a_command() {
        let cmd = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            model_arg(&cmd(&["srv", "-m", "x.gguf"])).as_deref(),
            Some("x.gguf")
        );
        assert_eq!(model_arg(&cmd(&["srv", "--model=y"])).as_deref(), Some("y"));
        assert_eq!(model_arg(&cmd(&["srv", "-m"])), None);
    }

    #[test]
    fn weighs_local_folders_and_cached_hub_models() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("qwen");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        let l = launch(&format!(
            "preset = \"vllm\"\nmodel = \"{}\"",
            model.display()
        ));
        assert_eq!(local_weights(&l), Weights::Empty(model.clone()));
        std::fs::write(model.join("model.safetensors"), vec![0u8; 1000]).unwrap();
        assert_eq!(local_weights(&l), Weights::Local(1000, model));

        let hub = dir.path().join("hf");
        let l = launch(&format!(
            "preset = \"vllm\"\nmodel = \"org/m\"\nenv = {{ HF_HOME = \"{}\" }}",
            hub.display()
        ));
        assert_eq!(local_weights(&l), Weights::NotLocal);
        let snap = hub.join("hub/models--org--m/snapshots/abc");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("model.safetensors"), vec![0u8; 10]).unwrap();
        assert_eq!(local_weights(&l), Weights::Local(10, snap));

        let l = launch("preset = \"llama-server\"\nmodel = \"models/nope.gguf\"");
        assert!(matches!(local_weights(&l), Weights::Missing(_)));
    }

    #[test]
    fn reads_the_interpreter_from_a_shebang() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("vllm");
        std::fs::write(&script, "#!/opt/vllm/bin/python3\nimport sys\n").unwrap();
        assert_eq!(
            shebang_interpreter(&script),
            Some(PathBuf::from("/opt/vllm/bin/python3"))
        );
        std::fs::write(&script, "#!/usr/bin/env sh\n").unwrap();
        assert!(shebang_interpreter(&script).is_some_and(|p| p.ends_with("sh")));
        std::fs::write(&script, "\x7fELF").unwrap();
        assert_eq!(shebang_interpreter(&script), None);
    }

    #[test]
    fn compares_weights_with_the_gpu_memory_given() {
        let gpu = |index, total_mib, free_mib| Gpu {
            index,
            name: "NVIDIA L4".into(),
            driver: "550.54.15".into(),
            total_mib,
            free_mib,
        };
        let l = launch("preset = \"vllm\"\nmodel = \"/m\"\ngpu_memory_utilization = 0.5");
        let gpus = [gpu(0, 16384, 16000)];
        let big = Weights::Local(10 * GIB, PathBuf::from("/m"));
        let c = memory("q", &l, &big, &gpus);
        assert_eq!(c[0].status, super::super::report::Status::Warn, "{c:?}");
        assert!(
            c[0].reason.contains("8.0 GiB (0.5 of 16.0 GiB on GPU 0)"),
            "{c:?}"
        );
        let small = Weights::Local(GIB, PathBuf::from("/m"));
        assert_eq!(
            memory("q", &l, &small, &gpus)[0].status,
            super::super::report::Status::Ok
        );
        // Another process holds most of the GPU.
        let busy = [gpu(0, 16384, 2000)];
        assert!(
            memory("q", &l, &small, &busy)[0]
                .reason
                .contains("only 2000 MiB free")
        );
        let l = launch("preset = \"vllm\"\nmodel = \"/m\"\ngpus = [3]");
        let c = memory("q", &l, &small, &gpus);
        assert_eq!(c[0].name, "q gpus");
        assert_eq!(c[0].status, super::super::report::Status::Fail);
    }
}
