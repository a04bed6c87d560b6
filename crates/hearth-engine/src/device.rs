//! Where each model runs: the GPUs llama.cpp found, which device a model's layers
//! went to, and the GPU memory its load took, for `/v1/models` and `/metrics`.
//!
//! A model's GPU memory is measured, not estimated: the drop in the GPUs' free
//! memory while its weights, then its context (KV cache, compute buffers), load.
//! Loads that touch a GPU take turns (a process-wide lock), so each drop belongs to
//! one model; CPU loads never wait for it. Another process allocating on the same
//! GPU meanwhile would be counted too: the number is what the GPU lost, as
//! `nvidia-smi` would show it, not a sum of llama.cpp's buffers.
//!
//! On a CUDA build that finds no GPU (no driver, none visible) a model falls back
//! to CPU, and says so once in the log.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use hearth_api::Placement;
use llama_cpp_2::{LlamaBackendDeviceType, list_llama_ggml_backend_devices};

use crate::settings::Settings;

/// The latest placement of each model, by name (a model loaded again replaces it).
static PLACEMENTS: Mutex<BTreeMap<String, Placement>> = Mutex::new(BTreeMap::new());
/// Held while a model or context loads onto a GPU.
static GPU_LOADS: Mutex<()> = Mutex::new(());

/// Where `model` runs, once its weights have loaded.
pub fn placement(model: &str) -> Option<Placement> {
    PLACEMENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(model)
        .cloned()
}

/// A GPU as llama.cpp lists it: its index among llama.cpp's devices, our name for
/// it (`cuda:0`), its description (`NVIDIA H200`) and free memory in bytes.
struct Gpu {
    index: usize,
    name: String,
    description: String,
    free: u64,
}

fn gpus() -> Vec<Gpu> {
    list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| {
            matches!(
                d.device_type,
                LlamaBackendDeviceType::Gpu | LlamaBackendDeviceType::IntegratedGpu
            )
        })
        .map(|d| Gpu {
            index: d.index,
            name: device_name(&d.name),
            description: d.description,
            free: d.memory_free as u64,
        })
        .collect()
}

/// llama.cpp's device name as `/v1/models` shows it: `CUDA0` is `cuda:0`.
fn device_name(ggml: &str) -> String {
    let digits = ggml.len() - ggml.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (kind, n) = ggml.split_at(ggml.len() - digits);
    if kind.is_empty() || n.is_empty() {
        ggml.to_ascii_lowercase()
    } else {
        format!("{}:{n}", kind.to_ascii_lowercase())
    }
}

/// Why a model runs on CPU, when the log should say: a CUDA build without a GPU
/// (a warning: the user may have expected the GPU), or `gpu_layers` set on a CPU
/// build (it does nothing there).
fn cpu_reason(cuda_build: bool, gpu_layers: u32, any_gpu: bool) -> Option<(bool, String)> {
    match (cuda_build, gpu_layers, any_gpu) {
        (true, 1.., false) => Some((
            true,
            "this hearth is a CUDA build, but llama.cpp found no CUDA GPU (no NVIDIA driver, \
             or no GPU visible: check `nvidia-smi` and CUDA_VISIBLE_DEVICES; `hearth doctor` \
             says more); running on CPU"
                .to_owned(),
        )),
        (false, 1.., _) => Some((
            false,
            format!(
                "gpu_layers = {gpu_layers} has no effect: this hearth is a CPU build \
                 (docs/gpu.md: the CUDA build); running on CPU"
            ),
        )),
        (true, 0, true) => Some((
            false,
            "gpu_layers = 0: running on CPU, not on the GPU".to_owned(),
        )),
        _ => None,
    }
}

/// What loads: a model's weights (which decide its device), or a context of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Weights,
    Context,
}

/// A load in progress; [`Loading::done`] records where it went.
pub struct Loading {
    model: String,
    part: Part,
    gpu_layers: u32,
    /// The GPUs it may use and their free memory before it began; empty on CPU.
    before: Vec<Gpu>,
    _turn: Option<MutexGuard<'static, ()>>,
}

/// Call before loading `part` of the model of `s`.
pub fn loading(s: &Settings, part: Part) -> Loading {
    let found = gpus();
    if part == Part::Weights {
        match cpu_reason(cfg!(feature = "cuda"), s.gpu_layers, !found.is_empty()) {
            Some((true, why)) => tracing::warn!(model = %s.name, "model `{}`: {why}", s.name),
            Some((false, why)) => tracing::info!(model = %s.name, "model `{}`: {why}", s.name),
            None => {}
        }
    }
    let mut loading = Loading {
        model: s.name.clone(),
        part,
        gpu_layers: s.gpu_layers,
        before: Vec::new(),
        _turn: None,
    };
    if s.gpu_layers > 0 && !found.is_empty() {
        loading._turn = Some(GPU_LOADS.lock().unwrap_or_else(PoisonError::into_inner));
        // Read again with the turn held: another model's load may just have ended.
        loading.before = gpus();
    }
    loading
}

impl Loading {
    /// The load succeeded; `layers` is the model's block count (for weights).
    pub fn done(self, layers: Option<u32>) {
        let mut all = PLACEMENTS.lock().unwrap_or_else(PoisonError::into_inner);
        if self.before.is_empty() {
            if self.part == Part::Weights {
                all.insert(self.model, cpu());
            }
            return;
        }
        let after = gpus();
        let used: u64 = self
            .before
            .iter()
            .map(|b| {
                let now = after
                    .iter()
                    .find(|a| a.index == b.index)
                    .map_or(b.free, |a| a.free);
                b.free.saturating_sub(now)
            })
            .sum();
        match self.part {
            Part::Weights => {
                // llama.cpp offloads the blocks, then the output layer: n_layer + 1 in all.
                let offloaded = layers.map(|n| self.gpu_layers.min(n.saturating_add(1)));
                let device = self
                    .before
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                let names = self
                    .before
                    .iter()
                    .map(|g| g.description.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::info!(model = %self.model, device = %device, gpu_memory_bytes = used,
                    "model `{}`: {} layers on {device} ({names}), {} of GPU memory for the weights",
                    self.model,
                    match (offloaded, layers) {
                        (Some(o), Some(n)) => format!("{o} of {}", n + 1),
                        _ => "its".to_owned(),
                    },
                    crate::human_bytes(used));
                all.insert(
                    self.model,
                    Placement {
                        device,
                        gpu_layers: offloaded,
                        gpu_memory_bytes: Some(used),
                    },
                );
            }
            Part::Context => {
                if let Some(p) = all.get_mut(&self.model) {
                    p.gpu_memory_bytes = Some(p.gpu_memory_bytes.unwrap_or(0) + used);
                }
            }
        }
    }
}

fn cpu() -> Placement {
    Placement {
        device: "cpu".to_owned(),
        gpu_layers: None,
        gpu_memory_bytes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_devices_as_the_api_shows_them() {
        assert_eq!(device_name("CUDA0"), "cuda:0");
        assert_eq!(device_name("CUDA12"), "cuda:12");
        assert_eq!(device_name("Vulkan1"), "vulkan:1");
        assert_eq!(device_name("CPU"), "cpu");
        assert_eq!(device_name("7"), "7");
    }

    #[test]
    fn says_why_a_model_runs_on_cpu() {
        // A CUDA build without a GPU: a warning that names the driver and the doctor.
        let (warn, why) = cpu_reason(true, 999, false).unwrap();
        assert!(warn);
        assert!(
            why.contains("CUDA build") && why.contains("hearth doctor"),
            "{why}"
        );
        // gpu_layers set on a CPU build: said, not warned.
        let (warn, why) = cpu_reason(false, 20, false).unwrap();
        assert!(!warn);
        assert!(
            why.contains("gpu_layers = 20") && why.contains("CPU build"),
            "{why}"
        );
        // gpu_layers = 0 on a CUDA build with a GPU: the choice is repeated.
        assert!(!cpu_reason(true, 0, true).unwrap().0);
        // The ordinary cases say nothing: CPU build with defaults, CUDA on a GPU.
        assert_eq!(cpu_reason(false, 0, false), None);
        assert_eq!(cpu_reason(true, 999, true), None);
    }

    #[test]
    fn a_cpu_load_records_cpu_and_a_context_keeps_it() {
        let s = Settings {
            name: "device-test-cpu".into(),
            path: "m.gguf".into(),
            context: 64,
            parallel: 1,
            threads: 1,
            gpu_layers: 0,
            matryoshka: false,
            mmproj: None,
        };
        loading(&s, Part::Weights).done(Some(2));
        loading(&s, Part::Context).done(None);
        assert_eq!(placement("device-test-cpu"), Some(cpu()));
        assert_eq!(placement("device-test-never-loaded"), None);
    }
}
