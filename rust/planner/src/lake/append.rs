//! Writing Arrow batches to a table in one snapshot ([`Lake::write`], [`Lake::append`]): an
//! append, an append that advances a consumer checkpoint in the same snapshot, or an
//! overwrite that replaces the table's contents ([`WriteMode`]). Commit conflicts with
//! other writers are retried on the refreshed table (see `commit.rs`), so no commit is lost
//! or doubled; the commit writes the audit event.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::DataFile;

use super::catalog::Lake;
use super::checkpoint::CheckpointAdvance;
use super::commit::{commit_snapshot, Change, Committed};
use super::error::LakeResult;
use super::write::{conform_batches, table_arrow_schema, write_data_files};

/// What one append or overwrite committed.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitInfo {
    pub table: String,
    /// The new snapshot, or `None` when there was nothing to commit (an append of no rows
    /// and no checkpoint; an overwrite always commits, with no rows it empties the table).
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

/// How [`Lake::write`] commits its files.
#[derive(Clone, Copy, Debug)]
pub enum WriteMode<'a> {
    /// One append snapshot.
    Append,
    /// One append snapshot that also moves a consumer checkpoint, fenced: if another consumer
    /// moved one of the shards first, nothing is committed ([`super::LakeError::CheckpointMoved`]).
    /// With no rows the snapshot carries only the checkpoint.
    Checkpointed(&'a CheckpointAdvance),
    /// The table's contents replaced in one snapshot (operation `overwrite`): readers see the
    /// old rows or the new, never a mix. With no rows the table is emptied.
    Overwrite,
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
        self.write(name, schema, batches, WriteMode::Append, properties).await
    }

    /// Writes `batches` (all with `schema`) to table `name` as `mode` says, in one snapshot
    /// whose summary carries `properties`.
    pub async fn write(
        &self,
        name: &str,
        schema: &ArrowSchema,
        batches: &[RecordBatch],
        mode: WriteMode<'_>,
        properties: HashMap<String, String>,
    ) -> LakeResult<CommitInfo> {
        let advance = match mode {
            WriteMode::Checkpointed(advance) => Some(advance),
            WriteMode::Append | WriteMode::Overwrite => None,
        };
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
        if record_count == 0 && matches!(mode, WriteMode::Append) {
            return Ok(info);
        }
        let files = if record_count == 0 {
            Vec::new()
        } else {
            write_data_files(&table, name, conformed, self.config()).await?
        };
        info.data_files = files.iter().map(|f| f.file_path().to_string()).collect();
        info.bytes = files.iter().map(DataFile::file_size_in_bytes).sum();
        let change = match mode {
            WriteMode::Append | WriteMode::Checkpointed(_) => Change::Append { added: &files },
            WriteMode::Overwrite => Change::Overwrite { added: &files },
        };
        let committed = commit_snapshot(self, name, change, advance, &properties).await;
        let (snapshot_id, attempts) = match committed {
            Ok(Committed::Snapshot { snapshot_id, attempts }) => (snapshot_id, attempts),
            Ok(Committed::Superseded) => unreachable!("appends and overwrites are never superseded"),
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
        Ok(info)
    }
}
