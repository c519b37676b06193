//! `weir._native.Producer` and `weir._native.Consumer`: the Rust streaming layer
//! (`weir_planner::stream`) for `weir.stream` and `weir consume`. Calls block with the GIL
//! released; the producer's group-commit flusher runs on the module's Tokio runtime, so
//! concurrent `publish` calls from Python threads share PutRecords calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use weir_planner::stream::{
    self, ConsumerOptions, JobLedger, Kinesis, KinesisTable, Metastore, OnFailure, ProducerOptions, StartFrom,
    StreamConfig, StreamError,
};
use weir_planner::InputFormat;

use crate::errors::to_py_err;
use crate::lake::{DataFusionTable, Lake};
use crate::processor::Processor;
use crate::records::{BatchMetrics, Job, Publication};
use crate::runtime::runtime;

fn run<T: Send>(py: Python<'_>, work: impl std::future::Future<Output = Result<T, StreamError>> + Send) -> PyResult<T> {
    py.detach(|| runtime().block_on(work)).map_err(|e| to_py_err(py, e))
}

fn connect(py: Python<'_>, properties: &HashMap<String, String>) -> PyResult<Kinesis> {
    let config = StreamConfig::from_properties(properties).map_err(|e| to_py_err(py, e))?;
    Ok(py.detach(|| runtime().block_on(Kinesis::connect(config))))
}

#[pyclass(module = "weir._native", frozen)]
pub struct Producer {
    pub(crate) inner: Arc<stream::Producer>,
    pub(crate) ledger: Option<JobLedger>,
}

impl Producer {
    /// The work of one publish: register the job, put its records, mark it published (or
    /// failed).
    fn publication(
        &self,
        py: Python<'_>,
        dataset: String,
        data: Vec<u8>,
        format: &str,
        job_id: Option<String>,
    ) -> PyResult<impl std::future::Future<Output = Result<stream::Publication, StreamError>> + Send + 'static> {
        let format = InputFormat::parse(format).map_err(|e| to_py_err(py, e))?;
        let job_id = job_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let producer = self.inner.clone();
        let ledger = self.ledger.clone();
        Ok(async move { stream::publish_job(&producer, ledger.as_ref(), &dataset, &job_id, &data, format).await })
    }
}

#[pymethods]
impl Producer {
    /// A producer for the Kinesis settings `properties`; with `lake`, every published job is
    /// registered in the metastore's jobs table. `linger_ms` is how long a group of records
    /// waits for others to join it (0: none).
    #[new]
    #[pyo3(signature = (properties, lake=None, zstd_level=1, max_attempts=10, linger_ms=0))]
    fn new(
        py: Python<'_>,
        properties: HashMap<String, String>,
        lake: Option<&Lake>,
        zstd_level: i32,
        max_attempts: u32,
        linger_ms: u64,
    ) -> PyResult<Self> {
        let kinesis = connect(py, &properties)?;
        let options = ProducerOptions {
            zstd_level,
            max_attempts: max_attempts.max(1),
            linger: std::time::Duration::from_millis(linger_ms),
            ..ProducerOptions::default()
        };
        let inner = {
            let _entered = runtime().enter();
            Arc::new(stream::Producer::new(kinesis, options))
        };
        let ledger = match lake {
            Some(lake) => {
                let lake = lake.inner().clone();
                let metastore = run(py, async move { Metastore::open(&lake).await })?;
                let _entered = runtime().enter();
                Some(JobLedger::start(metastore))
            }
            None => None,
        };
        Ok(Self { inner, ledger })
    }

    /// Publishes `data` (bytes in `format`) as one job; returns where every record went.
    #[pyo3(signature = (dataset, data, format="ndjson", job_id=None))]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        dataset: String,
        data: Vec<u8>,
        format: &str,
        job_id: Option<String>,
    ) -> PyResult<Publication> {
        let work = self.publication(py, dataset, data, format, job_id)?;
        Ok(run(py, work)?.into())
    }

    /// Names of the streams Kinesis has (a reachability check for readiness probes).
    fn list_streams(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let kinesis = self.inner.kinesis().clone();
        run(py, async move { kinesis.stream_names().await })
    }

    /// Creates the dataset's stream if missing.
    fn ensure_stream(&self, py: Python<'_>, dataset: String) -> PyResult<String> {
        let kinesis = self.inner.kinesis().clone();
        run(py, async move {
            let stream = kinesis.config().stream_name(&dataset)?;
            kinesis.ensure_stream(&stream).await?;
            Ok(stream)
        })
    }
}

/// Weir's operational tables in the lake's metastore (jobs, consumer batches), read through
/// the same SQLite library as the writers: two SQLite copies in one process must not share a
/// database file (their POSIX locks would undo each other).
#[pyclass(module = "weir._native", frozen)]
pub struct OpsTables {
    metastore: Metastore,
}

#[pymethods]
impl OpsTables {
    #[new]
    fn new(py: Python<'_>, lake: &Lake) -> PyResult<Self> {
        let lake = lake.inner().clone();
        let metastore = run(py, async move { Metastore::open(&lake).await })?;
        Ok(Self { metastore })
    }

    /// The job's row, or None.
    fn job(&self, py: Python<'_>, job_id: String) -> PyResult<Option<Job>> {
        let metastore = self.metastore.clone();
        Ok(run(py, async move { metastore.job(&job_id).await })?.map(Job::from))
    }

    /// Jobs created since `since_ms`, newest first, at most `limit`.
    #[pyo3(signature = (dataset=None, since_ms=0, limit=1000))]
    fn jobs(&self, py: Python<'_>, dataset: Option<String>, since_ms: i64, limit: i64) -> PyResult<Vec<Job>> {
        let metastore = self.metastore.clone();
        let jobs = run(py, async move { metastore.jobs(dataset.as_deref(), since_ms, limit).await })?;
        Ok(jobs.into_iter().map(Job::from).collect())
    }

    /// Deletes finished jobs (with their per-record rows) last updated before `before_ms`
    /// and batch metrics of batches started before it (`Metastore::prune`):
    /// `{"jobs", "job_records", "batches"}` deleted.
    fn prune<'py>(&self, py: Python<'py>, before_ms: i64) -> PyResult<Bound<'py, PyDict>> {
        let metastore = self.metastore.clone();
        let report = run(py, async move { metastore.prune(before_ms).await })?;
        let out = PyDict::new(py);
        out.set_item("jobs", report.jobs)?;
        out.set_item("job_records", report.job_records)?;
        out.set_item("batches", report.batches)?;
        Ok(out)
    }

    /// Claims an ingest request's `Idempotency-Key` (see `Metastore::claim_idempotency_key`):
    /// `(job_id, request_hash, created_at_ms)` of the claim holding it now.
    fn claim_idempotency_key(
        &self,
        py: Python<'_>,
        owner: String,
        key: String,
        request_hash: String,
        job_id: String,
        expired_before_ms: i64,
    ) -> PyResult<(String, String, i64)> {
        let metastore = self.metastore.clone();
        let claim = run(py, async move { metastore.claim_idempotency_key(&owner, &key, &request_hash, &job_id, expired_before_ms).await })?;
        Ok((claim.job_id, claim.request_hash, claim.created_at_ms))
    }

    /// Moves a stale claim to `to_job`; false if another request got there first.
    fn reclaim_idempotency_key(&self, py: Python<'_>, owner: String, key: String, from_job: String, to_job: String) -> PyResult<bool> {
        let metastore = self.metastore.clone();
        run(py, async move { metastore.reclaim_idempotency_key(&owner, &key, &from_job, &to_job).await })
    }

    /// Drops the claim of a request that was refused or not published.
    fn release_idempotency_key(&self, py: Python<'_>, owner: String, key: String, job_id: String) -> PyResult<()> {
        let metastore = self.metastore.clone();
        run(py, async move { metastore.release_idempotency_key(&owner, &key, &job_id).await })
    }

    /// Deletes claims made before `before_ms`; returns how many.
    fn expire_idempotency_keys(&self, py: Python<'_>, before_ms: i64) -> PyResult<u64> {
        let metastore = self.metastore.clone();
        run(py, async move { metastore.expire_idempotency_keys(before_ms).await })
    }

    /// Consumer batch metrics since `since_ms`, oldest first.
    #[pyo3(signature = (dataset=None, since_ms=0))]
    fn batches(&self, py: Python<'_>, dataset: Option<String>, since_ms: i64) -> PyResult<Vec<BatchMetrics>> {
        let metastore = self.metastore.clone();
        let batches = run(py, async move { metastore.batches(dataset.as_deref(), since_ms).await })?;
        Ok(batches.into_iter().map(BatchMetrics::from).collect())
    }
}

#[pyclass(module = "weir._native")]
pub struct Consumer {
    inner: Arc<tokio::sync::Mutex<stream::Consumer>>,
}

fn option<'py, T: for<'a> FromPyObject<'a, 'py>>(options: Option<&Bound<'py, PyDict>>, key: &str) -> PyResult<Option<T>> {
    match options.map(|o| o.get_item(key)).transpose()?.flatten() {
        Some(value) => Ok(Some(value.extract().map_err(|_| PyValueError::new_err(format!("consumer option {key}: wrong type")))?)),
        None => Ok(None),
    }
}

#[pymethods]
impl Consumer {
    /// A consumer of `processor`'s dataset. `options` (all optional): consumer_id,
    /// commit_interval_s, max_records_per_shard, poll_interval_s, retries, retry_backoff_s,
    /// lease_ttl_s, on_failure ("dead_letter" | "halt"), start_from ("oldest" | "newest"),
    /// maintenance (run the lake's maintenance policy in the background; default true).
    #[new]
    #[pyo3(signature = (lake, properties, processor, options=None))]
    fn new(
        py: Python<'_>,
        lake: &Lake,
        properties: HashMap<String, String>,
        processor: &Processor,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let kinesis = connect(py, &properties)?;
        let mut o = ConsumerOptions::default();
        if let Some(id) = option::<String>(options, "consumer_id")? {
            o.consumer_id = id;
        }
        let seconds = |v: f64| Duration::from_secs_f64(v.max(0.0));
        if let Some(v) = option::<f64>(options, "commit_interval_s")? {
            o.commit_interval = seconds(v);
        }
        if let Some(v) = option::<usize>(options, "max_records_per_shard")? {
            o.max_records_per_shard = v.max(1);
        }
        if let Some(v) = option::<f64>(options, "poll_interval_s")? {
            o.poll_interval = seconds(v);
        }
        if let Some(v) = option::<u32>(options, "retries")? {
            o.retries = v;
        }
        if let Some(v) = option::<f64>(options, "retry_backoff_s")? {
            o.retry_backoff = seconds(v);
        }
        if let Some(v) = option::<f64>(options, "lease_ttl_s")? {
            o.lease_ttl = seconds(v.max(1.0));
        }
        if let Some(v) = option::<String>(options, "on_failure")? {
            o.on_failure = match v.as_str() {
                "dead_letter" => OnFailure::DeadLetter,
                "halt" => OnFailure::Halt,
                other => return Err(PyValueError::new_err(format!("on_failure: expected dead_letter or halt, got {other:?}"))),
            };
        }
        if let Some(v) = option::<bool>(options, "maintenance")? {
            o.maintenance = v;
        }
        if let Some(v) = option::<String>(options, "start_from")? {
            o.start_from = match v.as_str() {
                "oldest" => StartFrom::Oldest,
                "newest" => StartFrom::Newest,
                other => return Err(PyValueError::new_err(format!("start_from: expected oldest or newest, got {other:?}"))),
            };
        }
        let lake = lake.inner().clone();
        let processor = processor.inner.clone();
        let consumer = run(py, async move { stream::Consumer::new(lake, kinesis, processor, o).await })?;
        Ok(Self { inner: Arc::new(tokio::sync::Mutex::new(consumer)) })
    }

    #[getter]
    fn stream(&self, py: Python<'_>) -> PyResult<String> {
        let inner = self.inner.clone();
        Ok(py.detach(|| runtime().block_on(async move { inner.lock().await.stream().to_string() })))
    }

    /// Every shard id of the stream.
    fn list_shards(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let inner = self.inner.clone();
        run(py, async move {
            let consumer = inner.lock().await;
            consumer.kinesis().shard_ids(consumer.stream()).await
        })
    }

    /// Reads exactly these shards from now on (each from its checkpoint).
    fn assign(&self, py: Python<'_>, shard_ids: Vec<String>) -> PyResult<()> {
        let inner = self.inner.clone();
        run(py, async move { inner.lock().await.assign(&shard_ids).await })
    }

    /// Renews, takes and gives back shard leases; returns the shards now held.
    fn balance(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let inner = self.inner.clone();
        run(py, async move { inner.lock().await.balance().await })
    }

    /// Gives back every lease (on a clean stop).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        run(py, async move { inner.lock().await.release().await })
    }

    fn shard_ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let inner = self.inner.clone();
        Ok(py.detach(|| runtime().block_on(async move { inner.lock().await.shard_ids() })))
    }

    /// Replays the dead-letter table's records (dead-lettered at or after `since_ms`, all
    /// when None) that no replay stored yet; with `dry_run` nothing is written. Returns the
    /// report as a dict.
    #[pyo3(signature = (since_ms=None, dry_run=false))]
    fn replay<'py>(&self, py: Python<'py>, since_ms: Option<i64>, dry_run: bool) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.inner.clone();
        let report = run(py, async move { inner.lock().await.replay(since_ms, dry_run).await })?;
        let out = PyDict::new(py);
        out.set_item("replay_id", report.replay_id)?;
        out.set_item("dry_run", report.dry_run)?;
        out.set_item("dead_letters", report.dead_letters)?;
        out.set_item("already_replayed", report.already_replayed)?;
        out.set_item("replayed", report.replayed)?;
        out.set_item("events", report.events)?;
        out.set_item("valid", report.valid)?;
        out.set_item("rejected", report.rejected)?;
        let failing: Vec<(String, String, String)> = report.still_failing;
        out.set_item("still_failing", failing)?;
        out.set_item("other_streams", report.other_streams)?;
        out.set_item("job_records", report.job_records)?;
        out.set_item("snapshot_ids", report.snapshot_ids)?;
        Ok(out)
    }

    /// Collects, stores and commits one batch; its metrics, or None if nothing arrived.
    fn run_batch(&self, py: Python<'_>) -> PyResult<Option<BatchMetrics>> {
        let inner = self.inner.clone();
        Ok(run(py, async move { inner.lock().await.run_batch().await })?.map(BatchMetrics::from))
    }
}

/// The records of `stream` available now, from the oldest, as a DataFusion table with
/// columns shard_id, sequence_number, partition_key, arrival_time, data.
#[pyfunction]
pub fn kinesis_table(py: Python<'_>, properties: HashMap<String, String>, stream: String) -> PyResult<DataFusionTable> {
    let kinesis = connect(py, &properties)?;
    let table = run(py, async move { KinesisTable::from_trim_horizon(kinesis, &stream).await })?;
    Ok(DataFusionTable { provider: Arc::new(table) })
}
