//! Parsing requests field by field, so a type error names its field.
//!
//! A request is read in one pass, straight from the body's bytes (or from a parsed
//! value, for callers that have one): each field the gateway interprets is
//! deserialized into its type where it stands, and only the fields it does not
//! interpret become JSON values, in `extra`. No tree of the whole request is built
//! first (that was a third of the gateway's parsing cost).
//!
//! serde's errors carry no field path, so the visitors record the client-facing
//! error (with `param`) in a [`Fault`] before returning serde's; the innermost
//! record wins, and a syntax error wins over all of them.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::chat::StopSequences;
use crate::error::ApiError;

/// The first client-facing error met while parsing.
#[derive(Default)]
pub(crate) struct Fault(Cell<Option<ApiError>>);

impl Fault {
    /// Keeps `e` unless an inner field already failed.
    pub(crate) fn record(&self, e: ApiError) {
        let kept = self.0.take().unwrap_or(e);
        self.0.set(Some(kept));
    }

    /// Records `e` and returns a serde error to unwind with.
    pub(crate) fn fail<E: de::Error>(&self, e: ApiError) -> E {
        let err = E::custom(&e.message);
        self.record(e);
        err
    }

    /// The error the client sees for serde's error `e`.
    fn to_error(&self, e: &serde_json::Error) -> ApiError {
        if e.is_syntax() || e.is_eof() {
            // A number past its field's type (serde_json's `float_roundtrip` reads
            // an `f32` field as an `f32`, and files a number too large for it as a
            // syntax error) is that field's fault, as it is from a parsed value.
            if e.to_string().starts_with("number out of range")
                && let Some(recorded) = self.0.take()
            {
                return recorded;
            }
            return ApiError::invalid_json(e);
        }
        self.0.take().unwrap_or_else(|| {
            ApiError::invalid_param("", "the request body must be a JSON object")
        })
    }
}

/// Parses a request from JSON bytes with `visitor`, which records into `fault`.
pub(crate) fn from_slice<'de, V: Visitor<'de>>(
    json: &'de [u8],
    fault: &Fault,
    visitor: V,
) -> Result<V::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let out = de
        .deserialize_map(visitor)
        .and_then(|v| de.end().map(|()| v));
    out.map_err(|e| fault.to_error(&e))
}

/// Parses a request from an already parsed value with `visitor`.
pub(crate) fn from_value<V: Visitor<'static>>(
    value: Value,
    fault: &Fault,
    visitor: V,
) -> Result<V::Value, ApiError> {
    value
        .deserialize_map(visitor)
        .map_err(|e| fault.to_error(&e))
}

/// The next value of `map` as a `T`; `null` counts as absent. A wrong type is
/// recorded as an invalid `param`.
pub(crate) fn field<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    param: &str,
    fault: &Fault,
) -> Result<Option<T>, A::Error> {
    map.next_value::<Option<T>>().map_err(|e| {
        fault.record(ApiError::invalid_param(
            param,
            format!("invalid value for `{param}`: {e}"),
        ));
        e
    })
}

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A seed whose `null` is `None`, as for plain fields.
pub(crate) struct Nullable<S>(pub(crate) S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<S>(S);
        impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for V<S> {
            type Value = Option<S::Value>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                self.0.deserialize(d).map(Some)
            }
        }
        d.deserialize_option(V(self.0))
    }
}

/// The checks OpenAI documents for the generation fields both endpoints share:
/// `stop` (at most 4 sequences, none empty) and the sampling ranges; and `min_p`
/// (not OpenAI's) a number an `f32` holds.
pub(crate) fn check_generation(
    stop: Option<&StopSequences>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
) -> Result<(), ApiError> {
    // A JSON number past `f32`'s range reads as infinity, which a forwarded
    // request would carry as `null` (found by fuzzing).
    if let Some(x) = min_p.filter(|x| !x.is_finite()) {
        return Err(ApiError::invalid_param(
            "min_p",
            format!("`min_p` must be a finite number, got {x}"),
        ));
    }
    if let Some(stop) = stop {
        let (count, any_empty) = match stop {
            StopSequences::One(s) => (1, s.is_empty()),
            StopSequences::Many(v) => (v.len(), v.iter().any(String::is_empty)),
        };
        if count > 4 {
            return Err(ApiError::invalid_param(
                "stop",
                "`stop` takes at most 4 sequences",
            ));
        }
        if any_empty {
            return Err(ApiError::invalid_param(
                "stop",
                "`stop` sequences must not be empty",
            ));
        }
    }
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

/// The typed fields of a request, listed once for both directions.
///
/// Reading: `read_typed` deserializes `model` or an `optional` field into its slot
/// where it stands in the body (the request visitors handle the required fields,
/// flags and `extra` themselves).
///
/// Writing: `impl Serialize` for a request with typed fields and an `extra` map: the fields
/// the gateway did not interpret first, in the order they came, then the typed ones
/// (`required` always, `flags` when true, `model` and the `optional` ones when set).
/// A key in `extra` that a typed field also sets is written once, with the typed
/// value. Backends serialize requests straight to bytes with this, with no JSON
/// tree in between; `serialize_as` writes another `model` (the upstream's own name
/// for it) without copying the request.
macro_rules! request_fields {
    ($ty:ty, required: [$($req:ident),*], flags: [$($flag:ident),*], optional: [$($opt:ident),*]) => {
        impl $ty {
            /// Reads `key`'s value into its typed field when it is `model` or one of
            /// the optional fields (`false` for any other key).
            fn read_typed<'de, A: serde::de::MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
                fault: &$crate::fields::Fault,
            ) -> Result<bool, A::Error> {
                use $crate::fields::field;
                match key {
                    "model" => self.model = field(map, "model", fault)?,
                    $(stringify!($opt) => self.$opt = field(map, stringify!($opt), fault)?,)*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Serializes the request with `model` in place of its own, when given.
            pub fn serialize_as<S: serde::Serializer>(
                &self,
                model: Option<&str>,
                s: S,
            ) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let model = model.or(self.model.as_deref());
                let typed = |k: &str| match k {
                    "model" => model.is_some(),
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
                if let Some(m) = model {
                    map.serialize_entry("model", m)?;
                }
                $(if let Some(v) = &self.$opt {
                    map.serialize_entry(stringify!($opt), v)?;
                })*
                map.end()
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.serialize_as(None, s)
            }
        }

        impl serde::Serialize for $crate::AsModel<'_, $ty> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.request.serialize_as(Some(self.model), s)
            }
        }
    };
}
pub(crate) use request_fields;
