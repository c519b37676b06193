//! `weir._native.Lake`: the Rust lakehouse (`weir_planner::lake`) for `weir.lake`,
//! `weir.append` and `weir.connect`. Iceberg catalogs and tables reach datafusion-python as
//! datafusion-ffi capsules (`__datafusion_catalog_provider__`, `__datafusion_table_provider__`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, TableProvider};
use datafusion_ffi::catalog_provider::FFI_CatalogProvider;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use iceberg_datafusion::{IcebergCatalogProvider, IcebergStaticTableProvider};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};
use weir_planner::lake::{self, inspect, CompactOptions, ExpireOptions, LakeConfig, LakeError};

use crate::arrow_stream::{read_arrow_stream, ArrowTable};
use crate::errors::lake_err;
use crate::in_runtime::{LakeCatalogProvider, LakeTableProvider};
use crate::processor::Processor;
use crate::runtime::runtime;

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
        py.detach(|| runtime().block_on(work)).map_err(|e| lake_err(py, e))
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

#[pymethods]
impl Lake {
    /// Opens the lake described by `properties` (see `weir.config`).
    #[new]
    fn new(py: Python<'_>, properties: HashMap<String, String>) -> PyResult<Self> {
        let config = LakeConfig::from_properties(&properties).map_err(|e| lake_err(py, e))?;
        let inner = py.detach(|| runtime().block_on(lake::Lake::open(config))).map_err(|e| lake_err(py, e))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Creates `raw.<dataset>`, `raw.<dataset>_rejected` and `raw.<dataset>_dead_letter` for
    /// the processor's dataset if missing; returns their names in that order.
    fn ensure_dataset(&self, py: Python<'_>, processor: &Processor) -> PyResult<Vec<String>> {
        let lake = self.inner.clone();
        let processor = processor.inner.clone();
        self.run(py, async move {
            let tables = lake.ensure_dataset(&processor).await?;
            Ok(vec![tables.valid.qualified_name(), tables.rejected.qualified_name(), tables.dead_letter.qualified_name()])
        })
    }

    fn table_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let lake = self.inner.clone();
        self.run(py, async move { lake.table_names().await })
    }

    /// Appends any Arrow data (`__arrow_c_stream__`) in one snapshot; returns the commit.
    #[pyo3(signature = (table, data, properties=None))]
    fn append<'py>(
        &self,
        py: Python<'py>,
        table: String,
        data: &Bound<'py, PyAny>,
        properties: Option<HashMap<String, String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (schema, batches) = read_arrow_stream(data)?;
        let lake = self.inner.clone();
        let info = self.run(py, async move { lake.append(&table, &schema, &batches, properties.unwrap_or_default()).await })?;
        dict(py, vec![
            ("table", info.table.into_pyobject(py)?.into_any()),
            ("snapshot_id", info.snapshot_id.into_pyobject(py)?.into_any()),
            ("data_files", info.data_files.into_pyobject(py)?.into_any()),
            ("record_count", info.record_count.into_pyobject(py)?.into_any()),
            ("bytes", info.bytes.into_pyobject(py)?.into_any()),
        ])
    }

    fn metadata_location(&self, py: Python<'_>, table: String) -> PyResult<String> {
        let lake = self.inner.clone();
        self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            Ok(loaded.metadata_location().unwrap_or_default().to_string())
        })
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
        let options = CompactOptions { small_file_bytes, min_files };
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

    /// The whole catalog for `SessionContext.register_catalog_provider`: every namespace and
    /// table that exists now (tables created later need a new provider); each query reads
    /// the table's current snapshot.
    fn catalog_provider(&self, py: Python<'_>) -> PyResult<LakeCatalog> {
        let lake = self.inner.clone();
        let provider = self.run(py, async move {
            IcebergCatalogProvider::try_new(lake.catalog())
                .await
                .map_err(|source| LakeError::Iceberg { table: "*".into(), context: "cannot list the catalog".into(), source: Box::new(source) })
        })?;
        Ok(LakeCatalog { provider: Arc::new(provider) })
    }

    /// One table frozen at a snapshot (time travel) for `SessionContext.register_table`.
    fn snapshot_provider(&self, py: Python<'_>, table: String, snapshot_id: i64) -> PyResult<DataFusionTable> {
        let lake = self.inner.clone();
        let provider = self.run(py, async move {
            let loaded = lake.load_table(&table).await?;
            if loaded.metadata().snapshot_by_id(snapshot_id).is_none() {
                return Err(LakeError::Table { table: table.clone(), message: format!("no snapshot {snapshot_id}") });
            }
            IcebergStaticTableProvider::try_new_from_table_snapshot(loaded, snapshot_id)
                .await
                .map_err(|source| LakeError::Iceberg { table, context: "cannot open the snapshot".into(), source: Box::new(source) })
        })?;
        Ok(DataFusionTable { provider: Arc::new(provider) })
    }
}

/// A datafusion-ffi catalog provider over the lake.
#[pyclass(module = "weir._native", frozen)]
pub struct LakeCatalog {
    provider: Arc<IcebergCatalogProvider>,
}

#[pymethods]
impl LakeCatalog {
    fn __datafusion_catalog_provider__<'py>(&self, py: Python<'py>, session: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyCapsule>> {
        let codec = session_codec(&session)?;
        let provider = Arc::new(LakeCatalogProvider(self.provider.clone())) as Arc<dyn CatalogProvider + Send>;
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
        let codec = session_codec(&session)?;
        let provider = Arc::new(LakeTableProvider(self.provider.clone())) as Arc<dyn TableProvider + Send>;
        let ffi = FFI_TableProvider::new_with_ffi_codec(provider, true, Some(runtime().handle().clone()), codec);
        PyCapsule::new(py, ffi, Some(std::ffi::CString::from(c"datafusion_table_provider")))
    }
}
