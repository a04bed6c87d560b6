//! OpenAI wire types and the OpenAI-shaped error type.
//!
//! This crate owns the shapes that cross the wire: request and response bodies of
//! `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and `/v1/models`, the streaming chunk
//! shapes, and [`ApiError`], whose JSON form is `{"error":{"message","type","param","code"}}`.
//! It knows nothing of HTTP servers, backends or configuration, so every other crate
//! (the router, the engine, the HTTP layer, the CLI) can share it.
//!
//! # Layout
//! - [`error`]: [`ApiError`] and [`ErrorKind`], the single `kind -> status` mapping.
//! - [`chat`]: chat completion requests, responses and chunks.
//! - [`completion`]: legacy text completion requests (with `suffix` for fill-in-the-middle).
//! - [`embeddings`]: embeddings requests and their answers (floats or base64).
//! - [`models`]: `/v1/models` entries and the model status.
//! - [`usage`]: token usage.
//!
//! Requests keep every field the gateway does not interpret in an `extra` map, so an
//! upstream receives tools, response formats and vendor fields untouched.

pub mod chat;
pub mod completion;
pub mod embeddings;
pub mod error;
mod fields;
pub mod models;
pub mod usage;

pub use chat::{ChatCompletionRequest, ChatMessage, MessageContent, StopSequences, StreamOptions};
pub use completion::{CompletionRequest, Prompt};
pub use embeddings::{EmbeddingInput, EmbeddingsRequest, EncodingFormat, InputItem};
pub use error::{ApiError, ErrorKind};
pub use models::{EngineInfo, ModelEntry, ModelList, ModelStatus, Placement};
pub use usage::Usage;

/// A request serialized with another `model`: what an upstream receives, under its
/// own name for the model, without a copy of the request.
#[derive(Debug, Clone, Copy)]
pub struct AsModel<'a, T> {
    pub request: &'a T,
    pub model: &'a str,
}

/// Seconds since the Unix epoch, as OpenAI's `created` fields use.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn rfc3339(unix_secs: u64) -> String {
    let (year, month, d) = civil_from_days((unix_secs / 86_400) as i64);
    let rem = unix_secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard
/// Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day since 1970-01-01 of a proleptic Gregorian date: the inverse of
/// [`civil_from_days`] (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_051_045), "2026-11-30T15:04:05Z");
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
        assert_eq!(days_from_civil(2025, 11, 30), 20_422);
        // Every day of four centuries (leap days and all) goes there and back.
        for day in -800_000..-653_000i64 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
