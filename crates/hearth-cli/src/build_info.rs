//! What this binary was built with: `cpu`, or `cuda` and the GPU architectures its
//! kernels were compiled for. Shared by build.rs (which stamps `hearth --version`
//! with [`features`]) and `hearth doctor` (which checks the host's GPUs against
//! [`runs_on`]).
//!
//! The architectures are `CMAKE_CUDA_ARCHITECTURES` as the build saw it: the very
//! variable llama-cpp-sys-2's build script hands to llama.cpp's CMake (mk/cuda.sh
//! sets it from `CUDA_ARCHS`). In CMake's syntax: `90` is sm_90's machine code plus
//! its PTX (which newer GPUs compile at load), `90-real` the machine code alone,
//! `90a` the Hopper-only variant.

/// The architectures of this binary's CUDA kernels, when it is a CUDA build; an
/// empty list for one built without `CMAKE_CUDA_ARCHITECTURES` (ggml's defaults).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn cuda_archs() -> Option<&'static str> {
    cfg!(feature = "cuda").then(|| option_env!("HEARTH_CUDA_ARCHS").unwrap_or(""))
}

/// The features part of `--version`: `cpu`, `cuda (sm_90)`, `cuda (sm_80, sm_90)`,
/// or `cuda (ggml's default architectures)`.
pub fn features(cuda_archs: Option<&str>) -> String {
    match cuda_archs {
        None => "cpu".to_owned(),
        Some(archs) => {
            let names: Vec<String> = archs
                .split([';', ','])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(
                    |a| match a.trim_end_matches("-real").trim_end_matches("-virtual") {
                        n if n.starts_with(|c: char| c.is_ascii_digit()) => format!("sm_{n}"),
                        other => other.to_owned(),
                    },
                )
                .collect();
            if names.is_empty() {
                "cuda (ggml's default architectures)".to_owned()
            } else {
                format!("cuda ({})", names.join(", "))
            }
        }
    }
}

/// Whether kernels built for `archs` run on a GPU of compute capability `cc`
/// (`90` for 9.0): `None` when the list cannot tell (empty, `all`, `native`).
/// Machine code runs on its own major version at the same or a higher minor; PTX
/// (a plain `90`, or `90-virtual`) on any later GPU; `90a` on 9.0 alone.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn runs_on(archs: &str, cc: u32) -> Option<bool> {
    let mut known = false;
    for a in archs
        .split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let (base, kind) = match a.split_once('-') {
            Some((b, k)) => (b, k),
            None => (a, ""),
        };
        let specific = base.ends_with(['a', 'f']);
        let Ok(n) = base.trim_end_matches(['a', 'f']).parse::<u32>() else {
            return None;
        };
        known = true;
        let fits = if specific {
            n == cc
        } else {
            let sass = kind != "virtual" && n / 10 == cc / 10 && n <= cc;
            let ptx = kind != "real" && n <= cc;
            sass || ptx
        };
        if fits {
            return Some(true);
        }
    }
    known.then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_features_name_the_architectures() {
        assert_eq!(features(None), "cpu");
        assert_eq!(features(Some("90")), "cuda (sm_90)");
        assert_eq!(
            features(Some("80;86-real;89;90a")),
            "cuda (sm_80, sm_86, sm_89, sm_90a)"
        );
        assert_eq!(features(Some("")), "cuda (ggml's default architectures)");
        assert_eq!(features(Some("all-major")), "cuda (all-major)");
    }

    #[test]
    fn kernels_run_on_their_own_and_later_gpus() {
        // sm_90 with PTX: an H100/H200, and (through PTX) a Blackwell; not an A100.
        assert_eq!(runs_on("90", 90), Some(true));
        assert_eq!(runs_on("90", 100), Some(true));
        assert_eq!(runs_on("90", 80), Some(false));
        // Machine code alone: the same major version only.
        assert_eq!(runs_on("80-real", 86), Some(true));
        assert_eq!(runs_on("80-real", 90), Some(false));
        assert_eq!(runs_on("86-real", 80), Some(false));
        // One fitting architecture of several is enough.
        assert_eq!(runs_on("80;86;89;90", 89), Some(true));
        assert_eq!(runs_on("90a", 90), Some(true));
        assert_eq!(runs_on("90a", 100), Some(false));
        // Lists that cannot tell.
        assert_eq!(runs_on("", 90), None);
        assert_eq!(runs_on("native", 90), None);
    }
}
