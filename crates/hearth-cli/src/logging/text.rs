//! The text format of stdout's log lines, for a person at a terminal:
//! `HH:MM:SS LEVEL message key=value ...`, one line per event, local time,
//! colours only when the writer is a terminal.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as one readable line each.
pub struct TextFormat {
    /// Colour the level and dim the time (ANSI escapes): on a terminal only.
    pub ansi: bool,
    /// The local time's offset from UTC, read once at start: reading it later,
    /// with threads running, is not sound on Linux (the `time` crate refuses).
    pub offset: time::UtcOffset,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc().to_offset(self.offset);
        let mut fields = Fields::default();
        event.record(&mut fields);
        // The span a line was logged in (a request's id, a job's) says what it belongs to.
        if let Some(span) = ctx.event_scope().and_then(|mut s| s.next()) {
            let ext = span.extensions();
            if let Some(f) = ext.get::<FormattedFields<N>>()
                && !f.is_empty()
            {
                fields.span = Some(format!("{}{{{}}}", span.name(), f.fields));
            }
        }
        let line = format_line(
            (now.hour(), now.minute(), now.second()),
            *event.metadata().level(),
            &fields,
            self.ansi,
        );
        writeln!(w, "{line}")
    }
}

/// An event's message and its other fields, in the order they were given.
#[derive(Debug, Default)]
pub struct Fields {
    pub message: String,
    pub rest: Vec<(String, String)>,
    /// The innermost span, as `name{field=value ...}`.
    pub span: Option<String>,
}

impl Fields {
    pub fn push(&mut self, key: &str, value: &str) {
        self.rest.push((key.to_owned(), value.to_owned()));
    }

    /// `key=value ...`, without the fields whose value the message already says
    /// (`model=x` after "x ready in 0.2 s"): the JSON lines keep every field.
    fn tail(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.rest {
            if value.len() > 2 && self.message.contains(value.as_str()) {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            // Quoted only when the value would not read as one word.
            let plain = !value.is_empty()
                && !value
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c.is_control());
            if plain {
                let _ = write!(out, "{key}={value}");
            } else {
                let _ = write!(out, "{key}={value:?}");
            }
        }
        if let Some(span) = &self.span {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(span);
        }
        out
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.push(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "message" {
            self.message = value;
        } else {
            self.push(field.name(), &value);
        }
    }
}

/// One line: `HH:MM:SS LEVEL message key=value ...` (the level padded to five).
pub fn format_line(hms: (u8, u8, u8), level: Level, fields: &Fields, ansi: bool) -> String {
    let (h, m, s) = hms;
    let time = format!("{h:02}:{m:02}:{s:02}");
    let level_text = format!("{level:<5}");
    let mut line = if ansi {
        let colour = match level {
            Level::ERROR => "31",
            Level::WARN => "33",
            Level::INFO => "32",
            Level::DEBUG => "34",
            Level::TRACE => "35",
        };
        format!("\x1b[2m{time}\x1b[0m \x1b[{colour}m{level_text}\x1b[0m")
    } else {
        format!("{time} {level_text}")
    };
    // A message that spans lines stays on one: the format is one line per event.
    let message = fields.message.replace('\n', " ");
    if !message.is_empty() {
        line.push(' ');
        line.push_str(&message);
    }
    let tail = fields.tail();
    if !tail.is_empty() {
        line.push(' ');
        if ansi {
            let _ = write!(line, "\x1b[2m{tail}\x1b[0m");
        } else {
            line.push_str(&tail);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(message: &str, rest: &[(&str, &str)]) -> Fields {
        let mut f = Fields {
            message: message.to_owned(),
            ..Fields::default()
        };
        for (k, v) in rest {
            f.push(k, v);
        }
        f
    }

    #[test]
    fn a_line_is_time_level_message_then_fields() {
        let f = fields(
            "smollm2-135m ready in 0.3 s",
            &[
                ("model", "smollm2-135m"),
                ("chat_template", "from the GGUF"),
                ("n", "0"),
            ],
        );
        // `model` is said by the message already.
        assert_eq!(
            format_line((9, 5, 7), Level::INFO, &f, false),
            r#"09:05:07 INFO  smollm2-135m ready in 0.3 s chat_template="from the GGUF" n=0"#
        );
    }

    #[test]
    fn empty_and_multiline_values_stay_on_one_line() {
        let f = fields("first\nsecond", &[("error", ""), ("detail", "a\nb")]);
        assert_eq!(
            format_line((23, 59, 0), Level::WARN, &f, false),
            r#"23:59:00 WARN  first second error="" detail="a\nb""#
        );
    }

    #[test]
    fn colours_only_when_asked() {
        let f = fields("boom", &[]);
        let plain = format_line((1, 2, 3), Level::ERROR, &f, false);
        assert!(!plain.contains('\x1b'));
        let coloured = format_line((1, 2, 3), Level::ERROR, &f, true);
        assert!(coloured.contains("\x1b[31mERROR\x1b[0m"), "{coloured:?}");
        assert!(coloured.ends_with("boom"));
    }

    #[test]
    fn formats_real_events_with_their_span() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(TextFormat {
                    ansi: false,
                    offset: time::UtcOffset::UTC,
                })
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(model = "m", bytes = 12u64, "loading {} ({})", "m", "12 B");
            let span = tracing::info_span!("request", id = "r1");
            let _in = span.enter();
            tracing::warn!(status = 502, "upstream failed");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].ends_with(" INFO  loading m (12 B) model=m bytes=12"),
            // `m` is too short to count as said by the message.
            "{out}"
        );
        assert!(
            lines[1].ends_with(r#" WARN  upstream failed status=502 request{id="r1"}"#),
            "{out}"
        );
        assert_eq!(lines[0].as_bytes()[2], b':');
    }
}
