//! `weir._native.Lake`: the Rust lakehouse (`weir_planner::lake`) for `weir.lake`,
//! `weir.append` and `weir.connect`. Iceberg catalogs and tables reach datafusion-python as
//! datafusion-ffi capsules (`__datafusion_catalog_provider__`, `__datafusion_table_provider__`);
//! commits come back as [`CommitInfo`] objects.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, TableProvider};
use datafusion_ffi::catalog_provider::FFI_CatalogProvider;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};
use weir_planner::dataset;
use weir_planner::lake::{
    self, inspect, CompactOptions, ExpireOptions, LakeConfig, LakeError, LakeTable, PartitionField, SupersededMetadata, TableDef,
    WriteMode,
};

use crate::arrow_stream::{read_arrow_stream, ArrowTable};
use crate::errors::to_py_err;
use crate::processor::Processor;
use crate::runtime::runtime;
use crate::session_providers::{lasting_codec, LakeCatalogProvider, LakeTableProvider, RefreshingCatalog};

/// What one append or overwrite committed (`weir.CommitInfo`).
#[pyclass(module = "weir._native", frozen, get_all, eq)]
#[derive(PartialEq)]
pub struct CommitInfo {
    /// The table, `namespace.table`.
    table: String,
    /// The new snapshot; `None` for an append of no rows.
    snapshot_id: Option<i64>,
    /// The Parquet files written.
    data_files: Vec<String>,
    record_count: u64,
    /// Bytes of Parquet written.
    bytes: u64,
    /// Commit attempts: more than 1 when other writers won races first.
    attempts: u32,
}

#[pymethods]
impl CommitInfo {
    fn __repr__(&self) -> String {
        format!(
            "CommitInfo(table={:?}, snapshot_id={}, record_count={}, bytes={}, data_files={}, attempts={})",
            self.table,
            self.snapshot_id.map_or("None".to_string(), |id| id.to_string()),
            self.record_count,
            self.bytes,
            self.data_files.len(),
            self.attempts
        )
    }
}

impl From<lake::CommitInfo> for CommitInfo {
    fn from(info: lake::CommitInfo) -> Self {
        Self {
            table: info.table,
            snapshot_id: info.snapshot_id,
            data_files: info.data_files,
            record_count: info.record_count,
            bytes: info.bytes,
            attempts: info.attempts,
        }
    }
}

/// The names of a dataset's lake tables: valid, rejected, dead letter.
#[pyfunction]
pub fn dataset_tables(dataset: &str) -> Vec<String> {
    dataset::table_names(dataset).to_vec()
}

/// The dataset a `raw.*` table belongs to, judged by its name.
#[pyfunction]
pub fn dataset_of(table: &str) -> Option<String> {
    dataset::dataset_of(table).map(str::to_string)
}

#[pyclass(module = "weir._native", frozen)]
pub struct Lake {
    inner: Arc<lake::Lake>,
}

impl Lake {
    pub(crate) fn inner(&self) -> &Arc<lake::Lake> {
        &self.inner
    }

    /// Runs lake work on the module's runtime with the GIL released.
    fn run<T: Send>(&self, py: Python<'_>, work: impl std::future::Future<Output = Result<T, LakeError>> + Send) -> PyResult<T> {
        py.detach(|| runtime().block_on(work)).map_err(|e| to_py_err(py, e))
    }
}

/// The codec datafusion-python hands to capsule exporters (its session, or the capsule).
fn session_codec(session: &Bound<'_, PyAny>) -> PyResult<FFI_LogicalExtensionCodec> {
    let capsule = if session.hasattr("__datafusion_logical_extension_codec__")? {
        session.getattr("__datafusion_logical_extension_codec__")?.call0()?
    } else {
        session.clone()
    };
    let capsule = capsule.cast::<PyCapsule>().map_err(|_| PyValueError::new_err("expected a datafusion session or codec capsule"))?;
    let pointer = capsule.pointer_checked(Some(c"datafusion_logical_extension_codec"))?;
    // SAFETY: the capsule's name says it holds an FFI_LogicalExtensionCodec, which
    // datafusion-python keeps alive at least for this call; we clone it.
    let codec = unsafe { &*(pointer.as_ptr() as *const FFI_LogicalExtensionCodec) };
    Ok(codec.clone())
}

fn dict<'py>(py: Python<'py>, items: Vec<(&str, Bound<'py, PyAny>)>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in items {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// A table's name and its changes as dicts (`None`: the table does not exist yet).
type TableChanges<'py> = (String, Option<Vec<Bound<'py, PyDict>>>);

#[pymethods]
impl Lake {
    /// Opens the lake described by `properties` (see `weir.config`).
    #[new]
    fn new(py: Python<'_>, properties: HashMap<String, String>) -> PyResult<Self> {
        let config = LakeConfig::from_properties(&properties).map_err(|e| to_py_err(py, e))?;
        let inner = py.detach(|| runtime().block_on(lake::Lake::open(config))).map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Creates `raw.<dataset>`, `raw.<dataset>_rejected` and `raw.<dataset>_dead_letter` for
    /// the processor's dataset if missing, and evolves existing ones when the contract or
    /// pipeline changed them compatibly (a breaking change raises
    /// `IncompatibleChangeError`); returns their names in that order.
    fn ensure_dataset(&self, py: Python<'_>, processor: &Processor) -> PyResult<Vec<String>> {
        let lake = self.inner.clone();
        let processor = processor.inner.clone();
        let tables = py
            .detach(|| runtime().block_on(dataset::ensure_dataset(&lake, &processor)))
            .map_err(|e| to_py_err(py, e))?;
        Ok(vec![tables.valid.qualified_name(), tables.rejected.qualified_name(), tables.dead_letter.qualified_name()])
    }

    /// What the processor's contract and pipeline would change in each of its dataset's
    /// tables (in commit order): `(table, changes)` with `changes` a list of dicts (`kind`,
    /// `column`, `compatible`, `change`), or `None` for a table that does not exist yet.
    /// Changes nothing.
    fn dataset_changes<'py>(&self, py: Python<'py>, processor: &Processor) -> PyResult<Vec<TableChanges<'py>>> {
        let lake = self.inner.clone();
        let processor = processor.inner.clone();
        let changes = py
            .detach(|| {
                runtime().block_on(async {
                    let tables = dataset::dataset_tables(&processor, lake.config()).await?;
                    dataset::dataset_changes(&lake, &tables).await
                })
            })
            .map_err(|e| to_py_err(py, e))?;
        changes
            .into_iter()
            .map(|(table, changes)| {
                let changes = changes
                    .map(|changes| {
                        changes
                            .iter()
                            .map(|change| {
                                let d = PyDict::new(py);
                                d.set_item("kind", change.kind())?;
                                d.set_item("column", change.column())?;
                                d.set_item("compatible", change.is_compatible())?;
                                d.set_item("change", change.to_string())?;
                                Ok(d)
                            })
                            .collect::<PyResult<Vec<_>>>()
                    })
                    .transpose()?;
                Ok((table, changes))
            })
            .collect()
    }

    fn table_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let lake = self.inner.clone();
        self.run(py, async move { lake.table_names().await })
    }

    /// Writes any Arrow data (`__arrow_c_stream__`) in one snapshot: `mode` "append" adds
    /// the rows, "overwrite" replaces the table's contents with them. Returns the commit.
    #[pyo3(signature = (table, data, mode="append", properties=None))]
    fn write(
        &self,
        py: Python<'_>,
        table: String,
        data: &Bound<'_, PyAny>,
        mode: &str,
        properties: Option<HashMap<String, String>>,
    ) -> PyResult<CommitInfo> {
        let mode = match mode {
            "append" => WriteMode::Append,
            "overwrite" => WriteMode::Overwrite,
            other => return Err(PyValueError::new_err(format!("mode: expected append or overwrite, got {other:?}"))),
        };
        let (schema, batches) = read_arrow_stream(data)?;
        let lake = self.inner.clone();
        let properties = properties.unwrap_or_default();
        let info = self.run(py, async move { lake.write(&table, &schema, &batches, mode, properties).await })?;
        Ok(info.into())
    }

    /// Creates `table` (`namespace.table`) with the columns of `data`'s schema (its rows are
    /// ignored) and `partition` fields such as `day(order_time)`; with `exist_ok`, an existing
    /// table of the same shape is kept. Returns the partition fields as written.
    #[pyo3(signature = (table, data, partition=Vec::new(), exist_ok=false))]
    fn create_table(
        &self,
        py: Python<'_>,
        table: String,
        data: &Bound<'_, PyAny>,
        partition: Vec<String>,
        exist_ok: bool,
    ) -> PyResult<Vec<String>> {
        let (schema, _) = read_arrow_stream(data)?;
        let partition = partition
            .iter()
            .map(|text| text.parse::<PartitionField>())
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| to_py_err(py, LakeError::Schema { table: table.clone(), message }))?;
        let (namespace, name) = table.split_once('.').unwrap_or(("", &table));
        let def = TableDef::from_arrow(namespace, name, &schema, &partition, self.inner.config()).map_err(|e| to_py_err(py, e))?;
        let lake = self.inner.clone();
        self.run(py, async move { lake.create_table(&def, exist_ok).await })?;
        Ok(partition.iter().map(ToString::to_string).collect())
    }

    fn metadata_location(&self, py: Python<'_>, table: String) -> PyResult<String> {
        let lake = self.inner.clone();
        self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            Ok(loaded.metadata_location().unwrap_or_default().to_string())
        })
    }

    /// The table's properties (Iceberg's and Weir's own, such as `weir.contract-history`).
    fn table_properties(&self, py: Python<'_>, table: String) -> PyResult<HashMap<String, String>> {
        let lake = self.inner.clone();
        self.run(py, async move { Ok(lake.load_table(&table).await?.metadata().properties().clone()) })
    }

    /// `{field: transform(source)}` pairs of the default partition spec, e.g.
    /// `[("event_time_day", "day", "event_time")]`.
    fn partition_spec(&self, py: Python<'_>, table: String) -> PyResult<Vec<(String, String, String)>> {
        let lake = self.inner.clone();
        self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            let metadata = loaded.metadata();
            let schema = metadata.current_schema();
            Ok(metadata
                .default_partition_spec()
                .fields()
                .iter()
                .map(|f| {
                    let source = schema.name_by_field_id(f.source_id).unwrap_or_default().to_string();
                    (f.name.clone(), f.transform.to_string(), source)
                })
                .collect())
        })
    }

    fn snapshots(&self, py: Python<'_>, table: String) -> PyResult<ArrowTable> {
        let lake = self.inner.clone();
        let batch = self.run(py, async move { inspect::snapshots(&lake.load_table(&table).await?) })?;
        Ok(ArrowTable::from_batch(batch))
    }

    #[pyo3(signature = (table, snapshot_id=None))]
    fn data_files(&self, py: Python<'_>, table: String, snapshot_id: Option<i64>) -> PyResult<ArrowTable> {
        let lake = self.inner.clone();
        let batch = self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            inspect::data_files(&loaded, &table, snapshot_id).await
        })?;
        Ok(ArrowTable::from_batch(batch))
    }

    /// The rows of a table (at a snapshot) read from its Parquet files.
    #[pyo3(signature = (table, snapshot_id=None))]
    fn read(&self, py: Python<'_>, table: String, snapshot_id: Option<i64>) -> PyResult<ArrowTable> {
        let lake = self.inner.clone();
        let (schema, batches) = self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            inspect::read_table(&loaded, &table, snapshot_id).await
        })?;
        Ok(ArrowTable::new(schema, batches))
    }

    fn snapshot_as_of(&self, py: Python<'_>, table: String, timestamp_ms: i64) -> PyResult<i64> {
        let lake = self.inner.clone();
        self.run(py, async move { inspect::snapshot_as_of(&lake.load_table(&table).await?, &table, timestamp_ms) })
    }

    fn current_summary(&self, py: Python<'_>, table: String) -> PyResult<HashMap<String, String>> {
        let lake = self.inner.clone();
        self.run(py, async move { Ok(inspect::current_summary(&lake.load_table(&table).await?)) })
    }

    #[pyo3(signature = (table, small_file_bytes=None, min_files=2))]
    fn compact<'py>(
        &self,
        py: Python<'py>,
        table: String,
        small_file_bytes: Option<u64>,
        min_files: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let lake = self.inner.clone();
        let options = CompactOptions { small_file_bytes, min_files, tier_factor: None };
        let r = self.run(py, async move { lake.compact(&table, &options).await })?;
        dict(py, vec![
            ("table", r.table.into_pyobject(py)?.into_any()),
            ("partitions_compacted", r.partitions_compacted.into_pyobject(py)?.into_any()),
            ("partitions_superseded", r.partitions_superseded.into_pyobject(py)?.into_any()),
            ("files_removed", r.files_removed.into_pyobject(py)?.into_any()),
            ("files_added", r.files_added.into_pyobject(py)?.into_any()),
            ("records_rewritten", r.records_rewritten.into_pyobject(py)?.into_any()),
            ("snapshot_ids", r.snapshot_ids.into_pyobject(py)?.into_any()),
            ("commit_attempts", r.commit_attempts.into_pyobject(py)?.into_any()),
        ])
    }

    #[pyo3(signature = (table, older_than_ms, retain_last=1, delete_files=true))]
    fn expire_snapshots<'py>(
        &self,
        py: Python<'py>,
        table: String,
        older_than_ms: i64,
        retain_last: usize,
        delete_files: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let lake = self.inner.clone();
        let options = ExpireOptions { older_than_ms, retain_last, delete_files };
        let r = self.run(py, async move { lake.expire_snapshots(&table, &options).await })?;
        dict(py, vec![
            ("table", r.table.into_pyobject(py)?.into_any()),
            ("snapshots_expired", r.snapshots_expired.into_pyobject(py)?.into_any()),
            ("snapshots_kept", r.snapshots_kept.into_pyobject(py)?.into_any()),
            ("files_deleted", r.files_deleted.into_pyobject(py)?.into_any()),
        ])
    }

    /// Runs the lake's maintenance policy (`[lake.maintenance]`) once on `table`: tiered
    /// compaction, manifest merging, snapshot expiry by the time-travel window, orphan files.
    fn maintain<'py>(&self, py: Python<'py>, table: String) -> PyResult<Bound<'py, PyDict>> {
        let lake = self.inner.clone();
        let policy = lake.config().maintenance.clone();
        let r = self.run(py, async move { lake.maintain(&table, &policy).await })?;
        dict(py, vec![
            ("table", r.table.into_pyobject(py)?.into_any()),
            ("seconds", r.seconds.into_pyobject(py)?.into_any()),
            ("properties_set", r.properties_set.into_pyobject(py)?.to_owned().into_any()),
            ("partitions_compacted", r.compaction.partitions_compacted.into_pyobject(py)?.into_any()),
            ("files_compacted", r.compaction.files_removed.into_pyobject(py)?.into_any()),
            ("files_added", r.compaction.files_added.into_pyobject(py)?.into_any()),
            ("manifests_merged", r.manifests_merged.is_some().into_pyobject(py)?.to_owned().into_any()),
            ("snapshots_expired", r.expiry.snapshots_expired.into_pyobject(py)?.into_any()),
            ("snapshots_kept", r.expiry.snapshots_kept.into_pyobject(py)?.into_any()),
            ("files_deleted", r.expiry.files_deleted.into_pyobject(py)?.into_any()),
            ("orphans_deleted", r.orphans.orphans_deleted.into_pyobject(py)?.into_any()),
            ("orphan_bytes_deleted", r.orphans.bytes_deleted.into_pyobject(py)?.into_any()),
            ("orphans_kept_young", r.orphans.orphans_kept_young.into_pyobject(py)?.into_any()),
        ])
    }

    /// Deletes the files under `table`'s folders that nothing references and that are at
    /// least `min_age_s` seconds old (superseded metadata files too).
    fn delete_orphan_files<'py>(&self, py: Python<'py>, table: String, min_age_s: f64) -> PyResult<Bound<'py, PyDict>> {
        let lake = self.inner.clone();
        let age = std::time::Duration::from_secs_f64(min_age_s.max(0.0));
        let r = self.run(py, async move { lake.delete_orphan_files(&table, age, SupersededMetadata { min_age: age, keep_newest: usize::MAX }).await })?;
        dict(py, vec![
            ("table", r.table.into_pyobject(py)?.into_any()),
            ("files_listed", r.files_listed.into_pyobject(py)?.into_any()),
            ("orphans_deleted", r.orphans_deleted.into_pyobject(py)?.into_any()),
            ("orphan_bytes_deleted", r.bytes_deleted.into_pyobject(py)?.into_any()),
            ("orphans_kept_young", r.orphans_kept_young.into_pyobject(py)?.into_any()),
        ])
    }

    /// The whole catalog for `SessionContext.register_catalog_provider`: namespaces and
    /// tables are looked up when a query names them, so tables created later are found; each
    /// query reads the table's current snapshot.
    fn catalog_provider(&self, py: Python<'_>) -> PyResult<LakeCatalog> {
        let lake = self.inner.clone();
        let catalog = self.run(py, async move {
            RefreshingCatalog::open(lake)
                .await
                .map_err(|source| LakeError::Iceberg { table: "*".into(), context: "cannot list the catalog".into(), source: Box::new(source) })
        })?;
        Ok(LakeCatalog { catalog: Arc::new(catalog) })
    }

    /// One table frozen at a snapshot (time travel) for `SessionContext.register_table`.
    fn snapshot_provider(&self, py: Python<'_>, table: String, snapshot_id: i64) -> PyResult<DataFusionTable> {
        let lake = self.inner.clone();
        let provider = self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            if loaded.metadata().snapshot_by_id(snapshot_id).is_none() {
                return Err(LakeError::Table { table: table.clone(), message: format!("no snapshot {snapshot_id}") });
            }
            LakeTable::at_snapshot(loaded, snapshot_id)
                .map_err(|source| LakeError::Iceberg { table, context: "cannot open the snapshot".into(), source: Box::new(source) })
        })?;
        Ok(DataFusionTable { provider: Arc::new(provider) })
    }
}

/// A datafusion-ffi catalog provider over the lake.
#[pyclass(module = "weir._native", frozen)]
pub struct LakeCatalog {
    catalog: Arc<RefreshingCatalog>,
}

#[pymethods]
impl LakeCatalog {
    fn __datafusion_catalog_provider__<'py>(&self, py: Python<'py>, session: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyCapsule>> {
        let (codec, context) = lasting_codec(&session_codec(&session)?);
        let provider =
            Arc::new(LakeCatalogProvider { lake: self.catalog.clone(), context }) as Arc<dyn CatalogProvider + Send>;
        let ffi = FFI_CatalogProvider::new_with_ffi_codec(provider, Some(runtime().handle().clone()), codec);
        PyCapsule::new(py, ffi, Some(std::ffi::CString::from(c"datafusion_catalog_provider")))
    }
}

/// A table for datafusion-python (`ctx.register_table(name, table)`): a lake snapshot or a
/// Kinesis stream, exported as a datafusion-ffi table provider whose async work runs in the
/// module's runtime.
#[pyclass(module = "weir._native", frozen)]
pub struct DataFusionTable {
    pub(crate) provider: Arc<dyn TableProvider>,
}

#[pymethods]
impl DataFusionTable {
    fn __datafusion_table_provider__<'py>(&self, py: Python<'py>, session: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyCapsule>> {
        let (codec, context) = lasting_codec(&session_codec(&session)?);
        let provider = Arc::new(LakeTableProvider { inner: self.provider.clone(), context: Some(context) })
            as Arc<dyn TableProvider + Send>;
        let ffi = FFI_TableProvider::new_with_ffi_codec(provider, true, Some(runtime().handle().clone()), codec);
        PyCapsule::new(py, ffi, Some(std::ffi::CString::from(c"datafusion_table_provider")))
    }
}
