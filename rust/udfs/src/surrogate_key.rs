//! `weir_surrogate_key(a, b, ...) -> text`: a stable surrogate key, computed exactly like
//! dbt_utils' `generate_surrogate_key`: the md5 (lower-case hex) of the arguments cast to text,
//! NULLs replaced by `'_dbt_utils_surrogate_key_null_'`, joined with `'-'`. Keys made at ingest
//! therefore match keys the dbt models make for the same values.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use md5::{Digest, Md5};

use crate::kernels::{args_as_arrays, into_columnar, to_utf8};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex md5 of `parts` joined with '-'.
fn md5_hex(parts: &[&str]) -> [u8; 32] {
    let mut md5 = Md5::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            md5.update(b"-");
        }
        md5.update(part.as_bytes());
    }
    let mut hex = [0u8; 32];
    for (i, byte) in md5.finalize().iter().enumerate() {
        hex[2 * i] = HEX_DIGITS[usize::from(byte >> 4)];
        hex[2 * i + 1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
    hex
}

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
        // Keys repeat within a batch (the same user, the same product): with one column, hash
        // each distinct value once (DataFusion's hash map: foldhash, much cheaper than SipHash).
        let mut cache: datafusion::common::HashMap<&str, [u8; 32]> = datafusion::common::HashMap::new();
        let mut parts: Vec<&str> = Vec::with_capacity(columns.len());
        for row in 0..rows {
            parts.clear();
            parts.extend(columns.iter().map(|c| if c.is_null(row) { SURROGATE_KEY_NULL } else { c.value(row) }));
            let hex = match parts.as_slice() {
                [single] => *cache.entry(single).or_insert_with(|| md5_hex(&parts)),
                _ => md5_hex(&parts),
            };
            keys.append_value(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
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
