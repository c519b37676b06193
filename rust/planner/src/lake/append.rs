//! [`Lake::append`]: Arrow batches in, one append snapshot out, optionally advancing a
//! consumer checkpoint in the same snapshot ([`Lake::append_checkpointed`]). Commit conflicts
//! with other writers are retried on the refreshed table (see `commit.rs`), so no commit is
//! lost or doubled. Every commit writes one audit event (`target: weir::audit`).

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::DataFile;

use super::catalog::Lake;
use super::checkpoint::CheckpointAdvance;
use super::commit::{commit_snapshot, Change, Committed};
use super::error::LakeResult;
use super::write::{conform_batches, table_arrow_schema, write_data_files};

/// What one append committed.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    pub table: String,
    /// The new snapshot, or `None` when there was nothing to commit (no rows, no checkpoint).
    pub snapshot_id: Option<i64>,
    pub data_files: Vec<String>,
    pub record_count: u64,
    /// Bytes of Parquet written.
    pub bytes: u64,
    /// Microseconds since the epoch stored in `ingested_at` where the data had none.
    pub ingested_at_micros: i64,
    /// Commit attempts, more than 1 when other writers won races first.
    pub attempts: u32,
}

impl Lake {
    /// Appends `batches` (all with `schema`) to table `name` (`namespace.table`) in one
    /// snapshot whose summary carries `properties`.
    pub async fn append(
        &self,
        name: &str,
        schema: &ArrowSchema,
        batches: &[RecordBatch],
        properties: HashMap<String, String>,
    ) -> LakeResult<CommitInfo> {
        self.append_checkpointed(name, schema, batches, None, properties).await
    }

    /// [`Lake::append`] that also moves a consumer checkpoint, fenced: if another consumer
    /// moved one of the shards first, nothing is committed ([`super::LakeError::CheckpointMoved`]).
    /// With no rows but an advance, the snapshot carries only the checkpoint.
    pub async fn append_checkpointed(
        &self,
        name: &str,
        schema: &ArrowSchema,
        batches: &[RecordBatch],
        advance: Option<&CheckpointAdvance>,
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
            attempts: 0,
        };
        if record_count == 0 && advance.is_none() {
            return Ok(info);
        }
        let files = if record_count == 0 {
            Vec::new()
        } else {
            write_data_files(&table, name, conformed, self.config()).await?
        };
        info.data_files = files.iter().map(|f| f.file_path().to_string()).collect();
        info.bytes = files.iter().map(DataFile::file_size_in_bytes).sum();
        let committed = commit_snapshot(self, name, Change::Append { added: &files }, advance, &properties).await;
        let (snapshot_id, attempts) = match committed {
            Ok(Committed::Snapshot { snapshot_id, attempts }) => (snapshot_id, attempts),
            Ok(Committed::Superseded) => unreachable!("appends are never superseded"),
            Err(e) => {
                // A refused fence is a definite outcome: no snapshot references these files.
                if matches!(e, super::LakeError::CheckpointMoved { .. }) {
                    for file in &files {
                        let _ = table.file_io().delete(file.file_path()).await;
                    }
                }
                return Err(e);
            }
        };
        info.snapshot_id = Some(snapshot_id);
        info.attempts = attempts;
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
            checkpoint = advance.is_some(),
        );
        Ok(info)
    }
}
