//! The maintenance policy: what keeps a table committed every second small and its commits
//! flat for months. [`Lake::maintain`] runs it once on one table; consumers run it in the
//! background every `interval_seconds` (see `stream::maintainer`), `weir maintain` on
//! demand. In order:
//!
//! 1. the table's metadata-log length (`write.metadata.previous-versions-max`) is set if it
//!    differs from the policy's (older tables);
//! 2. small files are compacted per partition in size tiers ([`CompactOptions::tier_factor`]),
//!    which also merges the snapshot's manifests into one;
//! 3. otherwise, manifests are merged once there are `merge_manifests_at` of them;
//! 4. snapshots are expired by [`snapshots_to_expire`]: every snapshot of the time-travel
//!    window (the newest `max_snapshots` of them at most), then one per hour for
//!    `history_hours`; the current snapshot, tagged or branched ones and the chain back to the
//!    newest consumer checkpoint always stay; files only expired snapshots used are deleted;
//! 5. orphan files older than `orphan_age_hours` are deleted, and metadata files that fell
//!    out of the metadata log like snapshots: once older than the window (or
//!    `orphan_age_hours`, if shorter) or beyond the newest `max_snapshots` of them, as
//!    readers such as DuckDB's `iceberg_scan` pin a metadata file for as long as a query or
//!    a dbt run takes.
//!
//! Every step commits with compare-and-swap and retries like any writer, so it never blocks
//! or fails a consumer's commit; a step that loses (a compaction superseded) is skipped and
//! the next run does it. A crash between steps, or inside one, leaves the table readable: at
//! worst files no snapshot references, which step 5 removes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};


use super::catalog::Lake;
use super::checkpoint::CHECKPOINT_PROPERTY;
use super::commit::PREVIOUS_VERSIONS_PROPERTY;
use super::config::MaintenancePolicy;
use super::error::LakeResult;
use super::maintain::{CompactOptions, CompactReport, ExpireReport};
use super::orphans::{OrphanReport, SupersededMetadata};

/// Compacted files grow in tiers of this factor (see [`CompactOptions::tier_factor`]).
const TIER_FACTOR: u64 = 4;

/// What one run of the policy on one table did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenanceReport {
    pub table: String,
    pub seconds: f64,
    /// The metadata-log properties were set on this run.
    pub properties_set: bool,
    pub compaction: CompactReport,
    /// The id of the manifest-merging snapshot, if one was committed.
    pub manifests_merged: Option<i64>,
    pub expiry: ExpireReport,
    pub orphans: OrphanReport,
}

/// A snapshot as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotAge {
    pub snapshot_id: i64,
    pub timestamp_ms: i64,
    pub sequence_number: i64,
}

/// The snapshots `policy` expires at `now_ms`, given every snapshot of a table and the ones
/// that must stay (`protected`, which count towards the window's cap). Newest first: every
/// snapshot of the window is kept until `max_snapshots` are; every other snapshot younger than window + history is kept if it
/// is the newest kept one of its hour; the rest go.
pub fn snapshots_to_expire(
    snapshots: &[SnapshotAge],
    protected: &HashSet<i64>,
    policy: &MaintenancePolicy,
    now_ms: i64,
) -> Vec<i64> {
    const HOUR_MS: i64 = 3_600_000;
    let window_ms = policy.snapshot_window_minutes as i64 * 60_000;
    let history_ms = window_ms + policy.history_hours as i64 * HOUR_MS;
    let mut newest_first: Vec<&SnapshotAge> = snapshots.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse((s.timestamp_ms, s.sequence_number)));
    let mut in_window = 0usize;
    let mut hours_kept: HashSet<i64> = HashSet::new();
    let mut expired = Vec::new();
    for snapshot in newest_first {
        let age = now_ms - snapshot.timestamp_ms;
        let hour = snapshot.timestamp_ms.div_euclid(HOUR_MS);
        let keep = if protected.contains(&snapshot.snapshot_id) {
            in_window += usize::from(age <= window_ms);
            true
        } else if age <= window_ms && in_window < policy.max_snapshots {
            in_window += 1;
            true
        } else {
            age <= history_ms && !hours_kept.contains(&hour)
        };
        if keep {
            hours_kept.insert(hour);
        } else {
            expired.push(snapshot.snapshot_id);
        }
    }
    expired
}

/// Snapshots no policy may expire: the current one, those a branch or tag points at, and
/// the chain from the current snapshot back to the newest one with a consumer checkpoint
/// (readers walk that chain to find it).
fn protected_snapshots(metadata: &iceberg::spec::TableMetadata) -> HashSet<i64> {
    // iceberg-rust has no accessor for all refs; the serialised metadata lists them.
    let mut protected: HashSet<i64> = serde_json::to_value(metadata)
        .ok()
        .and_then(|m| m.get("refs").and_then(|r| r.as_object()).cloned())
        .into_iter()
        .flat_map(|refs| refs.into_iter().filter_map(|(_, r)| r.get("snapshot-id").and_then(|id| id.as_i64())).collect::<Vec<_>>())
        .collect();
    let mut snapshot = metadata.current_snapshot().cloned();
    while let Some(current) = snapshot {
        protected.insert(current.snapshot_id());
        if current.summary().additional_properties.contains_key(CHECKPOINT_PROPERTY) {
            break;
        }
        snapshot = current.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id).cloned());
    }
    protected
}

impl Lake {
    /// Runs the maintenance policy once on table `name` (see the module documentation).
    pub async fn maintain(&self, name: &str, policy: &MaintenancePolicy) -> LakeResult<MaintenanceReport> {
        let started = Instant::now();
        let mut report = MaintenanceReport { table: name.to_string(), ..Default::default() };
        report.properties_set = self.set_metadata_log_properties(name, policy).await?;

        let small = self.config().target_file_size_bytes as u64 * 3 / 4;
        let compact = CompactOptions {
            small_file_bytes: Some(small),
            min_files: policy.compact_min_files,
            tier_factor: Some(TIER_FACTOR),
        };
        report.compaction = self.compact(name, &compact).await?;
        if report.compaction.snapshot_ids.is_empty() {
            report.manifests_merged = self.merge_manifests(name, policy.merge_manifests_at).await?;
        }

        let table = self.load_table(name).await?;
        let metadata = table.metadata();
        let ages: Vec<SnapshotAge> = metadata
            .snapshots()
            .map(|s| SnapshotAge { snapshot_id: s.snapshot_id(), timestamp_ms: s.timestamp_ms(), sequence_number: s.sequence_number() })
            .collect();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let expired = snapshots_to_expire(&ages, &protected_snapshots(metadata), policy, now_ms);
        report.expiry = self.expire_snapshot_ids(name, &expired).await?;

        let orphan_age = Duration::from_secs(policy.orphan_age_hours.saturating_mul(3600));
        let superseded = SupersededMetadata {
            min_age: Duration::from_secs(policy.snapshot_window_minutes.saturating_mul(60)).min(orphan_age),
            keep_newest: policy.max_snapshots,
        };
        report.orphans = self.delete_orphan_files(name, orphan_age, superseded).await?;
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            target: "weir::audit",
            component = "lake",
            event = "maintained",
            table = %name,
            seconds = report.seconds,
            files_compacted = report.compaction.files_removed,
            manifests_merged = report.manifests_merged.is_some(),
            snapshots_expired = report.expiry.snapshots_expired,
            snapshots_kept = report.expiry.snapshots_kept,
            files_deleted = report.expiry.files_deleted,
            orphans_deleted = report.orphans.orphans_deleted,
        );
        Ok(report)
    }

    /// Sets `write.metadata.previous-versions-max` where it differs from the policy (tables
    /// made before Weir set it). Returns whether anything was committed.
    async fn set_metadata_log_properties(&self, name: &str, policy: &MaintenancePolicy) -> LakeResult<bool> {
        let wanted = policy.metadata_versions.to_string();
        self.update_properties(name, |metadata| {
            (metadata.properties().get(PREVIOUS_VERSIONS_PROPERTY) != Some(&wanted))
                .then(|| HashMap::from([(PREVIOUS_VERSIONS_PROPERTY.to_string(), wanted.clone())]))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn at(id: i64, minutes_ago: i64, now: i64) -> SnapshotAge {
        SnapshotAge { snapshot_id: id, timestamp_ms: now - minutes_ago * MIN, sequence_number: id }
    }

    #[test]
    fn the_window_stays_and_older_snapshots_thin_to_one_an_hour() {
        let now = 1_000 * HOUR; // on an hour boundary
        let policy = MaintenancePolicy { snapshot_window_minutes: 15, max_snapshots: 1000, history_hours: 3, ..Default::default() };
        // One snapshot a minute for five hours: ids count down from the newest (0).
        let snapshots: Vec<_> = (0..300).map(|m| at(m, m, now)).collect();
        let expired: HashSet<i64> = snapshots_to_expire(&snapshots, &HashSet::new(), &policy, now).into_iter().collect();
        let kept: Vec<i64> = (0..300).filter(|id| !expired.contains(id)).collect();
        // Minutes 0..=15 are in the window (minutes 1..=60 ago are the hour before `now`, so
        // that hour needs no other); the next hours keep their newest (61, 121, 181); the
        // window plus three hours ends 195 minutes ago, so nothing older stays.
        assert_eq!(kept, (0..=15).chain([61, 121, 181]).collect::<Vec<_>>());
    }

    #[test]
    fn the_cap_bounds_the_window_and_protected_snapshots_stay() {
        let now = 1_000 * HOUR;
        let policy = MaintenancePolicy { snapshot_window_minutes: 15, max_snapshots: 5, history_hours: 0, ..Default::default() };
        let snapshots: Vec<_> = (0..15).map(|m| at(m, m, now)).collect();
        let protected = HashSet::from([12]);
        let expired = snapshots_to_expire(&snapshots, &protected, &policy, now);
        let kept: Vec<i64> = (0..15).filter(|id| !expired.contains(id)).collect();
        assert_eq!(kept, vec![0, 1, 2, 3, 4, 12]);
    }
}
