//! Rust errors as Python exceptions, in one place. The classes are defined in Python
//! (`weir.exceptions`), so they can also subclass builtins such as `ValueError`; each Rust
//! error names its class ([`ExceptionClass`]), the class object is looked up once per process
//! and cached, and the structured fields (`errors`, `format`, `supported`, `path`, `table`,
//! ...) are attached to the instance. `tests/test_exceptions.py` checks that every class
//! named here exists (`weir._native.EXCEPTION_CLASSES`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyType};
use weir_planner::dataset::DatasetError;
use weir_planner::lake::LakeError;
use weir_planner::stream::StreamError;
use weir_planner::{ProcessorError, Violation};

/// The classes of `weir.exceptions` that Rust raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Weir,
    Contract,
    UnsupportedFormat,
    Parse,
    Pipeline,
    Config,
    Lake,
    Table,
    SchemaMismatch,
    IncompatibleChange,
    CommitConflict,
    Stream,
    Kinesis,
    Unpublishable,
}

impl ExceptionClass {
    pub const ALL: [ExceptionClass; 14] = [
        Self::Weir,
        Self::Contract,
        Self::UnsupportedFormat,
        Self::Parse,
        Self::Pipeline,
        Self::Config,
        Self::Lake,
        Self::Table,
        Self::SchemaMismatch,
        Self::IncompatibleChange,
        Self::CommitConflict,
        Self::Stream,
        Self::Kinesis,
        Self::Unpublishable,
    ];

    /// The class's name in `weir.exceptions`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Weir => "WeirError",
            Self::Contract => "ContractError",
            Self::UnsupportedFormat => "UnsupportedFormatError",
            Self::Parse => "ParseError",
            Self::Pipeline => "PipelineError",
            Self::Config => "ConfigError",
            Self::Lake => "LakeError",
            Self::Table => "TableError",
            Self::SchemaMismatch => "SchemaMismatchError",
            Self::IncompatibleChange => "IncompatibleChangeError",
            Self::CommitConflict => "CommitConflictError",
            Self::Stream => "StreamError",
            Self::Kinesis => "KinesisError",
            Self::Unpublishable => "UnpublishableError",
        }
    }

    /// The class object, imported on first use and cached.
    fn class<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyType>> {
        static CLASSES: [PyOnceLock<Py<PyType>>; 14] = [const { PyOnceLock::new() }; 14];
        let index = Self::ALL.iter().position(|c| *c == self).unwrap_or(0);
        CLASSES[index].import(py, "weir.exceptions", self.name()).cloned()
    }
}

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

/// An instance of `class` with `message` and the given attributes.
fn raise(py: Python<'_>, class: ExceptionClass, message: &str, attributes: &[(&str, Bound<'_, PyAny>)]) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let exception = class.class(py)?.call1((message,))?;
        for (name, value) in attributes {
            exception.setattr(*name, value)?;
        }
        Ok(PyErr::from_value(exception))
    };
    build().unwrap_or_else(|e| e)
}

/// A Rust error that becomes a `weir.exceptions` instance.
pub trait ToPyErr {
    fn to_py_err(self, py: Python<'_>) -> PyErr;
}

/// Converts any of Weir's Rust errors into the matching Python exception.
pub fn to_py_err(py: Python<'_>, error: impl ToPyErr) -> PyErr {
    error.to_py_err(py)
}

fn text<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyAny> {
    PyString::new(py, s).into_any()
}

impl ToPyErr for ProcessorError {
    fn to_py_err(self, py: Python<'_>) -> PyErr {
        let message = self.to_string();
        match self {
            ProcessorError::Contract { contract, path, keyword, .. } => raise(
                py,
                ExceptionClass::Contract,
                &message,
                &[("contract", text(py, &contract)), ("path", text(py, &path)), ("keyword", text(py, &keyword))],
            ),
            ProcessorError::UnsupportedFormat { format, supported, .. } => match PyList::new(py, supported) {
                Ok(supported) => raise(
                    py,
                    ExceptionClass::UnsupportedFormat,
                    &message,
                    &[("format", text(py, &format)), ("supported", supported.into_any())],
                ),
                Err(e) => e,
            },
            ProcessorError::Parse { errors, .. } => match violation_list(py, &errors) {
                Ok(errors) => raise(py, ExceptionClass::Parse, &message, &[("errors", errors.into_any())]),
                Err(e) => e,
            },
            ProcessorError::PipelineSql { origin, .. } => {
                raise(py, ExceptionClass::Pipeline, &message, &[("origin", text(py, &origin))])
            }
            ProcessorError::Engine(_) | ProcessorError::Internal(_) => raise(py, ExceptionClass::Weir, &message, &[]),
        }
    }
}

impl ToPyErr for LakeError {
    fn to_py_err(self, py: Python<'_>) -> PyErr {
        let message = self.to_string();
        let (class, attributes) = match &self {
            LakeError::Config { setting, .. } => (ExceptionClass::Config, vec![("setting", text(py, setting))]),
            LakeError::Table { table, .. } => (ExceptionClass::Table, vec![("table", text(py, table))]),
            LakeError::Schema { table, .. } => (ExceptionClass::SchemaMismatch, vec![("table", text(py, table))]),
            LakeError::Incompatible { table, changes } => (
                ExceptionClass::IncompatibleChange,
                vec![("table", text(py, table)), ("changes", PyList::new(py, changes).map(|l| l.into_any()).unwrap_or_else(|_| text(py, "")))],
            ),
            LakeError::Conflict { table, .. } | LakeError::CheckpointMoved { table, .. } => {
                (ExceptionClass::CommitConflict, vec![("table", text(py, table))])
            }
            LakeError::Iceberg { table, .. } => (ExceptionClass::Lake, vec![("table", text(py, table))]),
            LakeError::Internal(_) => (ExceptionClass::Lake, vec![]),
        };
        raise(py, class, &message, &attributes)
    }
}

impl ToPyErr for DatasetError {
    fn to_py_err(self, py: Python<'_>) -> PyErr {
        match self {
            DatasetError::Processor(e) => e.to_py_err(py),
            DatasetError::Lake(e) => e.to_py_err(py),
        }
    }
}

impl ToPyErr for StreamError {
    fn to_py_err(self, py: Python<'_>) -> PyErr {
        let message = self.to_string();
        let (class, attributes) = match self {
            StreamError::Lake(e) => return e.to_py_err(py),
            StreamError::Processor(e) => return e.to_py_err(py),
            StreamError::Config { setting, .. } => (ExceptionClass::Config, vec![("setting", text(py, &setting))]),
            StreamError::Kinesis { stream, .. } => (ExceptionClass::Kinesis, vec![("stream", text(py, &stream))]),
            StreamError::Record { stream, .. } => (ExceptionClass::Stream, vec![("stream", text(py, &stream))]),
            StreamError::Input { .. } => (ExceptionClass::Unpublishable, vec![]),
            StreamError::Replay { .. } => (ExceptionClass::Stream, vec![]),
            StreamError::Metastore { .. } => (ExceptionClass::Lake, vec![]),
            StreamError::Internal(_) => (ExceptionClass::Weir, vec![]),
        };
        raise(py, class, &message, &attributes)
    }
}

/// The names of every class Rust raises, for the test that they all exist.
pub fn class_names() -> Vec<&'static str> {
    ExceptionClass::ALL.iter().map(|c| c.name()).collect()
}
