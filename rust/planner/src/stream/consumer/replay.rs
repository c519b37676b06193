//! Dead-letter replay ([`Consumer::replay`], `weir replay --dataset D`): the Kinesis records
//! in `raw.<dataset>_dead_letter` run through the dataset's current contract and pipeline
//! SQL again, as the consumer would have run them, into `raw.<dataset>_rejected` and
//! `raw.<dataset>`.
//!
//! Exactly once: replays keep their own checkpoint in the same tables, under the key
//! `<stream>#replay` (a stream name cannot hold `#`), per shard the last dead-letter record
//! replayed, committed atomically with the rows like the consumer's. Records are replayed
//! in stream order per shard, so a record a replay stored is never stored again, whichever
//! process runs the next one; a crash between the two tables' commits is healed as the
//! consumer heals it. Replayed snapshots are marked (`weir.replay-id` in their summary), and
//! the replayed records' jobs are finalized again (see [`Metastore::job_records_replayed`]).
//! Records that still cannot be read stay in the dead-letter table and are reported; the
//! replay checkpoint moves past them (reading them again cannot change the outcome).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};

use super::*;
use crate::lake::inspect::read_table;

/// Records replayed per commit (bounded memory on a large dead-letter table).
const RECORDS_PER_COMMIT: usize = 2_000;

/// What a replay did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub replay_id: String,
    pub dry_run: bool,
    /// Dead-letter records of this stream considered (after `since`).
    pub dead_letters: usize,
    /// Of them, stored by an earlier replay: skipped.
    pub already_replayed: usize,
    /// Of them, run through the contract and pipeline now.
    pub replayed: usize,
    /// Their events, valid and rejected.
    pub events: i64,
    pub valid: i64,
    pub rejected: i64,
    /// Records that still cannot be read: (shard id, sequence number, why).
    pub still_failing: Vec<(String, String, String)>,
    /// Dead-letter rows of another stream (a changed stream prefix): not replayed.
    pub other_streams: usize,
    /// Jobs' record rows that moved from failed to stored.
    pub job_records: u64,
    /// Snapshots of the valid table the replay made.
    pub snapshot_ids: Vec<i64>,
}

/// The checkpoint key of replays of `stream`.
pub fn replay_key(stream: &str) -> String {
    format!("{stream}#replay")
}

/// A dead-letter row as the source record it was, with the time it was dead-lettered.
struct DeadLetter {
    stream: String,
    record: SourceRecord,
    ingested_at_ms: Option<i64>,
    /// Its rejected events were committed before its batch failed.
    rejected_stored: bool,
}

/// The rows of the dead-letter table's batches.
fn dead_letters(batches: &[RecordBatch]) -> StreamResult<Vec<DeadLetter>> {
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str, to: &DataType| -> StreamResult<Arc<dyn Array>> {
            let array = batch.column_by_name(name).ok_or_else(|| StreamError::Record {
                stream: String::new(),
                shard: String::new(),
                sequence_number: String::new(),
                message: format!("the dead-letter table has no column {name}"),
            })?;
            Ok(cast(array, to)?)
        };
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let stream = column("stream", &DataType::Utf8)?;
        let shard = column("shard_id", &DataType::Utf8)?;
        let sequence = column("sequence_number", &DataType::Utf8)?;
        let key = column("partition_key", &DataType::Utf8)?;
        let arrival = cast(&column("arrival_time", &micros)?, &DataType::Int64)?;
        let ingested = cast(&column(crate::lake::INGESTED_AT_COLUMN, &micros)?, &DataType::Int64)?;
        let data = column("data", &DataType::Binary)?;
        // Rows from before the column existed read it as null.
        let rejected_stored = match batch.column_by_name("rejected_stored") {
            Some(array) => cast(array, &DataType::Boolean)?,
            None => Arc::new(datafusion::arrow::array::BooleanArray::new_null(batch.num_rows())),
        };
        let rejected_stored = rejected_stored.as_boolean();
        let (stream, shard, sequence, key) =
            (stream.as_string::<i32>(), shard.as_string::<i32>(), sequence.as_string::<i32>(), key.as_string::<i32>());
        let (arrival, ingested, data) =
            (arrival.as_primitive::<Int64Type>(), ingested.as_primitive::<Int64Type>(), data.as_binary::<i32>());
        for row in 0..batch.num_rows() {
            let micros_to_ms = |a: &datafusion::arrow::array::Int64Array| (!a.is_null(row)).then(|| a.value(row) / 1000);
            out.push(DeadLetter {
                stream: stream.value(row).to_string(),
                record: SourceRecord {
                    shard_id: shard.value(row).into(),
                    sequence_number: sequence.value(row).to_string(),
                    partition_key: key.value(row).to_string(),
                    arrival_ms: micros_to_ms(arrival),
                    data: data.value(row).to_vec(),
                },
                ingested_at_ms: micros_to_ms(ingested),
                rejected_stored: rejected_stored.is_valid(row) && rejected_stored.value(row),
            });
        }
    }
    Ok(out)
}

impl Consumer {
    /// Replays the dead-letter records of this consumer's stream dead-lettered at or after
    /// `since_ms` (all when `None`) that no replay stored yet, in stream order per shard.
    /// With `dry_run` nothing is written: the report says what would be stored.
    pub async fn replay(&mut self, since_ms: Option<i64>, dry_run: bool) -> StreamResult<ReplayReport> {
        let key = replay_key(&self.stream);
        let mut report = ReplayReport { replay_id: uuid::Uuid::now_v7().to_string(), dry_run, ..ReplayReport::default() };
        let dead_letter_table = self.lake.load_table(&self.tables[DEAD_LETTER]).await?;
        let (_, batches) = read_table(&dead_letter_table, &self.tables[DEAD_LETTER], None).await?;
        let mut rows = dead_letters(&batches)?;
        rows.retain(|row| since_ms.is_none_or(|since| row.ingested_at_ms.is_some_and(|at| at >= since)));
        let (ours, others): (Vec<DeadLetter>, Vec<DeadLetter>) = rows.into_iter().partition(|row| row.stream == self.stream);
        report.other_streams = others.len();
        report.dead_letters = ours.len();
        // Records whose rejected events an attempt before the failure committed.
        let rejected_before: HashSet<(String, String)> = ours
            .iter()
            .filter(|row| row.rejected_stored)
            .map(|row| (row.record.shard_id.to_string(), row.record.sequence_number.clone()))
            .collect();
        let mut records: Vec<SourceRecord> = ours.into_iter().map(|row| row.record).collect();
        records.sort_by(|a, b| {
            a.shard_id.cmp(&b.shard_id).then_with(|| compare_sequence_numbers(&a.sequence_number, &b.sequence_number))
        });
        records.dedup_by(|a, b| a.shard_id == b.shard_id && a.sequence_number == b.sequence_number);

        // Per shard, where each table's replay checkpoint is.
        let mut positions: BTreeMap<String, [Option<String>; 3]> = BTreeMap::new();
        for (t, table) in self.tables.iter().enumerate() {
            let loaded = self.lake.load_table(table).await?;
            for (shard, sequence) in Checkpoint::of_table(table, loaded.metadata())?.shards(&key) {
                positions.entry(shard).or_default()[t] = Some(sequence);
            }
        }
        let stored = |positions: &BTreeMap<String, [Option<String>; 3]>, t: usize, record: &SourceRecord| {
            positions
                .get(record.shard_id.as_ref())
                .and_then(|p| p[t].as_deref())
                .is_some_and(|p| compare_sequence_numbers(&record.sequence_number, p).is_le())
        };
        let before = records.len();
        records.retain(|r| !stored(&positions, VALID, r));
        report.already_replayed = before - records.len();
        report.replayed = records.len();

        let version = self.processor.contract().version.clone();
        for chunk in records.chunks(RECORDS_PER_COMMIT) {
            let prepared = {
                let current = positions.clone();
                let rejected_before = &rejected_before;
                self.prepare(chunk, &move |t: usize, record: &SourceRecord| {
                    let key = (record.shard_id.to_string(), record.sequence_number.clone());
                    stored(&current, t, record) || (t == REJECTED && rejected_before.contains(&key))
                })
                .await?
            };
            report.events += prepared.events;
            report.valid += prepared.valid;
            report.rejected += prepared.rejected;
            for (i, why) in &prepared.unreadable {
                report.still_failing.push((chunk[*i].shard_id.to_string(), chunk[*i].sequence_number.clone(), why.clone()));
            }
            if dry_run {
                continue;
            }
            let mut ends: BTreeMap<String, String> = BTreeMap::new();
            for r in chunk {
                ends.insert(r.shard_id.to_string(), r.sequence_number.clone());
            }
            let properties = HashMap::from([
                ("weir.replay-id".to_string(), report.replay_id.clone()),
                ("weir.contract-version".to_string(), version.clone()),
                ("weir.replay.records".to_string(), chunk.len().to_string()),
                ("weir.batch.events".to_string(), prepared.events.to_string()),
                ("weir.batch.valid".to_string(), prepared.valid.to_string()),
                ("weir.batch.rejected".to_string(), prepared.rejected.to_string()),
            ]);
            let mut snapshot_id = None;
            for t in [REJECTED, VALID] {
                let (schema, batches) = &prepared.rows[t];
                let row_count: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let mut shards = BTreeMap::new();
                for (shard, end) in &ends {
                    let expected = positions.get(shard).and_then(|p| p[t].clone());
                    if expected.as_deref().is_none_or(|p| compare_sequence_numbers(end, p).is_gt()) {
                        shards.insert(shard.clone(), ShardAdvance { expected, to: end.clone() });
                    }
                }
                if row_count == 0 && (t != VALID || shards.is_empty()) {
                    continue;
                }
                let advance = CheckpointAdvance { stream: key.clone(), shards };
                let info = self
                    .lake
                    .write(&self.tables[t], schema, batches, WriteMode::Checkpointed(&advance), properties.clone())
                    .await
                    .map_err(|e| match e {
                        e @ LakeError::CheckpointMoved { .. } => StreamError::Replay {
                            dataset: self.dataset.clone(),
                            message: format!("another replay of this dataset committed meanwhile ({e}); run the replay again"),
                        },
                        e => e.into(),
                    })?;
                for (shard, step) in &advance.shards {
                    positions.entry(shard.clone()).or_default()[t] = Some(step.to.clone());
                }
                if t == VALID {
                    snapshot_id = info.snapshot_id;
                }
            }
            report.snapshot_ids.extend(snapshot_id);
            report.job_records +=
                self.metastore.job_records_replayed(&self.stream, &version, &prepared.job_records, snapshot_id).await?;
        }
        tracing::info!(
            component = "consumer",
            event = "replayed",
            dataset = %self.dataset,
            replay_id = %report.replay_id,
            dry_run,
            dead_letters = report.dead_letters,
            already_replayed = report.already_replayed,
            replayed = report.replayed,
            valid = report.valid,
            rejected = report.rejected,
            still_failing = report.still_failing.len(),
        );
        Ok(report)
    }
}
