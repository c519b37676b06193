//! `weir._native`: the PyO3 extension module behind the `weir` Python package.
//!
//! Thin by design: Arrow tables cross the boundary zero-copy through the Arrow C stream
//! interface, Rust errors become the exception classes of `weir.exceptions`, and Weir's UDFs
//! are exported as datafusion-ffi capsules. All behaviour lives in `weir-planner` and
//! `weir-udfs`. Built by `make setup` (maturin); import `weir`, not this module.

mod arrow_stream;
mod config;
mod errors;
mod session_providers;
mod ingest;
mod lake;
mod logging;
mod processor;
mod records;
mod runtime;
mod stream;
mod udf;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<arrow_stream::ArrowTable>()?;
    m.add_class::<processor::Processor>()?;
    m.add_class::<lake::Lake>()?;
    m.add_class::<lake::LakeCatalog>()?;
    m.add_class::<lake::DataFusionTable>()?;
    m.add_class::<lake::CommitInfo>()?;
    m.add_function(wrap_pyfunction!(lake::dataset_tables, m)?)?;
    m.add_function(wrap_pyfunction!(lake::dataset_of, m)?)?;
    m.add("EXCEPTION_CLASSES", errors::class_names())?;
    m.add("CONTRACT_HISTORY_PROPERTY", weir_planner::dataset::CONTRACT_HISTORY_PROPERTY)?;
    m.add_class::<records::Job>()?;
    m.add_class::<records::Publication>()?;
    m.add_class::<records::RecordReceipt>()?;
    m.add_class::<records::BatchMetrics>()?;
    m.add("JOB_STATES", weir_planner::stream::metastore::status::ALL.to_vec())?;
    m.add("FINAL_JOB_STATES", weir_planner::stream::metastore::status::FINAL.to_vec())?;
    m.add_class::<config::PyLakeConfig>()?;
    m.add_class::<config::PyKinesisConfig>()?;
    m.add_class::<stream::Producer>()?;
    m.add_class::<ingest::IngestService>()?;
    m.add_class::<stream::Consumer>()?;
    m.add_class::<stream::OpsTables>()?;
    m.add_class::<udf::WeirScalarUdf>()?;
    m.add_function(wrap_pyfunction!(udf::udfs, m)?)?;
    m.add_function(wrap_pyfunction!(stream::kinesis_table, m)?)?;
    m.add_function(wrap_pyfunction!(logging::init_logging, m)?)?;
    m.add("SUPPORTED_FORMATS", weir_planner::SUPPORTED_INPUT_FORMATS.to_vec())?;
    Ok(())
}
