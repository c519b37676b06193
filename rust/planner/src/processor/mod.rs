//! The processor: a dataset's contract and pipeline SQL compiled once, then input bytes turned
//! into transformed Arrow batches plus rejected records that carry every violation.
//!
//! * [`contract`]: `contracts/<dataset>.json` → Arrow schema and per-field rules.
//! * [`decode`](mod@decode): JSON / NDJSON / CSV bytes → a typed batch, syntax and type violations.
//! * [`validate`]: the contract's rules, checked column by column.
//! * [`pipeline`]: `sql/pipeline/<dataset>.sql`, its queries run as [`prepared`] plans in the
//!   [`session`] every pipeline query uses, over events with their Kinesis [`position`].
//! * [`run`]: [`Processor`], which chains the steps; [`violation`] and [`error`] are what they
//!   report.

mod contract;
mod decode;
mod error;
mod pipeline;
mod position;
mod prepared;
mod run;
mod session;
mod validate;
mod violation;

pub use contract::{Contract, FieldKind, FieldSpec, RecordFormat};
pub(crate) use decode::json_is_line_delimited;
pub use decode::{decode, Decoded, InputFormat, RECORD_INDEX_COLUMN, SUPPORTED_INPUT_FORMATS};
pub use error::{ProcessorError, Result};
pub use pipeline::PipelineSql;
pub use position::{position_fields, with_positions, KinesisPosition, POSITION_COLUMNS};
pub use run::{rejected_schema, ProcessOutcome, ProcessStats, Processor, ValidationOutcome};
pub use session::{session_state, EVENTS_TABLE};
pub use validate::{check_rules, conform_table};
pub use violation::{violations_batch, violations_schema, Violation};
