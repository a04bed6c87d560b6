//! The one place the CLI writes to stdout/stderr for people to read.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// A line of normal output.
pub fn line(s: impl std::fmt::Display) {
    println!("{s}");
}

/// A line on stderr (errors, warnings).
pub fn err(s: impl std::fmt::Display) {
    eprintln!("{s}");
}

/// Text on stdout as it comes (a streamed answer): no newline added, flushed.
pub fn text(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

/// Text on stderr as it comes (a prompt, a model's reasoning): no newline added.
pub fn err_text(s: &str) {
    eprint!("{s}");
}
