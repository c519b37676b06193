//! Rust errors as Python exceptions. The classes are defined in Python (`weir.exceptions`),
//! so they can also subclass builtins such as `ValueError`; this module instantiates them and
//! attaches the structured fields (`errors`, `format`, `supported`, `path`, `keyword`, ...).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use weir_planner::lake::LakeError;
use weir_planner::stream::StreamError;
use weir_planner::{ProcessorError, Violation};

/// A violation as a plain dict, the shape Python code sees everywhere.
pub fn violation_dict<'py>(py: Python<'py>, v: &Violation) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("record_index", v.record_index)?;
    d.set_item("field", v.field.as_deref())?;
    d.set_item("rule", &v.rule)?;
    d.set_item("value", v.value.as_deref())?;
    d.set_item("message", &v.message)?;
    Ok(d)
}

pub fn violation_list<'py>(py: Python<'py>, violations: &[Violation]) -> PyResult<Bound<'py, PyList>> {
    let items = violations.iter().map(|v| violation_dict(py, v)).collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// Builds an instance of `weir.exceptions.<class>` with `message` and attributes.
pub fn weir_exception(py: Python<'_>, class: &str, message: &str, attributes: &[(&str, Bound<'_, PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let exception = py.import("weir.exceptions")?.getattr(class)?.call1((message,))?;
        for (name, value) in attributes {
            exception.setattr(*name, value)?;
        }
        Ok(PyErr::from_value(exception))
    };
    build().unwrap_or_else(|e| e)
}

/// Converts a processor error into the matching Python exception.
pub fn to_py_err(py: Python<'_>, error: ProcessorError) -> PyErr {
    let message = error.to_string();
    let text = |s: &str| PyString::new(py, s).into_any();
    let raise = |class: &str, attributes: &[(&str, Bound<'_, PyAny>)]| weir_exception(py, class, &message, attributes);
    match error {
        ProcessorError::Contract { contract, path, keyword, .. } => raise(
            "ContractError",
            &[("contract", text(&contract)), ("path", text(&path)), ("keyword", text(&keyword))],
        ),
        ProcessorError::UnsupportedFormat { format, supported, .. } => match PyList::new(py, supported) {
            Ok(supported) => raise("UnsupportedFormatError", &[("format", text(&format)), ("supported", supported.into_any())]),
            Err(e) => e,
        },
        ProcessorError::Parse { errors, .. } => match violation_list(py, &errors) {
            Ok(errors) => raise("ParseError", &[("errors", errors.into_any())]),
            Err(e) => e,
        },
        ProcessorError::PipelineSql { origin, .. } => raise("PipelineError", &[("origin", text(&origin))]),
        ProcessorError::Engine(_) | ProcessorError::Internal(_) => raise("WeirError", &[]),
    }
}

/// Converts a lake error into the matching Python exception (`weir.exceptions`).
pub fn lake_err(py: Python<'_>, error: LakeError) -> PyErr {
    let message = error.to_string();
    let text = |s: &str| PyString::new(py, s).into_any();
    let raise = |class: &str, attributes: &[(&str, Bound<'_, PyAny>)]| weir_exception(py, class, &message, attributes);
    match error {
        LakeError::Processor(e) => to_py_err(py, e),
        LakeError::Config { setting, .. } => raise("ConfigError", &[("setting", text(&setting))]),
        LakeError::Table { table, .. } => raise("TableError", &[("table", text(&table))]),
        LakeError::Schema { table, .. } => raise("SchemaMismatchError", &[("table", text(&table))]),
        LakeError::Conflict { table, .. } | LakeError::CheckpointMoved { table, .. } => {
            raise("CommitConflictError", &[("table", text(&table))])
        }
        LakeError::Iceberg { table, .. } => raise("LakeError", &[("table", text(&table))]),
        LakeError::Internal(_) => raise("LakeError", &[]),
    }
}

/// Converts a streaming error into the matching Python exception (`weir.exceptions`).
pub fn stream_err(py: Python<'_>, error: StreamError) -> PyErr {
    let message = error.to_string();
    let text = |s: &str| PyString::new(py, s).into_any();
    let raise = |class: &str, attributes: &[(&str, Bound<'_, PyAny>)]| weir_exception(py, class, &message, attributes);
    match error {
        StreamError::Lake(e) => lake_err(py, e),
        StreamError::Processor(e) => to_py_err(py, e),
        StreamError::Config { setting, .. } => raise("ConfigError", &[("setting", text(&setting))]),
        StreamError::Kinesis { stream, .. } => raise("KinesisError", &[("stream", text(&stream))]),
        StreamError::Record { stream, .. } => raise("StreamError", &[("stream", text(&stream))]),
        StreamError::Input { .. } => raise("UnpublishableError", &[]),
        StreamError::Metastore { .. } => raise("LakeError", &[]),
        StreamError::Internal(_) => raise("WeirError", &[]),
    }
}
