//! From token bytes to the text a client sees: whole UTF-8 characters only, and
//! stop strings cut out even when they span several tokens.
//!
//! A token is a byte string that may end inside a multi-byte character, and a stop
//! string may begin in one token and end in the next. [`TextStream`] holds back the
//! bytes of an unfinished character and the tail of the text that could still grow
//! into a stop string; everything before that is safe to send.

/// What pushing one token's bytes produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Text that can be sent now (may be empty).
    pub text: String,
    /// A stop string was completed; `text` ends right before it and nothing more
    /// may be sent.
    pub stopped: bool,
}

#[derive(Debug, Default)]
pub struct TextStream {
    stops: Vec<String>,
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not yet sent because it may be the start of a stop string.
    held: String,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        TextStream {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.partial.extend_from_slice(bytes);
        let decoded = take_utf8(&mut self.partial);
        self.held.push_str(&decoded);
        self.release()
    }

    /// Text still held at the end of generation (an unfinished stop-string prefix, or
    /// a dangling partial character, replaced by U+FFFD).
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.partial.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        out
    }

    fn release(&mut self) -> Pushed {
        // The earliest complete stop string wins.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let text = self.held[..at].to_owned();
            self.held.clear();
            self.partial.clear();
            return Pushed {
                text,
                stopped: true,
            };
        }
        // Keep the longest suffix of `held` that is a proper prefix of a stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_owned();
        self.held.drain(..cut);
        Pushed {
            text,
            stopped: false,
        }
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop
                    .as_bytes()
                    .starts_with(&text.as_bytes()[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Removes and returns the longest valid UTF-8 prefix of `buf`, leaving an
/// incomplete trailing character in place. Invalid bytes become U+FFFD.
fn take_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(buf) {
            Ok(s) => {
                out.push_str(s);
                buf.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&buf[..valid]));
                match e.error_len() {
                    // Incomplete character at the end: wait for the next token.
                    None => {
                        buf.drain(..valid);
                        return out;
                    }
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        buf.drain(..valid + bad);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let mut t = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for p in pieces {
            let r = t.push(p);
            out.push(r.text);
            if r.stopped {
                return (out, true, String::new());
            }
        }
        let rest = t.finish();
        (out, false, rest)
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        let snow = "é☃".as_bytes(); // 2 + 3 bytes
        let (out, _, rest) = run(&[], &[&snow[..1], &snow[1..3], &snow[3..], b"!"]);
        assert_eq!(out, vec!["", "é", "☃", "!"]);
        assert_eq!(rest, "");
        for s in &out {
            assert!(std::str::from_utf8(s.as_bytes()).is_ok());
        }
    }

    #[test]
    fn stop_string_split_across_tokens_is_not_emitted() {
        let (out, stopped, _) = run(&["END"], &[b"hello E", b"N", b"D more"]);
        assert!(stopped);
        assert_eq!(out.concat(), "hello ");
        // The held prefix is not sent early.
        assert_eq!(out[0], "hello ");
    }

    #[test]
    fn false_start_is_released() {
        let (out, stopped, rest) = run(&["END"], &[b"E", b"N", b"x"]);
        assert!(!stopped);
        assert_eq!(out.concat() + &rest, "ENx");
        let (out, _, rest) = run(&["END"], &[b"abc E"]);
        assert_eq!(out, vec!["abc "]);
        assert_eq!(rest, "E");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (out, stopped, _) = run(&["b", "xyz"], &[b"axyzb"]);
        assert!(stopped);
        assert_eq!(out.concat(), "a");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _, _) = run(&[], &[b"a\xffb"]);
        assert_eq!(out.concat(), "a\u{FFFD}b");
    }

    #[test]
    fn stop_with_multibyte_prefix() {
        let (out, stopped, _) = run(&["☃x"], &["a☃".as_bytes(), b"x"]);
        assert!(stopped);
        assert_eq!(out.concat(), "a");
    }
}
