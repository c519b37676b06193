//! `weir._native.Processor`: a compiled contract plus pipeline SQL, called from
//! `weir.parse/validate/transform/process`. The GIL is released while Rust works.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use weir_planner::{
    violations_batch, Contract, InputFormat, PipelineSql, ProcessorError, ValidationOutcome,
    RECORD_INDEX_COLUMN,
};

use crate::arrow_stream::{read_arrow_stream, ArrowTable};
use crate::errors::to_py_err;
use crate::runtime::runtime;

#[pyclass(module = "weir._native", frozen)]
pub struct Processor {
    pub(crate) inner: weir_planner::Processor,
}

/// The batch without the internal record index column.
fn without_record_index(batch: &RecordBatch) -> PyResult<RecordBatch> {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| batch.schema().field(i).name() != RECORD_INDEX_COLUMN)
        .collect();
    batch.project(&keep).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

type ValidationTables = (ArrowTable, ArrowTable, ArrowTable);

fn validation_tables(outcome: ValidationOutcome) -> PyResult<ValidationTables> {
    Ok((
        ArrowTable::from_batch(without_record_index(&outcome.valid)?),
        ArrowTable::from_batch(outcome.rejected),
        ArrowTable::from_batch(violations_batch(&outcome.violations)),
    ))
}

impl Processor {
    /// Runs `work` with the GIL released, mapping processor errors to Python exceptions.
    fn run<T: Send>(&self, py: Python<'_>, work: impl FnOnce(&weir_planner::Processor) -> Result<T, ProcessorError> + Send) -> PyResult<T> {
        let inner = &self.inner;
        py.detach(|| work(inner)).map_err(|e| to_py_err(py, e))
    }
}

fn input_format(py: Python<'_>, format: &str) -> PyResult<InputFormat> {
    InputFormat::parse(format).map_err(|e| to_py_err(py, e))
}

#[pymethods]
impl Processor {
    /// Compiles the contract at `contract_path` and the pipeline SQL (from `sql_path`, or
    /// `sql_text` with `sql_origin` naming it in errors; neither means no SQL stage).
    #[new]
    #[pyo3(signature = (contract_path, sql_path=None, sql_text=None, sql_origin="<sql>"))]
    fn new(
        py: Python<'_>,
        contract_path: PathBuf,
        sql_path: Option<PathBuf>,
        sql_text: Option<&str>,
        sql_origin: &str,
    ) -> PyResult<Self> {
        let contract = Contract::from_path(&contract_path).map_err(|e| to_py_err(py, e))?;
        let pipeline = match (sql_path, sql_text) {
            (_, Some(text)) => Some(PipelineSql::parse(text, sql_origin)),
            (Some(path), None) => Some(PipelineSql::from_path(path)),
            (None, None) => None,
        }
        .transpose()
        .map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner: weir_planner::Processor::new(contract, pipeline) })
    }

    /// The dataset name from the contract.
    #[getter]
    fn dataset(&self) -> String {
        self.inner.contract().name.clone()
    }

    /// Whether a pipeline SQL stage is configured.
    /// The contract's version (`sha256:` + 16 hex digits of its canonical JSON), recorded in
    /// each snapshot the consumer commits as `weir.contract-version`.
    #[getter]
    fn contract_version(&self) -> String {
        self.inner.contract().version.clone()
    }

    #[getter]
    fn has_sql(&self) -> bool {
        self.inner.pipeline().is_some()
    }

    /// An empty table with the contract's Arrow schema.
    fn contract_schema(&self) -> ArrowTable {
        let schema: SchemaRef = self.inner.contract().arrow_schema();
        ArrowTable::new(schema, Vec::new())
    }

    fn parse(&self, py: Python<'_>, data: &[u8], format: &str) -> PyResult<ArrowTable> {
        let format = input_format(py, format)?;
        self.run(py, |p| p.parse(data, format)).map(ArrowTable::from_batch)
    }

    fn validate_bytes(&self, py: Python<'_>, data: &[u8], format: &str) -> PyResult<ValidationTables> {
        let format = input_format(py, format)?;
        let outcome = self.run(py, |p| runtime().block_on(p.validate_bytes(data, format)))?;
        validation_tables(outcome)
    }

    fn validate_table(&self, py: Python<'_>, table: &Bound<'_, PyAny>) -> PyResult<ValidationTables> {
        let (schema, batches) = read_arrow_stream(table)?;
        let outcome = self.run(py, |p| runtime().block_on(p.validate_table(schema, &batches)))?;
        validation_tables(outcome)
    }

    fn transform(&self, py: Python<'_>, table: &Bound<'_, PyAny>) -> PyResult<ArrowTable> {
        let (schema, batches) = read_arrow_stream(table)?;
        let (schema, output) = self.run(py, |p| {
            let events = arrow::compute::concat_batches(&schema, &batches)?;
            runtime().block_on(p.transform(events))
        })?;
        Ok(ArrowTable::new(schema, output))
    }

    /// Parse, validate and transform: (output, rejected, violations, stats).
    fn process<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        format: &str,
    ) -> PyResult<(ArrowTable, ArrowTable, ArrowTable, Bound<'py, PyDict>)> {
        let format = input_format(py, format)?;
        let outcome = self.run(py, |p| runtime().block_on(p.process(data, format)))?;
        let stats = PyDict::new(py);
        stats.set_item("records", outcome.stats.records)?;
        stats.set_item("valid", outcome.stats.valid)?;
        stats.set_item("rejected", outcome.stats.rejected)?;
        stats.set_item("violations", outcome.stats.violations)?;
        stats.set_item("bytes", outcome.stats.bytes)?;
        stats.set_item("seconds", outcome.stats.seconds)?;
        Ok((
            ArrowTable::new(Arc::clone(&outcome.output_schema), outcome.output),
            ArrowTable::from_batch(outcome.rejected),
            ArrowTable::from_batch(violations_batch(&outcome.violations)),
            stats,
        ))
    }
}
