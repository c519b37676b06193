//! `weir_to_utc(text) -> timestamp(µs, UTC)`: parses an RFC 3339 timestamp with any offset
//! (`2026-11-27T10:00:00+02:00`) into a UTC timestamp. NULL stays NULL; a value that is not
//! RFC 3339 is an execution error naming the value, because silently producing NULL would
//! hide bad data (validate with `weir_is_valid_format(x, 'date-time')` first to filter).

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::formats::parse_rfc3339_micros;
use crate::kernels::{args_as_arrays, into_columnar, to_utf8};

/// The Arrow type of every event timestamp Weir stores: microseconds, UTC.
pub fn utc_timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToUtc {
    signature: Signature,
}

impl ToUtc {
    pub fn new() -> Self {
        Self { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl Default for ToUtc {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToUtc {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "weir_to_utc"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(utc_timestamp_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, all_scalar) = args_as_arrays(&args)?;
        let [input] = arrays.as_slice() else {
            return exec_err!("weir_to_utc takes exactly one argument, got {}", arrays.len());
        };
        let strings = to_utf8(input)?;
        let mut micros = Vec::with_capacity(strings.len());
        for value in strings.iter() {
            micros.push(match value {
                None => None,
                Some(v) => match parse_rfc3339_micros(v) {
                    Some(m) => Some(m),
                    None => return exec_err!(
                        "weir_to_utc: {v:?} is not an RFC 3339 timestamp (expected YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM))"
                    ),
                },
            });
        }
        let result = TimestampMicrosecondArray::from(micros).with_timezone("UTC");
        into_columnar(Arc::new(result), all_scalar)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{run_sql, sql_table};

    #[tokio::test]
    async fn converts_offsets_to_utc() {
        let table = sql_table(
            "select weir_to_utc(t) as t from (values ('2026-11-27T10:00:00+02:00'), (null), ('2026-11-27T23:30:00.25-01:00')) v(t)",
        )
        .await;
        let rows: Vec<&str> = table.lines().skip(3).take(3).map(|l| l.trim_matches(['|', ' '])).collect();
        assert_eq!(rows, ["2026-11-27T08:00:00Z", "", "2026-11-28T00:30:00.250Z"], "{table}");
    }

    #[tokio::test]
    async fn scalar_input_and_derived_date() {
        let table = sql_table("select cast(weir_to_utc('2026-11-27T01:00:00+03:00') as date) as d").await;
        assert!(table.contains("| 2026-11-26 |"), "{table}");
    }

    #[tokio::test]
    async fn malformed_timestamp_is_an_error_naming_the_value() {
        let err = run_sql("select weir_to_utc('27/11/2026 10:00')").await.unwrap_err();
        assert!(err.to_string().contains("\"27/11/2026 10:00\" is not an RFC 3339 timestamp"), "{err}");
    }
}
