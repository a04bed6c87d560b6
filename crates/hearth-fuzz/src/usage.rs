//! The usage scanner (`Usage::scan`, `Usage::in_chunk`), with serde_json and
//! `Usage::from_response` as the oracle.
//!
//! Properties:
//! - valid JSON is never refused;
//! - on valid JSON whose keys are unique and written without escapes, the scan
//!   finds exactly the usage a parser finds: the top-level object's `usage`, when
//!   it is a usage object;
//! - `in_chunk` is the scan when the bytes `"usage"` occur, and nothing otherwise.

use hearth_api::Usage;
use serde_json::Value;

use crate::json::keys;

pub fn run(data: &[u8]) {
    let scanned = Usage::scan(data);
    let names_usage = data.windows(7).any(|w| w == b"\"usage\"");
    let want_in_chunk = if names_usage {
        scanned.ok().flatten()
    } else {
        None
    };
    assert_eq!(Usage::in_chunk(data), want_in_chunk);

    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let found = match scanned {
        Ok(found) => found,
        Err(e) => panic!("valid JSON refused: {e}"),
    };
    let Some(k) = keys(data) else { return };
    if k.duplicate || k.escaped {
        return;
    }
    let want = value.as_object().and_then(|_| Usage::from_response(&value));
    assert_eq!(found, want, "the scan and the parser disagree");
}
