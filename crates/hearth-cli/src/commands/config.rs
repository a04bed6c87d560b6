//! `hearth config check`.

use std::path::Path;
use std::process::ExitCode;

use hearth_config::ProcessEnv;

use crate::output;

pub fn check(file: Option<&Path>) -> ExitCode {
    match hearth_config::load(file, &ProcessEnv) {
        Ok(config) => {
            for w in &config.warnings {
                output::err(format!("warning: {w}"));
            }
            let names: Vec<_> = config.models.iter().map(|m| m.name.as_str()).collect();
            output::line(format!(
                "ok: {} model(s) ({}), listen {}, {} API key(s)",
                config.models.len(),
                names.join(", "),
                config.server.listen,
                config.resolved_keys.len()
            ));
            // What each managed server will run, as `hearth serve` will start it.
            for m in &config.models {
                if let Some(launch) = m.upstream_config().and_then(|u| u.launch.as_ref())
                    && let Ok(argv) = launch.argv(&m.name, m.concurrency(), m.context_length)
                {
                    output::line(format!("launch {}: {}", m.name, argv.join(" ")));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for d in &e.diagnostics {
                output::err(format!("error: {d}"));
            }
            ExitCode::FAILURE
        }
    }
}
