//! `weir._native.LakeConfig` and `weir._native.KinesisConfig`: the lake and Kinesis settings
//! as Rust validates them (`weir_planner::lake::LakeConfig`,
//! `weir_planner::stream::StreamConfig`), read by `weir.config` through getters. Python hands
//! over what the user wrote as `(key, value, origin)` sources, later ones winning; TOML values
//! keep their type (`None` is unset). Bad settings raise `weir.ConfigError` whose `setting` is
//! the origin.

use std::collections::{BTreeMap, HashMap};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use weir_planner::lake::{LakeConfig, CATALOG_NAME};
use weir_planner::settings::{SettingSource, SettingValue};
use weir_planner::stream::StreamConfig;

use crate::errors::to_py_err;

/// `(key, value, origin)` as Python gives them.
type PySources<'py> = Vec<(String, Bound<'py, PyAny>, String)>;

/// A Python value as the user wrote it.
fn setting_value(value: &Bound<'_, PyAny>) -> PyResult<SettingValue> {
    Ok(if value.is_none() {
        SettingValue::Text(String::new())
    } else if value.is_instance_of::<PyBool>() {
        SettingValue::Bool(value.extract()?)
    } else if value.is_instance_of::<PyInt>() {
        match value.extract::<i64>() {
            Ok(n) => SettingValue::Integer(n),
            Err(_) => SettingValue::Other(value.repr()?.to_string()),
        }
    } else if value.is_instance_of::<PyFloat>() {
        SettingValue::Float(value.extract()?)
    } else if value.is_instance_of::<PyString>() {
        SettingValue::Text(value.extract()?)
    } else {
        SettingValue::Other(value.repr()?.to_string())
    })
}

fn setting_sources(sources: PySources<'_>) -> PyResult<Vec<SettingSource>> {
    sources.into_iter().map(|(key, value, origin)| Ok(SettingSource::new(key, setting_value(&value)?, origin))).collect()
}

/// `postgresql://user:***@host/db`: passwords never appear in a repr.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => format!("{scheme}://{}:***@{host}", user.split(':').next().unwrap_or_default()),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// An optional text as Python writes it: `None` or a quoted string.
fn optional(value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_string(), |v| format!("{v:?}"))
}

/// Where the lake lives and how it is written (`weir.config.LakeSettings` wraps it).
#[pyclass(module = "weir._native", name = "LakeConfig", frozen)]
pub struct PyLakeConfig {
    inner: LakeConfig,
}

#[pymethods]
impl PyLakeConfig {
    /// The settings from `sources`: `(key, value, origin)`, later ones winning (keys:
    /// `weir_planner::lake::LakeConfig::from_sources`).
    #[new]
    fn new(py: Python<'_>, sources: PySources<'_>) -> PyResult<Self> {
        let inner = LakeConfig::from_sources(&setting_sources(sources)?).map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner })
    }

    /// The settings from string properties (what `weir._native.Lake` takes).
    #[staticmethod]
    fn from_properties(py: Python<'_>, properties: HashMap<String, String>) -> PyResult<Self> {
        let inner = LakeConfig::from_properties(&properties).map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner })
    }

    /// The catalog name of Weir's tables in the metastore (pyiceberg's `SqlCatalog` name).
    #[classattr]
    #[allow(non_snake_case)]
    fn CATALOG_NAME() -> &'static str {
        CATALOG_NAME
    }

    #[getter]
    fn metastore(&self) -> &str {
        &self.inner.metastore
    }

    #[getter]
    fn warehouse(&self) -> &str {
        &self.inner.warehouse
    }

    /// The configured S3 values as weir.toml names them (`path_style_access` only when on).
    #[getter]
    fn s3<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s3 = PyDict::new(py);
        for (key, value) in self.inner.s3_values() {
            s3.set_item(key.replace('-', "_"), value)?;
        }
        if self.inner.s3.path_style {
            s3.set_item("path_style_access", true)?;
        }
        Ok(s3)
    }

    /// How data files are written, as weir.toml names the settings.
    #[getter]
    fn write<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let write = PyDict::new(py);
        write.set_item("target_file_size_bytes", self.inner.target_file_size_bytes)?;
        write.set_item("row_group_rows", self.inner.row_group_rows)?;
        write.set_item("zstd_level", self.inner.zstd_level)?;
        write.set_item("concurrency", self.inner.write_concurrency())?;
        Ok(write)
    }

    /// The maintenance policy, as weir.toml names the settings (`[lake.maintenance]`).
    #[getter]
    fn maintenance<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let policy = &self.inner.maintenance;
        let out = PyDict::new(py);
        out.set_item("enabled", policy.enabled)?;
        out.set_item("interval_seconds", policy.interval_seconds)?;
        out.set_item("snapshot_window_minutes", policy.snapshot_window_minutes)?;
        out.set_item("max_snapshots", policy.max_snapshots)?;
        out.set_item("history_hours", policy.history_hours)?;
        out.set_item("merge_manifests_at", policy.merge_manifests_at)?;
        out.set_item("compact_min_files", policy.compact_min_files)?;
        out.set_item("metadata_versions", policy.metadata_versions)?;
        out.set_item("orphan_age_hours", policy.orphan_age_hours)?;
        out.set_item("job_retention_days", policy.job_retention_days)?;
        Ok(out)
    }

    #[getter]
    fn commit_attempts(&self) -> u32 {
        self.inner.commit_attempts
    }

    /// `defaults`, then the files and variables that contributed, joined by ` < `.
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }

    #[getter]
    fn is_s3(&self) -> bool {
        self.inner.is_s3()
    }

    #[getter]
    fn is_postgres(&self) -> bool {
        self.inner.is_postgres()
    }

    /// The settings as the string properties `weir._native.Lake` takes.
    fn properties(&self) -> BTreeMap<String, String> {
        self.inner.to_properties()
    }

    /// The SQLite metastore file, or None for PostgreSQL.
    fn sqlite_path(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let path = self.inner.sqlite_path().map_err(|e| to_py_err(py, e))?;
        Ok(path.map(|p| p.display().to_string()))
    }

    /// The metastore as an SQLAlchemy URL (what pyiceberg's `SqlCatalog` takes).
    fn sqlalchemy_url(&self, py: Python<'_>) -> PyResult<String> {
        self.inner.sqlalchemy_url().map_err(|e| to_py_err(py, e))
    }

    /// Properties for `pyiceberg.catalog.sql.SqlCatalog(CATALOG_NAME, **properties)`.
    fn pyiceberg_properties(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        self.inner.pyiceberg_properties().map_err(|e| to_py_err(py, e))
    }

    fn __repr__(&self) -> String {
        format!(
            "LakeConfig(metastore={:?}, warehouse={:?}, source={:?})",
            redacted(&self.inner.metastore),
            self.inner.warehouse,
            self.inner.source
        )
    }
}

/// The Kinesis-API server and how streams are named and sized (`weir.config.KinesisSettings`
/// wraps it).
#[pyclass(module = "weir._native", name = "KinesisConfig", frozen)]
pub struct PyKinesisConfig {
    inner: StreamConfig,
}

#[pymethods]
impl PyKinesisConfig {
    /// The settings from `sources`: `(key, value, origin)`, later ones winning (keys:
    /// `weir_planner::stream::StreamConfig::from_sources`); no sources give the defaults.
    #[new]
    #[pyo3(signature = (sources=Vec::new()))]
    fn new(py: Python<'_>, sources: PySources<'_>) -> PyResult<Self> {
        let inner = StreamConfig::from_sources(&setting_sources(sources)?).map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner })
    }

    /// The settings from string properties (what `weir._native.Producer` takes).
    #[staticmethod]
    fn from_properties(py: Python<'_>, properties: HashMap<String, String>) -> PyResult<Self> {
        let inner = StreamConfig::from_properties(&properties).map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner })
    }

    /// The server's URL; None means AWS itself.
    #[getter]
    fn endpoint(&self) -> Option<&str> {
        self.inner.endpoint.as_deref()
    }

    #[getter]
    fn region(&self) -> &str {
        &self.inner.region
    }

    #[getter]
    fn access_key_id(&self) -> Option<&str> {
        self.inner.access_key_id.as_deref()
    }

    #[getter]
    fn secret_access_key(&self) -> Option<&str> {
        self.inner.secret_access_key.as_deref()
    }

    #[getter]
    fn session_token(&self) -> Option<&str> {
        self.inner.session_token.as_deref()
    }

    #[getter]
    fn stream_prefix(&self) -> &str {
        &self.inner.stream_prefix
    }

    #[getter]
    fn shards(&self) -> u32 {
        self.inner.shards
    }

    /// `defaults`, then the files and variables that contributed, joined by ` < `.
    #[getter]
    fn source(&self) -> &str {
        &self.inner.source
    }

    #[getter]
    fn is_aws(&self) -> bool {
        self.inner.is_aws()
    }

    /// Whether the endpoint is on this machine's loopback (the server `weir up` runs).
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    /// The endpoint's port (the scheme's default when the URL has none).
    fn local_port(&self, py: Python<'_>) -> PyResult<u16> {
        self.inner.local_port().map_err(|e| to_py_err(py, e))
    }

    /// The stream that carries `dataset`: `<stream_prefix><dataset>`.
    fn stream_name(&self, py: Python<'_>, dataset: &str) -> PyResult<String> {
        self.inner.stream_name(dataset).map_err(|e| to_py_err(py, e))
    }

    /// The settings as the `kinesis.*` string properties the producer and consumers take.
    fn properties(&self) -> BTreeMap<String, String> {
        self.inner.to_properties()
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "KinesisConfig(endpoint={}, region={:?}, access_key_id={}, stream_prefix={:?}, shards={}, source={:?})",
            optional(c.endpoint.as_deref()),
            c.region,
            optional(c.access_key_id.as_deref()),
            c.stream_prefix,
            c.shards,
            c.source
        )
    }
}
