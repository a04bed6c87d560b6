//! The config loader (`hearth_config::load_str`): TOML, `HEARTH_*` overrides,
//! validation.
//!
//! The input is the file's text, then optionally a NUL byte and environment
//! lines `NAME=value`. Properties:
//! - no panic, whatever the text and the environment;
//! - a text the toml crate cannot parse is refused, with one diagnostic on a
//!   line of the file;
//! - every diagnostic has a message, and its line (when given) is in the file;
//! - when the file alone deserializes as a `Config` (by the toml crate), every
//!   refusal names a key or an environment variable.

use hearth_config::{Config, MapEnv};

pub fn run(data: &[u8]) {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env = MapEnv::new(
        String::from_utf8_lossy(env)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>(),
    );
    let result = hearth_config::load_str(text, "hearth.toml", &env);
    let parses = toml::from_str::<toml::Table>(text).is_ok();
    let Err(e) = result else {
        assert!(parses, "a text the toml crate refuses was accepted");
        return;
    };
    assert!(!e.diagnostics.is_empty(), "a refusal without a diagnostic");
    let lines = text.lines().count().max(1) + 1;
    for d in &e.diagnostics {
        assert!(
            !d.message.trim().is_empty(),
            "a diagnostic without a message: {d:?}"
        );
        if let Some(line) = d.line {
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {d:?}");
        }
    }
    if !parses {
        assert_eq!(e.diagnostics.len(), 1, "{e}");
        return;
    }
    if toml::from_str::<Config>(text).is_ok() {
        for d in &e.diagnostics {
            assert!(!d.key.is_empty(), "a diagnostic that names no key: {d}");
        }
    }
}
