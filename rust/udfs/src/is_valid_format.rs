//! `weir_is_valid_format(value, format) -> boolean`: whether a string is valid for one of the
//! contract formats (`uuid`, `email`, `date-time`), with exactly the processor's definition of
//! each. Useful for SQL rules in `sql/pipeline/*.sql`. NULL values give NULL; an unknown format
//! is a planning-time mistake reported as an error listing the supported ones.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::formats::{check_format, SUPPORTED_FORMATS};
use crate::kernels::{args_as_arrays, into_columnar, to_utf8};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IsValidFormat {
    signature: Signature,
}

impl IsValidFormat {
    pub fn new() -> Self {
        Self { signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl Default for IsValidFormat {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for IsValidFormat {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "weir_is_valid_format"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, all_scalar) = args_as_arrays(&args)?;
        let [values, formats] = arrays.as_slice() else {
            return exec_err!("weir_is_valid_format takes (value, format), got {} arguments", arrays.len());
        };
        let (values, formats) = (to_utf8(values)?, to_utf8(formats)?);
        let mut out = Vec::with_capacity(values.len());
        for row in 0..values.len() {
            if values.is_null(row) || formats.is_null(row) {
                out.push(None);
                continue;
            }
            let format = formats.value(row);
            match check_format(format, values.value(row)) {
                Some(valid) => out.push(Some(valid)),
                None => {
                    return exec_err!(
                        "weir_is_valid_format: unknown format {format:?}; supported: {}",
                        SUPPORTED_FORMATS.join(", ")
                    )
                }
            }
        }
        into_columnar(Arc::new(BooleanArray::from(out)), all_scalar)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{run_sql, sql_table};

    #[tokio::test]
    async fn checks_each_format() {
        let table = sql_table(
            "select weir_is_valid_format('a@b.io', 'email') as e, \
                    weir_is_valid_format('nope', 'uuid') as u, \
                    weir_is_valid_format('2026-01-01T00:00:00Z', 'date-time') as d, \
                    weir_is_valid_format(cast(null as varchar), 'email') as n",
        )
        .await;
        assert!(table.contains("| true | false | true |   |"), "{table}");
    }

    #[tokio::test]
    async fn unknown_format_lists_supported_ones() {
        let err = run_sql("select weir_is_valid_format('x', 'ipv4')").await.unwrap_err();
        assert!(err.to_string().contains("unknown format \"ipv4\"; supported: uuid, email, date-time"), "{err}");
    }
}
