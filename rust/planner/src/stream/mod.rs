//! Streaming: events through Kinesis into the lake, exactly once.
//!
//! ```text
//! Producer ──PutRecords (Weir records: many events each, zstd)──▶ Kinesis stream <prefix><dataset>
//!                                                                   │ shards, leased to consumers
//! Consumer: shard reads (GetRecords, concurrently) per commit interval ─▶ unpack
//!           ─▶ processor (contract + pipeline SQL)
//!           ─▶ raw.<dataset>_dead_letter, raw.<dataset>_rejected, raw.<dataset>
//!              (each commit carries its checkpoint: per shard, the last sequence number stored)
//! ```
//! Records other producers wrote (one JSON event, NDJSON, CSV lines, gzip, KPL aggregated)
//! are read too ([`foreign`], as the contract's `x-weir-record-format` says).
//! The same shard reads are a DataFusion table ([`KinesisTable`]) for ad-hoc SQL.
//! The ingest API's path ([`Ingest`]): grouped validation, then the producer.
//! Jobs, job records, batch metrics and shard leases live in the metastore ([`Metastore`]).

mod config;
mod consumer;
mod error;
mod foreign;
mod ingest;
mod kinesis;
mod ledger;
pub mod maintainer;
pub mod metastore;
mod producer;
pub mod record;
pub mod source;
mod unpack;

pub use config::StreamConfig;
pub use consumer::{Consumer, ConsumerOptions, OnFailure, ReplayReport, StartFrom};
pub use error::{StreamError, StreamResult};
pub use ingest::{publish_job, Checked, Ingest, IngestMode, IngestOutcome, Refusal, Timings, MAX_GROUPED_BODY};
pub use kinesis::Kinesis;
pub use ledger::JobLedger;
pub use metastore::{BatchMetrics, IdempotencyClaim, Job, JobRecord, Metastore};
pub use producer::{Producer, ProducerOptions, Publication, RecordReceipt};
pub use source::{KinesisTable, ReadLimits, ShardCursor, SourceRecord, StartPosition};
