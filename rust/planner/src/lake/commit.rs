//! Weir's own snapshot commit, used by every write: appends (with an optional fenced
//! checkpoint advance), overwrites and compaction's replace. iceberg-rust 0.10 can append but cannot
//! rewrite files, and its retry re-applies a snapshot summary fixed before the race, which
//! would carry a stale checkpoint; so Weir writes the snapshot itself and swaps the catalog
//! pointer with the same compare-and-swap the SQL catalog uses. Each attempt starts from the
//! table as it is then: the checkpoint is merged with the winner's, the fence is checked
//! against it, and files appended meanwhile are kept.
//!
//! * Append: one new manifest with the added files, plus every manifest of the parent (as
//!   Iceberg's fast append does). With no files it is a checkpoint-only snapshot.
//! * Replace: one manifest listing every live file: the new files ADDED, the replaced ones
//!   DELETED, the rest EXISTING (so compaction also merges manifests). If a replaced file is
//!   no longer live (another compaction got there first) nothing is committed.
//! * Overwrite: one manifest with the new files ADDED and every file live at the parent
//!   DELETED, so readers see the old contents or the new, never a mix. Appends that won the
//!   race are replaced too (the overwrite is ordered after them).
//!
//! Every committed snapshot writes one audit event (`target: weir::audit`, `event: commit`).
//!
//! Commits to one table from one process take turns ([`commit_turn`], first come first
//! served): a consumer committing back to back would otherwise win every race against the
//! maintenance running beside it, whose attempts take longer, and maintenance would never
//! commit. A writer waits at most for one other commit attempt; other processes still race
//! with compare-and-swap.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use iceberg::spec::{
    DataFile, ManifestFile, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary, TableMetadata, MAIN_BRANCH, UNASSIGNED_SEQUENCE_NUMBER,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableUpdate};

use super::catalog::Lake;
use super::checkpoint::{Checkpoint, CheckpointAdvance, CHECKPOINT_PROPERTY};
use super::error::{IcebergContext, LakeError, LakeResult};
use super::inspect::{live_entries_cached, ManifestEntries};

/// What a commit changes.
pub(crate) enum Change<'a> {
    Append { added: &'a [DataFile] },
    Replace { removed: &'a HashSet<String>, added: &'a [DataFile] },
    Overwrite { added: &'a [DataFile] },
}

impl Change<'_> {
    fn added(&self) -> &[DataFile] {
        match self {
            Change::Append { added } | Change::Replace { added, .. } | Change::Overwrite { added } => added,
        }
    }

    fn operation(&self) -> Operation {
        match self {
            Change::Append { .. } => Operation::Append,
            Change::Replace { .. } => Operation::Replace,
            Change::Overwrite { .. } => Operation::Overwrite,
        }
    }
}

/// Outcome of [`commit_snapshot`].
pub(crate) enum Committed {
    Snapshot { snapshot_id: i64, attempts: u32 },
    /// A replace whose files were no longer all live: nothing was committed.
    Superseded,
}

/// A positive snapshot id not used by the table yet.
fn new_snapshot_id(taken: &HashSet<i64>) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) & (i64::MAX as u64)) as i64;
        if id != 0 && !taken.contains(&id) {
            return id;
        }
    }
}

/// Counts for the snapshot summary, which readers (and Weir's `snapshots`) show.
#[derive(Default)]
struct Counts {
    added_files: u64,
    added_records: u64,
    added_bytes: u64,
    deleted_files: u64,
    deleted_records: u64,
    total_files: Option<u64>,
    total_records: Option<u64>,
}

/// Commits `change` to table `name` in one snapshot whose summary carries `properties`, the
/// parent's checkpoint, and `advance` (checked against the parent's checkpoint first).
/// One turnstile per table (warehouse location and name) for the whole process.
static TURNS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// Waits for this process's turn to commit to table `name` (first come, first served); the
/// turn lasts until the guard is dropped. Hold it from loading the table to the pointer swap.
pub(crate) async fn commit_turn(lake: &Lake, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let key = format!("{}#{name}", lake.config().warehouse_location());
    let turn = TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(key).or_default().clone();
    turn.lock_owned().await
}

pub(crate) async fn commit_snapshot(
    lake: &Lake,
    name: &str,
    change: Change<'_>,
    advance: Option<&CheckpointAdvance>,
    properties: &HashMap<String, String>,
) -> LakeResult<Committed> {
    let attempts = lake.config().commit_attempts;
    // Manifests read by earlier attempts: a retry reads only those committed meanwhile.
    let mut manifests_read = ManifestEntries::new();
    for attempt in 1..=attempts {
        let turn = commit_turn(lake, name).await;
        let table = lake.load_table(name).await?;
        let metadata = table.metadata();
        let current_location = table.metadata_location_result().context(name, "table has no metadata location")?.to_string();
        let current = metadata.current_snapshot().cloned();
        let mut checkpoint = Checkpoint::of_table(name, metadata)?;
        if let Some(advance) = advance {
            checkpoint.advance(name, advance)?;
        }
        let taken: HashSet<i64> = metadata.snapshots().map(|s| s.snapshot_id()).collect();
        let snapshot_id = new_snapshot_id(&taken);
        let sequence_number = metadata.next_sequence_number();

        let (operation, manifests, counts) = match &change {
            Change::Append { added } => {
                let mut counts = Counts::default();
                let mut manifests = Vec::new();
                if !added.is_empty() {
                    manifests.push(write_manifest(&table, name, snapshot_id, sequence_number, added, &[], &HashSet::new()).await?);
                }
                if let Some(parent) = &current {
                    if let Some(known) = lake.last_list(name, parent.manifest_list()) {
                        manifests.extend(known.iter().cloned());
                    } else {
                        let list = table
                            .manifest_list_reader(parent)
                            .load()
                            .await
                            .context(name, "cannot read the manifest list")?;
                        manifests.extend(list.entries().iter().cloned());
                    }
                    let total = |key: &str| parent.summary().additional_properties.get(key).and_then(|v| v.parse::<u64>().ok());
                    counts.total_files = total("total-data-files");
                    counts.total_records = total("total-records");
                } else {
                    counts.total_files = Some(0);
                    counts.total_records = Some(0);
                }
                counts.added_files = added.len() as u64;
                counts.added_records = added.iter().map(DataFile::record_count).sum();
                counts.added_bytes = added.iter().map(DataFile::file_size_in_bytes).sum();
                counts.total_files = counts.total_files.map(|n| n + counts.added_files);
                counts.total_records = counts.total_records.map(|n| n + counts.added_records);
                (Operation::Append, manifests, counts)
            }
            Change::Replace { .. } | Change::Overwrite { .. } => {
                let added = change.added();
                let entries = match (&change, current.as_ref()) {
                    (_, Some(parent)) => live_entries_cached(&table, name, parent, &mut manifests_read).await?,
                    (Change::Overwrite { .. }, None) => Vec::new(),
                    _ => {
                        return Err(LakeError::Table {
                            table: name.to_string(),
                            message: "has no snapshot to compact".into(),
                        })
                    }
                };
                let everything: HashSet<String>;
                let removed = match &change {
                    Change::Replace { removed, .. } => {
                        let live: HashSet<&str> = entries.iter().map(|e| e.file_path()).collect();
                        if !removed.iter().all(|path| live.contains(path.as_str())) {
                            return Ok(Committed::Superseded);
                        }
                        *removed
                    }
                    _ => {
                        everything = entries.iter().map(|e| e.file_path().to_string()).collect();
                        &everything
                    }
                };
                let manifest =
                    write_manifest(&table, name, snapshot_id, sequence_number, added, &entries, removed).await?;
                let mut counts = Counts {
                    added_files: added.len() as u64,
                    added_records: added.iter().map(DataFile::record_count).sum(),
                    added_bytes: added.iter().map(DataFile::file_size_in_bytes).sum(),
                    ..Counts::default()
                };
                let mut total_files = counts.added_files;
                let mut total_records = counts.added_records;
                for entry in &entries {
                    if removed.contains(entry.file_path()) {
                        counts.deleted_files += 1;
                        counts.deleted_records += entry.record_count();
                    } else {
                        total_files += 1;
                        total_records += entry.record_count();
                    }
                }
                counts.total_files = Some(total_files);
                counts.total_records = Some(total_records);
                (change.operation(), vec![manifest], counts)
            }
        };

        let list_path = format!(
            "{}/metadata/snap-{snapshot_id}-{attempt}-{}.avro",
            metadata.location(),
            uuid::Uuid::now_v7()
        );
        let file_io = table.file_io();
        let list_output = file_io.new_output(&list_path).context(name, "cannot create a manifest list")?;
        let mut list = ManifestListWriter::v2(
            list_output.writer().await.context(name, "cannot create a manifest list")?,
            snapshot_id,
            current.as_ref().map(|s| s.snapshot_id()),
            sequence_number,
        );
        list.add_manifests(manifests.iter().cloned()).context(name, "cannot write a manifest list")?;
        list.close().await.context(name, "cannot write a manifest list")?;

        let mut summary = properties.clone();
        if !checkpoint.0.is_empty() {
            summary.insert(CHECKPOINT_PROPERTY.to_string(), checkpoint.to_json());
        }
        let mut counters = vec![
            ("added-data-files", counts.added_files),
            ("added-records", counts.added_records),
            ("added-files-size", counts.added_bytes),
        ];
        if operation != Operation::Append {
            counters.extend([("deleted-data-files", counts.deleted_files), ("deleted-records", counts.deleted_records)]);
        }
        counters.extend(counts.total_files.map(|n| ("total-data-files", n)));
        counters.extend(counts.total_records.map(|n| ("total-records", n)));
        for (key, value) in counters {
            summary.insert(key.to_string(), value.to_string());
        }
        let timestamp_ms =
            chrono::Utc::now().timestamp_millis().max(current.as_ref().map_or(0, |s| s.timestamp_ms()));
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(current.as_ref().map(|s| s.snapshot_id()))
            .with_sequence_number(sequence_number)
            .with_timestamp_ms(timestamp_ms)
            .with_manifest_list(list_path.clone())
            .with_summary(Summary { operation, additional_properties: summary })
            .with_schema_id(metadata.current_schema_id())
            .build();
        let updates = [
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
            },
        ];
        let mut builder = metadata.clone().into_builder(Some(current_location.clone()));
        for update in updates {
            builder = update.apply(builder).context(name, "cannot build the new metadata")?;
        }
        let built = builder.build().context(name, "cannot build the new metadata")?;
        let (new_metadata, superseded) = (built.metadata, built.expired_metadata_logs);
        if publish_metadata(lake, name, &table, &current_location, new_metadata).await?.is_some() {
            // As written: the list writer gave this snapshot's new manifests its sequence number.
            let written = manifests
                .into_iter()
                .map(|mut m| {
                    if m.sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                        m.sequence_number = sequence_number;
                    }
                    if m.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                        m.min_sequence_number = sequence_number;
                    }
                    m
                })
                .collect();
            lake.remember_last_list(name, list_path.clone(), written);
            let added = change.added();
            tracing::info!(
                target: "weir::audit",
                component = "lake",
                event = "commit",
                operation = change.operation().as_str(),
                table = %name,
                snapshot_id,
                record_count = counts.added_records,
                bytes = counts.added_bytes,
                data_files = %serde_json::to_string(&added.iter().map(DataFile::file_path).collect::<Vec<_>>()).unwrap_or_default(),
                files_removed = counts.deleted_files,
                records_removed = counts.deleted_records,
                checkpoint = advance.is_some(),
                attempts = attempt,
            );
            if deletes_superseded_metadata(metadata) {
                delete_superseded_metadata(&table, name, &superseded).await;
            }
            return Ok(Committed::Snapshot { snapshot_id, attempts: attempt });
        }
        // Lost the race to another process: back off a little and rebuild on the winner's
        // state. The unreferenced metadata files are left behind.
        drop(turn);
        back_off(attempt).await;
    }
    Err(LakeError::Conflict { table: name.to_string(), attempts })
}

/// Waits a little after a lost race, longer after each, with jitter so racing writers
/// spread out.
async fn back_off(attempt: u32) {
    let jitter = (uuid::Uuid::new_v4().as_u128() % 20) as u64;
    tokio::time::sleep(Duration::from_millis((5 * attempt as u64).min(200) + jitter)).await;
}

/// Commits a change of table `name`'s metadata alone (its schema, its properties), with the
/// same turn and compare-and-swap as snapshot commits. `change` sees the table's metadata
/// and metadata file as they are at each attempt and returns the new metadata with
/// whatever the caller wants back, or `None` when there is nothing to change (then nothing
/// is committed). Returns that value and the attempts taken.
pub(crate) async fn commit_metadata_change<T>(
    lake: &Lake,
    name: &str,
    mut change: impl FnMut(&TableMetadata, &str) -> LakeResult<Option<(TableMetadata, T)>>,
) -> LakeResult<Option<(T, u32)>> {
    let attempts = lake.config().commit_attempts;
    for attempt in 1..=attempts {
        let turn = commit_turn(lake, name).await;
        let table = lake.load_table(name).await?;
        let current_location = table.metadata_location_result().context(name, "table has no metadata location")?.to_string();
        let Some((new_metadata, outcome)) = change(table.metadata(), &current_location)? else {
            return Ok(None);
        };
        if publish_metadata(lake, name, &table, &current_location, new_metadata).await?.is_some() {
            return Ok(Some((outcome, attempt)));
        }
        drop(turn);
        back_off(attempt).await;
    }
    Err(LakeError::Conflict { table: name.to_string(), attempts })
}

impl Lake {
    /// Sets table properties in one metadata commit: `update` sees the table's metadata as
    /// it is (at each attempt) and returns the properties to set, or `None` to leave them.
    /// Returns whether a commit was made.
    pub async fn update_properties(
        &self,
        name: &str,
        mut update: impl FnMut(&TableMetadata) -> Option<HashMap<String, String>>,
    ) -> LakeResult<bool> {
        let committed = commit_metadata_change(self, name, |metadata, location| {
            let Some(properties) = update(metadata) else { return Ok(None) };
            let built = metadata
                .clone()
                .into_builder(Some(location.to_string()))
                .set_properties(properties)
                .and_then(|builder| builder.build())
                .context(name, "cannot set table properties")?;
            Ok(Some((built.metadata, ())))
        })
        .await?;
        Ok(committed.is_some())
    }
}

/// Writes `new_metadata` as the next metadata file of `table` (loaded from
/// `current_location`) and moves the catalog pointer to it if no other writer moved it
/// first. Returns the new location, or `None` on a lost race (the file written is left
/// behind for maintenance). A won swap is remembered, so the next load of the table starts
/// from it instead of reading and parsing the file just written.
pub(crate) async fn publish_metadata(
    lake: &Lake,
    name: &str,
    table: &Table,
    current_location: &str,
    new_metadata: TableMetadata,
) -> LakeResult<Option<String>> {
    let ident = Lake::ident(name)?;
    let file_io = table.file_io();
    let new_location = MetadataLocation::from_str(current_location)
        .context(name, "unexpected metadata file name")?
        .with_next_version()
        .with_new_metadata(&new_metadata);
    new_metadata.write_to(file_io, &new_location).await.context(name, "cannot write table metadata")?;
    if !lake.swap_metadata_location(&ident, current_location, &new_location.to_string()).await? {
        return Ok(None);
    }
    let committed = iceberg::Runtime::try_current().and_then(|runtime| {
        Table::builder()
            .metadata(new_metadata)
            .metadata_location(new_location.to_string())
            .identifier(ident)
            .file_io(file_io.clone())
            .runtime(runtime)
            .build()
    });
    match committed {
        Ok(committed) => lake.remember_table(name, committed),
        Err(e) => tracing::warn!(component = "lake", event = "table_not_remembered", table = %name, error = %e),
    }
    Ok(Some(new_location.to_string()))
}

/// Whether the table asks writers to delete the metadata files that fall out of its
/// metadata log (`write.metadata.delete-after-commit.enabled`). Weir's tables leave it off:
/// a reader may have pinned a recent metadata file (DuckDB's `iceberg_scan`, the dbt and
/// quality views), so maintenance deletes them once older than the time-travel window.
fn deletes_superseded_metadata(metadata: &iceberg::spec::TableMetadata) -> bool {
    metadata.properties().get(DELETE_AFTER_COMMIT_PROPERTY).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Deletes metadata files the last commit dropped from the log (beyond
/// `write.metadata.previous-versions-max`). Best effort: a file left behind is an orphan,
/// which maintenance removes later.
async fn delete_superseded_metadata(table: &Table, name: &str, superseded: &[iceberg::spec::MetadataLog]) {
    for log in superseded {
        if let Err(e) = table.file_io().delete(&log.metadata_file).await {
            tracing::warn!(component = "lake", event = "metadata_not_deleted", table = %name, file = %log.metadata_file, error = %e);
        }
    }
}

/// Table property: delete metadata files that fall out of the metadata log after a commit.
pub(crate) const DELETE_AFTER_COMMIT_PROPERTY: &str = "write.metadata.delete-after-commit.enabled";
/// Table property: how many previous metadata files the metadata log lists.
pub(crate) const PREVIOUS_VERSIONS_PROPERTY: &str = "write.metadata.previous-versions-max";

/// Writes one manifest: `added` as ADDED, and for a replace every live entry, DELETED if
/// its path is in `removed`, EXISTING otherwise.
async fn write_manifest(
    table: &Table,
    name: &str,
    snapshot_id: i64,
    sequence_number: i64,
    added: &[DataFile],
    live: &[iceberg::spec::ManifestEntryRef],
    removed: &HashSet<String>,
) -> LakeResult<ManifestFile> {
    let metadata = table.metadata();
    // Weir tables have one partition spec; files of an evolved spec would be rejected by the
    // manifest writer rather than mislabelled.
    let spec = metadata.default_partition_spec();
    let manifest_path = format!("{}/metadata/{}-m0.avro", metadata.location(), uuid::Uuid::now_v7());
    let output = table.file_io().new_output(&manifest_path).context(name, "cannot create a manifest")?;
    let mut manifest =
        ManifestWriterBuilder::new(output, Some(snapshot_id), metadata.current_schema().clone(), spec.as_ref().clone())
            .build_v2_data();
    for file in added {
        manifest.add_file(file.clone(), sequence_number).context(name, "cannot write a manifest")?;
    }
    for entry in live {
        let sequence = entry.sequence_number().unwrap_or(0);
        if removed.contains(entry.file_path()) {
            manifest
                .add_delete_file(entry.data_file().clone(), sequence, entry.file_sequence_number)
                .context(name, "cannot write a manifest")?;
        } else {
            manifest
                .add_existing_file(
                    entry.data_file().clone(),
                    entry.snapshot_id().unwrap_or(snapshot_id),
                    sequence,
                    entry.file_sequence_number,
                )
                .context(name, "cannot write a manifest")?;
        }
    }
    manifest.write_manifest_file().await.context(name, "cannot write a manifest")
}
