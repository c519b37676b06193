//! `weir_surrogate_key(a, b, ...) -> text`: a stable surrogate key, computed exactly like
//! dbt_utils' `generate_surrogate_key`: the md5 (lower-case hex) of the arguments cast to text,
//! NULLs replaced by `'_dbt_utils_surrogate_key_null_'`, joined with `'-'`. Keys made at ingest
//! therefore match keys the dbt models make for the same values.

use std::any::Any;
use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use md5::{Digest, Md5};

use crate::kernels::{args_as_arrays, into_columnar, to_utf8};

/// What dbt_utils hashes in place of a NULL.
pub const SURROGATE_KEY_NULL: &str = "_dbt_utils_surrogate_key_null_";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SurrogateKey {
    signature: Signature,
}

impl SurrogateKey {
    pub fn new() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl Default for SurrogateKey {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SurrogateKey {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "weir_surrogate_key"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, all_scalar) = args_as_arrays(&args)?;
        if arrays.is_empty() {
            return exec_err!("weir_surrogate_key needs at least one argument");
        }
        let columns = arrays.iter().map(to_utf8).collect::<Result<Vec<_>>>()?;
        let rows = columns[0].len();
        let mut keys = StringBuilder::with_capacity(rows, rows * 32);
        let mut hex = String::with_capacity(32);
        for row in 0..rows {
            let mut md5 = Md5::new();
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    md5.update(b"-");
                }
                let value = if column.is_null(row) { SURROGATE_KEY_NULL } else { column.value(row) };
                md5.update(value.as_bytes());
            }
            hex.clear();
            for byte in md5.finalize() {
                write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
            }
            keys.append_value(&hex);
        }
        into_columnar(Arc::new(keys.finish()), all_scalar)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::sql_table;

    #[tokio::test]
    async fn matches_dbt_utils_generate_surrogate_key() {
        // md5('u_42'), md5('u_42-7') and md5('_dbt_utils_surrogate_key_null_') as computed by
        // DataFusion's own md5, which is what dbt_utils' macro boils down to.
        let table = sql_table(
            "select weir_surrogate_key('u_42') = md5('u_42') as one, \
                    weir_surrogate_key('u_42', 7) = md5('u_42-7') as two, \
                    weir_surrogate_key(cast(null as varchar)) = md5('_dbt_utils_surrogate_key_null_') as null_key",
        )
        .await;
        assert!(table.contains("| true | true | true     |"), "{table}");
    }

    #[tokio::test]
    async fn works_over_arrays() {
        let table = sql_table(
            "select weir_surrogate_key(k) = md5(coalesce(k, '_dbt_utils_surrogate_key_null_')) as same from (values ('a'), (null), ('b')) t(k)",
        )
        .await;
        assert_eq!(table.matches("| true |").count(), 3, "{table}");
    }
}
