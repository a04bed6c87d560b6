//! A GGUF's chat template rendered as the Jinja it is (`tokenizer.chat_template`),
//! for the tool syntaxes that only the template's own source writes: Llama 3.x's
//! and Mistral's (see `tools`). llama.cpp's C template API, all the binding
//! exposes, recognises a template by its markers and writes the plain turns only.
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
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<JValue, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| strftime_now(&format));
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_owned())
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
        let t = self.env.get_template("chat").map_err(|e| e.to_string())?;
        let tools = tools.map(JValue::from_serialize);
        t.render(context! {
            messages => JValue::from_serialize(messages),
            tools => tools,
            add_generation_prompt => true,
            bos_token => bos,
            eos_token => eos,
        })
        .map_err(|e| match e.kind() {
            // `raise_exception`'s message as the template wrote it.
            ErrorKind::InvalidOperation => e.detail().unwrap_or("").to_owned(),
            _ => format!("{e}"),
        })
    }
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
