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
fn member<'a>(text: &'a str, key: &str) -> Result<Option<&'a RawValue>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let found = de::Deserializer::deserialize_any(&mut deserializer, FindMember { key })?;
    deserializer.end()?;
    Ok(found)
}

/// The raw JSON text at a dotted `path`.
fn lookup<'a>(text: &'a str, path: &str) -> Result<Option<&'a str>, serde_json::Error> {
    let mut current = text;
    for key in path.split('.') {
        match member(current, key)? {
            Some(raw) => current = raw.get(),
            None => return Ok(None),
        }
    }
    Ok(Some(current))
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

    #[tokio::test]
    async fn invalid_json_is_an_error() {
        let err = run_sql("select weir_json_get('{oops', 'a')").await.unwrap_err();
        assert!(err.to_string().contains("weir_json_get: row 0 is not JSON"), "{err}");
    }
}
