//! Errors of the streaming layer (Kinesis producer and consumer). Each names the stream,
//! shard or setting concerned; Python raises them as `weir.StreamError` (or
//! `weir.ConfigError` for bad settings).

use crate::lake::LakeError;
use crate::ProcessorError;

pub type StreamResult<T> = std::result::Result<T, StreamError>;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A setting that is missing or malformed: `setting` is its key (e.g. `kinesis.shards`).
    #[error("stream configuration: {setting}: {message}")]
    Config { setting: String, message: String },

    /// A Kinesis call failed (after the SDK's own retries).
    #[error("Kinesis {operation} on stream {stream}: {message}")]
    Kinesis { operation: &'static str, stream: String, message: String },

    /// A source record that is not a Weir record, or whose payload does not match its header.
    #[error("stream {stream}, shard {shard}, record {sequence_number}: {message}")]
    Record { stream: String, shard: String, sequence_number: String, message: String },

    /// Input the producer cannot pack (e.g. one event larger than a Kinesis record).
    #[error("dataset {dataset}: {message}")]
    Input { dataset: String, message: String },

    /// A dead-letter replay that cannot go on (e.g. another replay committed meanwhile).
    #[error("replay of dataset {dataset}: {message}")]
    Replay { dataset: String, message: String },

    /// The metastore tables of jobs, leases and batch metrics.
    #[error("metastore ({table}): {message}")]
    Metastore { table: &'static str, message: String },

    #[error(transparent)]
    Lake(#[from] LakeError),

    #[error(transparent)]
    Processor(#[from] ProcessorError),

    /// A broken invariant: a bug in Weir.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::dataset::DatasetError> for StreamError {
    fn from(e: crate::dataset::DatasetError) -> Self {
        match e {
            crate::dataset::DatasetError::Processor(e) => StreamError::Processor(e),
            crate::dataset::DatasetError::Lake(e) => StreamError::Lake(e),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for StreamError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        StreamError::Internal(e.to_string())
    }
}

impl StreamError {
    pub(crate) fn metastore(table: &'static str, e: impl std::fmt::Display) -> Self {
        StreamError::Metastore { table, message: e.to_string() }
    }
}
