//! Token usage.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Read as `input_tokens` too, as the Responses API names it.
    #[serde(alias = "input_tokens")]
    pub prompt_tokens: u64,
    /// Absent from an embeddings answer's usage (only its prompt is counted).
    /// Read as `output_tokens` too.
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }

    /// Reads `usage` from a response or chunk object, if it has one.
    pub fn from_response(v: &serde_json::Value) -> Option<Usage> {
        serde_json::from_value(v.get("usage")?.clone()).ok()
    }

    /// Reads the top-level `usage` of a whole response body without parsing the
    /// rest, and checks that the body is JSON as far as its ends show: an object
    /// from `{` to `}`, an array, or a scalar. (A relay passes the body on as it
    /// came: what this catches is an HTML error page, plain text, or a body cut
    /// short.) `Ok(None)` when there is no usage or it is malformed.
    ///
    /// Where OpenAI, vLLM and Ollama put it, as the object's last member, `usage`
    /// is found from the end; elsewhere (llama-server sends `timings` after it) a
    /// structural pass over the body finds it.
    pub fn scan(json: &[u8]) -> Result<Option<Usage>, &'static str> {
        let body = json.trim_ascii();
        match (body.first(), body.last()) {
            (None, _) => Err("the body is empty"),
            (Some(b'{'), Some(b'}')) => {
                Ok(last_member(body).or_else(|| forward(body).ok().flatten()))
            }
            (Some(b'['), Some(b']')) => Ok(None),
            (Some(b'{' | b'['), _) => Err("the body ends before its last bracket closes"),
            _ => serde_json::from_slice::<serde::de::IgnoredAny>(body)
                .map(|_| None)
                .map_err(|_| "the body is not JSON"),
        }
    }
    /// [`Usage::scan`] for a chunk of a stream, most of which carry none: scanned
    /// only when the bytes `"usage"` occur in it.
    pub fn in_chunk(json: &[u8]) -> Option<Usage> {
        static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
        USAGE.find(json)?;
        Usage::scan(json).ok().flatten()
    }
}

/// `usage` when it is the last member of the object `body` (`{` ... `}`): the last
/// `"usage"` in the body, a real key (its quote not escaped), whose value runs to
/// the final `}`. That value closing the body's object makes it a top-level member.
fn last_member(body: &[u8]) -> Option<Usage> {
    static KEY: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(b"\"usage\""));
    let at = KEY.rfind(body)?;
    let backslashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return None;
    }
    let rest = body[at + 7..].trim_ascii_start().strip_prefix(b":")?;
    // Everything up to the closing brace must be the usage value itself.
    serde_json::from_slice(&rest[..rest.len() - 1]).ok()
}

/// Reads the top-level `usage` in one structural pass (brackets, strings, the keys
/// of the top-level object), building nothing of the rest.
fn forward(json: &[u8]) -> Result<Option<Usage>, &'static str> {
    let Some(start) = json.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err("the body is empty");
    };
    if !matches!(json[start], b'{' | b'[') {
        // A bare scalar: rare enough to check with the parser.
        return serde_json::from_slice::<serde::de::IgnoredAny>(json)
            .map(|_| None)
            .map_err(|_| "the body is not JSON");
    }
    let top_object = json[start] == b'{';
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut after_usage_key = false;
    // Where the value of a top-level `usage` starts while it is being read, then
    // its whole span.
    let mut usage_from: Option<usize> = None;
    let mut usage: Option<(usize, usize)> = None;
    let mut i = start;
    let end = loop {
        let Some(&b) = json.get(i) else {
            return Err("the body ends before its last bracket closes");
        };
        match b {
            b'"' => {
                let close = string_end(json, i + 1).ok_or("a string never ends")?;
                if depth == 1 && top_object && expect_key {
                    after_usage_key = &json[i + 1..close] == b"usage";
                }
                expect_key = false;
                i = close;
            }
            b':' if depth == 1 && after_usage_key => {
                after_usage_key = false;
                usage_from = Some(i + 1);
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = b == b'{' && depth == 1;
            }
            b'}' | b']' => {
                depth -= 1; // never below 0: the loop ends when it reaches it
                if depth == 0 {
                    if let Some(from) = usage_from.take() {
                        usage = Some((from, i));
                    }
                    break i;
                }
            }
            b',' if depth == 1 => {
                expect_key = true;
                if let Some(from) = usage_from.take() {
                    usage = Some((from, i));
                }
            }
            _ => {}
        }
        i += 1;
    };
    if !json[end + 1..].iter().all(u8::is_ascii_whitespace) {
        return Err("there is more after the JSON value");
    }
    // A malformed `usage` is not worth failing a good answer over.
    Ok(usage.and_then(|(from, to)| serde_json::from_slice(&json[from..to]).ok()))
}

/// The index of the quote that closes the string whose content starts at `from`.
fn string_end(json: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', json.get(from..)?)?;
        if json[at] == b'"' {
            return Some(at);
        }
        from = at + 2; // an escape: skip the escaped character
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_reads_top_level_usage_and_skims_the_rest() {
        let u = Usage::scan(
            br#"{"id":"x","choices":[{"message":{"content":"\"usage\": 9"}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        )
        .unwrap();
        assert_eq!(u, Some(Usage::new(3, 4)));
        assert_eq!(Usage::scan(br#"{"id":"x"}"#).unwrap(), None);
        assert_eq!(Usage::scan(br#"{"usage":"odd"}"#).unwrap(), None);
        assert_eq!(Usage::scan(br#"{"usage":null}"#).unwrap(), None);
        assert_eq!(Usage::scan(br#"[1,2]"#).unwrap(), None);
        assert_eq!(Usage::scan(br#""text""#).unwrap(), None);
        assert_eq!(
            Usage::scan(
                br#" {"usage" : {"prompt_tokens":1,"completion_tokens":2,"total_tokens":3} } "#
            )
            .unwrap(),
            Some(Usage::new(1, 2))
        );
        // Usage nested deeper, or as a value, is not the response's.
        let nested = br#"{"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}],"x":"usage"}"#;
        assert_eq!(Usage::scan(nested).unwrap(), None);
        // The last of duplicate keys wins, as for a parser.
        let twice = br#"{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}"#;
        assert_eq!(Usage::scan(twice).unwrap(), Some(Usage::new(5, 5)));
        // Where llama-server puts it (before `timings`), and nested as the last member.
        let llama = br#"{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4},"timings":{"predicted_ms":1.5}}"#;
        assert_eq!(Usage::scan(llama).unwrap(), Some(Usage::new(2, 2)));
        let nested_last =
            br#"{"x":{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}"#;
        assert_eq!(Usage::scan(nested_last).unwrap(), None);
        let in_a_string = br#"{"a":"\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}"}"#;
        assert_eq!(Usage::scan(in_a_string).unwrap(), None);
        let after_backslashes =
            br#"{"a":"x\\","usage":{"prompt_tokens":6,"completion_tokens":1,"total_tokens":7}}"#;
        assert_eq!(
            Usage::scan(after_backslashes).unwrap(),
            Some(Usage::new(6, 1))
        );
        // What the ends show to be no JSON (an HTML error page, text, a body cut
        // short) is an error...
        for bad in [
            &b""[..],
            b"  ",
            b"{not json",
            br#"{"usage":{}} trailing"#,
            br#"{"choices":[],"usage":{"prompt_tokens":1"#,
            b"<html><body>502 Bad Gateway</body></html>",
            b"}",
            b"nope",
        ] {
            assert!(
                Usage::scan(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // ...while what is broken inside is passed on as it came, without usage.
        for inside in [
            &br#"{"a":[1,}"#[..],
            br#"{"a":"unterminated}"#,
            br#"{"a":1}}"#,
            br#"{"a":"a string longer than sixteen bytes ending in an escape\"}"#,
        ] {
            assert_eq!(
                Usage::scan(inside),
                Ok(None),
                "{}",
                String::from_utf8_lossy(inside)
            );
        }
    }

    #[test]
    fn scan_agrees_with_the_parser_on_valid_json() {
        let bodies = [
            r#"{"id":"c1","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\" \\ {[ usage"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}"#,
            r#"{"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13},"choices":[]}"#,
            r#"{"a":{"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}},"b":[{"c":"\u0022usage\u0022"}]}"#,
            r#"[{"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}]"#,
            r#"{"usage":null}"#,
            r#"{}"#,
            r#"{"long":"a string longer than sixteen bytes with \"quotes\" and \\ past the first sixteen","usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#,
            r#"{"k":"0123456789abcdef\"","usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#,
        ];
        for b in bodies {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            let expected = v.as_object().and_then(|_| Usage::from_response(&v));
            assert_eq!(Usage::scan(b.as_bytes()).unwrap(), expected, "{b}");
        }
    }

    #[test]
    fn in_chunk_parses_only_chunks_that_name_usage() {
        assert_eq!(Usage::in_chunk(br#"{"choices":[]}"#), None);
        assert_eq!(
            Usage::in_chunk(
                br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#
            ),
            Some(Usage::new(3, 4))
        );
        assert_eq!(Usage::in_chunk(br#"{"usage":{"#), None);
    }
}
