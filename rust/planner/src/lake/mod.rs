//! The lakehouse: Iceberg tables in an SQL catalog, where every part of Weir meets.
//!
//! A [`Lake`] opens the Iceberg SQL catalog kept in the metastore database (SQLite file by
//! default, PostgreSQL when several machines share it) over a warehouse (a local folder or an
//! S3 bucket), all named by one [`LakeConfig`]. It creates tables from their definitions
//! ([`TableDef`]; a dataset's come from `crate::dataset`), appends Arrow batches as zstd
//! Parquet in one fast-append snapshot per call ([`Lake::append`]) or replaces a table's
//! contents in one snapshot ([`Lake::write`] with [`WriteMode::Overwrite`]), lists snapshots and data files for the
//! dashboard ([`inspect`]), keeps tables fast with compaction and snapshot expiry
//! ([`maintain`]), evolves a table's schema when its definition changes compatibly
//! ([`Lake::evolve_table`]), and scans tables for DataFusion on every core ([`LakeTable`]).
//! pyiceberg (`SqlCatalog` named [`CATALOG_NAME`]) and DuckDB
//! (`iceberg_scan`) read the same tables.

mod append;
mod catalog;
mod checkpoint;
mod commit;
mod config;
mod error;
mod evolve;
pub mod inspect;
pub mod maintain;
mod orphans;
pub mod policy;
mod scan;
pub mod tables;
mod write;

pub use append::{CommitInfo, WriteMode};
pub use catalog::Lake;
pub use checkpoint::{compare_sequence_numbers, Checkpoint, CheckpointAdvance, ShardAdvance, CHECKPOINT_PROPERTY};
pub use config::{LakeConfig, MaintenancePolicy, S3Settings, CATALOG_NAME};
pub use error::{LakeError, LakeResult};
pub use evolve::{SchemaChange, SCHEMA_ID_PROPERTY};
pub use maintain::{CompactOptions, CompactReport, ExpireOptions, ExpireReport};
pub use orphans::{OrphanReport, SupersededMetadata};
pub use policy::MaintenanceReport;
pub use scan::{LakeScanExec, LakeTable};
pub use tables::{ingested_at_type, PartitionField, TableDef, INGESTED_AT_COLUMN};
