//! What the JSON oracles share.

use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

/// Whether `json` (valid JSON) has an object with the same key twice, at any depth.
/// `None` when it is not JSON.
///
/// serde_json's `Value` keeps the last of duplicate keys, while a one-pass parser
/// meets (and may reject) the first too: RFC 8259 leaves duplicates undefined, so
/// the oracles compare only inputs without them.
pub fn has_duplicate_keys(json: &[u8]) -> Option<bool> {
    keys(json).map(|k| k.duplicate)
}

/// What the object keys of a JSON text are like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keys {
    /// An object has the same key twice.
    pub duplicate: bool,
    /// A key is written with an escape (`"us\u0061ge"`): byte-level scanners
    /// look for keys as they are spelled, not as they decode.
    pub escaped: bool,
}

/// [`Keys`] of `json`; `None` when it is not JSON.
pub fn keys(json: &[u8]) -> Option<Keys> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let k = de.deserialize_any(Dups).ok()?;
    de.end().ok()?;
    Some(k)
}

struct Dups;

impl<'de> Visitor<'de> for Dups {
    type Value = Keys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Keys, E> {
        Ok(Keys::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Keys, E> {
        Ok(Keys::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Keys, E> {
        Ok(Keys::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Keys, E> {
        Ok(Keys::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Keys, E> {
        Ok(Keys::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Keys, E> {
        Ok(Keys::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
        let mut all = Keys::default();
        while let Some(k) = seq.next_element_seed(DupsSeed)? {
            all = all.or(k);
        }
        Ok(all)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
        let mut seen = HashSet::new();
        let mut all = Keys::default();
        while let Some(Key(k, escaped)) = map.next_key::<Key<'de>>()? {
            all.escaped |= escaped;
            all.duplicate |= !seen.insert(k);
            all = all.or(map.next_value_seed(DupsSeed)?);
        }
        Ok(all)
    }
}

impl Keys {
    fn or(self, other: Keys) -> Keys {
        Keys {
            duplicate: self.duplicate || other.duplicate,
            escaped: self.escaped || other.escaped,
        }
    }
}

struct DupsSeed;

impl<'de> de::DeserializeSeed<'de> for DupsSeed {
    type Value = Keys;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Keys, D::Error> {
        d.deserialize_any(Dups)
    }
}

/// A key, and whether it had to be unescaped (serde_json borrows it otherwise).
struct Key<'de>(std::borrow::Cow<'de, str>, bool);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into(), false))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into(), true))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_at_any_depth() {
        assert_eq!(has_duplicate_keys(br#"{"a":1,"b":[{"c":1}]}"#), Some(false));
        assert_eq!(has_duplicate_keys(br#"{"a":1,"a":2}"#), Some(true));
        assert_eq!(has_duplicate_keys(br#"[{"x":{"c":1,"c":1}}]"#), Some(true));
        assert_eq!(has_duplicate_keys(br#"{"a\u0062":1,"ab":2}"#), Some(true));
        assert_eq!(has_duplicate_keys(b"{"), None);
        assert!(keys(br#"[{"a":{"us\u0061ge":1}}]"#).unwrap().escaped);
        assert!(!keys(br#"[{"a":{"usage":"\u0061"}}]"#).unwrap().escaped);
    }
}
