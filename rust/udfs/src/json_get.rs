//! `weir_json_get(json_text, path) -> text`: the value at a dotted `path` ('device.os') of a
//! JSON object held as text, such as an event's `properties`. Strings come back unquoted,
//! other values as compact JSON text; a missing key or a NULL input gives NULL. Text that is
//! not JSON is an execution error naming the row, since it means the column is not what the
//! query assumes.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

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

/// Looks up a dotted path in `document`; `None` when any step is missing or not an object.
fn lookup<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(document, |node, key| node.as_object()?.get(key))
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
            let document: Value = match serde_json::from_str(text) {
                Ok(document) => document,
                Err(e) => return exec_err!("weir_json_get: row {row} is not JSON ({e}): {text:?}"),
            };
            match lookup(&document, paths.value(row)) {
                None | Some(Value::Null) => out.append_null(),
                Some(Value::String(s)) => out.append_value(s),
                Some(other) => out.append_value(other.to_string()),
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
    async fn invalid_json_is_an_error() {
        let err = run_sql("select weir_json_get('{oops', 'a')").await.unwrap_err();
        assert!(err.to_string().contains("weir_json_get: row 0 is not JSON"), "{err}");
    }
}
