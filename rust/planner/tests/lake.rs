//! The lakehouse against a real SQLite metastore and a local warehouse in a temporary folder:
//! tables from the shop_events contract, appends, compaction (also racing an appender),
//! snapshot expiry and the maintenance policy (also beside a writer committing back to
//! back). Run with `cargo test --release --workspace`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use weir_planner::dataset::dataset_tables;
use weir_planner::lake::{
    Checkpoint, CheckpointAdvance, CompactOptions, ExpireOptions, Lake, LakeConfig, MaintenancePolicy, ShardAdvance,
    WriteMode,
};
use weir_planner::{Contract, InputFormat, PipelineSql, Processor};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn processor() -> Processor {
    Processor::new(
        Contract::from_path(repo().join("contracts/shop_events.json")).unwrap(),
        Some(PipelineSql::from_path(repo().join("sql/pipeline/shop_events.sql")).unwrap()),
    )
}

/// `n` valid page views starting at `first`, spread over three days.
fn events(first: usize, n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in first..first + n {
        out.push_str(&format!(
            "{{\"event_id\": \"00000000-0000-4000-8000-{i:012}\", \"event_type\": \"page_view\", \
             \"event_time\": \"2026-11-{:02}T10:00:00Z\", \"user_id\": \"u_{i}\"}}\n",
            25 + i % 3
        ));
    }
    out.into_bytes()
}

async fn open(dir: &std::path::Path) -> Arc<Lake> {
    let config = LakeConfig::new(dir.join("metastore.db").display().to_string(), dir.join("warehouse").display().to_string());
    Arc::new(Lake::open(config).await.unwrap())
}

async fn append_events(lake: &Lake, processor: &Processor, first: usize, n: usize) -> i64 {
    let outcome = processor.process(&events(first, n), InputFormat::Ndjson).await.unwrap();
    // Each append advances a checkpoint fenced on the previous one, as the consumer does.
    let advance = CheckpointAdvance {
        stream: "test".into(),
        shards: [(
            "shard-0".to_string(),
            ShardAdvance { expected: first.checked_sub(n).map(|p| p.to_string()), to: first.to_string() },
        )]
        .into(),
    };
    let info = lake
        .write("raw.shop_events", &outcome.output_schema, &outcome.output, WriteMode::Checkpointed(&advance), HashMap::new())
        .await
        .unwrap();
    assert_eq!(info.record_count, n as u64);
    info.snapshot_id.unwrap()
}

async fn event_ids(lake: &Lake) -> Vec<String> {
    let table = lake.load_table("raw.shop_events").await.unwrap();
    let batches: Vec<RecordBatch> =
        table.scan().select(["event_id"]).build().unwrap().to_arrow().await.unwrap().try_collect().await.unwrap();
    let mut ids: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            (0..a.len()).map(|i| a.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids
}

async fn live_files(lake: &Lake) -> usize {
    let table = lake.load_table("raw.shop_events").await.unwrap();
    weir_planner::lake::inspect::data_files(&table, "raw.shop_events", None).await.unwrap().num_rows()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_compact_and_expire_keep_every_row_once() {
    let dir = tempdir();
    let lake = open(&dir).await;
    let processor = processor();
    let tables = dataset_tables(&processor, lake.config()).await.unwrap();
    let (valid, rejected) = (tables.valid, tables.rejected);
    lake.ensure_table(&valid).await.unwrap();
    lake.ensure_table(&rejected).await.unwrap();
    // Creating again is a no-op.
    lake.ensure_table(&valid).await.unwrap();

    for k in 0..12 {
        append_events(&lake, &processor, k * 10, 10).await;
    }
    assert_eq!(event_ids(&lake).await.len(), 120);
    assert_eq!(live_files(&lake).await, 36, "three day partitions per commit");

    // Compaction while another task keeps appending: nothing lost, nothing doubled.
    let appender = {
        let lake = lake.clone();
        let processor = processor.clone();
        tokio::spawn(async move {
            for k in 12..20 {
                append_events(&lake, &processor, k * 10, 10).await;
            }
        })
    };
    let report = lake.compact("raw.shop_events", &CompactOptions::default()).await.unwrap();
    appender.await.unwrap();
    assert!(report.partitions_compacted >= 1, "{report:?}");
    let ids = event_ids(&lake).await;
    assert_eq!(ids.len(), 200);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200);

    let report = lake.compact("raw.shop_events", &CompactOptions::default()).await.unwrap();
    assert_eq!(live_files(&lake).await, 3, "one file per day after compacting: {report:?}");
    assert_eq!(event_ids(&lake).await.len(), 200);

    // Compaction carried the last append's checkpoint forward, and a stale fence is refused.
    let table = lake.load_table("raw.shop_events").await.unwrap();
    let summary = weir_planner::lake::inspect::current_summary(&table);
    assert_eq!(summary.get("weir.maintenance").map(String::as_str), Some("compaction"), "{summary:?}");
    let checkpoint = Checkpoint::of_table("raw.shop_events", table.metadata()).unwrap();
    assert_eq!(checkpoint.position("test", "shard-0"), Some("190"), "{summary:?}");
    let stale = CheckpointAdvance {
        stream: "test".into(),
        shards: [("shard-0".to_string(), ShardAdvance { expected: Some("180".into()), to: "200".into() })].into(),
    };
    let outcome = processor.process(&events(500, 5), InputFormat::Ndjson).await.unwrap();
    let err = lake
        .write("raw.shop_events", &outcome.output_schema, &outcome.output, WriteMode::Checkpointed(&stale), HashMap::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checkpointed at 190"), "{err}");
    assert_eq!(event_ids(&lake).await.len(), 200, "a refused commit adds nothing");

    let expired = lake
        .expire_snapshots(
            "raw.shop_events",
            &ExpireOptions { older_than_ms: i64::MAX, retain_last: 1, delete_files: true },
        )
        .await
        .unwrap();
    assert!(expired.snapshots_expired >= 20 && expired.files_deleted > 0, "{expired:?}");
    assert_eq!(event_ids(&lake).await.len(), 200);
    let snapshots = weir_planner::lake::inspect::snapshots(&lake.load_table("raw.shop_events").await.unwrap()).unwrap();
    assert_eq!(snapshots.num_rows(), 1);
    let total = snapshots.column_by_name("total_records").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(total.value(0), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_does_not_fit_is_refused_by_name() {
    let dir = tempdir();
    let lake = open(&dir).await;
    let processor = processor();
    let valid = dataset_tables(&processor, lake.config()).await.unwrap().valid;
    lake.ensure_table(&valid).await.unwrap();
    let batch = RecordBatch::try_from_iter([("surprise", Arc::new(StringArray::from(vec!["x"])) as Arc<dyn Array>)]).unwrap();
    let err = lake.append("raw.shop_events", &batch.schema(), &[batch], HashMap::new()).await.unwrap_err();
    assert!(err.to_string().contains("surprise"), "{err}");
    let err = lake.append("raw.nope", &valid_schema(), &[], HashMap::new()).await.unwrap_err();
    assert!(err.to_string().contains("raw.nope"), "{err}");
}

/// The SQLite metastore's commits do not wait for the disk or copy the log back themselves
/// (`synchronous = NORMAL`, no automatic checkpoint), and the lake's background checkpointer
/// keeps the write-ahead log from growing: rounds of commits a few seconds apart reuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_leave_checkpoints_to_the_background() {
    use sqlx::Row;
    let dir = tempdir();
    let lake = open(&dir).await;
    let pool = lake.metastore_pool();
    let mut connection = pool.acquire().await.unwrap();
    let synchronous: i64 = sqlx::query("PRAGMA synchronous").fetch_one(&mut *connection).await.unwrap().get(0);
    let autocheckpoint: i64 = sqlx::query("PRAGMA wal_autocheckpoint").fetch_one(&mut *connection).await.unwrap().get(0);
    assert_eq!((synchronous, autocheckpoint), (1, 0), "NORMAL, and no checkpoint inside a commit");
    drop(connection);
    sqlx::query("CREATE TABLE scratch (id INTEGER PRIMARY KEY, payload TEXT)").execute(pool).await.unwrap();
    let wal = dir.join("metastore.db-wal");
    let mut sizes = Vec::new();
    for round in 0..3 {
        for i in 0..300 {
            sqlx::query("INSERT INTO scratch (id, payload) VALUES (?, ?)")
                .bind((round * 1000 + i) as i64)
                .bind("x".repeat(3000))
                .execute(pool)
                .await
                .unwrap();
        }
        sizes.push(std::fs::metadata(&wal).unwrap().len());
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // a checkpoint runs
    }
    // Without checkpoints each round adds about as much as the first.
    assert!(sizes[0] > 1_000_000, "{sizes:?}");
    assert!(sizes[2] < sizes[0] * 3 / 2, "the log was not reused after a checkpoint: {sizes:?}");
}

/// Files under a table folder's subfolder (`data` or `metadata`).
fn files_in(dir: &std::path::Path, sub: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut folders = vec![dir.join("warehouse/raw/shop_events").join(sub)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                folders.push(entry.path());
            } else {
                out.insert(entry.path().display().to_string());
            }
        }
    }
    out
}

/// The maintenance policy: keeps its window (here the newest 5 snapshots), the snapshot
/// chain back to the consumer checkpoint when another tool committed on top, every row;
/// merges manifests; bounds the metadata files (those out of the log deleted once old
/// enough, here at once); and removes orphans, which are files nothing references.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_keeps_window_checkpoint_and_rows_and_bounds_metadata() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let dir = tempdir();
    let mut config =
        LakeConfig::new(dir.join("metastore.db").display().to_string(), dir.join("warehouse").display().to_string());
    config.maintenance = MaintenancePolicy {
        max_snapshots: 5,
        history_hours: 0,
        merge_manifests_at: 10,
        compact_min_files: 1000, // no compaction: manifests are merged on their own
        metadata_versions: 4,
        orphan_age_hours: 0,
        ..MaintenancePolicy::default()
    };
    let policy = config.maintenance.clone();
    let lake = Arc::new(Lake::open(config).await.unwrap());
    let processor = processor();
    let valid = dataset_tables(&processor, lake.config()).await.unwrap().valid;
    lake.ensure_table(&valid).await.unwrap();
    for k in 0..12 {
        append_events(&lake, &processor, k * 10, 10).await;
    }
    // Commits delete no metadata file (a reader may have pinned one): creation + 12.
    let metadata_json = |d: &std::path::Path| files_in(d, "metadata").iter().filter(|f| f.ends_with(".metadata.json")).count();
    assert_eq!(metadata_json(&dir), 13);

    // Two commits by another tool, without Weir's checkpoint in their summaries.
    for n in 0..2 {
        let table = lake.load_table("raw.shop_events").await.unwrap();
        let tx = Transaction::new(&table);
        let action = tx.fast_append().set_snapshot_properties(HashMap::from([("other-tool".to_string(), n.to_string())]));
        action.apply(tx).unwrap().commit(lake.catalog().as_ref()).await.unwrap();
    }
    // An orphan: a data file no snapshot lists.
    let orphan = dir.join("warehouse/raw/shop_events/data/orphan-from-a-crash.parquet");
    std::fs::write(&orphan, b"not committed").unwrap();

    let report = lake.maintain("raw.shop_events", &policy).await.unwrap();
    assert!(report.manifests_merged.is_some(), "12 manifests, merged at 10: {report:?}");
    // The orphan, and the metadata files beyond the log of 4 (and the current one).
    assert!(report.orphans.orphans_deleted > 1, "{report:?}");
    assert_eq!(metadata_json(&dir), 5);
    assert!(!orphan.exists());
    let table = lake.load_table("raw.shop_events").await.unwrap();
    let kept = table.metadata().snapshots().count();
    // The newest 5 (merge, two foreign, the last two appends) plus nothing else: the chain to
    // the checkpoint (merge → foreign → foreign → last append) is within them.
    assert_eq!(kept, 5, "{report:?}");
    assert_eq!(
        Checkpoint::of_table("raw.shop_events", table.metadata()).unwrap().position("test", "shard-0"),
        Some("110"),
        "the checkpoint survives expiry"
    );
    assert_eq!(event_ids(&lake).await.len(), 120);

    // With a window of one snapshot, the chain back to the checkpoint still stays.
    for n in 2..5 {
        let table = lake.load_table("raw.shop_events").await.unwrap();
        let tx = Transaction::new(&table);
        let action = tx.fast_append().set_snapshot_properties(HashMap::from([("other-tool".to_string(), n.to_string())]));
        action.apply(tx).unwrap().commit(lake.catalog().as_ref()).await.unwrap();
    }
    let tight = MaintenancePolicy { max_snapshots: 1, ..policy.clone() };
    lake.maintain("raw.shop_events", &tight).await.unwrap();
    let table = lake.load_table("raw.shop_events").await.unwrap();
    // merge (has the checkpoint, carried forward) → three foreign snapshots.
    assert_eq!(table.metadata().snapshots().count(), 4);
    assert_eq!(
        Checkpoint::of_table("raw.shop_events", table.metadata()).unwrap().position("test", "shard-0"),
        Some("110")
    );
    // Every file left is referenced: no data file of an expired snapshot stays behind.
    let live: HashSet<String> = {
        let batch = weir_planner::lake::inspect::data_files(&table, "raw.shop_events", None).await.unwrap();
        let paths = batch.column_by_name("file_path").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        (0..paths.len()).map(|i| paths.value(i).to_string()).collect()
    };
    assert_eq!(files_in(&dir, "data"), live);
    // Metadata: the current file and its log, one manifest list per snapshot, and the merged
    // manifest (the foreign appends added no files, so no manifests).
    let metadata = files_in(&dir, "metadata");
    let lists = metadata.iter().filter(|f| f.contains("/snap-")).count();
    let manifests = metadata.iter().filter(|f| f.ends_with(".avro") && !f.contains("/snap-")).count();
    assert_eq!((lists, manifests), (4, 1), "{metadata:?}");
    assert!(metadata_json(&dir) <= 5, "{metadata:?}");
    assert_eq!(event_ids(&lake).await.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_takes_turns_with_a_writer_committing_back_to_back() {
    // One attempt per commit: in one process, the writer's commits and maintenance's must
    // take turns instead of racing (a consumer committing back to back would otherwise win
    // every race, and maintenance would never commit).
    let dir = tempdir();
    let mut config =
        LakeConfig::new(dir.join("metastore.db").display().to_string(), dir.join("warehouse").display().to_string());
    config.commit_attempts = 1;
    config.maintenance = MaintenancePolicy {
        max_snapshots: 10,
        history_hours: 0,
        merge_manifests_at: 20,
        compact_min_files: 1000,
        ..MaintenancePolicy::default() // orphans only after 6 hours: the writer's files are young
    };
    let policy = config.maintenance.clone();
    let lake = Arc::new(Lake::open(config).await.unwrap());
    let processor = processor();
    let valid = dataset_tables(&processor, lake.config()).await.unwrap().valid;
    lake.ensure_table(&valid).await.unwrap();
    for k in 0..30 {
        append_events(&lake, &processor, k * 10, 10).await;
    }
    let writer = {
        let lake = lake.clone();
        let processor = processor.clone();
        tokio::spawn(async move {
            for k in 30..90 {
                append_events(&lake, &processor, k * 10, 10).await;
            }
        })
    };
    let mut runs = Vec::new();
    while !writer.is_finished() {
        runs.push(lake.maintain("raw.shop_events", &policy).await.expect("maintenance commits beside the writer"));
    }
    writer.await.expect("every append commits beside maintenance");
    assert!(runs.iter().any(|r| r.manifests_merged.is_some()), "{runs:?}");
    assert!(runs.iter().any(|r| r.expiry.snapshots_expired > 0), "{runs:?}");
    let ids = event_ids(&lake).await;
    assert_eq!((ids.len(), ids.iter().collect::<HashSet<_>>().len()), (900, 900));
    let table = lake.load_table("raw.shop_events").await.unwrap();
    assert_eq!(Checkpoint::of_table("raw.shop_events", table.metadata()).unwrap().position("test", "shard-0"), Some("890"));
    // Appends list the manifests of the list the previous commit wrote without reading it
    // back: each manifest keeps the sequence number of the snapshot that added it.
    let current = table.metadata().current_snapshot().unwrap();
    let list = table.manifest_list_reader(current).load().await.unwrap();
    assert!(list.entries().len() > 1);
    for manifest in list.entries() {
        if let Some(added) = table.metadata().snapshot_by_id(manifest.added_snapshot_id) {
            assert_eq!(manifest.sequence_number, added.sequence_number(), "{manifest:?}");
        }
        assert!(manifest.min_sequence_number >= 1 && manifest.min_sequence_number <= manifest.sequence_number);
    }
}

fn valid_schema() -> datafusion::arrow::datatypes::Schema {
    datafusion::arrow::datatypes::Schema::empty()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-lake-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
