//! The deploy manifest (`hearth_deploy::manifest::Manifest::from_str`).
//!
//! Properties:
//! - no panic;
//! - a refusal has a message, its line (when given) is in the file, and past the
//!   TOML and the keys' types (which the toml crate checks) it names a key;
//! - an accepted manifest renders a `hearth.toml` that is valid TOML, whose
//!   `[[models]]` are the manifest's, verbatim (they are Hearth's own config,
//!   checked by hearth-config where the CLI loads a manifest), and whose own part
//!   (the manifest without models) is a `Config` to the toml crate: known keys, the
//!   right types. (Validation proper reads the host's key and TLS files;
//!   hearth-deploy's render tests load the rendered file with those in place.)

use hearth_config::Config;
use hearth_deploy::manifest::Manifest;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Manifest::from_str(text, "deploy.toml") {
        Err(e) => {
            assert!(!e.message.trim().is_empty(), "{e:?}");
            let lines = text.lines().count().max(1) + 1;
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
            let typed = e.message.ends_with("see docs/deploy.md for the keys");
            assert!(
                typed || !e.key.is_empty(),
                "a refusal that names no key: {e}"
            );
        }
        Ok(m) => {
            let rendered = m.hearth_toml();
            let table: toml::Table = match toml::from_str(&rendered) {
                Ok(t) => t,
                Err(e) => panic!("the rendered hearth.toml is not TOML: {e}\n{rendered}"),
            };
            let models: Vec<toml::Value> =
                m.models.iter().cloned().map(toml::Value::Table).collect();
            let rendered_models = table
                .get("models")
                .and_then(toml::Value::as_array)
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                rendered_models, models,
                "the models are not passed on verbatim"
            );
            let own = Manifest {
                models: Vec::new(),
                ..m
            }
            .hearth_toml();
            if let Err(e) = toml::from_str::<Config>(&own) {
                panic!("the rendered hearth.toml is refused: {e}\n{own}");
            }
        }
    }
}
