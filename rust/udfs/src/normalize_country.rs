//! `weir_normalize_country(text) -> text`: trims and upper-cases an ISO 3166-1 alpha-2 country
//! code (' gb ' → 'GB'). NULL stays NULL.

use std::any::Any;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::kernels::{map_strings, push_trimmed_case};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeCountry {
    signature: Signature,
}

impl NormalizeCountry {
    pub fn new() -> Self {
        Self { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl Default for NormalizeCountry {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for NormalizeCountry {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "weir_normalize_country"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_strings(self.name(), &args, |v, out| push_trimmed_case(v, out, true))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::sql_table;

    #[tokio::test]
    async fn upper_cases_and_keeps_nulls() {
        let table = sql_table(
            "select weir_normalize_country(c) as c from (values (' gb '), (null), ('DE')) t(c)",
        )
        .await;
        assert_eq!(table, "+----+\n| c  |\n+----+\n| GB |\n|    |\n| DE |\n+----+");
    }
}
