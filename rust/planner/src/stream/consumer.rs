//! The consumer: Kinesis → pipeline SQL → Iceberg, exactly once.
//!
//! Each batch reads the shards this consumer holds, concurrently from their cursors
//! ([`read_shards`]), bounded by the commit interval (default 1 s) and size limits. Its
//! records (Weir's, or other producers' JSON, CSV, gzip or KPL aggregated records) are
//! unpacked ([`super::unpack`]), run through the dataset's processor (contract +
//! `sql/pipeline/<dataset>.sql`), and committed table by table in a fixed order:
//! `_dead_letter` (records that cannot be read, or whole batches that failed every
//! attempt), `_rejected`, then the valid table.
//! Every commit advances that table's checkpoint (per shard, the last sequence number
//! stored) in the same snapshot as the rows, fenced on the position this consumer last saw.
//!
//! Exactly once, across crashes and restarts: a consumer resumes after the valid table's
//! checkpoint, which only moves after the other tables were committed for the same records;
//! rows of a table whose checkpoint is further ahead (a crash between two commits) are
//! skipped. A consumer that lost a shard to another one finds its fence refused and reloads.
//!
//! A failing batch is retried (default 3 more times, with backoff); then its records go to
//! the dead-letter table with the error, their jobs become `failed`, and the consumer goes on
//! (or halts, if so configured). The checkpoint never moves past records that are not stored.
//!
//! Between batches the consumer starts the lake's maintenance policy on its tables in the
//! background ([`super::maintainer`]), so they stay fast however long it runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use tokio::sync::Mutex;

use super::error::{StreamError, StreamResult};
use super::kinesis::{Kinesis, ShardInfo};
use super::maintainer::{Maintainer, MAINTENANCE_SCOPE};
use super::metastore::{now_ms, BatchMetrics, JobRecord, Metastore};
use super::source::{read_shards, ReadLimits, ShardCursor, SourceRecord, StartPosition};
use super::unpack::{
    dead_letter_batch, event_position, failed_job_records, job_records, label_rejected, unpack, Input, Unpacked,
};
use crate::dataset::{ensure_dataset, rejected_table_schema, DatasetTables};
use crate::lake::{compare_sequence_numbers, CheckpointAdvance, Checkpoint, Lake, LakeError, ShardAdvance, WriteMode};
use crate::Processor;

mod replay;
pub use replay::ReplayReport;

/// Position of each table in the commit order (see [`DatasetTables::in_commit_order`]).
const DEAD_LETTER: usize = 0;
const REJECTED: usize = 1;
const VALID: usize = 2;

/// What to do with a batch that failed every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Store its records in the dead-letter table, fail their jobs, go on.
    DeadLetter,
    /// Stop the consumer with the error; the records stay in Kinesis.
    Halt,
}

/// Where to start reading a shard no table has a checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Oldest,
    Newest,
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Names this consumer in leases, metrics and logs.
    pub consumer_id: String,
    /// How long a batch collects records before it is processed and committed.
    pub commit_interval: Duration,
    /// Kinesis records and bytes one batch takes from each shard at most.
    pub max_records_per_shard: usize,
    pub max_bytes_per_shard: usize,
    /// Pause between reads of a caught-up shard.
    pub poll_interval: Duration,
    /// Retries of a failed batch before it is dead-lettered (requirement: 3).
    pub retries: u32,
    /// Delay before the first retry, doubled for each further one.
    pub retry_backoff: Duration,
    pub on_failure: OnFailure,
    pub start_from: StartFrom,
    /// How long a shard lease lasts without renewal (a dead consumer's shards wait this long).
    pub lease_ttl: Duration,
    /// Run the lake's maintenance policy on the dataset's tables in the background (when
    /// `[lake.maintenance] enabled`, the default; see [`super::maintainer`]).
    pub maintenance: bool,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            consumer_id: format!("consumer-{}", std::process::id()),
            commit_interval: Duration::from_secs(1),
            max_records_per_shard: 10_000,
            max_bytes_per_shard: 4 << 20,
            poll_interval: Duration::from_millis(200),
            retries: 3,
            retry_backoff: Duration::from_millis(500),
            on_failure: OnFailure::DeadLetter,
            start_from: StartFrom::Oldest,
            lease_ttl: Duration::from_secs(10),
            maintenance: true,
        }
    }
}

struct ShardState {
    cursor: Arc<Mutex<ShardCursor>>,
    /// Per table (commit order), the last sequence number stored.
    positions: [Option<String>; 3],
}

/// One dataset's consumer. Runs batches with [`Consumer::run_batch`].
pub struct Consumer {
    lake: Arc<Lake>,
    kinesis: Kinesis,
    metastore: Metastore,
    processor: Processor,
    /// The valid table's rows as the pipeline SQL produces them (planned once).
    output_schema: SchemaRef,
    dataset: String,
    stream: String,
    tables: [String; 3],
    options: ConsumerOptions,
    shards: BTreeMap<String, ShardState>,
    /// Closed shards (split or merged) of the stream and their ending sequence numbers.
    endings: HashMap<String, String>,
    /// Shards that have parents: they start at their beginning, whatever `start_from` says.
    children: HashSet<String>,
    /// Closed shards whose every record is stored (never read again).
    finished: HashSet<String>,
    /// Which tables (commit order) the last [`Consumer::commit_chain`] committed to.
    chain_committed: [bool; 3],
    last_job_sweep: Instant,
    maintainer: Option<Maintainer>,
}

/// How often a consumer finalizes jobs another process left open.
const JOB_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The rows a batch writes, per table, and what it learned about each job's records.
struct Prepared {
    rows: [(SchemaRef, Vec<RecordBatch>); 3],
    job_records: Vec<JobRecord>,
    events: i64,
    valid: i64,
    rejected: i64,
    dead_lettered: i64,
    /// Records that cannot be read (index in the batch, why), whether stored or not.
    unreadable: Vec<(usize, String)>,
}

/// Where a batch's attempt stopped.
enum Attempt {
    Committed { snapshot_id: Option<i64> },
    /// Another consumer moved a checkpoint: this consumer's positions were reloaded.
    Fenced(String),
}

impl Consumer {
    /// A consumer of `processor`'s dataset: creates its tables, stream and Weir's metastore
    /// tables if missing. Call [`Consumer::assign`] to give it shards.
    pub async fn new(lake: Arc<Lake>, kinesis: Kinesis, processor: Processor, options: ConsumerOptions) -> StreamResult<Self> {
        let dataset = processor.contract().name.clone();
        let stream = kinesis.config().stream_name(&dataset)?;
        let tables: DatasetTables = ensure_dataset(&lake, &processor).await?;
        let [dead_letter, rejected, valid] = tables.in_commit_order().map(|t| t.qualified_name());
        kinesis.ensure_stream(&stream).await?;
        let metastore = Metastore::open(&lake).await?;
        let output_schema = processor.output_schema().await?;
        let maintainer = options.maintenance.then(|| {
            let tables = vec![valid.clone(), rejected.clone(), dead_letter.clone()];
            Maintainer::new(lake.clone(), metastore.clone(), tables, options.consumer_id.clone())
        });
        Ok(Self {
            lake,
            kinesis,
            metastore,
            processor,
            output_schema,
            dataset,
            stream,
            tables: [dead_letter, rejected, valid],
            options,
            shards: BTreeMap::new(),
            endings: HashMap::new(),
            children: HashSet::new(),
            finished: HashSet::new(),
            chain_committed: [false; 3],
            last_job_sweep: Instant::now(),
            maintainer,
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn kinesis(&self) -> &Kinesis {
        &self.kinesis
    }

    pub fn metastore(&self) -> &Metastore {
        &self.metastore
    }

    pub fn options(&self) -> &ConsumerOptions {
        &self.options
    }

    /// The shards this consumer reads.
    pub fn shard_ids(&self) -> Vec<String> {
        self.shards.keys().cloned().collect()
    }

    /// Renews, takes and gives back shard leases (see [`Metastore::balance_leases`]) and reads
    /// the shards held from now on. Call between batches.
    ///
    /// Across a split or merge (resharding) it reads as the Kinesis Client Library does: a
    /// child shard only once its parents are finished, i.e. closed and stored to their end
    /// (see [`readable_shards`]), so the records of a partition key are stored in order and
    /// each exactly once.
    pub async fn balance(&mut self) -> StreamResult<Vec<String>> {
        let shards = self.kinesis.shards(&self.stream).await?;
        self.endings =
            shards.iter().filter_map(|s| Some((s.shard_id.clone(), s.ending_sequence_number.clone()?))).collect();
        self.children = shards.iter().filter(|s| !s.parents.is_empty()).map(|s| s.shard_id.clone()).collect();
        if self.endings.keys().any(|id| !self.finished.contains(id)) {
            // A closed shard not known to be finished: has the valid table stored its end?
            let loaded = self.lake.load_table(&self.tables[VALID]).await?;
            let checkpoint = Checkpoint::of_table(&self.tables[VALID], loaded.metadata())?;
            let done = finished_shards(&shards, |id| checkpoint.position(&self.stream, id).map(str::to_string));
            self.finished.extend(done);
        }
        let readable = readable_shards(&shards, &self.finished);
        let ttl = self.options.lease_ttl.as_millis() as i64;
        let held = self.metastore.balance_leases(&self.stream, &readable, &self.options.consumer_id, ttl).await?;
        self.assign(&held).await?;
        Ok(held)
    }

    /// Held shards that are closed and read to their end, with their ending sequence
    /// numbers, whose end the valid table has not stored yet. The next commit stores it.
    async fn drained_shards(&self) -> BTreeMap<String, String> {
        let mut drained = BTreeMap::new();
        for (id, state) in &self.shards {
            let Some(end) = self.endings.get(id) else { continue };
            let stored = state.positions[VALID].as_deref().is_some_and(|p| compare_sequence_numbers(p, end).is_ge());
            if !stored && state.cursor.lock().await.closed {
                drained.insert(id.clone(), end.clone());
            }
        }
        drained
    }

    /// Commits the end of each drained shard that has no record left to store (a
    /// checkpoint-only snapshot), so its children can be read.
    async fn finish_drained_shards(&mut self) -> StreamResult<()> {
        let drained = self.drained_shards().await;
        if drained.is_empty() {
            return Ok(());
        }
        let empty: (SchemaRef, Vec<RecordBatch>) = (Arc::new(Schema::empty()), Vec::new());
        let rows = [empty.clone(), empty.clone(), empty];
        let properties = HashMap::from([
            ("weir.consumer".to_string(), self.options.consumer_id.clone()),
            ("weir.contract-version".to_string(), self.processor.contract().version.clone()),
        ]);
        match self.commit_chain(&[], &rows, &properties, &drained).await {
            Ok(_) => {
                tracing::info!(component = "consumer", event = "shards_finished", dataset = %self.dataset, shards = ?drained.keys().collect::<Vec<_>>());
                Ok(())
            }
            Err(StreamError::Lake(e @ LakeError::CheckpointMoved { .. })) => {
                tracing::warn!(component = "consumer", event = "fenced", dataset = %self.dataset, error = %e);
                self.reload().await
            }
            Err(e) => Err(e),
        }
    }

    /// Gives back this consumer's leases (on a clean stop).
    pub async fn release(&mut self) -> StreamResult<()> {
        self.shards.clear();
        if let Some(maintainer) = self.maintainer.as_mut() {
            maintainer.stop().await;
            self.metastore.release_leases(MAINTENANCE_SCOPE, &self.options.consumer_id).await?;
        }
        self.metastore.release_leases(&self.stream, &self.options.consumer_id).await
    }

    /// Reads exactly `shard_ids` from now on: new shards start after their checkpoint.
    pub async fn assign(&mut self, shard_ids: &[String]) -> StreamResult<()> {
        self.shards.retain(|id, _| shard_ids.contains(id));
        let new: Vec<&String> = shard_ids.iter().filter(|id| !self.shards.contains_key(*id)).collect();
        if new.is_empty() {
            return Ok(());
        }
        for id in new {
            let cursor = Arc::new(Mutex::new(ShardCursor::new(id, StartPosition::TrimHorizon)));
            self.shards.insert(id.clone(), ShardState { cursor, positions: [None, None, None] });
        }
        self.reload().await
    }

    /// Reads every table's checkpoint for the held shards and restarts their cursors after
    /// the valid table's; settles job records a dead consumer committed but did not mark.
    pub async fn reload(&mut self) -> StreamResult<()> {
        let mut checkpoints = Vec::with_capacity(3);
        for table in &self.tables {
            let loaded = self.lake.load_table(table).await?;
            checkpoints.push(Checkpoint::of_table(table, loaded.metadata())?);
        }
        for (shard, state) in &mut self.shards {
            for (t, checkpoint) in checkpoints.iter().enumerate() {
                state.positions[t] = checkpoint.position(&self.stream, shard).map(str::to_string);
            }
            let start = match &state.positions[VALID] {
                Some(sequence) => StartPosition::AfterSequenceNumber(sequence.clone()),
                // Another table has a position: a first batch crashed half-way; start over.
                None if state.positions.iter().any(Option::is_some) => StartPosition::TrimHorizon,
                None if self.options.start_from == StartFrom::Newest && !self.children.contains(shard) => {
                    StartPosition::Latest
                }
                None => StartPosition::TrimHorizon,
            };
            state.cursor.lock().await.reset(start);
        }
        let settled = self.metastore.settle_records(&self.stream, &checkpoints[VALID].shards(&self.stream)).await?;
        if settled > 0 {
            tracing::info!(component = "consumer", event = "job_records_settled", dataset = %self.dataset, records = settled);
        }
        self.sweep_jobs().await
    }

    /// Finalizes open jobs whose records are all done (see [`Metastore::finalize_open_jobs`]).
    async fn sweep_jobs(&mut self) -> StreamResult<()> {
        self.last_job_sweep = Instant::now();
        let finalized = self.metastore.finalize_open_jobs(&self.dataset).await?;
        if finalized > 0 {
            tracing::info!(component = "consumer", event = "jobs_finalized_by_sweep", dataset = %self.dataset, jobs = finalized);
        }
        Ok(())
    }

    /// Collects one batch (up to the commit interval), stores it, and returns its metrics;
    /// `None` when no record arrived.
    pub async fn run_batch(&mut self) -> StreamResult<Option<BatchMetrics>> {
        // A long batch (a backlog, retries) must not lose its shards: renew the leases meanwhile.
        let heartbeat = {
            let (metastore, stream) = (self.metastore.clone(), self.stream.clone());
            let (consumer_id, ttl) = (self.options.consumer_id.clone(), self.options.lease_ttl);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    if let Err(e) = metastore.renew_leases(&stream, &consumer_id, ttl.as_millis() as i64).await {
                        tracing::warn!(component = "consumer", event = "lease_renewal_failed", error = %e);
                    }
                }
            })
        };
        let batch = self.collect_and_store().await;
        heartbeat.abort();
        if let Some(maintainer) = self.maintainer.as_mut() {
            maintainer.poll();
        }
        batch
    }

    async fn collect_and_store(&mut self) -> StreamResult<Option<BatchMetrics>> {
        if self.last_job_sweep.elapsed() > JOB_SWEEP_INTERVAL {
            self.sweep_jobs().await?;
        }
        let started = Instant::now();
        let started_at_ms = now_ms();
        let records = self.read().await?;
        let read_ms = started.elapsed().as_secs_f64() * 1e3;
        if records.is_empty() {
            self.finish_drained_shards().await?;
            return Ok(None);
        }
        let mut lag_ms = 0;
        for state in self.shards.values() {
            lag_ms = lag_ms.max(state.cursor.lock().await.millis_behind);
        }
        let mut metrics = BatchMetrics {
            batch_id: uuid::Uuid::now_v7().to_string(),
            consumer_id: self.options.consumer_id.clone(),
            dataset: self.dataset.clone(),
            started_at_ms,
            source_records: records.len() as i64,
            bytes: records.iter().map(|r| r.data.len() as i64).sum(),
            read_ms,
            lag_ms,
            ..BatchMetrics::default()
        };
        let mut shards: Vec<String> = records.iter().map(|r| r.shard_id.to_string()).collect();
        shards.dedup();
        metrics.shards = shards;

        self.store_with_retries(&records, &mut metrics).await?;
        metrics.batch_ms = started.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = self.metastore.record_batch(&metrics).await {
            tracing::warn!(component = "consumer", event = "metrics_not_stored", error = %e);
        }
        tracing::info!(
            component = "consumer",
            event = "batch",
            dataset = %self.dataset,
            status = %metrics.status,
            source_records = metrics.source_records,
            events = metrics.events,
            valid = metrics.valid,
            rejected = metrics.rejected,
            dead_lettered = metrics.dead_lettered,
            batch_ms = metrics.batch_ms,
            commit_ms = metrics.commit_ms,
            lag_ms = metrics.lag_ms,
            snapshot_id = metrics.snapshot_id,
        );
        Ok(Some(metrics))
    }

    /// Stores a batch, retrying failures; after the last retry dead-letters it (or returns the
    /// error, to halt).
    async fn store_with_retries(&mut self, records: &[SourceRecord], metrics: &mut BatchMetrics) -> StreamResult<()> {
        let mut last_error = None;
        for attempt in 0..=self.options.retries {
            if attempt > 0 {
                let delay = self.options.retry_backoff * 2u32.pow(attempt - 1);
                tokio::time::sleep(delay).await;
            }
            metrics.attempts = attempt as i64 + 1;
            match self.store(records, metrics).await {
                Ok(Attempt::Committed { snapshot_id }) => {
                    metrics.status = "committed".into();
                    metrics.snapshot_id = snapshot_id;
                    last_error = None;
                    break;
                }
                Ok(Attempt::Fenced(message)) => {
                    metrics.status = "fenced".into();
                    metrics.error = Some(message);
                    last_error = None;
                    break;
                }
                Err(e) => {
                    tracing::error!(
                        component = "consumer",
                        event = "batch_failed",
                        dataset = %self.dataset,
                        batch_id = %metrics.batch_id,
                        attempt = attempt + 1,
                        attempts = self.options.retries + 1,
                        error = %e,
                    );
                    last_error = Some(e);
                }
            }
        }
        if let Some(error) = last_error {
            if self.options.on_failure == OnFailure::Halt {
                // Nothing moved past the failed records: they are read again after a restart.
                return Err(error);
            }
            self.dead_letter_batch(records, &error, metrics).await?;
        }
        Ok(())
    }

    /// One read of the held shards (see [`read_shards`]), for up to the commit interval.
    async fn read(&self) -> StreamResult<Vec<SourceRecord>> {
        if self.shards.is_empty() {
            tokio::time::sleep(self.options.poll_interval).await;
            return Ok(Vec::new());
        }
        let cursors: Vec<Arc<Mutex<ShardCursor>>> = self.shards.values().map(|s| s.cursor.clone()).collect();
        let limits = ReadLimits {
            deadline: Instant::now() + self.options.commit_interval,
            max_records: self.options.max_records_per_shard,
            max_bytes: self.options.max_bytes_per_shard,
            poll_interval: self.options.poll_interval,
            stop_when_caught_up: false,
        };
        read_shards(&self.kinesis, &self.stream, &cursors, &limits).await
    }

    /// Is `record` already stored in table `t`?
    fn stored_in(&self, t: usize, record: &SourceRecord) -> bool {
        self.shards
            .get(record.shard_id.as_ref())
            .and_then(|s| s.positions[t].as_deref())
            .is_some_and(|p| compare_sequence_numbers(&record.sequence_number, p).is_le())
    }

    /// Processes and commits one batch.
    async fn store(&mut self, records: &[SourceRecord], metrics: &mut BatchMetrics) -> StreamResult<Attempt> {
        let started = Instant::now();
        let prepared = self.prepare(records, &|t: usize, record: &SourceRecord| self.stored_in(t, record)).await?;
        metrics.process_ms = started.elapsed().as_secs_f64() * 1e3;
        metrics.events = prepared.events;
        metrics.valid = prepared.valid;
        metrics.rejected = prepared.rejected;
        metrics.dead_lettered = prepared.dead_lettered;
        self.metastore.job_records_pending(&self.stream, &self.processor.contract().version, &prepared.job_records).await?;
        let committing = Instant::now();
        // The batch's counts and contract in every snapshot it makes, so quality checks and
        // workflows can judge a snapshot by its id, without scanning it.
        let properties = HashMap::from([
            ("weir.batch-id".to_string(), metrics.batch_id.clone()),
            ("weir.consumer".to_string(), self.options.consumer_id.clone()),
            ("weir.contract-version".to_string(), self.processor.contract().version.clone()),
            ("weir.batch.events".to_string(), metrics.events.to_string()),
            ("weir.batch.valid".to_string(), metrics.valid.to_string()),
            ("weir.batch.rejected".to_string(), metrics.rejected.to_string()),
            ("weir.batch.dead-lettered".to_string(), metrics.dead_lettered.to_string()),
        ]);
        let drained = self.drained_shards().await;
        let outcome = self.commit_chain(records, &prepared.rows, &properties, &drained).await;
        metrics.commit_ms = committing.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(snapshot_id) => {
                self.metastore.job_records_done(&self.stream, &prepared.job_records, snapshot_id, None).await?;
                Ok(Attempt::Committed { snapshot_id })
            }
            Err(StreamError::Lake(e @ LakeError::CheckpointMoved { .. })) => {
                tracing::warn!(component = "consumer", event = "fenced", dataset = %self.dataset, error = %e);
                self.reload().await?;
                Ok(Attempt::Fenced(e.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Commits the rows of each table in order, each with its fenced checkpoint advance:
    /// per shard, to its last record in `records`, or to its end for a shard in `drained`
    /// (closed and read to its end). Returns the valid table's snapshot.
    async fn commit_chain(
        &mut self,
        records: &[SourceRecord],
        rows: &[(SchemaRef, Vec<RecordBatch>); 3],
        properties: &HashMap<String, String>,
        drained: &BTreeMap<String, String>,
    ) -> StreamResult<Option<i64>> {
        let mut ends: BTreeMap<String, String> = BTreeMap::new();
        for r in records {
            ends.insert(r.shard_id.to_string(), r.sequence_number.clone());
        }
        ends.extend(drained.iter().map(|(shard, end)| (shard.clone(), end.clone())));
        self.chain_committed = [false; 3];
        let mut snapshot_id = None;
        for t in [DEAD_LETTER, REJECTED, VALID] {
            let (schema, batches) = &rows[t];
            let row_count: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if t != VALID && row_count == 0 {
                continue;
            }
            let mut shards = BTreeMap::new();
            for (shard, end) in &ends {
                let expected = self.shards.get(shard).and_then(|s| s.positions[t].clone());
                if expected.as_deref().is_none_or(|p| compare_sequence_numbers(end, p).is_gt()) {
                    shards.insert(shard.clone(), ShardAdvance { expected, to: end.clone() });
                }
            }
            if shards.is_empty() && row_count == 0 {
                continue;
            }
            let advance = CheckpointAdvance { stream: self.stream.clone(), shards };
            let info = self.lake.write(&self.tables[t], schema, batches, WriteMode::Checkpointed(&advance), properties.clone()).await?;
            self.chain_committed[t] = true;
            for (shard, step) in &advance.shards {
                if let Some(state) = self.shards.get_mut(shard) {
                    state.positions[t] = Some(step.to.clone());
                }
            }
            if t == VALID {
                snapshot_id = info.snapshot_id;
            }
        }
        Ok(snapshot_id)
    }

    /// Unpacks, processes and splits one batch into the rows of each table, leaving out the
    /// rows of records `stored` says a table (by commit order) has already.
    async fn prepare(&self, records: &[SourceRecord], stored: &(dyn Fn(usize, &SourceRecord) -> bool + Sync)) -> StreamResult<Prepared> {
        let Unpacked { decoded, dead, inputs } = unpack(records, &self.dataset, self.processor.contract());
        let output_schema = self.output_schema.clone();
        let mut valid_batches: Vec<RecordBatch> = Vec::new();
        let mut rejected_batches: Vec<RecordBatch> = Vec::new();
        // Rejected events of Weir records per (record, segment).
        let mut rejected_per_segment: HashMap<(usize, usize), i64> = HashMap::new();
        let (mut events, mut rejected_total) = (0i64, 0i64);
        for Input { data, format, mut spans, counted } in inputs {
            let outcome = self.processor.process_at(&data, format, |event| Some(event_position(&spans, records, event))).await?;
            if !counted {
                spans[0].events = outcome.stats.records;
            }
            let expected: usize = spans.iter().map(|s| s.events).sum();
            if outcome.stats.records != expected {
                let first = spans[0].record;
                return Err(StreamError::Record {
                    stream: self.stream.clone(),
                    shard: records[first].shard_id.to_string(),
                    sequence_number: records[first].sequence_number.clone(),
                    message: format!(
                        "the records' headers announce {expected} events but their payloads hold {}",
                        outcome.stats.records
                    ),
                });
            }
            events += outcome.stats.records as i64;
            rejected_total += outcome.rejected.num_rows() as i64;
            valid_batches.extend(outcome.output);
            let stored_rejected = |i: usize| stored(REJECTED, &records[i]);
            rejected_batches.push(label_rejected(
                &outcome.rejected,
                &spans,
                records,
                &decoded,
                &mut rejected_per_segment,
                stored_rejected,
            )?);
        }

        let job_records = job_records(records, &decoded, &rejected_per_segment);
        let dead_rows: Vec<(usize, String)> =
            dead.iter().filter(|(i, _)| !stored(DEAD_LETTER, &records[*i])).cloned().collect();
        let dead_lettered = dead_rows.len() as i64;
        let dead_letter = dead_letter_batch(&self.stream, records, &dead_rows, |_| false)?;
        Ok(Prepared {
            rows: [
                (dead_letter.schema(), vec![dead_letter]),
                (Arc::new(rejected_table_schema()), rejected_batches),
                (output_schema, valid_batches),
            ],
            job_records,
            events,
            valid: events - rejected_total,
            rejected: rejected_total,
            dead_lettered,
            unreadable: dead,
        })
    }

    /// A batch that failed every attempt: its records go to the dead-letter table with the
    /// error, the checkpoints move past them, their jobs fail. Retried until it succeeds
    /// (backing off up to a minute), because nothing may move past records not stored.
    async fn dead_letter_batch(&mut self, records: &[SourceRecord], error: &StreamError, metrics: &mut BatchMetrics) -> StreamResult<()> {
        let message = error.to_string();
        let mut delay = self.options.retry_backoff;
        // The records the dead-letter table holds already: unreadable ones an attempt stored.
        // (Its checkpoint then covers the whole batch, not only them: the others are not
        // there yet.)
        let unreadable: HashSet<usize> =
            unpack(records, &self.dataset, self.processor.contract()).dead.into_iter().map(|(i, _)| i).collect();
        let mut in_dead_letter: HashSet<usize> =
            unreadable.into_iter().filter(|&i| self.stored_in(DEAD_LETTER, &records[i])).collect();
        loop {
            let rows: Vec<(usize, String)> = (0..records.len())
                .filter(|&i| !in_dead_letter.contains(&i) && !self.stored_in(VALID, &records[i]))
                .map(|i| (i, message.clone()))
                .collect();
            let attempt = async {
                let job_records = failed_job_records(records);
                self.metastore.job_records_pending(&self.stream, &self.processor.contract().version, &job_records).await?;
                let batch = dead_letter_batch(&self.stream, records, &rows, |i| self.stored_in(REJECTED, &records[i]))?;
                let empty: (SchemaRef, Vec<RecordBatch>) = (Arc::new(Schema::empty()), Vec::new());
                let chain = [(batch.schema(), vec![batch]), empty.clone(), empty];
                let properties = HashMap::from([
                    ("weir.batch-id".to_string(), metrics.batch_id.clone()),
                    ("weir.consumer".to_string(), self.options.consumer_id.clone()),
                    ("weir.contract-version".to_string(), self.processor.contract().version.clone()),
                    ("weir.failed".to_string(), "true".to_string()),
                ]);
                let snapshot_id = self.commit_chain(records, &chain, &properties, &BTreeMap::new()).await?;
                self.metastore.job_records_done(&self.stream, &job_records, None, Some(&message)).await?;
                Ok::<_, StreamError>((snapshot_id, rows.len()))
            };
            match attempt.await {
                Ok((snapshot_id, dead_lettered)) => {
                    metrics.status = "dead_lettered".into();
                    metrics.snapshot_id = snapshot_id;
                    metrics.dead_lettered = dead_lettered as i64;
                    metrics.error = Some(message.clone());
                    tracing::error!(
                        component = "consumer",
                        event = "batch_dead_lettered",
                        dataset = %self.dataset,
                        batch_id = %metrics.batch_id,
                        records = records.len(),
                        error = %message,
                    );
                    return Ok(());
                }
                Err(StreamError::Lake(e @ LakeError::CheckpointMoved { .. })) => {
                    self.reload().await?;
                    metrics.status = "fenced".into();
                    metrics.error = Some(e.to_string());
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(component = "consumer", event = "dead_letter_failed", dataset = %self.dataset, error = %e);
                    if self.chain_committed[DEAD_LETTER] {
                        in_dead_letter.extend(rows.iter().map(|(i, _)| *i)); // not twice
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// Closed shards whose end the valid table has stored (`position`: its checkpoint per shard).
fn finished_shards(shards: &[ShardInfo], position: impl Fn(&str) -> Option<String>) -> Vec<String> {
    shards
        .iter()
        .filter(|s| {
            let (Some(end), Some(stored)) = (s.ending_sequence_number.as_deref(), position(&s.shard_id)) else {
                return false;
            };
            compare_sequence_numbers(&stored, end).is_ge()
        })
        .map(|s| s.shard_id.clone())
        .collect()
}

/// The shards to read: every shard not `finished` whose parents are finished or no longer
/// listed (trimmed after the stream's retention period), as the Kinesis Client Library reads.
fn readable_shards(shards: &[ShardInfo], finished: &HashSet<String>) -> Vec<String> {
    let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    shards
        .iter()
        .filter(|s| !finished.contains(&s.shard_id))
        .filter(|s| s.parents.iter().all(|p| finished.contains(p) || !listed.contains(p.as_str())))
        .map(|s| s.shard_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], end: Option<&str>) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            ending_sequence_number: end.map(str::to_string),
        }
    }

    #[test]
    fn children_are_read_once_their_parents_are_finished() {
        // Shard 0 split into 2 and 3; 1 and 3 merged into 4.
        let shards = [
            shard("s0", &[], Some("500")),
            shard("s1", &[], Some("900")),
            shard("s2", &["s0"], None),
            shard("s3", &["s0"], Some("800")),
            shard("s4", &["s1", "s3"], None),
        ];
        let none = HashSet::new();
        assert_eq!(readable_shards(&shards, &none), ["s0", "s1"]);
        let positions = HashMap::from([("s0", "500"), ("s1", "899"), ("s3", "800")]);
        let finished: HashSet<String> =
            finished_shards(&shards, |id| positions.get(id).map(|p| p.to_string())).into_iter().collect();
        assert_eq!(finished, HashSet::from(["s0".to_string(), "s3".to_string()]));
        assert_eq!(readable_shards(&shards, &finished), ["s1", "s2"]);
        let all: HashSet<String> = ["s0", "s1", "s3"].map(String::from).into();
        assert_eq!(readable_shards(&shards, &all), ["s2", "s4"]);
        // A parent trimmed from the stream (past its retention) holds nothing back.
        assert_eq!(readable_shards(&shards[2..], &none), ["s2", "s3"]);
    }
}
