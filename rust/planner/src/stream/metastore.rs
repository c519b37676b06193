//! Weir's operational tables, kept in the metastore database beside the Iceberg catalog
//! (SQLite or PostgreSQL), so the API, the consumers and the dashboard share them:
//!
//! * `weir_jobs`: one row per ingest job: `accepted` (registered) → `published` (Kinesis
//!   accepted every record; `records` says how many) → `committed`, `partially_rejected`
//!   or `failed`, with counts, snapshot ids and the error.
//! * `weir_job_records`: one row per Kinesis record of a job, written by the consumer
//!   *before* it commits the batch (insert-or-ignore, so a replayed record counts once) and
//!   marked `committed` or `failed` after. A job is final once every one of its records is.
//!   If a consumer dies between its Iceberg commit and that mark, the next one marks the
//!   records its checkpoint covers ([`Metastore::settle_records`]).
//! * `weir_consumer_batches`: metrics of every consumer batch, for the dashboard.
//! * `weir_shard_leases`: which consumer reads which shard, until when; `weir_consumers`: the
//!   consumers alive per stream, so shards are shared fairly ([`Metastore::balance_leases`]).
//! * `weir_idempotency_keys`: the ingest API's `Idempotency-Key`s: which request (its body's
//!   digest) claimed a key of an API key for which job, so a retried request returns that job
//!   instead of publishing again, across API processes and restarts
//!   ([`Metastore::claim_idempotency_key`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::error::{StreamError, StreamResult};
use crate::lake::{compare_sequence_numbers, Lake};

pub const JOBS_TABLE: &str = "weir_jobs";
pub const JOB_RECORDS_TABLE: &str = "weir_job_records";
pub const BATCHES_TABLE: &str = "weir_consumer_batches";
pub const LEASES_TABLE: &str = "weir_shard_leases";
pub const IDEMPOTENCY_TABLE: &str = "weir_idempotency_keys";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS weir_jobs (
        job_id VARCHAR(64) PRIMARY KEY,
        dataset VARCHAR(255) NOT NULL,
        status VARCHAR(32) NOT NULL,
        received BIGINT NOT NULL,
        records BIGINT,
        valid BIGINT,
        rejected BIGINT,
        snapshot_ids TEXT,
        error TEXT,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        contract_versions TEXT)",
    "CREATE INDEX IF NOT EXISTS weir_jobs_by_status ON weir_jobs (status, dataset)",
    "CREATE INDEX IF NOT EXISTS weir_jobs_by_time ON weir_jobs (created_at_ms)",
    "CREATE TABLE IF NOT EXISTS weir_job_records (
        job_id VARCHAR(64) NOT NULL,
        stream VARCHAR(255) NOT NULL,
        shard_id VARCHAR(128) NOT NULL,
        sequence_number VARCHAR(128) NOT NULL,
        events BIGINT NOT NULL,
        valid BIGINT NOT NULL,
        rejected BIGINT NOT NULL,
        state VARCHAR(16) NOT NULL,
        snapshot_id BIGINT,
        error TEXT,
        contract_version VARCHAR(64),
        PRIMARY KEY (job_id, shard_id, sequence_number))",
    "CREATE INDEX IF NOT EXISTS weir_job_records_by_state ON weir_job_records (stream, state)",
    "CREATE TABLE IF NOT EXISTS weir_consumer_batches (
        batch_id VARCHAR(64) PRIMARY KEY,
        consumer_id VARCHAR(255) NOT NULL,
        dataset VARCHAR(255) NOT NULL,
        status VARCHAR(16) NOT NULL,
        started_at_ms BIGINT NOT NULL,
        shards TEXT NOT NULL,
        source_records BIGINT NOT NULL,
        events BIGINT NOT NULL,
        valid BIGINT NOT NULL,
        rejected BIGINT NOT NULL,
        dead_lettered BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        read_ms DOUBLE PRECISION NOT NULL,
        process_ms DOUBLE PRECISION NOT NULL,
        commit_ms DOUBLE PRECISION NOT NULL,
        batch_ms DOUBLE PRECISION NOT NULL,
        lag_ms BIGINT NOT NULL,
        snapshot_id BIGINT,
        error TEXT)",
    "CREATE INDEX IF NOT EXISTS weir_consumer_batches_by_time ON weir_consumer_batches (dataset, started_at_ms)",
    "CREATE TABLE IF NOT EXISTS weir_shard_leases (
        stream VARCHAR(255) NOT NULL,
        shard_id VARCHAR(128) NOT NULL,
        owner VARCHAR(255),
        expires_at_ms BIGINT NOT NULL,
        PRIMARY KEY (stream, shard_id))",
    "CREATE TABLE IF NOT EXISTS weir_consumers (
        stream VARCHAR(255) NOT NULL,
        consumer_id VARCHAR(255) NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        PRIMARY KEY (stream, consumer_id))",
    "CREATE TABLE IF NOT EXISTS weir_idempotency_keys (
        owner VARCHAR(128) NOT NULL,
        idempotency_key VARCHAR(255) NOT NULL,
        request_hash VARCHAR(128) NOT NULL,
        job_id VARCHAR(64) NOT NULL,
        created_at_ms BIGINT NOT NULL,
        PRIMARY KEY (owner, idempotency_key))",
    "CREATE INDEX IF NOT EXISTS weir_idempotency_keys_by_time ON weir_idempotency_keys (created_at_ms)",
];

/// Columns added after their table was first released: `(table, column, type)`. A metastore
/// made by an older Weir gets them on open ([`Metastore::add_missing_columns`]); new ones
/// have them from [`SCHEMA`].
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("weir_jobs", "contract_versions", "TEXT"),
    ("weir_job_records", "contract_version", "VARCHAR(64)"),
];

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Job states: `accepted` (registered) → `published` (every record in Kinesis) → one of the
/// final states. The only place they are written down; Python and the API read them from
/// here (`weir.stream.JOB_STATES`).
pub mod status {
    pub const ACCEPTED: &str = "accepted";
    pub const PUBLISHED: &str = "published";
    pub const COMMITTED: &str = "committed";
    pub const PARTIALLY_REJECTED: &str = "partially_rejected";
    pub const FAILED: &str = "failed";
    /// Every state, in the order a job goes through them.
    pub const ALL: [&str; 5] = [ACCEPTED, PUBLISHED, COMMITTED, PARTIALLY_REJECTED, FAILED];
    /// The states a job ends in.
    pub const FINAL: [&str; 3] = [COMMITTED, PARTIALLY_REJECTED, FAILED];
}

/// What a consumer learned about one Kinesis record of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub job_id: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub events: i64,
    pub valid: i64,
    pub rejected: i64,
}

/// One row of `weir_jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: String,
    pub dataset: String,
    pub status: String,
    pub received: i64,
    pub records: Option<i64>,
    pub valid: Option<i64>,
    pub rejected: Option<i64>,
    pub snapshot_ids: Vec<i64>,
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Versions of the contracts that judged the job's records (`Contract::version`), set
    /// when the job is final: one, unless the contract changed while the job was consumed.
    pub contract_versions: Vec<String>,
}

/// What [`Metastore::prune`] deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Finished jobs (`weir_jobs` rows).
    pub jobs: u64,
    /// Their per-record rows (`weir_job_records`).
    pub job_records: u64,
    /// Consumer batch metrics (`weir_consumer_batches` rows).
    pub batches: u64,
}

/// Rows one prune statement deletes at most, so no write transaction holds the metastore
/// for long while consumers and the API write beside it.
const PRUNE_CHUNK: i64 = 500;

/// Who holds an idempotency key: the job it was claimed for, the digest of the request's
/// body, and when it was claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub job_id: String,
    pub request_hash: String,
    pub created_at_ms: i64,
}

/// Metrics of one consumer batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchMetrics {
    pub batch_id: String,
    pub consumer_id: String,
    pub dataset: String,
    /// `committed`, `dead_lettered`, `fenced` (another consumer took a shard) or `failed`.
    pub status: String,
    pub started_at_ms: i64,
    pub shards: Vec<String>,
    pub source_records: i64,
    pub events: i64,
    pub valid: i64,
    pub rejected: i64,
    pub dead_lettered: i64,
    pub bytes: i64,
    pub attempts: i64,
    pub read_ms: f64,
    pub process_ms: f64,
    pub commit_ms: f64,
    pub batch_ms: f64,
    pub lag_ms: i64,
    pub snapshot_id: Option<i64>,
    pub error: Option<String>,
}

/// Weir's tables in the metastore database.
#[derive(Debug, Clone)]
pub struct Metastore {
    pool: AnyPool,
    postgres: bool,
}

/// A statement with its bound values.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Jobs one ledger statement writes at most.
const JOBS_PER_STATEMENT: usize = 200;
/// Job records one statement writes at most.
const RECORDS_PER_STATEMENT: usize = 100;

fn db(table: &'static str) -> impl Fn(sqlx::Error) -> StreamError {
    move |e| StreamError::metastore(table, e)
}

impl Metastore {
    /// Weir's tables in the lake's metastore, created if missing.
    pub async fn open(lake: &Lake) -> StreamResult<Self> {
        let store = Self { pool: lake.metastore_pool().clone(), postgres: lake.config().is_postgres() };
        for statement in SCHEMA {
            sqlx::query(statement).execute(&store.pool).await.map_err(db("schema"))?;
        }
        store.add_missing_columns().await?;
        Ok(store)
    }

    /// Adds the [`ADDED_COLUMNS`] a metastore made by an older Weir lacks. Another process
    /// may add a column at the same moment: an `ALTER` that fails is fine if the column is
    /// there afterwards.
    async fn add_missing_columns(&self) -> StreamResult<()> {
        for (table, column, kind) in ADDED_COLUMNS {
            let probe = format!("SELECT {column} FROM {table} WHERE 1 = 0");
            if sqlx::query(&probe).fetch_all(&self.pool).await.is_ok() {
                continue;
            }
            let alter = format!("ALTER TABLE {table} ADD COLUMN {column} {kind}");
            if let Err(e) = sqlx::query(&alter).execute(&self.pool).await {
                if sqlx::query(&probe).fetch_all(&self.pool).await.is_err() {
                    return Err(StreamError::metastore(table, e));
                }
            }
        }
        Ok(())
    }

    /// `?` placeholders in PostgreSQL's `$n` form when needed.
    fn sql(&self, text: &str) -> String {
        if !self.postgres {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    fn placeholders(rows: usize, columns: usize) -> String {
        let row = format!("({})", vec!["?"; columns].join(", "));
        vec![row; rows].join(", ")
    }

    /// Registers jobs as `accepted` (before publishing). An existing job id is an error.
    pub async fn jobs_accepted(&self, jobs: &[(&str, &str, i64)]) -> StreamResult<()> {
        let now = now_ms();
        let statement = |chunk: &[(&str, &str, i64)]| {
            self.sql(&format!(
                "INSERT INTO weir_jobs (job_id, dataset, status, received, created_at_ms, updated_at_ms) VALUES {}",
                Self::placeholders(chunk.len(), 6)
            ))
        };
        fn bind<'q>(sql: &'q str, chunk: &[(&str, &str, i64)], now: i64) -> AnyQuery<'q> {
            let mut query = sqlx::query(sql);
            for (job_id, dataset, received) in chunk {
                query = query.bind(job_id.to_string()).bind(dataset.to_string()).bind(status::ACCEPTED).bind(*received).bind(now).bind(now);
            }
            query
        }
        if jobs.len() <= JOBS_PER_STATEMENT {
            // One statement is atomic by itself: no BEGIN/COMMIT round trips that hold the
            // database's write lock while this task waits for its turn on a core.
            let sql = statement(jobs);
            bind(&sql, jobs, now).execute(&self.pool).await.map_err(db(JOBS_TABLE))?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db(JOBS_TABLE))?;
        for chunk in jobs.chunks(JOBS_PER_STATEMENT) {
            let sql = statement(chunk);
            bind(&sql, chunk, now).execute(&mut *tx).await.map_err(db(JOBS_TABLE))?;
        }
        tx.commit().await.map_err(db(JOBS_TABLE))?;
        Ok(())
    }

    /// Kinesis accepted every record of the job: `published`, or final right away if a
    /// consumer already stored them all.
    pub async fn job_published(&self, job_id: &str, records: i64, received: i64) -> StreamResult<()> {
        self.jobs_published(&[(job_id, records, received)]).await
    }

    /// [`Metastore::job_published`] for many jobs `(job id, records, events)`, in one transaction.
    pub async fn jobs_published(&self, jobs: &[(&str, i64, i64)]) -> StreamResult<()> {
        let now = now_ms();
        let statement = |chunk: &[(&str, i64, i64)]| {
            self.sql(&format!(
                "UPDATE weir_jobs SET status = ?, records = v.column2, received = v.column3, updated_at_ms = ? \
                 FROM (VALUES {}) AS v WHERE weir_jobs.job_id = v.column1 AND weir_jobs.status = ?",
                Self::placeholders(chunk.len(), 3)
            ))
        };
        fn bind<'q>(sql: &'q str, chunk: &[(&str, i64, i64)], now: i64) -> AnyQuery<'q> {
            let mut query = sqlx::query(sql).bind(status::PUBLISHED).bind(now);
            for (job_id, records, received) in chunk {
                query = query.bind(job_id.to_string()).bind(*records).bind(*received);
            }
            query.bind(status::ACCEPTED)
        }
        if jobs.len() <= JOBS_PER_STATEMENT {
            let sql = statement(jobs); // atomic alone, as in `jobs_accepted`
            bind(&sql, jobs, now).execute(&self.pool).await.map_err(db(JOBS_TABLE))?;
        } else {
            // One statement per chunk: a write transaction holds the database's single write
            // lock, so it must be short (consumers and other API processes wait for it).
            let mut tx = self.pool.begin().await.map_err(db(JOBS_TABLE))?;
            for chunk in jobs.chunks(JOBS_PER_STATEMENT) {
                let sql = statement(chunk);
                bind(&sql, chunk, now).execute(&mut *tx).await.map_err(db(JOBS_TABLE))?;
            }
            tx.commit().await.map_err(db(JOBS_TABLE))?;
        }
        let ids: Vec<String> = jobs.iter().map(|(id, _, _)| id.to_string()).collect();
        self.finalize_jobs(&ids).await?;
        Ok(())
    }

    /// The job could not be published (or failed for good elsewhere).
    pub async fn job_failed(&self, job_id: &str, error: &str) -> StreamResult<()> {
        let sql = self.sql("UPDATE weir_jobs SET status = ?, error = ?, updated_at_ms = ? WHERE job_id = ? AND status IN (?, ?)");
        sqlx::query(&sql)
            .bind(status::FAILED)
            .bind(error)
            .bind(now_ms())
            .bind(job_id)
            .bind(status::ACCEPTED)
            .bind(status::PUBLISHED)
            .execute(&self.pool)
            .await
            .map_err(db(JOBS_TABLE))?;
        Ok(())
    }

    pub async fn job(&self, job_id: &str) -> StreamResult<Option<Job>> {
        let sql = self.sql(&format!("SELECT {JOB_COLUMNS} FROM weir_jobs WHERE job_id = ?"));
        let row = sqlx::query(&sql).bind(job_id).fetch_optional(&self.pool).await.map_err(db(JOBS_TABLE))?;
        row.as_ref().map(job_from_row).transpose().map_err(db(JOBS_TABLE))
    }

    /// Jobs created at or after `since_ms` (of one dataset, or all), newest first, at most
    /// `limit` of them: what a dashboard or `weir status` lists.
    pub async fn jobs(&self, dataset: Option<&str>, since_ms: i64, limit: i64) -> StreamResult<Vec<Job>> {
        let sql = self.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM weir_jobs WHERE created_at_ms >= ?{} ORDER BY created_at_ms DESC, job_id LIMIT ?",
            if dataset.is_some() { " AND dataset = ?" } else { "" }
        ));
        let mut query = sqlx::query(&sql).bind(since_ms);
        if let Some(dataset) = dataset {
            query = query.bind(dataset);
        }
        let rows = query.bind(limit.max(0)).fetch_all(&self.pool).await.map_err(db(JOBS_TABLE))?;
        rows.iter().map(job_from_row).collect::<Result<_, _>>().map_err(db(JOBS_TABLE))
    }

    /// Claims the idempotency key `key` of API key `owner` for a request (`request_hash`, to
    /// be published as `job_id`), unless a claim made at or after `expired_before_ms` holds it
    /// (older claims are dropped first). Returns the claim that holds the key now: this one
    /// when its job id is `job_id`, else the earlier request's. One transaction, so of
    /// concurrent requests with the same key exactly one gets it.
    pub async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        request_hash: &str,
        job_id: &str,
        expired_before_ms: i64,
    ) -> StreamResult<IdempotencyClaim> {
        let mut tx = self.pool.begin().await.map_err(db(IDEMPOTENCY_TABLE))?;
        let delete = self.sql("DELETE FROM weir_idempotency_keys WHERE owner = ? AND idempotency_key = ? AND created_at_ms < ?");
        sqlx::query(&delete).bind(owner).bind(key).bind(expired_before_ms).execute(&mut *tx).await.map_err(db(IDEMPOTENCY_TABLE))?;
        let insert = self.sql(
            "INSERT INTO weir_idempotency_keys (owner, idempotency_key, request_hash, job_id, created_at_ms) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        );
        sqlx::query(&insert)
            .bind(owner)
            .bind(key)
            .bind(request_hash)
            .bind(job_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db(IDEMPOTENCY_TABLE))?;
        let select = self.sql("SELECT job_id, request_hash, created_at_ms FROM weir_idempotency_keys WHERE owner = ? AND idempotency_key = ?");
        let row = sqlx::query(&select).bind(owner).bind(key).fetch_one(&mut *tx).await.map_err(db(IDEMPOTENCY_TABLE))?;
        tx.commit().await.map_err(db(IDEMPOTENCY_TABLE))?;
        Ok(IdempotencyClaim {
            job_id: row.try_get(0).map_err(db(IDEMPOTENCY_TABLE))?,
            request_hash: row.try_get(1).map_err(db(IDEMPOTENCY_TABLE))?,
            created_at_ms: row.try_get(2).map_err(db(IDEMPOTENCY_TABLE))?,
        })
    }

    /// Moves the claim of `(owner, key)` from job `from_job` (a request that never registered
    /// its job) to `to_job`; false if another request moved or dropped it first.
    pub async fn reclaim_idempotency_key(&self, owner: &str, key: &str, from_job: &str, to_job: &str) -> StreamResult<bool> {
        let sql = self.sql(
            "UPDATE weir_idempotency_keys SET job_id = ?, created_at_ms = ? WHERE owner = ? AND idempotency_key = ? AND job_id = ?",
        );
        let done = sqlx::query(&sql)
            .bind(to_job)
            .bind(now_ms())
            .bind(owner)
            .bind(key)
            .bind(from_job)
            .execute(&self.pool)
            .await
            .map_err(db(IDEMPOTENCY_TABLE))?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops the claim of `(owner, key)` for `job_id`: its request was refused or could not
    /// be published, so a retry must be processed afresh.
    pub async fn release_idempotency_key(&self, owner: &str, key: &str, job_id: &str) -> StreamResult<()> {
        let sql = self.sql("DELETE FROM weir_idempotency_keys WHERE owner = ? AND idempotency_key = ? AND job_id = ?");
        sqlx::query(&sql).bind(owner).bind(key).bind(job_id).execute(&self.pool).await.map_err(db(IDEMPOTENCY_TABLE))?;
        Ok(())
    }

    /// Deletes every claim made before `before_ms`; returns how many.
    pub async fn expire_idempotency_keys(&self, before_ms: i64) -> StreamResult<u64> {
        let sql = self.sql("DELETE FROM weir_idempotency_keys WHERE created_at_ms < ?");
        let done = sqlx::query(&sql).bind(before_ms).execute(&self.pool).await.map_err(db(IDEMPOTENCY_TABLE))?;
        Ok(done.rows_affected())
    }

    /// Records what a batch found in each Kinesis record, and the version of the contract
    /// that judged it, before the batch commits. A record seen before (a replay after a
    /// crash) keeps its first row: the counts are the same.
    pub async fn job_records_pending(&self, stream: &str, contract_version: &str, records: &[JobRecord]) -> StreamResult<()> {
        if records.is_empty() {
            return Ok(()); // a batch of other producers' records only: no job
        }
        let statement = |chunk: &[JobRecord]| {
            self.sql(&format!(
                "INSERT INTO weir_job_records (job_id, stream, shard_id, sequence_number, events, valid, rejected, state, \
                 contract_version) VALUES {} ON CONFLICT DO NOTHING",
                Self::placeholders(chunk.len(), 9)
            ))
        };
        fn bind<'q>(sql: &'q str, chunk: &[JobRecord], stream: &str, contract_version: &str) -> AnyQuery<'q> {
            let mut query = sqlx::query(sql);
            for r in chunk {
                query = query
                    .bind(r.job_id.clone())
                    .bind(stream.to_string())
                    .bind(r.shard_id.clone())
                    .bind(r.sequence_number.clone())
                    .bind(r.events)
                    .bind(r.valid)
                    .bind(r.rejected)
                    .bind("pending")
                    .bind(contract_version.to_string());
            }
            query
        }
        if records.len() <= RECORDS_PER_STATEMENT {
            let sql = statement(records); // atomic alone: no transaction held across awaits
            bind(&sql, records, stream, contract_version).execute(&self.pool).await.map_err(db(JOB_RECORDS_TABLE))?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db(JOB_RECORDS_TABLE))?;
        for chunk in records.chunks(RECORDS_PER_STATEMENT) {
            let sql = statement(chunk);
            bind(&sql, chunk, stream, contract_version).execute(&mut *tx).await.map_err(db(JOB_RECORDS_TABLE))?;
        }
        tx.commit().await.map_err(db(JOB_RECORDS_TABLE))?;
        Ok(())
    }

    /// Marks a batch's records of `stream` stored (`snapshot_id` of the valid table) or
    /// failed (`error`), then finalizes their jobs.
    pub async fn job_records_done(
        &self,
        stream: &str,
        records: &[JobRecord],
        snapshot_id: Option<i64>,
        error: Option<&str>,
    ) -> StreamResult<()> {
        let state = if error.is_some() { status::FAILED } else { status::COMMITTED };
        // Every job of a Kinesis record shares its position: one statement per shard and
        // chunk of positions, not one per job record (short write transactions).
        let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in records {
            by_shard.entry(r.shard_id.as_str()).or_default().push(r.sequence_number.as_str());
        }
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (shard, mut sequences) in by_shard {
            sequences.sort_unstable();
            sequences.dedup();
            groups.extend(sequences.chunks(500).map(|chunk| (shard, chunk.to_vec())));
        }
        let statement = |(shard, chunk): &(&str, Vec<&str>)| {
            let sql = self.sql(&format!(
                "UPDATE weir_job_records SET state = ?, snapshot_id = ?, error = ? \
                 WHERE stream = ? AND state = 'pending' AND shard_id = ? AND sequence_number IN ({})",
                vec!["?"; chunk.len()].join(", ")
            ));
            (sql, shard.to_string(), chunk.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        fn bind<'q>((sql, shard, chunk): &'q (String, String, Vec<String>), state: &'static str, snapshot_id: Option<i64>, error: Option<&str>, stream: &str) -> AnyQuery<'q> {
            let mut query = sqlx::query(sql.as_str()).bind(state).bind(snapshot_id).bind(error.map(str::to_string)).bind(stream.to_string()).bind(shard.clone());
            for sequence in chunk {
                query = query.bind(sequence.clone());
            }
            query
        }
        if let [group] = groups.as_slice() {
            // One shard's records (the usual batch at a low rate): one statement, atomic alone.
            let statement = statement(group);
            bind(&statement, state, snapshot_id, error, stream).execute(&self.pool).await.map_err(db(JOB_RECORDS_TABLE))?;
        } else if !groups.is_empty() {
            let mut tx = self.pool.begin().await.map_err(db(JOB_RECORDS_TABLE))?;
            for group in &groups {
                let statement = statement(group);
                bind(&statement, state, snapshot_id, error, stream).execute(&mut *tx).await.map_err(db(JOB_RECORDS_TABLE))?;
            }
            tx.commit().await.map_err(db(JOB_RECORDS_TABLE))?;
        }
        let mut jobs: Vec<String> = records.iter().map(|r| r.job_id.clone()).collect();
        jobs.sort();
        jobs.dedup();
        self.finalize_jobs(&jobs).await?;
        Ok(())
    }

    /// A dead-letter replay stored `records` of `stream` (`snapshot_id` of the valid table):
    /// their rows, failed when their batch was dead-lettered, take the counts of the replay
    /// and the contract version that judged it, and their jobs, reopened, are finalized
    /// again (a job whose every record is now stored ends `committed` or
    /// `partially_rejected`). Rows not failed are left as they are, so running it twice
    /// changes nothing more. Returns how many rows changed.
    pub async fn job_records_replayed(
        &self,
        stream: &str,
        contract_version: &str,
        records: &[JobRecord],
        snapshot_id: Option<i64>,
    ) -> StreamResult<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        let update = self.sql(
            "UPDATE weir_job_records SET events = ?, valid = ?, rejected = ?, state = ?, snapshot_id = ?, error = NULL, \
             contract_version = ? WHERE stream = ? AND job_id = ? AND shard_id = ? AND sequence_number = ? AND state = ?",
        );
        let reopen = self.sql("UPDATE weir_jobs SET status = ? WHERE job_id = ? AND status = ?");
        let mut tx = self.pool.begin().await.map_err(db(JOB_RECORDS_TABLE))?;
        let mut changed = 0;
        for r in records {
            changed += sqlx::query(&update)
                .bind(r.events)
                .bind(r.valid)
                .bind(r.rejected)
                .bind(status::COMMITTED)
                .bind(snapshot_id)
                .bind(contract_version.to_string())
                .bind(stream.to_string())
                .bind(r.job_id.clone())
                .bind(r.shard_id.clone())
                .bind(r.sequence_number.clone())
                .bind(status::FAILED)
                .execute(&mut *tx)
                .await
                .map_err(db(JOB_RECORDS_TABLE))?
                .rows_affected();
        }
        let mut jobs: Vec<String> = records.iter().map(|r| r.job_id.clone()).collect();
        jobs.sort();
        jobs.dedup();
        for job in &jobs {
            sqlx::query(&reopen)
                .bind(status::PUBLISHED)
                .bind(job.as_str())
                .bind(status::FAILED)
                .execute(&mut *tx)
                .await
                .map_err(db(JOBS_TABLE))?;
        }
        tx.commit().await.map_err(db(JOB_RECORDS_TABLE))?;
        self.finalize_jobs(&jobs).await?;
        Ok(changed)
    }

    /// After a restart: pending records of `stream` that the valid table's checkpoint
    /// (`positions`, shard → sequence number) covers were committed by a consumer that died
    /// before saying so. Returns how many were settled.
    pub async fn settle_records(&self, stream: &str, positions: &BTreeMap<String, String>) -> StreamResult<usize> {
        let sql = self.sql(
            "SELECT job_id, shard_id, sequence_number, events, valid, rejected FROM weir_job_records \
             WHERE stream = ? AND state = 'pending'",
        );
        let rows = sqlx::query(&sql).bind(stream).fetch_all(&self.pool).await.map_err(db(JOB_RECORDS_TABLE))?;
        let mut settled = Vec::new();
        for row in rows {
            let record = JobRecord {
                job_id: row.try_get(0).map_err(db(JOB_RECORDS_TABLE))?,
                shard_id: row.try_get(1).map_err(db(JOB_RECORDS_TABLE))?,
                sequence_number: row.try_get(2).map_err(db(JOB_RECORDS_TABLE))?,
                events: row.try_get(3).map_err(db(JOB_RECORDS_TABLE))?,
                valid: row.try_get(4).map_err(db(JOB_RECORDS_TABLE))?,
                rejected: row.try_get(5).map_err(db(JOB_RECORDS_TABLE))?,
            };
            let covered = positions
                .get(&record.shard_id)
                .is_some_and(|p| compare_sequence_numbers(&record.sequence_number, p).is_le());
            if covered {
                settled.push(record);
            }
        }
        if !settled.is_empty() {
            self.job_records_done(stream, &settled, None, None).await?;
        }
        Ok(settled.len())
    }

    /// Finalizes every open job of `dataset` whose records are all done: heals the gaps where
    /// a process died between marking a job's last record and finalizing the job. Returns
    /// how many moved.
    pub async fn finalize_open_jobs(&self, dataset: &str) -> StreamResult<usize> {
        let sql = self.sql(
            "SELECT job_id FROM weir_jobs WHERE dataset = ? AND status IN ('accepted', 'published') \
             AND records IS NOT NULL",
        );
        let rows = sqlx::query(&sql).bind(dataset).fetch_all(&self.pool).await.map_err(db(JOBS_TABLE))?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(db(JOBS_TABLE))?;
        self.finalize_jobs(&ids).await
    }

    /// Moves jobs whose every record is done to their final state. Returns how many moved.
    pub async fn finalize_jobs(&self, job_ids: &[String]) -> StreamResult<usize> {
        let mut finalized = 0;
        for chunk in job_ids.chunks(200) {
            let sql = self.sql(&format!(
                "SELECT j.job_id, j.records, r.state, r.valid, r.rejected, r.snapshot_id, r.error, r.contract_version \
                 FROM weir_jobs j JOIN weir_job_records r ON r.job_id = j.job_id \
                 WHERE j.job_id IN ({}) AND j.status IN ('accepted', 'published') AND j.records IS NOT NULL \
                 ORDER BY r.shard_id, r.sequence_number",
                vec!["?"; chunk.len()].join(", ")
            ));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let rows = query.fetch_all(&self.pool).await.map_err(db(JOBS_TABLE))?;
            #[derive(Default)]
            struct Tally {
                records: i64,
                done: i64,
                valid: i64,
                rejected: i64,
                failed: bool,
                snapshots: Vec<i64>,
                error: Option<String>,
                contracts: Vec<String>,
            }
            let mut tallies: HashMap<String, Tally> = HashMap::new();
            for row in rows {
                let get = |e| StreamError::metastore(JOBS_TABLE, e);
                let job_id: String = row.try_get(0).map_err(get)?;
                let tally = tallies.entry(job_id).or_default();
                tally.records = row.try_get(1).map_err(get)?;
                let state: String = row.try_get(2).map_err(get)?;
                if state != "pending" {
                    tally.done += 1;
                }
                tally.failed |= state == status::FAILED;
                // Counts of records that were stored; a failed record's events are in the
                // dead-letter table, not in these counts.
                if state == status::COMMITTED {
                    tally.valid += row.try_get::<i64, _>(3).map_err(get)?;
                    tally.rejected += row.try_get::<i64, _>(4).map_err(get)?;
                }
                if let Some(id) = row.try_get::<Option<i64>, _>(5).map_err(get)? {
                    if !tally.snapshots.contains(&id) {
                        tally.snapshots.push(id);
                    }
                }
                if let Some(e) = row.try_get::<Option<String>, _>(6).map_err(get)? {
                    tally.error.get_or_insert(e);
                }
                if let Some(version) = row.try_get::<Option<String>, _>(7).map_err(get)? {
                    if !tally.contracts.contains(&version) {
                        tally.contracts.push(version);
                    }
                }
            }
            let complete: Vec<(String, Tally)> = tallies.into_iter().filter(|(_, t)| t.done == t.records).collect();
            if complete.is_empty() {
                continue;
            }
            let update = self.sql(&format!(
                "UPDATE weir_jobs SET status = v.column2, valid = v.column3, rejected = v.column4, snapshot_ids = v.column5, \
                 error = v.column6, contract_versions = v.column7, updated_at_ms = ? FROM (VALUES {}) AS v \
                 WHERE weir_jobs.job_id = v.column1 AND weir_jobs.status IN ('accepted', 'published')",
                Self::placeholders(complete.len(), 7)
            ));
            let mut query = sqlx::query(&update).bind(now_ms());
            for (job_id, tally) in &complete {
                let state = if tally.failed {
                    status::FAILED
                } else if tally.rejected > 0 {
                    status::PARTIALLY_REJECTED
                } else {
                    status::COMMITTED
                };
                let snapshots = tally.snapshots.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                query = query
                    .bind(job_id.as_str())
                    .bind(state)
                    .bind(tally.valid)
                    .bind(tally.rejected)
                    .bind(Some(snapshots).filter(|s| !s.is_empty()))
                    .bind(tally.error.clone())
                    .bind(Some(tally.contracts.join(",")).filter(|s| !s.is_empty()));
            }
            query.execute(&self.pool).await.map_err(db(JOBS_TABLE))?;
            finalized += complete.len();
        }
        Ok(finalized)
    }

    /// Deletes what the operational tables keep of the time before `before_ms`: jobs in a
    /// final state last updated before it, with their per-record rows, and the metrics of
    /// batches started before it. Open jobs and their records stay whatever their age (a
    /// consumer may still settle them). In chunks of [`PRUNE_CHUNK`] jobs or batches, each
    /// its own short transaction, so a prune never blocks the writers for long and one
    /// interrupted leaves whole jobs.
    pub async fn prune(&self, before_ms: i64) -> StreamResult<PruneReport> {
        let mut report = PruneReport::default();
        let finals = status::FINAL.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        let pick = self.sql(&format!(
            "SELECT job_id FROM weir_jobs WHERE status IN ({finals}) AND updated_at_ms < ? ORDER BY updated_at_ms LIMIT ?"
        ));
        loop {
            let rows = sqlx::query(&pick).bind(before_ms).bind(PRUNE_CHUNK).fetch_all(&self.pool).await.map_err(db(JOBS_TABLE))?;
            let ids: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(db(JOBS_TABLE))?;
            if ids.is_empty() {
                break;
            }
            let list = vec!["?"; ids.len()].join(", ");
            let records = self.sql(&format!("DELETE FROM weir_job_records WHERE job_id IN ({list})"));
            let jobs = self.sql(&format!("DELETE FROM weir_jobs WHERE job_id IN ({list})"));
            let mut tx = self.pool.begin().await.map_err(db(JOBS_TABLE))?;
            let mut query = sqlx::query(&records);
            for id in &ids {
                query = query.bind(id.as_str());
            }
            report.job_records += query.execute(&mut *tx).await.map_err(db(JOB_RECORDS_TABLE))?.rows_affected();
            let mut query = sqlx::query(&jobs);
            for id in &ids {
                query = query.bind(id.as_str());
            }
            report.jobs += query.execute(&mut *tx).await.map_err(db(JOBS_TABLE))?.rows_affected();
            tx.commit().await.map_err(db(JOBS_TABLE))?;
            if (ids.len() as i64) < PRUNE_CHUNK {
                break;
            }
        }
        let batches = self.sql(
            "DELETE FROM weir_consumer_batches WHERE batch_id IN \
             (SELECT batch_id FROM weir_consumer_batches WHERE started_at_ms < ? LIMIT ?)",
        );
        loop {
            let done = sqlx::query(&batches).bind(before_ms).bind(PRUNE_CHUNK).execute(&self.pool).await.map_err(db(BATCHES_TABLE))?;
            report.batches += done.rows_affected();
            if (done.rows_affected() as i64) < PRUNE_CHUNK {
                break;
            }
        }
        Ok(report)
    }

    /// Stores a batch's metrics.
    pub async fn record_batch(&self, m: &BatchMetrics) -> StreamResult<()> {
        let sql = self.sql(&format!(
            "INSERT INTO weir_consumer_batches (batch_id, consumer_id, dataset, status, started_at_ms, shards, \
             source_records, events, valid, rejected, dead_lettered, bytes, attempts, read_ms, process_ms, commit_ms, \
             batch_ms, lag_ms, snapshot_id, error) VALUES {}",
            Self::placeholders(1, 20)
        ));
        sqlx::query(&sql)
            .bind(m.batch_id.as_str())
            .bind(m.consumer_id.as_str())
            .bind(m.dataset.as_str())
            .bind(m.status.as_str())
            .bind(m.started_at_ms)
            .bind(m.shards.join(","))
            .bind(m.source_records)
            .bind(m.events)
            .bind(m.valid)
            .bind(m.rejected)
            .bind(m.dead_lettered)
            .bind(m.bytes)
            .bind(m.attempts)
            .bind(m.read_ms)
            .bind(m.process_ms)
            .bind(m.commit_ms)
            .bind(m.batch_ms)
            .bind(m.lag_ms)
            .bind(m.snapshot_id)
            .bind(m.error.as_deref())
            .execute(&self.pool)
            .await
            .map_err(db(BATCHES_TABLE))?;
        Ok(())
    }

    /// Shard leases: renews this consumer's leases on `stream`, takes free or expired ones up
    /// to a fair share (shards / live consumers, rounded up), and gives back what it holds
    /// beyond its share while another live consumer holds less. Returns the shards it holds.
    /// A consumer that dies stops renewing; its shards are taken over when `ttl_ms` expires.
    pub async fn balance_leases(&self, stream: &str, shards: &[String], consumer_id: &str, ttl_ms: i64) -> StreamResult<Vec<String>> {
        let now = now_ms();
        let until = now + ttl_ms;
        let leases = db(LEASES_TABLE);
        let upsert = self.sql(
            "INSERT INTO weir_consumers (stream, consumer_id, expires_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT (stream, consumer_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
        );
        sqlx::query(&upsert).bind(stream).bind(consumer_id).bind(until).execute(&self.pool).await.map_err(db("weir_consumers"))?;
        let insert = self.sql(
            "INSERT INTO weir_shard_leases (stream, shard_id, owner, expires_at_ms) VALUES (?, ?, NULL, 0) ON CONFLICT DO NOTHING",
        );
        for shard in shards {
            sqlx::query(&insert).bind(stream).bind(shard.as_str()).execute(&self.pool).await.map_err(&leases)?;
        }
        let renew = self.sql("UPDATE weir_shard_leases SET expires_at_ms = ? WHERE stream = ? AND owner = ? AND expires_at_ms >= ?");
        sqlx::query(&renew).bind(until).bind(stream).bind(consumer_id).bind(now).execute(&self.pool).await.map_err(&leases)?;

        let live_sql = self.sql("SELECT COUNT(*) FROM weir_consumers WHERE stream = ? AND expires_at_ms >= ?");
        let live: i64 = sqlx::query(&live_sql)
            .bind(stream)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(db("weir_consumers"))?;
        let fair = shards.len().div_ceil(live.max(1) as usize);
        let read = self.sql("SELECT shard_id, owner, expires_at_ms FROM weir_shard_leases WHERE stream = ?");
        let rows = sqlx::query(&read).bind(stream).fetch_all(&self.pool).await.map_err(&leases)?;
        let mut mine = Vec::new();
        let mut free = Vec::new();
        let mut held_by: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let shard: String = row.try_get(0).map_err(&leases)?;
            if !shards.contains(&shard) {
                continue;
            }
            let owner: Option<String> = row.try_get(1).map_err(&leases)?;
            let expires: i64 = row.try_get(2).map_err(&leases)?;
            match owner {
                Some(owner) if expires >= now && owner == consumer_id => mine.push(shard),
                Some(owner) if expires >= now => *held_by.entry(owner).or_default() += 1,
                _ => free.push(shard),
            }
        }
        let take = self.sql(
            "UPDATE weir_shard_leases SET owner = ?, expires_at_ms = ? \
             WHERE stream = ? AND shard_id = ? AND (owner IS NULL OR expires_at_ms < ?)",
        );
        for shard in free {
            if mine.len() >= fair {
                break;
            }
            let taken = sqlx::query(&take)
                .bind(consumer_id)
                .bind(until)
                .bind(stream)
                .bind(shard.as_str())
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(&leases)?;
            if taken.rows_affected() == 1 {
                tracing::info!(component = "consumer", event = "lease_taken", stream, shard = %shard, consumer_id);
                mine.push(shard);
            }
        }
        let waiting = (live as usize).saturating_sub(held_by.len() + 1) > 0 || held_by.values().any(|&n| n + 1 < fair);
        if mine.len() > fair && waiting {
            let give = self.sql("UPDATE weir_shard_leases SET owner = NULL, expires_at_ms = 0 WHERE stream = ? AND shard_id = ? AND owner = ?");
            mine.sort();
            for shard in mine.split_off(fair) {
                sqlx::query(&give).bind(stream).bind(shard.as_str()).bind(consumer_id).execute(&self.pool).await.map_err(&leases)?;
                tracing::info!(component = "consumer", event = "lease_released", stream, shard = %shard, consumer_id);
            }
        }
        mine.sort();
        Ok(mine)
    }

    /// Takes or renews the lease named `name` under `scope` for `owner` until `ttl_ms` from
    /// now, if it is free, expired or already `owner`'s. Returns whether `owner` holds it.
    /// Leases of scopes that are not stream names (`weir:maintenance`) elect one process for
    /// a job several could do, such as maintaining a table.
    pub async fn take_lease(&self, scope: &str, name: &str, owner: &str, ttl_ms: i64) -> StreamResult<bool> {
        let leases = db(LEASES_TABLE);
        let now = now_ms();
        let insert = self.sql(
            "INSERT INTO weir_shard_leases (stream, shard_id, owner, expires_at_ms) VALUES (?, ?, NULL, 0) ON CONFLICT DO NOTHING",
        );
        sqlx::query(&insert).bind(scope).bind(name).execute(&self.pool).await.map_err(&leases)?;
        let take = self.sql(
            "UPDATE weir_shard_leases SET owner = ?, expires_at_ms = ? \
             WHERE stream = ? AND shard_id = ? AND (owner = ? OR owner IS NULL OR expires_at_ms < ?)",
        );
        let taken = sqlx::query(&take)
            .bind(owner)
            .bind(now + ttl_ms)
            .bind(scope)
            .bind(name)
            .bind(owner)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(&leases)?;
        Ok(taken.rows_affected() == 1)
    }

    /// Extends this consumer's unexpired leases (and its liveness) by `ttl_ms`, during a batch.
    pub async fn renew_leases(&self, stream: &str, consumer_id: &str, ttl_ms: i64) -> StreamResult<()> {
        let now = now_ms();
        let renew = self.sql("UPDATE weir_shard_leases SET expires_at_ms = ? WHERE stream = ? AND owner = ? AND expires_at_ms >= ?");
        sqlx::query(&renew).bind(now + ttl_ms).bind(stream).bind(consumer_id).bind(now).execute(&self.pool).await.map_err(db(LEASES_TABLE))?;
        let alive = self.sql("UPDATE weir_consumers SET expires_at_ms = ? WHERE stream = ? AND consumer_id = ?");
        sqlx::query(&alive).bind(now + ttl_ms).bind(stream).bind(consumer_id).execute(&self.pool).await.map_err(db("weir_consumers"))?;
        Ok(())
    }

    /// Gives back every lease of a consumer that stops, so others take over at once.
    pub async fn release_leases(&self, stream: &str, consumer_id: &str) -> StreamResult<()> {
        let give = self.sql("UPDATE weir_shard_leases SET owner = NULL, expires_at_ms = 0 WHERE stream = ? AND owner = ?");
        sqlx::query(&give).bind(stream).bind(consumer_id).execute(&self.pool).await.map_err(db(LEASES_TABLE))?;
        let gone = self.sql("DELETE FROM weir_consumers WHERE stream = ? AND consumer_id = ?");
        sqlx::query(&gone).bind(stream).bind(consumer_id).execute(&self.pool).await.map_err(db("weir_consumers"))?;
        Ok(())
    }

    /// Consumer batch metrics since `since_ms` (of one dataset, or all), oldest first.
    pub async fn batches(&self, dataset: Option<&str>, since_ms: i64) -> StreamResult<Vec<BatchMetrics>> {
        let sql = self.sql(&format!(
            "SELECT batch_id, consumer_id, dataset, status, started_at_ms, shards, source_records, events, valid, \
             rejected, dead_lettered, bytes, attempts, read_ms, process_ms, commit_ms, batch_ms, lag_ms, snapshot_id, \
             error FROM weir_consumer_batches WHERE started_at_ms >= ?{} ORDER BY started_at_ms",
            if dataset.is_some() { " AND dataset = ?" } else { "" }
        ));
        let mut query = sqlx::query(&sql).bind(since_ms);
        if let Some(dataset) = dataset {
            query = query.bind(dataset);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db(BATCHES_TABLE))?;
        rows.iter()
            .map(|row| -> Result<BatchMetrics, sqlx::Error> {
                let shards: String = row.try_get(5)?;
                Ok(BatchMetrics {
                    batch_id: row.try_get(0)?,
                    consumer_id: row.try_get(1)?,
                    dataset: row.try_get(2)?,
                    status: row.try_get(3)?,
                    started_at_ms: row.try_get(4)?,
                    shards: shards.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                    source_records: row.try_get(6)?,
                    events: row.try_get(7)?,
                    valid: row.try_get(8)?,
                    rejected: row.try_get(9)?,
                    dead_lettered: row.try_get(10)?,
                    bytes: row.try_get(11)?,
                    attempts: row.try_get(12)?,
                    read_ms: row.try_get(13)?,
                    process_ms: row.try_get(14)?,
                    commit_ms: row.try_get(15)?,
                    batch_ms: row.try_get(16)?,
                    lag_ms: row.try_get(17)?,
                    snapshot_id: row.try_get(18)?,
                    error: row.try_get(19)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(db(BATCHES_TABLE))
    }
}

/// The columns of a jobs-table row, in the order [`job_from_row`] reads them.
const JOB_COLUMNS: &str = "job_id, dataset, status, received, records, valid, rejected, snapshot_ids, error, \
                           created_at_ms, updated_at_ms, contract_versions";

fn job_from_row(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let snapshot_ids: Option<String> = row.try_get(7)?;
    Ok(Job {
        job_id: row.try_get(0)?,
        dataset: row.try_get(1)?,
        status: row.try_get(2)?,
        received: row.try_get(3)?,
        records: row.try_get(4)?,
        valid: row.try_get(5)?,
        rejected: row.try_get(6)?,
        snapshot_ids: snapshot_ids
            .map(|s| s.split(',').filter_map(|id| id.trim().parse().ok()).collect())
            .unwrap_or_default(),
        error: row.try_get(8)?,
        created_at_ms: row.try_get(9)?,
        updated_at_ms: row.try_get(10)?,
        contract_versions: row
            .try_get::<Option<String>, _>(11)?
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}
