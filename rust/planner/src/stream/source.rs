//! The Kinesis source: [`ShardCursor`] reads one shard with GetRecords; [`read_shards`] reads
//! several shards' cursors concurrently (the consumer's batches); [`KinesisTable`] is a
//! DataFusion table provider over a stream's shards (one partition per shard, read
//! concurrently), so a bounded read of a stream is also a DataFusion scan (ad-hoc SQL):
//!
//! ```sql
//! SELECT shard_id, sequence_number, partition_key, arrival_time, data FROM source
//! ```
//!
//! Both read each shard from its cursor's position ([`read_shard`]) until the shard is caught
//! up, the read deadline passes, or the size limits are reached; the cursors keep their
//! iterator and last sequence number, so the next read continues where this one stopped (the
//! consumer's batches), or they are reset to a checkpoint. The table applies projections
//! after reading (the columns come together from Kinesis); no filters are pushed down.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::types::ShardIteratorType;
use datafusion::arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use tokio::sync::Mutex;

use super::error::{StreamError, StreamResult};
use super::kinesis::{sdk_message, Kinesis};

/// GetRecords returns at most this many records per call.
const MAX_RECORDS_PER_GET: usize = 10_000;

/// Where a shard read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    AfterSequenceNumber(String),
}

/// One Kinesis record as read.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub shard_id: Arc<str>,
    pub sequence_number: String,
    pub partition_key: String,
    pub arrival_ms: Option<i64>,
    pub data: Vec<u8>,
}

/// How much one read takes from a shard.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Stop polling an empty, caught-up shard at this moment.
    pub deadline: Instant,
    pub max_records: usize,
    pub max_bytes: usize,
    /// Pause between GetRecords calls on a caught-up shard (AWS allows 5 calls/s per shard).
    pub poll_interval: Duration,
    /// Return as soon as the shard is caught up, even before the deadline.
    pub stop_when_caught_up: bool,
}

impl ReadLimits {
    /// Everything available now, up to the size limits (for ad-hoc queries).
    pub fn available_now() -> Self {
        Self {
            deadline: Instant::now() + Duration::from_secs(30),
            max_records: 100_000,
            max_bytes: 256 << 20,
            poll_interval: Duration::from_millis(200),
            stop_when_caught_up: true,
        }
    }
}

/// A read position in one shard.
#[derive(Debug)]
pub struct ShardCursor {
    pub shard_id: Arc<str>,
    start: StartPosition,
    iterator: Option<String>,
    /// Sequence number of the last record read.
    pub last_read: Option<String>,
    /// How far behind the newest record the last read was (Kinesis's MillisBehindLatest).
    pub millis_behind: i64,
    /// Mean size of the records read so far, to keep a read near its byte limit (one
    /// GetRecords call may return many megabytes).
    mean_record_bytes: usize,
    /// The shard was split or merged and has no more records.
    pub closed: bool,
}

impl ShardCursor {
    pub fn new(shard_id: &str, start: StartPosition) -> Self {
        Self { shard_id: shard_id.into(), start, iterator: None, last_read: None, millis_behind: 0, mean_record_bytes: 0, closed: false }
    }

    /// Forgets the iterator: the next read starts at `start`.
    pub fn reset(&mut self, start: StartPosition) {
        *self = Self::new(&self.shard_id, start);
    }

    async fn iterator(&mut self, kinesis: &Kinesis, stream: &str) -> StreamResult<String> {
        if let Some(iterator) = &self.iterator {
            return Ok(iterator.clone());
        }
        let start = match &self.last_read {
            Some(sequence) => StartPosition::AfterSequenceNumber(sequence.clone()),
            None => self.start.clone(),
        };
        let request = kinesis.client().get_shard_iterator().stream_name(stream).shard_id(self.shard_id.as_ref());
        let request = match &start {
            StartPosition::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            StartPosition::AfterSequenceNumber(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
        };
        let out = request.send().await.map_err(|e| StreamError::Kinesis {
            operation: "GetShardIterator",
            stream: stream.to_string(),
            message: format!("shard {}: {}", self.shard_id, sdk_message(&e)),
        })?;
        let iterator = out.shard_iterator().map(str::to_string).ok_or_else(|| StreamError::Kinesis {
            operation: "GetShardIterator",
            stream: stream.to_string(),
            message: format!("shard {}: no iterator returned", self.shard_id),
        })?;
        self.iterator = Some(iterator.clone());
        Ok(iterator)
    }

    /// Reads records until the limits say stop.
    pub async fn read(&mut self, kinesis: &Kinesis, stream: &str, limits: &ReadLimits) -> StreamResult<Vec<SourceRecord>> {
        let mut records = Vec::new();
        let mut bytes = 0;
        while !self.closed && records.len() < limits.max_records && bytes < limits.max_bytes {
            let iterator = self.iterator(kinesis, stream).await?;
            let by_bytes = match self.mean_record_bytes {
                // Unknown sizes: a first, small call finds out (Weir records reach 1 MiB).
                0 => 4,
                mean => ((limits.max_bytes - bytes) / mean).max(1),
            };
            let limit = (limits.max_records - records.len()).min(MAX_RECORDS_PER_GET).min(by_bytes) as i32;
            let out = match kinesis.client().get_records().shard_iterator(iterator).limit(limit).send().await {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception()) => {
                    self.iterator = None;
                    continue;
                }
                Err(e) => {
                    return Err(StreamError::Kinesis {
                        operation: "GetRecords",
                        stream: stream.to_string(),
                        message: format!("shard {}: {}", self.shard_id, sdk_message(&e)),
                    })
                }
            };
            self.iterator = out.next_shard_iterator().map(str::to_string);
            self.closed = self.iterator.is_none();
            self.millis_behind = out.millis_behind_latest().unwrap_or(0);
            let got = out.records().len();
            let got_bytes: usize = out.records().iter().map(|r| r.data().as_ref().len()).sum();
            if let Some(mean) = got_bytes.checked_div(got) {
                self.mean_record_bytes =
                    if self.mean_record_bytes == 0 { mean } else { (self.mean_record_bytes * 3 + mean) / 4 };
            }
            for record in out.records() {
                let data = record.data().as_ref().to_vec();
                bytes += data.len();
                self.last_read = Some(record.sequence_number().to_string());
                records.push(SourceRecord {
                    shard_id: self.shard_id.clone(),
                    sequence_number: record.sequence_number().to_string(),
                    partition_key: record.partition_key().unwrap_or_default().to_string(),
                    arrival_ms: record.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()),
                    data,
                });
            }
            let caught_up = got == 0 && self.millis_behind == 0;
            if caught_up {
                if limits.stop_when_caught_up || Instant::now() + limits.poll_interval > limits.deadline {
                    break;
                }
                tokio::time::sleep(limits.poll_interval).await;
            } else if Instant::now() >= limits.deadline && !records.is_empty() {
                break;
            }
        }
        Ok(records)
    }
}

/// One read of a shared cursor (see [`ShardCursor::read`]), once no other read holds it: a
/// partition of a [`KinesisTable`] scan, or one shard of [`read_shards`].
pub async fn read_shard(
    cursor: &Mutex<ShardCursor>,
    kinesis: &Kinesis,
    stream: &str,
    limits: &ReadLimits,
) -> StreamResult<Vec<SourceRecord>> {
    cursor.lock().await.read(kinesis, stream, limits).await
}

/// One read of each of `cursors` ([`read_shard`]), concurrently (a task per shard, like the
/// partitions of a scan). Each shard's records are in order; the shards come one after the
/// other, in the order of `cursors`. The first error stops the other reads.
pub async fn read_shards(
    kinesis: &Kinesis,
    stream: &str,
    cursors: &[Arc<Mutex<ShardCursor>>],
    limits: &ReadLimits,
) -> StreamResult<Vec<SourceRecord>> {
    let mut reads = tokio::task::JoinSet::new();
    for (i, cursor) in cursors.iter().enumerate() {
        let (cursor, kinesis, stream, limits) = (cursor.clone(), kinesis.clone(), stream.to_string(), limits.clone());
        reads.spawn(async move { (i, read_shard(&cursor, &kinesis, &stream, &limits).await) });
    }
    let mut per_shard: Vec<Vec<SourceRecord>> = (0..cursors.len()).map(|_| Vec::new()).collect();
    while let Some(read) = reads.join_next().await {
        // Dropping `reads` on an error aborts the reads still running.
        let (i, records) = read.map_err(|e| StreamError::Internal(format!("a shard read of stream {stream} stopped: {e}")))?;
        per_shard[i] = records?;
    }
    let mut records = Vec::with_capacity(per_shard.iter().map(Vec::len).sum());
    for shard in per_shard {
        records.extend(shard);
    }
    Ok(records)
}

/// Columns of a Kinesis source table.
pub fn source_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard_id", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Utf8, false),
        Field::new("partition_key", DataType::Utf8, false),
        Field::new("arrival_time", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new("data", DataType::Binary, false),
    ]))
}

/// Records as a batch of [`source_schema`].
pub fn records_batch(records: &[SourceRecord]) -> StreamResult<RecordBatch> {
    let mut shard = StringBuilder::new();
    let mut sequence = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut arrival = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut data = BinaryBuilder::new();
    for r in records {
        shard.append_value(&r.shard_id);
        sequence.append_value(&r.sequence_number);
        key.append_value(&r.partition_key);
        arrival.append_option(r.arrival_ms);
        data.append_value(&r.data);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(shard.finish()),
        Arc::new(sequence.finish()),
        Arc::new(key.finish()),
        Arc::new(arrival.finish()),
        Arc::new(data.finish()),
    ];
    Ok(RecordBatch::try_new(source_schema(), columns)?)
}

/// A DataFusion table over a stream's shards; see the module documentation.
pub struct KinesisTable {
    kinesis: Kinesis,
    stream: String,
    cursors: Vec<Arc<Mutex<ShardCursor>>>,
    limits: Arc<dyn Fn() -> ReadLimits + Send + Sync>,
}

impl fmt::Debug for KinesisTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisTable").field("stream", &self.stream).field("shards", &self.cursors.len()).finish()
    }
}

impl KinesisTable {
    /// A table reading `cursors` of `stream`; `limits` is called at each scan (deadlines are
    /// relative to the scan).
    pub fn new(
        kinesis: Kinesis,
        stream: &str,
        cursors: Vec<Arc<Mutex<ShardCursor>>>,
        limits: impl Fn() -> ReadLimits + Send + Sync + 'static,
    ) -> Self {
        Self { kinesis, stream: stream.to_string(), cursors, limits: Arc::new(limits) }
    }

    /// A table over every shard of `stream` from its oldest record, reading what is there now.
    pub async fn from_trim_horizon(kinesis: Kinesis, stream: &str) -> StreamResult<Self> {
        let cursors = kinesis
            .shard_ids(stream)
            .await?
            .iter()
            .map(|id| Arc::new(Mutex::new(ShardCursor::new(id, StartPosition::TrimHorizon))))
            .collect();
        Ok(Self::new(kinesis, stream, cursors, ReadLimits::available_now))
    }
}

#[async_trait]
impl TableProvider for KinesisTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        source_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(source_schema().project(p)?),
            None => source_schema(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(self.cursors.len().max(1)),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(KinesisScanExec {
            kinesis: self.kinesis.clone(),
            stream: self.stream.clone(),
            cursors: self.cursors.clone(),
            limits: (self.limits)(),
            projection: projection.cloned(),
            schema,
            properties,
        }))
    }
}

/// Reads one shard per partition; see [`KinesisTable`].
#[derive(Debug)]
pub struct KinesisScanExec {
    kinesis: Kinesis,
    stream: String,
    cursors: Vec<Arc<Mutex<ShardCursor>>>,
    limits: ReadLimits,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for KinesisScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KinesisScanExec: stream={}, shards={}", self.stream, self.cursors.len())
    }
}

impl ExecutionPlan for KinesisScanExec {
    fn name(&self) -> &str {
        "KinesisScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let cursor = self.cursors.get(partition).cloned();
        let (kinesis, stream, limits, projection) =
            (self.kinesis.clone(), self.stream.clone(), self.limits.clone(), self.projection.clone());
        let read = async move {
            let Some(cursor) = cursor else { return Ok(RecordBatch::new_empty(source_schema())) };
            let records = read_shard(&cursor, &kinesis, &stream, &limits).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
            records_batch(&records).map_err(|e| DataFusionError::External(Box::new(e)))
        };
        let batch = async move {
            let batch = read.await?;
            match &projection {
                Some(p) => Ok(batch.project(p)?),
                None => Ok(batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::once(batch))))
    }
}
