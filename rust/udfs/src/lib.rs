//! Weir's DataFusion scalar UDFs: validation formats, normalisation and key derivation.
//!
//! Every function here is pure (no I/O) and works on Arrow arrays and scalars alike, so the same
//! code serves the pipeline SQL in `sql/`, the processor's contract checks (through [`formats`])
//! and notebooks (registered into datafusion-python by `weir.register_udfs`).
//!
//! ```text
//! SELECT weir_normalize_email(' Ann@Example.COM ');          -- 'ann@example.com'
//! SELECT weir_to_utc('2026-11-27T10:00:00+02:00');           -- 2026-11-27T08:00:00Z
//! SELECT weir_surrogate_key(user_id);                        -- dbt_utils-compatible md5 key
//! SELECT weir_json_get('{"referrer":"ad"}', 'referrer');     -- 'ad'
//! SELECT weir_is_valid_format('x@y.io', 'email');            -- true
//! ```

pub mod formats;
mod is_valid_format;
mod json_get;
mod json_key;
mod kernels;
mod normalize_country;
mod normalize_email;
mod surrogate_key;
mod to_utc;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use is_valid_format::IsValidFormat;
pub use json_get::JsonGet;
pub use json_key::JsonKey;
pub use normalize_country::NormalizeCountry;
pub use normalize_email::NormalizeEmail;
pub use surrogate_key::{SurrogateKey, SURROGATE_KEY_NULL};
pub use to_utc::ToUtc;

/// Every Weir UDF, ready to register into a DataFusion session (or export over FFI).
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(NormalizeEmail::new())),
        Arc::new(ScalarUDF::from(NormalizeCountry::new())),
        Arc::new(ScalarUDF::from(ToUtc::new())),
        Arc::new(ScalarUDF::from(SurrogateKey::new())),
        Arc::new(ScalarUDF::from(JsonGet::new())),
        Arc::new(ScalarUDF::from(IsValidFormat::new())),
    ]
}

/// Registers every Weir UDF into `ctx`.
pub fn register_all(ctx: &SessionContext) {
    for udf in all_udfs() {
        ctx.register_udf(udf.as_ref().clone());
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use datafusion::arrow::array::RecordBatch;
    use datafusion::prelude::SessionContext;

    /// Runs `sql` in a session with every Weir UDF and returns the result batches.
    pub async fn run_sql(sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
        let ctx = SessionContext::new();
        super::register_all(&ctx);
        ctx.sql(sql).await?.collect().await
    }

    /// Runs `sql` and renders the result as the pretty-printed table DataFusion tests use.
    pub async fn sql_table(sql: &str) -> String {
        let batches = run_sql(sql).await.expect(sql);
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }
}
