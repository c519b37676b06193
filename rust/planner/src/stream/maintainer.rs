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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::metastore::Metastore;
use crate::lake::{Lake, MaintenancePolicy};

/// Lease scope under which one process per table runs maintenance.
pub const MAINTENANCE_SCOPE: &str = "weir:maintenance";

/// Starts maintenance runs for some tables, at most one at a time.
pub struct Maintainer {
    lake: Arc<Lake>,
    metastore: Metastore,
    tables: Vec<String>,
    owner: String,
    policy: MaintenancePolicy,
    running: Option<JoinHandle<()>>,
    last_started: Option<Instant>,
}

impl Maintainer {
    pub fn new(lake: Arc<Lake>, metastore: Metastore, tables: Vec<String>, owner: String) -> Self {
        let policy = lake.config().maintenance.clone();
        Self { lake, metastore, tables, owner, policy, running: None, last_started: None }
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
