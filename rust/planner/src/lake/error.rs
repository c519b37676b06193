//! Errors of the lakehouse layer. Each names the table (or setting) concerned; the Python
//! module raises them as `weir.LakeError` (or `weir.ConfigError` for bad settings).

use datafusion::arrow::error::ArrowError;

pub type LakeResult<T> = std::result::Result<T, LakeError>;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A setting that is missing or malformed: `setting` is its key (e.g. `metastore`).
    #[error("lake configuration: {setting}: {message}")]
    Config { setting: String, message: String },

    /// A table name that is not `namespace.table`, or a table that does not exist.
    #[error("table {table}: {message}")]
    Table { table: String, message: String },

    /// Data that does not fit the table's schema (missing required column, unknown column,
    /// a type that cannot be cast). Nothing was written.
    #[error("table {table}: data does not match the table schema: {message}")]
    Schema { table: String, message: String },

    /// A definition (for a dataset's tables: its contract and pipeline SQL) changes the table
    /// in a way Iceberg cannot evolve: a removed or renamed column, a narrowed or changed
    /// type, another partitioning. Nothing was changed.
    #[error("table {table}: incompatible change: {}; nothing was changed (keep the old column, type or partitioning in the contract and pipeline, or write to a new dataset and backfill it from this one)", changes.join("; "))]
    Incompatible { table: String, changes: Vec<String> },

    /// The commit lost against other writers more times than the retry budget allows.
    #[error("table {table}: commit conflicted {attempts} times with other writers; nothing was committed")]
    Conflict { table: String, attempts: u32 },

    /// A fenced commit found a shard's checkpoint moved by another consumer (which took the
    /// shard over): this batch was not committed and must not be.
    #[error("table {table}: shard {shard} of stream {stream} was checkpointed at {} by another consumer, not at {} as this batch expected; the batch was not committed", found.as_deref().unwrap_or("nothing"), expected.as_deref().unwrap_or("nothing"))]
    CheckpointMoved { table: String, stream: String, shard: String, expected: Option<String>, found: Option<String> },

    /// The catalog, the metastore database or the object store failed.
    #[error("table {table}: {context}: {source}")]
    Iceberg {
        table: String,
        context: String,
        // Boxed: iceberg's error is large, and every Result of the lake carries this enum.
        #[source]
        source: Box<iceberg::Error>,
    },

    /// An Arrow kernel failed (casting, concatenation); a bug in Weir.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ArrowError> for LakeError {
    fn from(e: ArrowError) -> Self {
        LakeError::Internal(e.to_string())
    }
}

/// Adds the table and what was being done to an iceberg error.
pub(crate) trait IcebergContext<T> {
    fn context(self, table: &str, context: &str) -> LakeResult<T>;
}

impl<T> IcebergContext<T> for iceberg::Result<T> {
    fn context(self, table: &str, context: &str) -> LakeResult<T> {
        self.map_err(|source| LakeError::Iceberg { table: table.to_string(), context: context.to_string(), source: Box::new(source) })
    }
}
