//! Reading a table's metadata: its live data files (per snapshot), its snapshots with their
//! summaries, and which snapshot was current at a given time. The dashboard and
//! `weir.lake` use these; maintenance uses [`live_entries`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use iceberg::spec::{Literal, ManifestEntryRef, PrimitiveLiteral, SnapshotRef, Struct, Transform};
use iceberg::table::Table;

use super::error::{IcebergContext, LakeError, LakeResult};

/// Every live entry (added or existing, data or delete file) of `snapshot`.
pub async fn live_entries(table: &Table, name: &str, snapshot: &SnapshotRef) -> LakeResult<Vec<ManifestEntryRef>> {
    live_entries_cached(table, name, snapshot, &mut ManifestEntries::new()).await
}

/// The live entries of manifests already read, by manifest path (manifests never change).
pub type ManifestEntries = HashMap<String, Arc<Vec<ManifestEntryRef>>>;

/// [`live_entries`], reading only the manifests `cache` does not hold yet (and adding them):
/// a commit that retries after a race reads just the manifests committed meanwhile.
pub async fn live_entries_cached(
    table: &Table,
    name: &str,
    snapshot: &SnapshotRef,
    cache: &mut ManifestEntries,
) -> LakeResult<Vec<ManifestEntryRef>> {
    let list = table.manifest_list_reader(snapshot).load().await.context(name, "cannot read the manifest list")?;
    let manifests: Vec<_> = list.consume_entries().into_iter().collect();
    let missing = manifests.iter().filter(|m| !cache.contains_key(&m.manifest_path)).map(|manifest| {
        let file_io = table.file_io().clone();
        async move { manifest.load_manifest(&file_io).await.map(|loaded| (manifest.manifest_path.clone(), loaded)) }
    });
    for (path, loaded) in futures::future::try_join_all(missing).await.context(name, "cannot read a manifest")? {
        cache.insert(path, Arc::new(loaded.entries().iter().filter(|e| e.is_alive()).cloned().collect()));
    }
    let mut entries = Vec::new();
    for manifest in &manifests {
        entries.extend(cache[&manifest.manifest_path].iter().cloned());
    }
    Ok(entries)
}

/// The snapshot that was current at `timestamp_ms` (the last one committed at or before it).
pub fn snapshot_as_of(table: &Table, name: &str, timestamp_ms: i64) -> LakeResult<i64> {
    table
        .metadata()
        .history()
        .iter()
        .filter(|log| log.timestamp_ms <= timestamp_ms)
        .max_by_key(|log| log.timestamp_ms)
        .map(|log| log.snapshot_id)
        .ok_or_else(|| LakeError::Table {
            table: name.to_string(),
            message: format!("no snapshot was committed at or before {timestamp_ms} ms since the epoch"),
        })
}

/// `{"event_time_day": "2026-11-27"}`: a partition tuple as JSON, with day/month/year/hour
/// transforms shown as dates rather than counts since the epoch.
pub fn partition_json(table: &Table, partition: &Struct) -> String {
    let spec = table.metadata().default_partition_spec();
    let mut object = serde_json::Map::new();
    for (field, value) in spec.fields().iter().zip(partition.iter()) {
        let rendered = match (value, field.transform) {
            (None, _) => serde_json::Value::Null,
            (Some(Literal::Primitive(PrimitiveLiteral::Int(days))), Transform::Day) => {
                let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                    .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(*days as i64)));
                date.map(|d| d.to_string().into()).unwrap_or_else(|| (*days).into())
            }
            (Some(Literal::Primitive(PrimitiveLiteral::Int(n))), _) => (*n).into(),
            (Some(Literal::Primitive(PrimitiveLiteral::Long(n))), _) => (*n).into(),
            (Some(Literal::Primitive(PrimitiveLiteral::String(s))), _) => s.clone().into(),
            (Some(other), _) => format!("{other:?}").into(),
        };
        object.insert(field.name.clone(), rendered);
    }
    serde_json::Value::Object(object).to_string()
}

pub fn data_files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file_path", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
        Field::new("record_count", DataType::Int64, false),
        Field::new("file_size_bytes", DataType::Int64, false),
        Field::new("added_snapshot_id", DataType::Int64, true),
    ]))
}

/// The live files of a snapshot (default: the current one), one row each.
pub async fn data_files(table: &Table, name: &str, snapshot_id: Option<i64>) -> LakeResult<RecordBatch> {
    let metadata = table.metadata();
    let snapshot = match snapshot_id {
        Some(id) => Some(metadata.snapshot_by_id(id).cloned().ok_or_else(|| LakeError::Table {
            table: name.to_string(),
            message: format!("no snapshot {id}"),
        })?),
        None => metadata.current_snapshot().cloned(),
    };
    let entries = match &snapshot {
        Some(snapshot) => live_entries(table, name, snapshot).await?,
        None => Vec::new(),
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(entries.iter().map(|e| e.file_path()))),
        Arc::new(StringArray::from_iter_values(entries.iter().map(|e| format!("{:?}", e.content_type()).to_lowercase()))),
        Arc::new(StringArray::from_iter_values(entries.iter().map(|e| partition_json(table, e.data_file().partition())))),
        Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.record_count() as i64))),
        Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.file_size_in_bytes() as i64))),
        Arc::new(Int64Array::from_iter(entries.iter().map(|e| e.snapshot_id()))),
    ];
    Ok(RecordBatch::try_new(data_files_schema(), columns)?)
}

pub fn snapshots_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("committed_at", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("operation", DataType::Utf8, false),
        Field::new("added_records", DataType::Int64, true),
        Field::new("added_data_files", DataType::Int64, true),
        Field::new("total_records", DataType::Int64, true),
        Field::new("total_data_files", DataType::Int64, true),
        Field::new("batch_events", DataType::Int64, true),
        Field::new("batch_valid", DataType::Int64, true),
        Field::new("batch_rejected", DataType::Int64, true),
        Field::new("batch_dead_lettered", DataType::Int64, true),
        Field::new("contract_version", DataType::Utf8, true),
        Field::new("summary", DataType::Utf8, false),
    ]))
}

/// Every snapshot still in the table's metadata, oldest first: its counts, the consumer
/// batch's counts and contract version (for snapshots a consumer committed), and its
/// summary as JSON (Weir's own keys, such as a consumer checkpoint, included).
pub fn snapshots(table: &Table) -> LakeResult<RecordBatch> {
    let mut list: Vec<&SnapshotRef> = table.metadata().snapshots().collect();
    list.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let count = |s: &SnapshotRef, key: &str| s.summary().additional_properties.get(key).and_then(|v| v.parse::<i64>().ok());
    let summary = |s: &SnapshotRef| {
        let sorted: std::collections::BTreeMap<&String, &String> = s.summary().additional_properties.iter().collect();
        serde_json::to_string(&sorted).unwrap_or_default()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(list.iter().map(|s| s.snapshot_id()))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| s.parent_snapshot_id()))),
        Arc::new(TimestampMillisecondArray::from_iter_values(list.iter().map(|s| s.timestamp_ms())).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(list.iter().map(|s| s.summary().operation.as_str()))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "added-records")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "added-data-files")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "total-records")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "total-data-files")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "weir.batch.events")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "weir.batch.valid")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "weir.batch.rejected")))),
        Arc::new(Int64Array::from_iter(list.iter().map(|s| count(s, "weir.batch.dead-lettered")))),
        Arc::new(StringArray::from_iter(list.iter().map(|s| s.summary().additional_properties.get("weir.contract-version").cloned()))),
        Arc::new(StringArray::from_iter_values(list.iter().map(|s| summary(s)))),
    ];
    Ok(RecordBatch::try_new(snapshots_schema(), columns)?)
}

/// Summary properties of the current snapshot (empty when the table has none).
pub fn current_summary(table: &Table) -> HashMap<String, String> {
    table
        .metadata()
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default()
}

/// Reads a table (at a snapshot, default the current one) through iceberg-rust's Parquet
/// reader: the processor's way to take stored data as input. Returns the Arrow schema (with
/// Iceberg field ids stripped) and the batches.
pub async fn read_table(
    table: &Table,
    name: &str,
    snapshot_id: Option<i64>,
) -> LakeResult<(SchemaRef, Vec<RecordBatch>)> {
    use futures::TryStreamExt;
    // A snapshot reads with the schema it was written with, as iceberg-rust's scan does
    // (time travel across a schema change shows the columns of then).
    let metadata = table.metadata();
    let snapshot = match snapshot_id {
        Some(id) => Some(
            metadata
                .snapshot_by_id(id)
                .ok_or_else(|| LakeError::Table { table: name.to_string(), message: format!("no snapshot {id}") })?,
        ),
        None => metadata.current_snapshot(),
    };
    let iceberg_schema = match snapshot {
        Some(snapshot) => snapshot.schema(metadata).context(name, "cannot find the snapshot's schema")?,
        None => metadata.current_schema().clone(),
    };
    let schema =
        Arc::new(iceberg::arrow::schema_to_arrow_schema(&iceberg_schema).context(name, "cannot convert the table schema")?);
    let plain = Arc::new(Schema::new(
        schema.fields().iter().map(|f| f.as_ref().clone().with_metadata(HashMap::new())).collect::<Vec<_>>(),
    ));
    if table.metadata().current_snapshot().is_none() && snapshot_id.is_none() {
        return Ok((plain, Vec::new()));
    }
    let mut scan = table.scan().select_all();
    if let Some(id) = snapshot_id {
        scan = scan.snapshot_id(id);
    }
    let batches: Vec<RecordBatch> = scan
        .build()
        .context(name, "cannot plan the scan")?
        .to_arrow()
        .await
        .context(name, "cannot read the table")?
        .try_collect()
        .await
        .context(name, "cannot read the table")?;
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(plain.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plain, batches))
}
