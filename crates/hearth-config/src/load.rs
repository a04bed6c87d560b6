//! File + environment -> [`Config`], with diagnostics that name file, line and key.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::env::{self, Env, MapEnv};
use crate::{Config, validate};

/// One problem, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file, or `environment` for an override.
    pub source: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// The key, as `models[1].fallbacks`, or the environment variable.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.source, line)?,
            None => write!(f, "{}: ", self.source)?,
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found; the config is unusable while there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(source: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            diagnostics: vec![Diagnostic {
                source: source.to_owned(),
                line: None,
                key: key.to_owned(),
                message: message.into(),
            }],
        }
    }
}

/// Loads `path`; with `None`, `./hearth.toml` when it exists, else the defaults.
pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
    let fallback = Path::new("hearth.toml");
    let path = match path {
        Some(p) => Some(p),
        None if fallback.exists() => Some(fallback),
        None => None,
    };
    match path {
        Some(p) => {
            let label = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::one(&label, "", format!("cannot read the config file: {e}"))
            })?;
            load_str(&text, &label, env)
        }
        None => load_str("", "defaults", env),
    }
}

/// Parses `text` (named `source` in messages), applies the environment, validates.
pub fn load_str(text: &str, source: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| located(source, text, None, &e))?;
    // The file alone first, so type errors and unknown keys point into the file.
    let _: Config =
        toml::from_str(text).map_err(|e| located(source, text, Some(doc.get_ref()), &e))?;

    let file_table: toml::Table =
        toml::from_str(text).map_err(|e| located(source, text, None, &e))?;
    let mut table = file_table.clone();
    let warnings = apply_env(&mut table, env)?;
    let mut config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| env_error(&file_table, env, &e))?;
    config.warnings = warnings;

    if config.models.is_empty() {
        config.models.push(Config::default_embedded_model());
        if std::path::Path::new(crate::DEFAULT_EMBEDDING_MODEL_PATH).is_file() {
            config.models.push(Config::default_embedding_model());
        }
    }
    let problems = validate::validate(&mut config, env);
    if problems.is_empty() {
        return Ok(config);
    }
    let diagnostics = problems
        .into_iter()
        .map(|p| match env_var_for(&config, &p.path, env) {
            Some(var) => Diagnostic {
                source: "environment".into(),
                line: None,
                key: var,
                message: p.message,
            },
            None => Diagnostic {
                source: source.to_owned(),
                line: span_of(doc.get_ref(), &p.path).map(|s| line_of(text, s.start)),
                key: display_path(&p.path),
                message: p.message,
            },
        })
        .collect::<Vec<_>>();
    let mut diagnostics = diagnostics;
    diagnostics.sort_by_key(|d| (d.source != source, d.line));
    Err(ConfigError { diagnostics })
}

/// The file was fine alone, so an override broke it: find which, by applying each
/// alone, so the message names the variable.
fn env_error(file: &toml::Table, env: &dyn Env, e: &toml::de::Error) -> ConfigError {
    let diagnostics: Vec<Diagnostic> = env
        .hearth_vars()
        .into_iter()
        .filter_map(|(name, raw)| {
            let mut table = file.clone();
            let one = MapEnv::new([(name.clone(), raw)]);
            apply_env(&mut table, &one).ok()?;
            let err = toml::Value::Table(table).try_into::<Config>().err()?;
            Some(Diagnostic {
                source: "environment".into(),
                line: None,
                key: name,
                message: err.message().trim().to_owned(),
            })
        })
        .collect();
    if diagnostics.is_empty() {
        ConfigError::one("environment", "", e.message().trim().to_owned())
    } else {
        ConfigError { diagnostics }
    }
}

/// The environment variable that set the value at `path`, if one did.
fn env_var_for(config: &Config, path: &[Seg], env: &dyn Env) -> Option<String> {
    let name = match path {
        [Seg::Key(k)] if k == "default_model" => env::DEFAULT_MODEL.to_owned(),
        // A short name (`HEARTH_REDIS_URL`) wins over the generic one when both are set.
        [Seg::Key(s), Seg::Key(k), ..]
            if env::alias_of(s, k).is_some_and(|a| env.get(a).is_some()) =>
        {
            env::alias_of(s, k)?.to_owned()
        }
        [Seg::Key(m), Seg::Index(i), Seg::Key(k), ..] if m == "models" => format!(
            "{}MODELS_{}_{}",
            env::PREFIX,
            env::model_env_name(&config.models.get(*i)?.name),
            k.to_ascii_uppercase()
        ),
        [Seg::Key(s), Seg::Key(k), ..] => {
            format!(
                "{}{}_{}",
                env::PREFIX,
                s.to_ascii_uppercase(),
                k.to_ascii_uppercase()
            )
        }
        _ => return None,
    };
    env.get(&name).map(|_| name)
}

/// A path into the document: keys and array indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) fn display_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// Span of the deepest existing prefix of `path` (the key itself when present).
fn span_of(doc: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let mut table = doc;
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut best = None;
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let t = match value {
                    None => table,
                    Some(v) => v.get_ref().as_table()?,
                };
                let (key, v) = t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k.as_str())?;
                best = Some(key.span());
                value = Some(v);
                table = t;
            }
            Seg::Index(i) => {
                let arr = value?.get_ref().as_array()?;
                let v = arr.get(*i)?;
                best = Some(v.span());
                value = Some(v);
            }
        }
    }
    let _ = table;
    best
}

/// The key path whose value contains `offset`, for parse errors.
fn path_at(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) {
    for (key, value) in table.iter() {
        if key.span().contains(&offset) || value.span().contains(&offset) {
            path.push(Seg::Key(key.get_ref().to_string()));
            descend(value.get_ref(), offset, path);
            return;
        }
    }
    // A `[table]` or `[[array]]` is spanned by its header only: take the last one
    // that starts before the offset.
    let container = table
        .iter()
        .filter(|(_, v)| v.get_ref().is_table() || v.get_ref().is_array())
        .filter(|(k, _)| k.span().start <= offset)
        .max_by_key(|(k, _)| k.span().start);
    if let Some((key, value)) = container {
        path.push(Seg::Key(key.get_ref().to_string()));
        descend(value.get_ref(), offset, path);
    }
}

fn descend(value: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>) {
    if let Some(t) = value.as_table() {
        path_at(t, offset, path);
    } else if let Some(arr) = value.as_array() {
        for (i, v) in arr.iter().enumerate() {
            if v.span().contains(&offset) {
                path.push(Seg::Index(i));
                descend(v.get_ref(), offset, path);
                return;
            }
        }
        // Tables of an array of tables are spanned by their header only; take the
        // last one that starts before the offset.
        if let Some((i, v)) = arr
            .iter()
            .enumerate()
            .rfind(|(_, v)| v.span().start <= offset)
        {
            path.push(Seg::Index(i));
            descend(v.get_ref(), offset, path);
        }
    }
}

fn located(
    source: &str,
    text: &str,
    doc: Option<&DeTable<'_>>,
    e: &toml::de::Error,
) -> ConfigError {
    let span = e.span();
    let mut path = Vec::new();
    if let (Some(doc), Some(span)) = (doc, &span) {
        path_at(doc, span.start, &mut path);
    }
    ConfigError {
        diagnostics: vec![Diagnostic {
            source: source.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            key: display_path(&path),
            message: e.message().trim().to_owned(),
        }],
    }
}

/// Applies `HEARTH_*` overrides onto the parsed table. Returns warnings for
/// `HEARTH_*` names that mean nothing to Hearth (a typo must not pass unseen).
fn apply_env(table: &mut toml::Table, env: &dyn Env) -> Result<Vec<Diagnostic>, ConfigError> {
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();
    let model_names: Vec<String> = table
        .get("models")
        .and_then(toml::Value::as_array)
        .map(|models| {
            models
                .iter()
                .map(|m| {
                    m.get("name")
                        .and_then(toml::Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut aliased = Vec::new();
    for (name, raw) in env.hearth_vars() {
        let Some(rest) = name.strip_prefix(env::PREFIX) else {
            continue;
        };
        let value = parse_env_value(&raw);
        if name == env::DEFAULT_MODEL {
            table.insert("default_model".into(), toml::Value::String(raw.clone()));
            continue;
        }
        if let Some(at) = env::alias(&name) {
            // After the generic names, so that the short one wins.
            aliased.push((at, raw));
            continue;
        }
        if let Some(rest) = rest.strip_prefix("MODELS_") {
            match model_override(&model_names, rest) {
                Ok((i, key)) => {
                    if let Some(m) = table
                        .get_mut("models")
                        .and_then(toml::Value::as_array_mut)
                        .and_then(|models| models.get_mut(i))
                        .and_then(toml::Value::as_table_mut)
                    {
                        m.insert(key, value);
                    }
                }
                Err(message) => diagnostics.push(Diagnostic {
                    source: "environment".into(),
                    line: None,
                    key: name.clone(),
                    message,
                }),
            }
            continue;
        }
        let section = env::SECTIONS.iter().find(|s| {
            // `get`: the name may have any characters, and `s.len()` may fall
            // inside one (found by fuzzing).
            rest.get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s))
                && rest.as_bytes().get(s.len()) == Some(&b'_')
        });
        if let Some(section) = section {
            let key = rest[section.len() + 1..].to_ascii_lowercase();
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(t) = entry.as_table_mut() {
                t.insert(key, value);
            }
            continue;
        }
        if !env::READ_ELSEWHERE.contains(&name.as_str()) {
            warnings.push(Diagnostic {
                source: "environment".into(),
                line: None,
                key: name.clone(),
                message: unknown_var_message(rest),
            });
        }
    }
    for ((section, key), raw) in aliased {
        if let Some(t) = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
        {
            t.insert(key.into(), toml::Value::String(raw));
        }
    }
    if diagnostics.is_empty() {
        Ok(warnings)
    } else {
        Err(ConfigError { diagnostics })
    }
}

/// Which model and key `HEARTH_MODELS_<rest>` sets. Model names may share a prefix
/// (`a` and `a-max`) and contain `_`, so the split is the one whose key is a model
/// key; two models with the same env form are ambiguous.
fn model_override(models: &[String], rest: &str) -> Result<(usize, String), String> {
    let mut known_name = None;
    let mut hits = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let prefix = format!("{}_", env::model_env_name(m));
        let Some(key) = rest.strip_prefix(&prefix) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if crate::model::COMMON_KEYS
            .iter()
            .chain(crate::model::EMBEDDED_KEYS)
            .chain(crate::model::UPSTREAM_KEYS)
            .any(|k| *k == key)
        {
            hits.push((i, key));
        } else {
            known_name.get_or_insert((m.clone(), key));
        }
    }
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(match known_name {
            Some((model, key)) => format!(
                "model `{model}` has no key `{key}` (HEARTH_MODELS_<NAME>_<KEY>; keys are those of [[models]], e.g. MAX_QUEUE)"
            ),
            None => "names no configured model (HEARTH_MODELS_<NAME>_<KEY>, NAME in upper case with `_` for other characters)".into(),
        }),
        many => Err(format!(
            "matches more than one model ({}): their names differ only in characters that become `_`; rename one",
            many.iter()
                .map(|(i, _)| format!("`{}`", models[*i]))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What to say of a `HEARTH_*` variable Hearth does not read, with the nearest
/// section when the name looks like a misspelt one.
fn unknown_var_message(rest: &str) -> String {
    let head = rest.split('_').next().unwrap_or(rest).to_ascii_lowercase();
    let near = env::SECTIONS
        .iter()
        .chain(&["models"])
        .map(|s| (edit_distance(&head, s), *s))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    let hint = match near {
        Some((_, s)) => format!(
            "; did you mean HEARTH_{}_{}?",
            s.to_ascii_uppercase(),
            rest.split_once('_').map_or("", |(_, k)| k)
        ),
        None => format!(
            "; overrides are HEARTH_<SECTION>_<KEY> with SECTION one of {}, or HEARTH_MODELS_<NAME>_<KEY>",
            env::SECTIONS.join(", ")
        ),
    };
    format!("Hearth does not read this variable; it is ignored{hint}")
}

/// Levenshtein distance, for "did you mean" on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An override is read as a TOML value when it parses as one (`8`, `true`, `["a"]`),
/// else as a string (`127.0.0.1:8080`).
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}
