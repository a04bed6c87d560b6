//! Engine settings after defaults: what `[[models]]` asked for, completed from the
//! GGUF header and the machine.

use std::path::PathBuf;

use hearth_config::ModelConfig;

use crate::EngineError;
use crate::gguf::GgufInfo;

/// The context used when the config names none (capped by the model's own).
pub const DEFAULT_CONTEXT: u32 = 8192;
/// Sequences decoded together when the config names none.
pub const DEFAULT_PARALLEL: u32 = 4;
/// Most tokens decoded in one step (prefill chunks plus one token per generating
/// sequence); also llama.cpp's `n_batch`.
pub const STEP_TOKENS: u32 = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub name: String,
    pub path: PathBuf,
    pub context: u32,
    pub parallel: u32,
    pub threads: u32,
    pub gpu_layers: u32,
    /// An embedding model trained for shorter vectors (`matryoshka = true`).
    pub matryoshka: bool,
    /// The multimodal projector, for images in chat messages (`mmproj`).
    pub mmproj: Option<PathBuf>,
}

impl Settings {
    pub fn resolve(cfg: &ModelConfig, info: &GgufInfo) -> Result<Settings, EngineError> {
        let e = cfg.embedded_config().ok_or_else(|| {
            EngineError::Config(format!("model `{}` is not an embedded model", cfg.name))
        })?;
        let path = e.path.clone();
        let trained = info.context_length().and_then(|c| u32::try_from(c).ok());
        let context = e
            .context
            .or(cfg.context_length)
            .unwrap_or_else(|| trained.map_or(DEFAULT_CONTEXT, |t| t.min(DEFAULT_CONTEXT)));
        if context < 16 {
            return Err(EngineError::Config(format!(
                "model `{}`: context {context} is too small",
                cfg.name
            )));
        }
        // llama.cpp holds at most 256 sequences in one context.
        let parallel = e.parallel.unwrap_or(DEFAULT_PARALLEL).clamp(1, 256);
        let threads = e.threads.filter(|t| *t > 0).unwrap_or_else(physical_cores);
        // Without CUDA there is nothing to offload to; with it, everything by default.
        let gpu_layers = e
            .gpu_layers
            .unwrap_or(if cfg!(feature = "cuda") { 999 } else { 0 });
        Ok(Settings {
            name: cfg.name.clone(),
            path,
            context,
            parallel,
            threads,
            gpu_layers,
            matryoshka: e.matryoshka,
            mmproj: e.mmproj.clone(),
        })
    }
}

/// Physical cores available to this process: decoding is memory-bound, and a second
/// hyper-thread per core (or llama.cpp's default of all logical CPUs on a shared
/// box) slows it down. Falls back to the logical count when /proc says nothing.
pub fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let physical = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| count_physical(&s));
    let n = physical.map_or(logical, |p| p.min(logical));
    u32::try_from(n.max(1)).unwrap_or(1)
}

/// Distinct `(physical id, core id)` pairs in /proc/cpuinfo.
fn count_physical(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    let (mut phys, mut core) = (None, None);
    for line in cpuinfo.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(c) = core.take() {
                cores.insert((phys.take().unwrap_or(0), c));
            }
            phys = None;
            continue;
        }
        let mut kv = line.splitn(2, ':');
        let (k, v) = (
            kv.next().unwrap_or("").trim(),
            kv.next().unwrap_or("").trim(),
        );
        match k {
            "physical id" => phys = v.parse::<u32>().ok(),
            "core id" => core = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cores_not_hyperthreads() {
        let two_cores_four_threads = "processor: 0\nphysical id: 0\ncore id: 0\n\n\
            processor: 1\nphysical id: 0\ncore id: 1\n\n\
            processor: 2\nphysical id: 0\ncore id: 0\n\n\
            processor: 3\nphysical id: 0\ncore id: 1\n";
        assert_eq!(count_physical(two_cores_four_threads), Some(2));
        assert_eq!(count_physical("processor: 0\n"), None);
        assert!(physical_cores() >= 1);
    }
}
