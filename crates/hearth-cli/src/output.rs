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

/// Rows as a table: each column padded to its widest cell, two spaces between,
/// nothing trailing. The first row is the header.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
