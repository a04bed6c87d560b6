//! A GGUF's chat template rendered as the Jinja it is (`tokenizer.chat_template`),
//! for the tool syntaxes that only the template's own source writes (Llama 3.x's
//! and Mistral's, see `tools`), for reasoning models' prompts (which drop earlier
//! thoughts, or open the thinking: see `think`) and for the requests that pass the
//! template variables (`chat_template_kwargs`). llama.cpp's C template API, all
//! the binding exposes, recognises a template by its markers and writes the plain
//! turns only.
//!
//! The environment is what Hugging Face's `apply_chat_template` gives a template:
//! Python's string and dict methods (`.strip()`, `.items()`… through
//! `minijinja-contrib`'s pycompat), `raise_exception`, `strftime_now`, and a
//! `tojson` that writes what Python's `json.dumps` writes (`", "` and `": "`
//! between items, no HTML escaping), since that is the text the model was
//! trained on.

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, Error, ErrorKind, context};
use serde_json::Value;

/// One compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; the error says where it does not parse.
    pub fn new(source: &str) -> Result<Self, String> {
        Self::at(source, None)
    }

    /// [`ChatTemplate::new`], with `strftime_now` at a fixed time (seconds since
    /// the epoch) when `now` is given.
    fn at(source: &str, now: Option<u64>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<JValue, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", move |format: String| match now {
            Some(secs) => strftime(&format, secs),
            None => strftime_now(&format),
        });
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", continued_lines(source))
            .map_err(|e| format!("the chat template does not parse: {e}"))?;
        Ok(ChatTemplate { env })
    }

    /// The prompt for `messages` (OpenAI's shape) offering `tools` (OpenAI's
    /// `tools` list), ending where the assistant's answer starts. The error is the
    /// template's own (its `raise_exception` message, for one).
    pub fn render(
        &self,
        messages: &Value,
        tools: Option<&Value>,
        bos: &str,
        eos: &str,
    ) -> Result<String, String> {
        self.render_with(messages, tools, bos, eos, &serde_json::Map::new())
    }

    /// [`ChatTemplate::render`] with more variables for the template
    /// (`chat_template_kwargs`, as `apply_chat_template` takes them: Qwen3's
    /// `enable_thinking`); they never replace the messages, tools or tokens.
    pub fn render_with(
        &self,
        messages: &Value,
        tools: Option<&Value>,
        bos: &str,
        eos: &str,
        kwargs: &serde_json::Map<String, Value>,
    ) -> Result<String, String> {
        let t = self.env.get_template("chat").map_err(|e| e.to_string())?;
        let tools = tools.map(JValue::from_serialize);
        t.render(context! {
            messages => JValue::from_serialize(messages),
            tools => tools,
            add_generation_prompt => true,
            bos_token => bos,
            eos_token => eos,
            ..JValue::from_serialize(kwargs)
        })
        .map_err(|e| match e.kind() {
            // `raise_exception`'s message as the template wrote it.
            ErrorKind::InvalidOperation => e.detail().unwrap_or("").to_owned(),
            _ => format!("{e}"),
        })
    }
}

/// `source` with each backslash-newline inside a string literal of a tag taken
/// out: Python's Jinja decodes its literals as Python does, where that pair
/// continues the line (Mistral Small 3.1's template writes its system prompt's
/// lines so); minijinja would keep both characters. Text outside tags is left
/// as it is.
fn continued_lines(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    // Inside `{{ }}` or `{% %}`, and the quote of the literal we are in.
    let (mut tag, mut quote) = (false, None::<u8>);
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match (tag, quote) {
            (false, _) => {
                if c == b'{' && matches!(next, Some(b'{' | b'%')) {
                    tag = true;
                    out.extend_from_slice(&b[i..i + 2]);
                    i += 2;
                    continue;
                }
            }
            (true, None) => match (c, next) {
                (b'}' | b'%', Some(b'}')) => {
                    tag = false;
                    out.extend_from_slice(&b[i..i + 2]);
                    i += 2;
                    continue;
                }
                (b'"' | b'\'', _) => quote = Some(c),
                _ => {}
            },
            (true, Some(q)) => match (c, next) {
                (b'\\', Some(b'\n')) => {
                    i += 2;
                    continue;
                }
                (b'\\', Some(b'\r')) if b.get(i + 2) == Some(&b'\n') => {
                    i += 3;
                    continue;
                }
                (b'\\', Some(n)) => {
                    out.extend_from_slice(&[c, n]);
                    i += 2;
                    continue;
                }
                _ if c == q => quote = None,
                _ => {}
            },
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| source.to_owned())
}

/// Jinja's `tojson` as Hugging Face defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent)`.
fn tojson(value: &JValue, kwargs: Kwargs) -> Result<JValue, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let f = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut s = serde_json::Serializer::with_formatter(&mut out, f);
            serde::Serialize::serialize(&json, &mut s)
        }
        None => {
            let mut s = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
            serde::Serialize::serialize(&json, &mut s)
        }
    };
    written.map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(JValue::from_safe_string(
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

/// `json.dumps`'s default separators: `", "` between items, `": "` after keys.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// Python's `strftime` of the current UTC time, for the codes templates use
/// (`%d %b %Y` in Llama 3.x's); other codes are written as they are.
fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    strftime(format, secs)
}

fn strftime(format: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs / 86_400;
    let (y, m, d) = hearth_api::civil_from_days(days as i64);
    let of_day = secs % 86_400;
    let month = MONTHS[(m - 1) as usize];
    let weekday = DAYS[(days % 7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('-') if chars.clone().next() == Some('d') => {
                chars.next();
                out.push_str(&d.to_string());
            }
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('H') => out.push_str(&format!("{:02}", of_day / 3600)),
            Some('M') => out.push_str(&format!("{:02}", of_day / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", of_day % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tojson_writes_what_python_writes() {
        let t = ChatTemplate::new("{{ x | tojson }}|{{ x | tojson(indent=2) }}|")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let x = json!({"b": [1, "<a & 'b'>"], "a": {}});
        let out = t
            .env
            .get_template("chat")
            .and_then(|t| t.render(context! {x => JValue::from_serialize(&x)}))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            out,
            "{\"b\": [1, \"<a & 'b'>\"], \"a\": {}}|{\n  \"b\": [\n    1,\n    \"<a & 'b'>\"\n  ],\n  \"a\": {}\n}|"
        );
    }

    #[test]
    fn a_backslash_newline_in_a_literal_continues_the_line_as_in_python() {
        let t = ChatTemplate::new(
            "{%- set s = \"a\\\nb \\\\ \\\"q\\\" 'c'\" %}{{ s }}|x\\\ny|{{ 'd\\\r\ne' }}",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let out = t
            .env
            .get_template("chat")
            .and_then(|t| t.render(context! {}))
            .unwrap_or_else(|e| unreachable!("{e}"));
        // In tags: the pair is gone, other escapes stay; outside: text as it is.
        assert_eq!(out, "ab \\ \"q\" 'c'|x\\\ny|de");
    }

    /// Each stored template renders what Python's Jinja renders, byte for byte:
    /// `tests/templates/rendered/` holds its output for one conversation with a
    /// call, its result and a tool on offer, made by `render_hf.py` (jinja2 in
    /// Hugging Face's `apply_chat_template` environment).
    #[test]
    fn templates_render_what_python_jinja_renders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/templates");
        let messages: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("rendered/conversation.json"))
                .unwrap_or_else(|e| unreachable!("{e}")),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| unreachable!("{e}")) {
            let path = entry.unwrap_or_else(|e| unreachable!("{e}")).path();
            if path.extension().and_then(|e| e.to_str()) != Some("jinja") {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| unreachable!("{e}"));
            let t = ChatTemplate::at(&source, Some(1_722_000_000))
                .unwrap_or_else(|e| unreachable!("{e}"));
            // Qwen3's is rendered again with `chat_template_kwargs` turning its
            // thinking off.
            let mut off = serde_json::Map::new();
            off.insert("enable_thinking".into(), Value::Bool(false));
            let kinds = [("", serde_json::Map::new()), (".no-think", off)];
            for (suffix, kwargs) in kinds {
                if !kwargs.is_empty() && !source.contains("enable_thinking") {
                    continue;
                }
                let want =
                    std::fs::read_to_string(dir.join(format!("rendered/{name}{suffix}.txt")))
                        .unwrap_or_else(|e| unreachable!("{name}{suffix}: {e}"));
                let got = t
                    .render_with(
                        &messages["messages"],
                        Some(&messages["tools"]),
                        "<s>",
                        "</s>",
                        &kwargs,
                    )
                    .unwrap_or_else(|e| unreachable!("{name}{suffix}: {e}"));
                assert_eq!(got, want, "{name}{suffix}");
                checked += 1;
            }
        }
        assert_eq!(checked, 10);
    }

    #[test]
    fn raise_exception_reads_as_the_templates_message() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            t.render(&json!([]), None, "", ""),
            Err("roles must alternate".to_owned())
        );
        assert!(ChatTemplate::new("{% if %}").is_err());
    }

    #[test]
    fn strftime_writes_the_codes_templates_use() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = 1_722_000_000 - 1_722_000_000 % 86_400 + 13 * 3600 + 5 * 60 + 9;
        assert_eq!(strftime("%d %b %Y", t), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %-d, %H:%M:%S %y/%m 100%%", t),
            "Friday July 26, 13:05:09 24/07 100%"
        );
    }
}
