//! Weir's engine: the processor, the lakehouse and Kinesis streaming.
//!
//! The crate is laid out by concern:
//!
//! * `processor/`: data contracts, decoding JSON/NDJSON/CSV (`processor/decode/`), columnar
//!   validation, the pipeline SQL planned once and run per batch in its own DataFusion
//!   session, and [`Processor`], which chains them. Its public items are re-exported here.
//! * [`dataset`]: a dataset's lake tables, derived from its contract and pipeline SQL; the
//!   one place that joins the processor and the lake.
//! * [`lake`]: Iceberg tables in an SQL catalog: writes, commits, checkpoints, maintenance.
//! * [`stream`]: the Kinesis producer, record format, source table and consumer.
//!
//! [`Processor`] is the entry point: it compiles a [`Contract`] (`contracts/<dataset>.json`)
//! and a [`PipelineSql`] (`sql/pipeline/<dataset>.sql`) once, then turns input bytes into
//! transformed Arrow batches plus rejected records that carry every violation. The Python
//! module (`weir._native`) and the Kinesis consumer are thin layers over it.
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

pub mod dataset;
pub mod lake;
pub mod settings;
mod processor;
pub mod stream;

pub use processor::{
    check_rules, conform_table, decode, position_fields, rejected_schema, session_state, violations_batch,
    violations_schema, with_positions, Contract, Decoded, FieldKind, FieldSpec, InputFormat, KinesisPosition, PipelineSql,
    ProcessOutcome, ProcessStats, Processor, ProcessorError, RecordFormat, Result, ValidationOutcome, Violation,
    EVENTS_TABLE, POSITION_COLUMNS, RECORD_INDEX_COLUMN, SUPPORTED_INPUT_FORMATS,
};
