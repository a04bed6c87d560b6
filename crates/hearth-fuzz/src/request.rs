//! The one-pass request parser (`ChatCompletionRequest::from_json`,
//! `CompletionRequest::from_json`), with serde_json as the oracle.
//!
//! Properties, for each of the two request types on the same bytes:
//! - bytes that are not JSON are refused (as `invalid_json`);
//! - on JSON without duplicate keys, parsing the bytes in one pass and parsing
//!   serde_json's `Value` of them agree: the same request, or errors of the same
//!   kind naming the same `param`;
//! - an accepted request serializes (as it is forwarded upstream) to JSON that
//!   parses back to the same request.

use std::fmt::Debug;

use hearth_api::{ApiError, ChatCompletionRequest, CompletionRequest};
use serde::Serialize;
use serde_json::Value;

use crate::json::has_duplicate_keys;

pub fn run(data: &[u8]) {
    check(
        data,
        ChatCompletionRequest::from_json,
        ChatCompletionRequest::from_value,
    );
    check(
        data,
        CompletionRequest::from_json,
        CompletionRequest::from_value,
    );
    if let Ok(r) = ChatCompletionRequest::from_json(data) {
        assert!(!r.messages.is_empty(), "an accepted chat has messages");
        for m in &r.messages {
            assert!(hearth_api::chat::ROLES.contains(&m.role.as_str()));
        }
    }
}

fn check<T: PartialEq + Debug + Serialize>(
    data: &[u8],
    from_json: fn(&[u8]) -> Result<T, ApiError>,
    from_value: fn(Value) -> Result<T, ApiError>,
) {
    let got = from_json(data);
    let value = match serde_json::from_slice::<Value>(data) {
        Ok(v) => v,
        Err(_) => {
            let e = got.expect_err("bytes serde_json refuses were accepted");
            assert_eq!(e.kind.status(), 400, "{e:?}");
            return;
        }
    };
    if has_duplicate_keys(data) == Some(false) {
        let want = from_value(value);
        match (&got, &want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "from bytes and from a Value differ"),
            (Err(a), Err(b)) => assert_eq!(
                (a.kind, &a.param, &a.code),
                (b.kind, &b.param, &b.code),
                "the errors differ: {} / {}",
                a.message,
                b.message
            ),
            _ => panic!("from bytes: {got:?}\nfrom a Value: {want:?}"),
        }
    }
    if let Ok(r) = &got {
        let bytes = serde_json::to_vec(r).expect("a request serializes");
        match from_json(&bytes) {
            // Exactly: serde_json's `float_roundtrip` (on for the workspace)
            // reads every float correctly rounded, so a vendor field's float
            // reaches the upstream as the client wrote it.
            Ok(again) => assert_eq!(
                serde_json::to_value(&again).expect("a request serializes"),
                serde_json::to_value(r).expect("a request serializes"),
                "the forwarded request reads back differently: {}",
                String::from_utf8_lossy(&bytes)
            ),
            Err(e) => panic!(
                "the forwarded request is refused ({e:?}): {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}
