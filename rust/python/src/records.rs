//! Result records of the streaming layer as frozen Python classes (`weir.stream.Job`,
//! `weir.stream.Publication`, `weir.stream.RecordReceipt`, `weir.stream.BatchMetrics`). Each mirrors its
//! `weir_planner::stream` struct field for field ([`mirror!`] writes the class and a
//! conversion that destructures the Rust struct whole, so a field added there does not
//! compile until it is exposed here).

use pyo3::prelude::*;
use weir_planner::stream::{self, metastore::status};

/// A frozen Python class with the fields of a `weir_planner` struct, and the conversion.
macro_rules! mirror {
    ($(#[$meta:meta])* $name:ident from $($source:ident)::+ { $($(#[$field_meta:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        #[pyclass(module = "weir._native", frozen, get_all, eq, skip_from_py_object)]
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $($(#[$field_meta])* $field: $type,)*
        }

        impl From<$($source)::+> for $name {
            fn from(value: $($source)::+) -> Self {
                let $($source)::+ { $($field),* } = value;
                Self { $($field),* }
            }
        }
    };
}

mirror! {
    /// One row of the jobs table (`weir_jobs`).
    Job from stream::Job {
        job_id: String,
        dataset: String,
        /// One of `weir.stream.JOB_STATES`.
        status: String,
        /// Events the API accepted.
        received: i64,
        /// Kinesis records the job's events travelled in, once consumed.
        records: Option<i64>,
        valid: Option<i64>,
        rejected: Option<i64>,
        /// Snapshots of `raw.<dataset>` holding the job's rows.
        snapshot_ids: Vec<i64>,
        error: Option<String>,
        created_at_ms: i64,
        updated_at_ms: i64,
        /// Versions of the contracts that judged the job's records (`Processor.contract_version`),
        /// once final: one, unless the contract changed while the job was consumed.
        contract_versions: Vec<String>,
    }
}

#[pymethods]
impl Job {
    /// Whether the job reached a final state (`weir.stream.FINAL_STATES`).
    #[getter]
    fn r#final(&self) -> bool {
        status::FINAL.contains(&self.status.as_str())
    }

    fn __repr__(&self) -> String {
        format!(
            "Job(job_id={:?}, dataset={:?}, status={:?}, received={}, valid={:?}, rejected={:?}, snapshot_ids={:?}, error={:?}, contract_versions={:?})",
            self.job_id, self.dataset, self.status, self.received, self.valid, self.rejected, self.snapshot_ids, self.error, self.contract_versions
        )
    }
}

mirror! {
    /// Where Kinesis stored one record of a job.
    RecordReceipt from stream::RecordReceipt {
        shard_id: String,
        sequence_number: String,
        /// The job's events in the record.
        events: u32,
        /// The job's share of the record's bytes.
        bytes: u64,
    }
}

#[pymethods]
impl RecordReceipt {
    fn __repr__(&self) -> String {
        format!(
            "RecordReceipt(shard_id={:?}, sequence_number={:?}, events={}, bytes={})",
            self.shard_id, self.sequence_number, self.events, self.bytes
        )
    }
}

/// A published job: its id, stream, event count and the records that carry it.
#[pyclass(module = "weir._native", frozen, get_all, eq, skip_from_py_object)]
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    job_id: String,
    dataset: String,
    stream: String,
    events: u64,
    input_bytes: u64,
    record_bytes: u64,
    records: Vec<RecordReceipt>,
}

#[pymethods]
impl Publication {
    fn __repr__(&self) -> String {
        format!(
            "Publication(job_id={:?}, dataset={:?}, stream={:?}, events={}, input_bytes={}, record_bytes={}, records={})",
            self.job_id,
            self.dataset,
            self.stream,
            self.events,
            self.input_bytes,
            self.record_bytes,
            self.records.len()
        )
    }
}

impl From<stream::Publication> for Publication {
    fn from(publication: stream::Publication) -> Self {
        let stream::Publication { job_id, dataset, stream, events, input_bytes, record_bytes, records } = publication;
        Self {
            job_id,
            dataset,
            stream,
            events,
            input_bytes,
            record_bytes,
            records: records.into_iter().map(RecordReceipt::from).collect(),
        }
    }
}

mirror! {
    /// Metrics of one consumer batch (a row of `weir_consumer_batches`).
    BatchMetrics from stream::BatchMetrics {
        batch_id: String,
        consumer_id: String,
        dataset: String,
        /// `committed`, `dead_lettered`, `fenced` (another consumer took a shard) or `failed`.
        status: String,
        started_at_ms: i64,
        shards: Vec<String>,
        source_records: i64,
        events: i64,
        valid: i64,
        rejected: i64,
        dead_lettered: i64,
        bytes: i64,
        attempts: i64,
        read_ms: f64,
        process_ms: f64,
        commit_ms: f64,
        batch_ms: f64,
        lag_ms: i64,
        snapshot_id: Option<i64>,
        error: Option<String>,
    }
}

#[pymethods]
impl BatchMetrics {
    fn __repr__(&self) -> String {
        format!(
            "BatchMetrics(batch_id={:?}, dataset={:?}, status={:?}, events={}, valid={}, rejected={}, dead_lettered={}, attempts={}, snapshot_id={:?})",
            self.batch_id, self.dataset, self.status, self.events, self.valid, self.rejected, self.dead_lettered, self.attempts, self.snapshot_id
        )
    }
}
