//! `weir_json_get(json_text, path) -> text`: the value at a dotted `path` ('device.os') of a
//! JSON object held as text, such as an event's `properties`. Strings come back unquoted,
//! other values as their JSON text; a missing key or a NULL input gives NULL. Text that is
//! not JSON is an execution error naming the row, since it means the column is not what the
//! query assumes.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::json_key::JsonKey;
use crate::kernels::{args_as_arrays, into_columnar, to_utf8};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonGet {
    signature: Signature,
}

impl JsonGet {
    pub fn new() -> Self {
        Self { signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl Default for JsonGet {
    fn default() -> Self {
        Self::new()
    }
}

/// The raw JSON text of `key` in the object `text`, without building a document: other
/// values are skipped. `None` when the key is missing or `text` is not an object.
fn member<'a>(text: &'a str, key: &str) -> Result<Option<&'a str>, serde_json::Error> {
    if let Some(found) = scan::member(text, key) {
        // The scan only answers for text it fully checked, so its slice boundaries are
        // those of JSON tokens, which are character boundaries.
        return Ok(found.map(|range| &text[range]));
    }
    member_with_serde(text, key)
}

/// [`member`] by serde_json: every document, and the error for text that is not JSON.
fn member_with_serde<'a>(text: &'a str, key: &str) -> Result<Option<&'a str>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let found = de::Deserializer::deserialize_any(&mut deserializer, FindMember { key })?;
    deserializer.end()?;
    Ok(found.map(RawValue::get))
}

/// The raw JSON text at a dotted `path`.
fn lookup<'a>(text: &'a str, path: &str) -> Result<Option<&'a str>, serde_json::Error> {
    let mut current = text;
    for key in path.split('.') {
        match member(current, key)? {
            Some(raw) => current = raw,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// A fast path for [`member`]: one pass over a flat-ish object, checking JSON's grammar as it
/// goes. It answers only when it is sure to agree with serde_json (same value, same "not
/// found"); at anything it does not handle (an escaped key, a control character, malformed
/// text, a document that is not an object) it gives `None` and serde_json decides.
mod scan {
    use std::ops::Range;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    struct Cursor<'a> {
        text: &'a str,
        bytes: &'a [u8],
        at: usize,
    }

    impl Cursor<'_> {
        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.at).copied()
        }

        fn skip_space(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.at += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        /// A string whose opening quote is at the cursor; `Some(true)` if it has escapes.
        fn string(&mut self) -> Option<bool> {
            self.eat(b'"')?;
            let mut escaped = false;
            loop {
                let rest = &self.bytes[self.at..];
                let stop = memchr::memchr2(b'"', b'\\', rest)?;
                if rest[..stop].iter().any(|&b| b < 0x20) {
                    return None;
                }
                self.at += stop;
                match rest[stop] {
                    b'"' => {
                        self.at += 1;
                        return Some(escaped);
                    }
                    b'\\' => {
                        escaped = true;
                        match *self.bytes.get(self.at + 1)? {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                            // \u escapes: surrogate pairing rules are serde_json's to judge.
                            _ => return None,
                        }
                    }
                    _ => unreachable!("memchr2 stops at a quote or a backslash"),
                }
            }
        }

        fn digits(&mut self) -> usize {
            let start = self.at;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
            self.at - start
        }

        /// A number by JSON's grammar.
        fn number(&mut self) -> Option<()> {
            if self.peek() == Some(b'-') {
                self.at += 1;
            }
            match self.peek()? {
                b'0' => self.at += 1,
                b'1'..=b'9' => {
                    self.digits();
                }
                _ => return None,
            }
            if self.peek() == Some(b'.') {
                self.at += 1;
                (self.digits() > 0).then_some(())?;
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.at += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.at += 1;
                }
                (self.digits() > 0).then_some(())?;
            }
            Some(())
        }

        fn value(&mut self) -> Option<()> {
            match self.peek()? {
                b'"' => self.string().map(drop),
                b't' => self.word(b"true"),
                b'f' => self.word(b"false"),
                b'n' => self.word(b"null"),
                b'{' | b'[' => {
                    // Nested values: serde_json delimits (and checks) them. The cursor is on
                    // an ASCII byte, so a character boundary.
                    let mut deserializer = serde_json::Deserializer::from_str(&self.text[self.at..]);
                    let raw = <&RawValue>::deserialize(&mut deserializer).ok()?;
                    self.at += raw.get().len();
                    Some(())
                }
                _ => self.number(),
            }
        }

        fn word(&mut self, word: &[u8]) -> Option<()> {
            self.bytes[self.at..].starts_with(word).then(|| self.at += word.len())
        }
    }

    /// Where the value of the first `key` member of the object `text` is: `Some(None)` when
    /// it has no such member, `None` when serde_json must decide.
    pub(super) fn member(document: &str, key: &str) -> Option<Option<Range<usize>>> {
        let (text, key) = (document.as_bytes(), key.as_bytes());
        let mut cursor = Cursor { text: document, bytes: text, at: 0 };
        cursor.skip_space();
        cursor.eat(b'{')?;
        cursor.skip_space();
        let mut found = None;
        if cursor.eat(b'}').is_none() {
            loop {
                let key_start = cursor.at + 1;
                if cursor.string()? {
                    return None;
                }
                let name = &text[key_start..cursor.at - 1];
                cursor.skip_space();
                cursor.eat(b':')?;
                cursor.skip_space();
                let value_start = cursor.at;
                cursor.value()?;
                if found.is_none() && name == key {
                    found = Some(value_start..cursor.at);
                }
                cursor.skip_space();
                if cursor.eat(b',').is_some() {
                    cursor.skip_space();
                    continue;
                }
                cursor.eat(b'}')?;
                break;
            }
        }
        cursor.skip_space();
        (cursor.at == text.len()).then_some(found)
    }
}

struct FindMember<'k> {
    key: &'k str,
}


impl<'de> Visitor<'de> for FindMember<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(JsonKey(key)) = map.next_key::<JsonKey<'de>>()? {
            if found.is_none() && key == self.key {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
}

impl ScalarUDFImpl for JsonGet {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "weir_json_get"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, all_scalar) = args_as_arrays(&args)?;
        let [documents, paths] = arrays.as_slice() else {
            return exec_err!("weir_json_get takes (json_text, path), got {} arguments", arrays.len());
        };
        let (documents, paths) = (to_utf8(documents)?, to_utf8(paths)?);
        let mut out = StringBuilder::with_capacity(documents.len(), 0);
        for row in 0..documents.len() {
            if documents.is_null(row) || paths.is_null(row) {
                out.append_null();
                continue;
            }
            let text = documents.value(row);
            match lookup(text, paths.value(row)) {
                Err(e) => return exec_err!("weir_json_get: row {row} is not JSON ({e}): {text:?}"),
                Ok(None) | Ok(Some("null")) => out.append_null(),
                Ok(Some(raw)) if raw.starts_with('"') => {
                    let inner = &raw[1..raw.len() - 1];
                    if inner.contains('\\') {
                        let unescaped: String = serde_json::from_str(raw).expect("validated while scanning");
                        out.append_value(unescaped);
                    } else {
                        out.append_value(inner);
                    }
                }
                Ok(Some(raw)) => out.append_value(raw),
            }
        }
        into_columnar(Arc::new(out.finish()), all_scalar)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{run_sql, sql_table};

    #[tokio::test]
    async fn extracts_strings_numbers_nested_and_missing() {
        let table = sql_table(
            r#"select weir_json_get(p, 'referrer') as r, weir_json_get(p, 'device.os') as os, weir_json_get(p, 'n') as n
               from (values ('{"referrer":"ad","device":{"os":"ios"},"n":3}'), ('{}'), (null)) t(p)"#,
        )
        .await;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(3)
            .take(3)
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        assert_eq!(rows, vec![vec!["ad", "ios", "3"], vec!["", "", ""], vec!["", "", ""]], "{table}");
    }

    #[tokio::test]
    async fn escaped_keys_and_values() {
        let table = sql_table(r#"select weir_json_get('{"a\u0062":"x\"y","n":[1, 2]}', 'ab') as v, weir_json_get('{"n":[1, 2]}', 'n') as n"#).await;
        assert!(table.contains(r#"| x"y | [1, 2] |"#), "{table}");
    }

    /// Documents the fast scan answers for, and ones it must leave to serde_json.
    const DOCUMENTS: &[&str] = &[
        r#"{"referrer":"https://t.co/x","device":"desktop"}"#,
        r#"{"referrer": "ad", "device": "tablet"}"#,
        " \t{ \"a\" : 1 ,\"b\":-0.5e+3, \"c\" : true,\"d\":null,\"e\":false } \n",
        r#"{"a":"x\"y","b":"\\","c":"\/\n\t"}"#,
        r#"{"nested":{"a":[1,{"b":"c"}]},"a":{"x":1}}"#,
        r#"{"a":[],"b":{}}"#,
        r#"{"a":1,"a":2}"#,
        r#"{}"#,
        r#"{"é":"ü","a":"日本"}"#,
        // Escaped key, \u escape, control character: serde_json decides.
        r#"{"a\u0062":1}"#,
        r#"{"a":"\u00e9"}"#,
        "{\"a\":\"x\u{1}y\"}",
        // Not objects.
        "[1,2]",
        r#""a""#,
        "3",
        "null",
        // Not JSON.
        "{oops",
        r#"{"a":1,}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":tru}"#,
        r#"{"a":1}x"#,
        r#"{"a" 1}"#,
        r#"{"a":1 "b":2}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":{"b":}}"#,
        r#"{"a":"unterminated}"#,
        "",
    ];

    #[test]
    fn the_fast_scan_agrees_with_serde_json() {
        for document in DOCUMENTS {
            for key in ["a", "b", "c", "d", "e", "ab", "referrer", "device", "nested", "é", "missing"] {
                let serde = super::member_with_serde(document, key).map_err(|e| e.to_string());
                let Some(fast) = super::scan::member(document, key) else { continue };
                let fast = fast.map(|range| &document[range]);
                assert_eq!(Ok(fast), serde, "{document:?} key {key:?}");
            }
        }
    }

    #[test]
    fn plain_objects_take_the_fast_scan() {
        for document in &DOCUMENTS[..9] {
            assert!(super::scan::member(document, "a").is_some(), "{document:?}");
        }
        for document in &DOCUMENTS[9..] {
            assert!(super::scan::member(document, "a").is_none(), "{document:?}");
        }
    }

    #[tokio::test]
    async fn invalid_json_is_an_error() {
        let err = run_sql("select weir_json_get('{oops', 'a')").await.unwrap_err();
        assert!(err.to_string().contains("weir_json_get: row 0 is not JSON"), "{err}");
    }
}
