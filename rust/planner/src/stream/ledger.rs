//! [`JobLedger`]: the jobs table's writes from concurrent publishers, group-committed.
//!
//! An API process publishes many small jobs at once; writing each job's `accepted` and
//! `published` rows in its own transaction serialises them on the metastore (SQLite allows
//! one writer). The ledger queues the writes of every concurrent caller and applies all the
//! waiting ones of a kind in one transaction, then answers each caller: the same
//! acknowledge-after-durable rule as the producer's PutRecords, for the jobs table.

use tokio::sync::{mpsc, oneshot};

use super::error::{StreamError, StreamResult};
use super::metastore::Metastore;

enum JobWrite {
    Accepted { job_id: String, dataset: String, received: i64 },
    Published { job_id: String, records: i64, received: i64 },
    Failed { job_id: String, error: String },
}

type Pending = (JobWrite, oneshot::Sender<Result<(), String>>);

/// Group-committing writer of job states; cheap to clone.
#[derive(Clone)]
pub struct JobLedger {
    queue: mpsc::Sender<Pending>,
}

/// Writes one flush applies at most.
const MAX_WRITES_PER_FLUSH: usize = 2000;

impl JobLedger {
    /// Starts the writer on the current Tokio runtime.
    pub fn start(metastore: Metastore) -> Self {
        let (queue, pending) = mpsc::channel(16 * 1024);
        tokio::spawn(write(metastore, pending));
        Self { queue }
    }

    async fn submit(&self, write: JobWrite) -> StreamResult<()> {
        let (reply, done) = oneshot::channel();
        let stopped = || StreamError::Internal("the job ledger's writer stopped".into());
        self.queue.send((write, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?.map_err(|message| StreamError::Metastore { table: "weir_jobs", message })
    }

    /// Registers a job before its records are published.
    pub async fn accepted(&self, job_id: &str, dataset: &str, received: i64) -> StreamResult<()> {
        self.submit(JobWrite::Accepted { job_id: job_id.into(), dataset: dataset.into(), received }).await
    }

    /// Kinesis accepted every record of the job.
    pub async fn published(&self, job_id: &str, records: i64, received: i64) -> StreamResult<()> {
        self.submit(JobWrite::Published { job_id: job_id.into(), records, received }).await
    }

    /// The job could not be published.
    pub async fn failed(&self, job_id: &str, error: &str) -> StreamResult<()> {
        self.submit(JobWrite::Failed { job_id: job_id.into(), error: error.into() }).await
    }
}

async fn write(metastore: Metastore, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_FLUSH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (mut accepted, mut published, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for (write, reply) in batch {
            match write {
                JobWrite::Accepted { job_id, dataset, received } => accepted.push(((job_id, dataset, received), reply)),
                JobWrite::Published { job_id, records, received } => published.push(((job_id, records, received), reply)),
                JobWrite::Failed { job_id, error } => failed.push(((job_id, error), reply)),
            }
        }
        if !accepted.is_empty() {
            let rows: Vec<(&str, &str, i64)> = accepted.iter().map(|((j, d, r), _)| (j.as_str(), d.as_str(), *r)).collect();
            let outcome = metastore.jobs_accepted(&rows).await.map_err(|e| e.to_string());
            for (_, reply) in accepted {
                let _ = reply.send(outcome.clone());
            }
        }
        if !published.is_empty() {
            let rows: Vec<(&str, i64, i64)> = published.iter().map(|((j, n, r), _)| (j.as_str(), *n, *r)).collect();
            let outcome = metastore.jobs_published(&rows).await.map_err(|e| e.to_string());
            for (_, reply) in published {
                let _ = reply.send(outcome.clone());
            }
        }
        for ((job_id, error), reply) in failed {
            let _ = reply.send(metastore.job_failed(&job_id, &error).await.map_err(|e| e.to_string()));
        }
    }
}
