//! Field-by-field extraction from a JSON object, so a type error names its field.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Removes `key` and deserializes it; `null` counts as absent.
pub(crate) fn take<T: DeserializeOwned>(
    map: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| ApiError::invalid_param(key, format!("invalid value for `{key}`: {e}"))),
    }
}

/// Range checks OpenAI documents for the sampling fields.
pub(crate) fn check_sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
) -> Result<(), ApiError> {
    let check = |name: &str, v: Option<f32>, lo: f32, hi: f32| match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::invalid_param(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    };
    check("temperature", temperature, 0.0, 2.0)?;
    check("top_p", top_p, 0.0, 1.0)?;
    check("presence_penalty", presence_penalty, -2.0, 2.0)?;
    check("frequency_penalty", frequency_penalty, -2.0, 2.0)
}
