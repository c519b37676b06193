//! [`Lake::append`]: Arrow batches in, one fast-append snapshot out. Commit conflicts with
//! other writers are retried on the refreshed table (iceberg-rust's transaction retry, with the
//! budget in the table's `commit.retry.*` properties), so no commit is lost or doubled.
//! Every commit writes one audit event (`target: weir::audit`).

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::DataFile;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::ErrorKind;

use super::catalog::Lake;
use super::error::{IcebergContext, LakeError, LakeResult};
use super::write::{conform_batches, table_arrow_schema, write_data_files};

/// What one append committed.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    pub table: String,
    /// The new snapshot, or `None` when there were no rows (nothing is committed then).
    pub snapshot_id: Option<i64>,
    pub data_files: Vec<String>,
    pub record_count: u64,
    /// Bytes of Parquet written.
    pub bytes: u64,
    /// Microseconds since the epoch stored in `ingested_at` where the data had none.
    pub ingested_at_micros: i64,
}

impl Lake {
    /// Appends `batches` (all with `schema`) to table `name` (`namespace.table`) in one
    /// snapshot whose summary carries `properties` (e.g. a consumer's checkpoint).
    pub async fn append(
        &self,
        name: &str,
        schema: &ArrowSchema,
        batches: &[RecordBatch],
        properties: HashMap<String, String>,
    ) -> LakeResult<CommitInfo> {
        let table = self.load_table(name).await?;
        let target = table_arrow_schema(&table, name)?;
        let ingested_at_micros = chrono::Utc::now().timestamp_micros();
        let conformed = conform_batches(name, &target, schema, batches, ingested_at_micros)?;
        let record_count: u64 = conformed.iter().map(|b| b.num_rows() as u64).sum();
        let mut info = CommitInfo {
            table: name.to_string(),
            snapshot_id: None,
            data_files: Vec::new(),
            record_count,
            bytes: 0,
            ingested_at_micros,
        };
        if record_count == 0 {
            return Ok(info);
        }
        let files = write_data_files(&table, name, conformed, self.config()).await?;
        info.data_files = files.iter().map(|f| f.file_path().to_string()).collect();
        info.bytes = files.iter().map(DataFile::file_size_in_bytes).sum();

        let tx = Transaction::new(&table);
        // Duplicate checking reads every manifest on every commit; file names are unique
        // (UUIDv7 per write), so it could only ever pass.
        let action = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(files)
            .set_snapshot_properties(properties);
        let tx = action.apply(tx).context(name, "cannot prepare the commit")?;
        let committed = match tx.commit(self.catalog().as_ref()).await {
            Ok(table) => table,
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                return Err(LakeError::Conflict { table: name.to_string(), attempts: self.config().commit_attempts })
            }
            Err(e) => return Err(e).context(name, "commit failed"),
        };
        info.snapshot_id = committed.metadata().current_snapshot_id();
        tracing::info!(
            target: "weir::audit",
            component = "lake",
            event = "commit",
            operation = "append",
            table = %name,
            snapshot_id = info.snapshot_id,
            record_count = info.record_count,
            bytes = info.bytes,
            data_files = %serde_json::to_string(&info.data_files).unwrap_or_default(),
        );
        Ok(info)
    }
}
