//! Table maintenance: compaction of small files per partition and snapshot expiry.
//!
//! Continuous ingestion commits about once a second, which leaves thousands of small files
//! (and manifests) a day; queries slow down with every one. [`Lake::compact`] rewrites the
//! small files of each partition into few large ones, one "replace" snapshot per partition
//! (see [`super::commit`]): rows appended by other writers meanwhile are kept, and a file
//! compacted twice is never committed twice. [`Lake::expire_snapshots`] drops old snapshots
//! (keeping the newest `retain_last`) and deletes the files only they referenced.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use iceberg::spec::{DataContentType, ManifestEntryRef, Struct};
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use super::catalog::Lake;
use super::commit::{commit_snapshot, commit_turn, Change, Committed};
use super::error::{IcebergContext, LakeError, LakeResult};
use super::inspect::live_entries;
use super::write::{conform_batches, table_arrow_schema, write_data_files};

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Files smaller than this are candidates (default: 3/4 of the target file size).
    pub small_file_bytes: Option<u64>,
    /// A partition is compacted only when it has at least this many small files (default 2).
    pub min_files: usize,
    /// Size tiers: when set, only files within this factor of each other's size are
    /// compacted together (`min_files` of them per tier), so a large compacted file is not
    /// rewritten each time a few small ones arrive. `None`: all small files of a partition.
    pub tier_factor: Option<u64>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self { small_file_bytes: None, min_files: 2, tier_factor: None }
    }
}

/// The size tier of a file: files in one tier are within `factor` of each other's size.
fn size_tier(bytes: u64, factor: u64) -> u32 {
    let factor = factor.max(2);
    let mut tier = 0;
    let mut bound = 64 * 1024; // files up to 64 KiB are one tier
    while bytes > bound && tier < 64 {
        bound = bound.saturating_mul(factor);
        tier += 1;
    }
    tier
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactReport {
    pub table: String,
    pub partitions_compacted: usize,
    /// Partitions skipped because another compaction replaced their files first.
    pub partitions_superseded: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub records_rewritten: u64,
    pub snapshot_ids: Vec<i64>,
    pub commit_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct ExpireOptions {
    /// Snapshots committed before this (ms since the epoch) may be expired.
    pub older_than_ms: i64,
    /// The newest snapshots always kept (at least 1).
    pub retain_last: usize,
    /// Delete data and metadata files that only expired snapshots referenced.
    pub delete_files: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpireReport {
    pub table: String,
    pub snapshots_expired: usize,
    pub snapshots_kept: usize,
    pub files_deleted: usize,
}

impl Lake {
    /// Compacts the small data files of every partition of `name` that has at least
    /// `min_files` of them. Row counts are checked before anything is committed.
    pub async fn compact(&self, name: &str, options: &CompactOptions) -> LakeResult<CompactReport> {
        let mut report = CompactReport { table: name.to_string(), ..Default::default() };
        let table = self.load_table(name).await?;
        let Some(snapshot) = table.metadata().current_snapshot().cloned() else {
            return Ok(report);
        };
        let small = options.small_file_bytes.unwrap_or(self.config().target_file_size_bytes as u64 * 3 / 4);
        let mut groups: BTreeMap<String, (Struct, Vec<ManifestEntryRef>)> = BTreeMap::new();
        for entry in live_entries(&table, name, &snapshot).await? {
            if entry.content_type() == DataContentType::Data && entry.file_size_in_bytes() < small {
                let partition = entry.data_file().partition().clone();
                let tier = options.tier_factor.map(|f| size_tier(entry.file_size_in_bytes(), f));
                groups.entry(format!("{partition:?}/{tier:?}")).or_insert_with(|| (partition, Vec::new())).1.push(entry);
            }
        }
        groups.retain(|_, (_, entries)| entries.len() >= options.min_files.max(2));
        if groups.is_empty() {
            return Ok(report);
        }
        // One scan plan for the snapshot; each partition takes its files from it.
        let all_tasks: Vec<_> = table
            .scan()
            .snapshot_id(snapshot.snapshot_id())
            .select_all()
            .build()
            .context(name, "cannot plan the compaction scan")?
            .plan_files()
            .await
            .context(name, "cannot plan the compaction scan")?
            .try_collect()
            .await
            .context(name, "cannot plan the compaction scan")?;
        let target = table_arrow_schema(&table, name)?;
        for (_, (_, entries)) in groups {
            let paths: HashSet<String> = entries.iter().map(|e| e.file_path().to_string()).collect();
            let expected: u64 = entries.iter().map(|e| e.record_count()).sum();
            let tasks: Vec<_> = all_tasks.iter().filter(|t| paths.contains(&t.data_file_path)).cloned().collect();
            let stream = table
                .reader_builder()
                .build()
                .read(Box::pin(futures::stream::iter(tasks.into_iter().map(Ok))))
                .context(name, "cannot read files to compact")?
                .stream();
            let batches: Vec<_> = stream.try_collect().await.context(name, "cannot read files to compact")?;
            let read: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            if read != expected {
                return Err(LakeError::Internal(format!(
                    "{name}: compaction read {read} rows from {} files whose manifests list {expected}; nothing committed",
                    paths.len()
                )));
            }
            let Some(first) = batches.first() else { continue };
            let batches = conform_batches(name, &target, &first.schema(), &batches, 0)?;
            let added = write_data_files(&table, name, batches, self.config()).await?;
            let written: u64 = added.iter().map(|f| f.record_count()).sum();
            if written != expected {
                return Err(LakeError::Internal(format!(
                    "{name}: compaction wrote {written} rows for {expected}; nothing committed"
                )));
            }
            let properties = HashMap::from([("weir.maintenance".to_string(), "compaction".to_string())]);
            match commit_snapshot(self, name, Change::Replace { removed: &paths, added: &added }, None, &properties).await? {
                Committed::Snapshot { snapshot_id, attempts } => {
                    report.partitions_compacted += 1;
                    report.files_removed += paths.len();
                    report.files_added += added.len();
                    report.records_rewritten += expected;
                    report.snapshot_ids.push(snapshot_id);
                    report.commit_attempts += attempts;
                }
                Committed::Superseded => {
                    report.partitions_superseded += 1;
                    for file in &added {
                        let _ = table.file_io().delete(file.file_path()).await;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Merges the manifests of the current snapshot into one when it has at least `at` of
    /// them (every fast append adds one, so a table committed every second gains 3,600 an
    /// hour): a "replace" snapshot with the same files. Returns its id, if one was committed.
    pub async fn merge_manifests(&self, name: &str, at: usize) -> LakeResult<Option<i64>> {
        let table = self.load_table(name).await?;
        let Some(snapshot) = table.metadata().current_snapshot().cloned() else { return Ok(None) };
        let list = table.manifest_list_reader(&snapshot).load().await.context(name, "cannot read the manifest list")?;
        if list.entries().len() < at.max(2) {
            return Ok(None);
        }
        let properties = HashMap::from([("weir.maintenance".to_string(), "merge-manifests".to_string())]);
        let nothing = HashSet::new();
        match commit_snapshot(self, name, Change::Replace { removed: &nothing, added: &[] }, None, &properties).await? {
            Committed::Snapshot { snapshot_id, .. } => Ok(Some(snapshot_id)),
            Committed::Superseded => Ok(None),
        }
    }

    /// Expires the snapshots `ids` (those still there, never the current one), then deletes
    /// the files that only they referenced. The commit retries on a race like any other.
    pub async fn expire_snapshot_ids(&self, name: &str, ids: &[i64]) -> LakeResult<ExpireReport> {
        let turn = commit_turn(self, name).await;
        let table = self.load_table(name).await?;
        let current = table.metadata().current_snapshot_id();
        let ids: Vec<i64> = ids.iter().copied().filter(|id| Some(*id) != current).collect();
        let before: HashSet<i64> = table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
        let mut report = ExpireReport { table: name.to_string(), snapshots_kept: before.len(), ..Default::default() };
        if ids.is_empty() {
            return Ok(report);
        }
        let tx = Transaction::new(&table);
        let tx = tx.expire_snapshots().expire_snapshot_ids(ids).apply(tx).context(name, "cannot prepare snapshot expiry")?;
        let updated = tx.commit(self.catalog().as_ref()).await.context(name, "cannot expire snapshots")?;
        drop(turn);
        self.finish_expiry(name, &table, &updated, before, true, &mut report).await?;
        Ok(report)
    }

    /// Expires snapshots older than `older_than_ms`, always keeping the newest
    /// `retain_last`, then (optionally) deletes files no kept snapshot references.
    pub async fn expire_snapshots(&self, name: &str, options: &ExpireOptions) -> LakeResult<ExpireReport> {
        let turn = commit_turn(self, name).await;
        let table = self.load_table(name).await?;
        let before: HashSet<i64> = table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
        let tx = Transaction::new(&table);
        let action = tx
            .expire_snapshots()
            .expire_older_than_ms(options.older_than_ms)
            .retain_last(options.retain_last.max(1));
        let tx = action.apply(tx).context(name, "cannot prepare snapshot expiry")?;
        let updated = tx.commit(self.catalog().as_ref()).await.context(name, "cannot expire snapshots")?;
        drop(turn);
        let mut report = ExpireReport { table: name.to_string(), ..Default::default() };
        self.finish_expiry(name, &table, &updated, before, options.delete_files, &mut report).await?;
        Ok(report)
    }

    /// After an expiry commit: counts what went, deletes (optionally) the files only expired
    /// snapshots referenced, and writes the audit event.
    async fn finish_expiry(
        &self,
        name: &str,
        table: &iceberg::table::Table,
        updated: &iceberg::table::Table,
        before: HashSet<i64>,
        delete_files: bool,
        report: &mut ExpireReport,
    ) -> LakeResult<()> {
        let kept: HashSet<i64> = updated.metadata().snapshots().map(|s| s.snapshot_id()).collect();
        let expired: Vec<i64> = before.difference(&kept).copied().collect();
        report.snapshots_expired = expired.len();
        report.snapshots_kept = kept.len();
        if delete_files && !expired.is_empty() {
            let kept_files = self.referenced_files(updated, name, updated.metadata().snapshots().cloned().collect()).await?;
            let expired_snapshots = expired.iter().filter_map(|id| table.metadata().snapshot_by_id(*id).cloned()).collect();
            let expired_files = self.referenced_files(table, name, expired_snapshots).await?;
            for path in expired_files.difference(&kept_files) {
                if table.file_io().delete(path).await.is_ok() {
                    report.files_deleted += 1;
                }
                self.forget(path);
            }
        }
        tracing::info!(
            target: "weir::audit",
            component = "lake",
            event = "snapshots_expired",
            table = %name,
            expired = report.snapshots_expired,
            kept = report.snapshots_kept,
            files_deleted = report.files_deleted,
        );
        Ok(())
    }

    /// Every file the given snapshots reference: manifest lists, manifests, and the data
    /// files live in them. Manifests shared between snapshots are read once, and what a
    /// manifest list or manifest holds is remembered (they never change), so maintenance
    /// that runs every minute reads only the files committed since its last run.
    pub(crate) async fn referenced_files(
        &self,
        table: &iceberg::table::Table,
        name: &str,
        snapshots: Vec<iceberg::spec::SnapshotRef>,
    ) -> LakeResult<HashSet<String>> {
        let mut files = HashSet::new();
        let mut manifests_seen: HashSet<String> = HashSet::new();
        let mut to_read: HashMap<String, iceberg::spec::ManifestFile> = HashMap::new();
        for snapshot in &snapshots {
            let list_path = snapshot.manifest_list().to_string();
            files.insert(list_path.clone());
            if let Some(manifests) = self.remembered(&list_path) {
                if manifests.iter().all(|m| self.remembered(m).is_some()) {
                    manifests_seen.extend(manifests.iter().cloned());
                    continue;
                }
            }
            let list = table.manifest_list_reader(snapshot).load().await.context(name, "cannot read a manifest list")?;
            let entries: Vec<_> = list.consume_entries().into_iter().collect();
            self.remember(list_path, entries.iter().map(|m| m.manifest_path.clone()).collect());
            for manifest in entries {
                manifests_seen.insert(manifest.manifest_path.clone());
                if self.remembered(&manifest.manifest_path).is_none() {
                    to_read.entry(manifest.manifest_path.clone()).or_insert(manifest);
                }
            }
        }
        for (path, manifest) in to_read {
            let loaded = manifest.load_manifest(table.file_io()).await.context(name, "cannot read a manifest")?;
            self.remember(path, loaded.entries().iter().filter(|e| e.is_alive()).map(|e| e.file_path().to_string()).collect());
        }
        for path in manifests_seen {
            files.extend(self.remembered(&path).unwrap_or_default().iter().cloned());
            files.insert(path);
        }
        Ok(files)
    }
}
