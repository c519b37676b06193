//! The processor's errors. Each variant says whose fault it is: the input (`UnsupportedFormat`,
//! `Parse`), the contract or SQL the user wrote (`Contract`, `PipelineSql`), or the engine
//! (`Engine`, `Internal`). The Python module maps each to its own exception class.

use datafusion::error::DataFusionError;

/// Result alias used across the processor.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A contract file that cannot be compiled: `path` is a JSON pointer into it.
    #[error("contract {contract}: {path}: {message}")]
    Contract { contract: String, path: String, keyword: String, message: String },

    /// Input in a format the processor does not read (or bytes that are clearly another format).
    #[error("unsupported format {format:?}: {detail}; supported formats: {}", supported.join(", "))]
    UnsupportedFormat { format: String, detail: String, supported: Vec<String> },

    /// Input that could not be decoded at all (strict parsing, or a broken whole document).
    #[error("{message}")]
    Parse { message: String, errors: Vec<crate::Violation> },

    /// Pipeline SQL that is malformed or fails to plan/run: `origin` names the file.
    #[error("pipeline SQL {origin}: {message}")]
    PipelineSql { origin: String, message: String },

    /// The query engine failed on valid input (resources, I/O).
    #[error("engine error: {0}")]
    Engine(#[from] DataFusionError),

    /// An Arrow kernel failed; always a bug in Weir, never the user's input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<datafusion::arrow::error::ArrowError> for ProcessorError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        ProcessorError::Internal(e.to_string())
    }
}
