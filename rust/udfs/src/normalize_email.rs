//! `weir_normalize_email(text) -> text`: trims white space and lower-cases an e-mail address,
//! so the same mailbox always compares equal. NULL stays NULL.

use std::any::Any;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::kernels::{map_strings, push_trimmed_case};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeEmail {
    signature: Signature,
}

impl NormalizeEmail {
    pub fn new() -> Self {
        Self { signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl Default for NormalizeEmail {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for NormalizeEmail {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn name(&self) -> &str {
        "weir_normalize_email"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_strings(self.name(), &args, |v, out| push_trimmed_case(v, out, false))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::sql_table;

    #[tokio::test]
    async fn normalises_scalars_arrays_and_nulls() {
        let table = sql_table(
            "select weir_normalize_email(e) as e from (values (' Ann@Example.COM '), (null), ('b@c.io')) t(e)",
        )
        .await;
        assert_eq!(
            table,
            "+-----------------+\n| e               |\n+-----------------+\n| ann@example.com |\n|                 |\n| b@c.io          |\n+-----------------+"
        );
        // Values before the first one that changes are kept as they were (with their nulls).
        let later = sql_table("select weir_normalize_email(e) as e from (values ('b@c.io'), (null), (' Ann@X.COM ')) t(e)").await;
        assert_eq!(later, "+-----------+\n| e         |\n+-----------+\n| b@c.io    |\n|           |\n| ann@x.com |\n+-----------+");
        let unchanged = sql_table("select weir_normalize_email(e) as e from (values ('b@c.io'), (null)) t(e)").await;
        assert_eq!(unchanged, "+--------+\n| e      |\n+--------+\n| b@c.io |\n|        |\n+--------+");
        let scalar = sql_table("select weir_normalize_email('\tX@Y.ORG') as e").await;
        assert!(scalar.contains("| x@y.org |"), "{scalar}");
    }
}
