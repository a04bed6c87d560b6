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
