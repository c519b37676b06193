//! Weir's own "replace" commit, used by compaction: iceberg-rust 0.10 can append and expire
//! but not rewrite files, so this writes the snapshot itself and swaps the catalog pointer
//! with the same compare-and-swap the SQL catalog uses.
//!
//! The new snapshot lists every live file in one manifest (so compaction also compacts
//! manifests): the compacted files as ADDED, the files they replace as DELETED, every other
//! file as EXISTING. On a lost race the snapshot is rebuilt on the winner's state, so files
//! appended meanwhile are kept; if a replaced file is no longer live (another compaction
//! got there first) the commit is abandoned and nothing changes.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use iceberg::spec::{
    DataFile, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention,
    Summary, MAIN_BRANCH,
};
use iceberg::{MetadataLocation, TableUpdate};

use super::catalog::Lake;
use super::error::{IcebergContext, LakeError, LakeResult};
use super::inspect::live_entries;

/// Outcome of [`replace_files`].
pub(crate) enum Replaced {
    Committed { snapshot_id: i64, attempts: u32 },
    /// Some of the files to replace were no longer live: nothing was committed.
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

/// Replaces the live files `removed` of table `name` by `added` in one snapshot whose
/// summary carries the parent's `weir.*` properties forward (a consumer's checkpoint stays
/// on the newest snapshot) plus `properties`.
pub(crate) async fn replace_files(
    lake: &Lake,
    name: &str,
    removed: &HashSet<String>,
    added: &[DataFile],
    properties: &HashMap<String, String>,
) -> LakeResult<Replaced> {
    let ident = Lake::ident(name)?;
    let attempts = lake.config().commit_attempts;
    for attempt in 1..=attempts {
        let table = lake.load_table(name).await?;
        let metadata = table.metadata();
        let current_location = table.metadata_location_result().context(name, "table has no metadata location")?.to_string();
        let current = metadata.current_snapshot().cloned().ok_or_else(|| LakeError::Table {
            table: name.to_string(),
            message: "has no snapshot to compact".into(),
        })?;
        let entries = live_entries(&table, name, &current).await?;
        let live: HashSet<&str> = entries.iter().map(|e| e.file_path()).collect();
        if !removed.iter().all(|path| live.contains(path.as_str())) {
            return Ok(Replaced::Superseded);
        }
        // Weir tables have one partition spec; files of an evolved spec would be rejected by
        // the manifest writer below rather than mislabelled.
        let spec = metadata.default_partition_spec();
        let taken: HashSet<i64> = metadata.snapshots().map(|s| s.snapshot_id()).collect();
        let snapshot_id = new_snapshot_id(&taken);
        let sequence_number = metadata.next_sequence_number();
        let file_io = table.file_io();

        let manifest_path = format!("{}/metadata/{}-m0.avro", metadata.location(), uuid::Uuid::now_v7());
        let output = file_io.new_output(&manifest_path).context(name, "cannot create a manifest")?;
        let mut manifest = ManifestWriterBuilder::new(
            output,
            Some(snapshot_id),
            metadata.current_schema().clone(),
            spec.as_ref().clone(),
        )
        .build_v2_data();
        let (mut added_records, mut deleted_records, mut total_records) = (0u64, 0u64, 0u64);
        let (mut deleted_files, mut total_files) = (0usize, 0usize);
        for file in added {
            added_records += file.record_count();
            total_records += file.record_count();
            total_files += 1;
            manifest.add_file(file.clone(), sequence_number).context(name, "cannot write a manifest")?;
        }
        for entry in &entries {
            let sequence = entry.sequence_number().unwrap_or(0);
            if removed.contains(entry.file_path()) {
                deleted_records += entry.record_count();
                deleted_files += 1;
                manifest
                    .add_delete_file(entry.data_file().clone(), sequence, entry.file_sequence_number)
                    .context(name, "cannot write a manifest")?;
            } else {
                total_records += entry.record_count();
                total_files += 1;
                manifest
                    .add_existing_file(
                        entry.data_file().clone(),
                        entry.snapshot_id().unwrap_or(current.snapshot_id()),
                        sequence,
                        entry.file_sequence_number,
                    )
                    .context(name, "cannot write a manifest")?;
            }
        }
        let manifest_file = manifest.write_manifest_file().await.context(name, "cannot write a manifest")?;

        let list_path = format!(
            "{}/metadata/snap-{snapshot_id}-{attempt}-{}.avro",
            metadata.location(),
            uuid::Uuid::now_v7()
        );
        let list_output = file_io.new_output(&list_path).context(name, "cannot create a manifest list")?;
        let mut list = ManifestListWriter::v2(
            list_output.writer().await.context(name, "cannot create a manifest list")?,
            snapshot_id,
            Some(current.snapshot_id()),
            sequence_number,
        );
        list.add_manifests(std::iter::once(manifest_file)).context(name, "cannot write a manifest list")?;
        list.close().await.context(name, "cannot write a manifest list")?;

        let mut summary: HashMap<String, String> = current
            .summary()
            .additional_properties
            .iter()
            .filter(|(k, _)| k.starts_with("weir."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        summary.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (key, value) in [
            ("added-data-files", added.len().to_string()),
            ("deleted-data-files", deleted_files.to_string()),
            ("added-records", added_records.to_string()),
            ("deleted-records", deleted_records.to_string()),
            ("total-records", total_records.to_string()),
            ("total-data-files", total_files.to_string()),
            ("total-delete-files", "0".to_string()),
            ("changed-partition-count", "0".to_string()),
        ] {
            summary.insert(key.to_string(), value);
        }
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(Some(current.snapshot_id()))
            .with_sequence_number(sequence_number)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(current.timestamp_ms()))
            .with_manifest_list(list_path)
            .with_summary(Summary { operation: Operation::Replace, additional_properties: summary })
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
        let new_metadata = builder.build().context(name, "cannot build the new metadata")?.metadata;
        let new_location = MetadataLocation::from_str(&current_location)
            .context(name, "unexpected metadata file name")?
            .with_next_version()
            .with_new_metadata(&new_metadata);
        new_metadata.write_to(file_io, &new_location).await.context(name, "cannot write table metadata")?;
        if lake.swap_metadata_location(&ident, &current_location, &new_location.to_string()).await? {
            return Ok(Replaced::Committed { snapshot_id, attempts: attempt });
        }
        // Lost the race: back off a little (with jitter, so racing writers spread out) and
        // rebuild on the winner's state. The unreferenced manifest files are left behind.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 20) as u64;
        tokio::time::sleep(Duration::from_millis((5 * attempt as u64).min(200) + jitter)).await;
    }
    Err(LakeError::Conflict { table: name.to_string(), attempts })
}
