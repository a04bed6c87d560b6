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

/// `impl Serialize` for a request with typed fields and an `extra` map: the fields
/// the gateway did not interpret first, in the order they came, then the typed ones
/// (`required` always, `flags` when true, `optional` when set). A key in `extra` that
/// a typed field also sets is written once, with the typed value. Backends serialize
/// requests straight to bytes with this, with no JSON tree in between.
macro_rules! serialize_request {
    ($ty:ty, required: [$($req:ident),*], flags: [$($flag:ident),*], optional: [$($opt:ident),*]) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let typed = |k: &str| match k {
                    $(stringify!($req) => true,)*
                    $(stringify!($flag) => self.$flag,)*
                    $(stringify!($opt) => self.$opt.is_some(),)*
                    _ => false,
                };
                let mut map = s.serialize_map(None)?;
                for (k, v) in &self.extra {
                    if !typed(k) {
                        map.serialize_entry(k, v)?;
                    }
                }
                $(map.serialize_entry(stringify!($req), &self.$req)?;)*
                $(if self.$flag {
                    map.serialize_entry(stringify!($flag), &true)?;
                })*
                $(if let Some(v) = &self.$opt {
                    map.serialize_entry(stringify!($opt), v)?;
                })*
                map.end()
            }
        }
    };
}
pub(crate) use serialize_request;
