//! Maintenance that runs itself: a consumer starts the lake's maintenance policy
//! ([`Lake::maintain`]) on its dataset's tables in the background, every
//! `[lake.maintenance] interval_seconds`, so a table committed every second keeps flat
//! commits and bounded metadata without anyone scheduling `weir maintain`.
//!
//! Of several consumers of one dataset, one maintains each table at a time: the one that
//! holds the table's lease in the metastore (scope [`MAINTENANCE_SCOPE`], lasting two
//! intervals, so a dead holder is replaced). The run is a spawned task: the consumer's
//! batches and commits never wait for it, and its errors are logged, never raised; its
//! commits race the consumer's like any writer's (compare-and-swap, retries).
//!
//! At most once an hour a run also prunes the metastore's operational tables
//! ([`Metastore::prune`]: finished jobs and batch metrics older than
//! `job_retention_days`), under the lease [`OPS_TABLES_LEASE`], so one consumer of the
//! metastore does it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::metastore::Metastore;
use crate::lake::{Lake, MaintenancePolicy};

/// Lease scope under which one process per table runs maintenance.
pub const MAINTENANCE_SCOPE: &str = "weir:maintenance";
/// The lease (in [`MAINTENANCE_SCOPE`]) under which one process prunes the metastore.
pub const OPS_TABLES_LEASE: &str = "weir:operational-tables";
/// How often a consumer prunes the operational tables.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Starts maintenance runs for some tables, at most one at a time.
pub struct Maintainer {
    lake: Arc<Lake>,
    metastore: Metastore,
    tables: Vec<String>,
    owner: String,
    policy: MaintenancePolicy,
    running: Option<JoinHandle<()>>,
    last_started: Option<Instant>,
    last_pruned: Option<Instant>,
}

impl Maintainer {
    pub fn new(lake: Arc<Lake>, metastore: Metastore, tables: Vec<String>, owner: String) -> Self {
        let policy = lake.config().maintenance.clone();
        Self { lake, metastore, tables, owner, policy, running: None, last_started: None, last_pruned: None }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.policy.interval_seconds.max(1))
    }

    /// Starts a run in the background when the interval has passed since the last one
    /// started and that one is finished. Cheap when there is nothing to do.
    pub fn poll(&mut self) {
        if !self.policy.enabled || self.running.as_ref().is_some_and(|run| !run.is_finished()) {
            return;
        }
        if self.last_started.is_some_and(|at| at.elapsed() < self.interval()) {
            return;
        }
        self.last_started = Some(Instant::now());
        let (lake, metastore) = (self.lake.clone(), self.metastore.clone());
        let (tables, owner, policy) = (self.tables.clone(), self.owner.clone(), self.policy.clone());
        let ttl_ms = 2 * self.interval().as_millis() as i64;
        let prune = self.last_pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if prune {
            self.last_pruned = Some(Instant::now());
        }
        let retention_ms = (policy.job_retention_days as i64).saturating_mul(86_400_000);
        self.running = Some(tokio::spawn(async move {
            for table in tables {
                match metastore.take_lease(MAINTENANCE_SCOPE, &table, &owner, ttl_ms).await {
                    Ok(true) => {}
                    Ok(false) => continue, // another process maintains it
                    Err(e) => {
                        tracing::warn!(component = "maintenance", event = "lease_failed", table = %table, error = %e);
                        continue;
                    }
                }
                if let Err(e) = lake.maintain(&table, &policy).await {
                    tracing::warn!(component = "maintenance", event = "maintenance_failed", table = %table, error = %e);
                }
            }
            if prune && metastore.take_lease(MAINTENANCE_SCOPE, OPS_TABLES_LEASE, &owner, PRUNE_EVERY.as_millis() as i64).await.unwrap_or(false) {
                match metastore.prune(super::metastore::now_ms() - retention_ms).await {
                    Ok(report) => tracing::info!(component = "maintenance", event = "operational_tables_pruned",
                        jobs = report.jobs, job_records = report.job_records, batches = report.batches),
                    Err(e) => tracing::warn!(component = "maintenance", event = "prune_failed", error = %e),
                }
            }
        }));
    }

    /// Stops a run in progress (it is safe to interrupt: see `lake::policy`).
    pub async fn stop(&mut self) {
        if let Some(run) = self.running.take() {
            run.abort();
            let _ = run.await;
        }
    }
}
