//! `[sandbox]` to the sandbox's [`Options`]: what the job worker runs scripts in, and
//! what `hearth sandbox` and `hearth doctor` check.

use std::path::PathBuf;

use hearth_config::{Env, SandboxConfig};
use hearth_sandbox::{Feature, Isolation, Options};

/// The sandbox options `config` asks for. The venv is `sandbox.venv`, else
/// `$HEARTH_SANDBOX_VENV` (read from `env`), else `./.venv-sandbox` when it exists.
/// An unknown feature or isolation name is an error naming the key.
pub fn sandbox_options(config: &SandboxConfig, env: &dyn Env) -> Result<Options, String> {
    let mut require = Vec::new();
    for name in &config.require {
        let f = Feature::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Feature::ALL.iter().map(|f| f.name()).collect();
            format!(
                "sandbox.require: unknown feature {name:?} (known: {})",
                known.join(", ")
            )
        })?;
        require.push(f);
    }
    let isolation = match config.isolation.as_str() {
        "auto" => Isolation::Auto,
        "namespaces" => Isolation::Namespaces,
        "landlock" => Isolation::Landlock,
        other => {
            return Err(format!(
                "sandbox.isolation: {other:?} is not one of auto, namespaces, landlock"
            ));
        }
    };
    let venv = config
        .venv
        .clone()
        .or_else(|| env.get("HEARTH_SANDBOX_VENV").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(".venv-sandbox")).filter(|p| p.join("bin").is_dir()));
    Ok(Options {
        require,
        venv,
        host_uid: config.uid,
        host_gid: config.gid,
        isolation,
    })
}
