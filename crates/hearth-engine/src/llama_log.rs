//! llama.cpp's and ggml's own log lines, into `tracing` under target `llama_cpp`.
//!
//! Loading one model makes llama.cpp write about 140 lines of loader internals
//! (tensor types, KV metadata, buffer sizes). They matter when a load fails or a
//! model misbehaves, not on every start, so they are logged at debug: hidden at the
//! default `info`, shown with `HEARTH_LOG=debug` or `log.level = "info,llama_cpp=debug"`.
//! llama.cpp's errors stay at warn, since they say why a load failed.
//!
//! `llama-cpp-2`'s own router (`send_logs_to_tracing`) keeps llama.cpp's levels,
//! most of them info, and offers no way to lower them; hence this small callback,
//! the engine's one piece of `unsafe`.
#![allow(unsafe_code)] // reason: installing a C log callback and reading its C strings.

use std::ffi::{CStr, c_char, c_void};
use std::sync::{Mutex, PoisonError};

use llama_cpp_sys_2 as sys;

/// The target of llama.cpp's lines, for filters such as `llama_cpp=debug`.
const TARGET: &str = "llama_cpp";

/// How loud a llama.cpp line is in Hearth's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Debug,
    Warn,
}

/// A line llama.cpp is still writing: it sends some lines in pieces, the later
/// ones at level `CONT`.
struct Pending {
    level: sys::ggml_log_level,
    text: String,
}

impl Pending {
    const fn new() -> Self {
        Pending {
            level: sys::GGML_LOG_LEVEL_INFO,
            text: String::new(),
        }
    }

    /// Takes one piece; returns the lines it completes, with their level.
    fn push(&mut self, level: sys::ggml_log_level, piece: &str) -> Vec<(Severity, String)> {
        let mut done = Vec::new();
        if level != sys::GGML_LOG_LEVEL_CONT {
            // A new line while one is unfinished: the old one ends here.
            if !self.text.is_empty() {
                done.push((severity(self.level), std::mem::take(&mut self.text)));
            }
            self.level = level;
        }
        self.text.push_str(piece);
        while let Some(i) = self.text.find('\n') {
            let line: String = self.text.drain(..=i).collect();
            let line = line.trim_end();
            if !line.is_empty() {
                done.push((severity(self.level), line.to_owned()));
            }
        }
        done
    }
}

// One per library, so that a piece of a ggml line never continues a llama.cpp one.
static LLAMA: Mutex<Pending> = Mutex::new(Pending::new());
static GGML: Mutex<Pending> = Mutex::new(Pending::new());

fn severity(level: sys::ggml_log_level) -> Severity {
    if level == sys::GGML_LOG_LEVEL_ERROR {
        Severity::Warn
    } else {
        Severity::Debug
    }
}

/// Sends llama.cpp's and ggml's log lines to `tracing` from now on.
pub fn install() {
    // SAFETY: both callbacks are plain functions that live as long as the process
    // and use no user data; llama.cpp only stores the pointers.
    unsafe {
        sys::llama_log_set(Some(on_llama_log), std::ptr::null_mut());
        // After llama's: setting llama.cpp's callback sets ggml's too.
        sys::ggml_log_set(Some(on_ggml_log), std::ptr::null_mut());
    }
}

unsafe extern "C" fn on_llama_log(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call (or null).
    unsafe { on_log(&LLAMA, "llama", level, text) }
}

unsafe extern "C" fn on_ggml_log(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    // SAFETY: as above.
    unsafe { on_log(&GGML, "ggml", level, text) }
}

/// # Safety
/// `text` is null or a NUL-terminated string valid for the duration of the call.
unsafe fn on_log(
    pending: &Mutex<Pending>,
    module: &'static str,
    level: sys::ggml_log_level,
    text: *const c_char,
) {
    if text.is_null() {
        return;
    }
    let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
    let effective = if level == sys::GGML_LOG_LEVEL_CONT {
        p.level
    } else {
        level
    };
    // The common case at the default level: nothing wanted, nothing copied.
    let wanted = match severity(effective) {
        Severity::Debug => tracing::enabled!(target: TARGET, tracing::Level::DEBUG),
        Severity::Warn => tracing::enabled!(target: TARGET, tracing::Level::WARN),
    };
    if !wanted {
        p.level = effective;
        p.text.clear();
        return;
    }
    // SAFETY: the caller's contract.
    let piece = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    for (severity, line) in p.push(level, &piece) {
        match severity {
            Severity::Debug => tracing::debug!(target: TARGET, module, "{line}"),
            Severity::Warn => tracing::warn!(target: TARGET, module, "{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_become_lines_at_the_level_of_their_first_piece() {
        let mut p = Pending::new();
        assert_eq!(
            p.push(sys::GGML_LOG_LEVEL_INFO, "llama_model_loader: loaded\n"),
            [(Severity::Debug, "llama_model_loader: loaded".to_owned())]
        );
        assert!(
            p.push(sys::GGML_LOG_LEVEL_ERROR, "error loading ")
                .is_empty()
        );
        assert!(p.push(sys::GGML_LOG_LEVEL_CONT, "model: ").is_empty());
        assert_eq!(
            p.push(sys::GGML_LOG_LEVEL_CONT, "bad magic\n"),
            [(Severity::Warn, "error loading model: bad magic".to_owned())]
        );
        // An unfinished line ends when another begins; blank lines are dropped.
        assert!(p.push(sys::GGML_LOG_LEVEL_INFO, "....").is_empty());
        assert_eq!(
            p.push(sys::GGML_LOG_LEVEL_WARN, "\nnext\n"),
            [
                (Severity::Debug, "....".to_owned()),
                (Severity::Debug, "next".to_owned())
            ]
        );
    }
}
