//! `JsonKey`: an object key deserialized without copying when it has no escapes. Shared by
//! `weir_json_get` and the processor's record decoder, which both walk JSON objects key by key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Visitor};

/// An object key, borrowed from the input unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonKey<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for JsonKey<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = JsonKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonKey(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_keys_and_unescapes_the_rest() {
        let plain: JsonKey = serde_json::from_str(r#""referrer""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("referrer")));
        let escaped: JsonKey = serde_json::from_str(r#""a\u0062""#).unwrap();
        assert_eq!(escaped.0, "ab");
    }
}
