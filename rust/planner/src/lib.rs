//! Weir's processor (data contracts, JSON/CSV decoding, validation, the SQL pipeline runner),
//! lakehouse ([`lake`]) and Kinesis streaming ([`stream`]).
//!
//! [`Processor`] is the entry point: it compiles a [`Contract`] (`contracts/<dataset>.json`)
//! and a [`PipelineSql`] (`sql/pipeline/<dataset>.sql`) once, then turns input bytes into
//! transformed Arrow batches plus rejected records that carry every violation. The Python
//! module (`weir._native`) and, later, the Kinesis consumer are thin layers over it.
//!
//! ```no_run
//! # async fn demo() -> weir_planner::Result<()> {
//! use weir_planner::{Contract, InputFormat, PipelineSql, Processor};
//! let processor = Processor::new(
//!     Contract::from_path("contracts/shop_events.json")?,
//!     Some(PipelineSql::from_path("sql/pipeline/shop_events.sql")?),
//! );
//! let outcome = processor.process(br#"{"event_id": "..."}"#, InputFormat::Ndjson).await?;
//! println!("{} valid, {} rejected", outcome.stats.valid, outcome.stats.rejected);
//! # Ok(()) }
//! ```

mod contract;
mod decode;
mod error;
pub mod lake;
mod pipeline;
mod prepared;
mod processor;
pub mod stream;
mod validate;
mod violation;

pub use contract::{Contract, FieldKind, FieldSpec};
pub use decode::{decode, Decoded, InputFormat, RECORD_INDEX_COLUMN, SUPPORTED_INPUT_FORMATS};
pub use error::{ProcessorError, Result};
pub use pipeline::{session_state, PipelineSql, EVENTS_TABLE};
pub use processor::{rejected_schema, ProcessOutcome, ProcessStats, Processor, ValidationOutcome};
pub use validate::{check_rules, conform_table};
pub use violation::{violations_batch, violations_schema, Violation};
