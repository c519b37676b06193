//! Table definitions: what a dataset's lake tables look like, derived from its contract and
//! pipeline SQL so that changing a rule or a column is one edit.
//!
//! - `raw.<dataset>`: the pipeline's `transformed` output plus [`INGESTED_AT_COLUMN`],
//!   hidden-partitioned by `day(event_time)` (or the first timestamp column).
//! - `raw.<dataset>_rejected`: one row per rejected record (`record_index`, the `raw` text,
//!   every violation, the ingest `job_id`) plus [`INGESTED_AT_COLUMN`], partitioned by
//!   `day(ingested_at)`.
//! - `raw.<dataset>_dead_letter`: source records of consumer batches that failed every retry,
//!   with the error, partitioned by `day(ingested_at)`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, TimeUnit};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::{Schema, Transform, UnboundPartitionSpec};

use super::config::LakeConfig;
use super::error::{LakeError, LakeResult};
use crate::Processor;

/// When the row reached the lake (UTC, microseconds). [`super::Lake::append`] fills it with the
/// commit's wall-clock time when the data has no such column.
pub const INGESTED_AT_COLUMN: &str = "ingested_at";

/// The namespace of tables the ingestion path writes.
pub const RAW_NAMESPACE: &str = "raw";

/// A table to create if missing: its name, Iceberg schema, partitioning and properties.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub namespace: String,
    pub name: String,
    pub schema: Schema,
    /// Partitioned by `day(<column>)` when set.
    pub day_partition: Option<String>,
    pub properties: HashMap<String, String>,
}

impl TableDef {
    /// A definition from an Arrow schema: types Iceberg lacks are widened (unsigned → signed
    /// 64-bit, string views → strings), [`INGESTED_AT_COLUMN`] is added when missing, and
    /// every column is optional (contracts, not storage, decide what is required).
    pub fn from_arrow(
        namespace: &str,
        name: &str,
        schema: &ArrowSchema,
        day_partition: Option<&str>,
        config: &LakeConfig,
    ) -> LakeResult<Self> {
        let qualified = format!("{namespace}.{name}");
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| storable_field(f)).collect();
        if !fields.iter().any(|f| f.name() == INGESTED_AT_COLUMN) {
            fields.push(Field::new(INGESTED_AT_COLUMN, ingested_at_type(), true));
        }
        if let Some(column) = day_partition {
            match fields.iter().find(|f| f.name() == column).map(|f| f.data_type()) {
                Some(DataType::Timestamp(_, _)) | Some(DataType::Date32) => {}
                Some(other) => {
                    return Err(LakeError::Schema {
                        table: qualified,
                        message: format!("partition column {column} is {other}, not a timestamp or date"),
                    })
                }
                None => {
                    return Err(LakeError::Schema { table: qualified, message: format!("no partition column {column}") })
                }
            }
        }
        let iceberg_schema = arrow_schema_to_schema_auto_assign_ids(&ArrowSchema::new(fields))
            .map_err(|e| LakeError::Schema { table: qualified.clone(), message: e.to_string() })?;
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            schema: iceberg_schema,
            day_partition: day_partition.map(str::to_string),
            properties: table_properties(config),
        })
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The partition spec: `day(<column>)` named `<column>_day`, or unpartitioned.
    pub fn partition_spec(&self) -> LakeResult<UnboundPartitionSpec> {
        let builder = UnboundPartitionSpec::builder();
        let Some(column) = &self.day_partition else {
            return Ok(builder.build());
        };
        let source = self.schema.field_by_name(column).ok_or_else(|| LakeError::Schema {
            table: self.qualified_name(),
            message: format!("no partition column {column}"),
        })?;
        builder
            .add_partition_field(source.id, format!("{column}_day"), Transform::Day)
            .map(|b| b.build())
            .map_err(|e| LakeError::Schema { table: self.qualified_name(), message: e.to_string() })
    }
}

/// Properties every Weir table gets: zstd Parquet (also declared for other writers, such as
/// pyiceberg, that honour it), the target file size, and a commit retry budget generous
/// enough for many concurrent writers.
fn table_properties(config: &LakeConfig) -> HashMap<String, String> {
    HashMap::from([
        ("write.format.default".to_string(), "parquet".to_string()),
        ("write.parquet.compression-codec".to_string(), "zstd".to_string()),
        ("write.parquet.compression-level".to_string(), config.zstd_level.to_string()),
        ("write.target-file-size-bytes".to_string(), config.target_file_size_bytes.to_string()),
        ("commit.retry.num-retries".to_string(), config.commit_attempts.to_string()),
        ("commit.retry.min-wait-ms".to_string(), "10".to_string()),
        ("commit.retry.max-wait-ms".to_string(), "1000".to_string()),
        ("commit.retry.total-timeout-ms".to_string(), "600000".to_string()),
        ("weir.managed".to_string(), "true".to_string()),
    ])
}

pub fn ingested_at_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The nearest type Iceberg can store, recursively, with every field optional.
fn storable_field(field: &Field) -> Field {
    Field::new(field.name(), storable_type(field.data_type()), true)
}

fn storable_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::UInt8 | DataType::UInt16 | DataType::Int8 | DataType::Int16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Dictionary(_, value) => storable_type(value),
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) | DataType::LargeListView(item) => {
            DataType::List(Arc::new(storable_field(item)))
        }
        DataType::Struct(fields) => {
            DataType::Struct(Fields::from(fields.iter().map(|f| storable_field(f)).collect::<Vec<_>>()))
        }
        other => other.clone(),
    }
}

/// A dataset's tables, derived from its processor (contract + pipeline SQL).
#[derive(Debug, Clone)]
pub struct DatasetTables {
    /// `raw.<dataset>`: the transformed valid rows.
    pub valid: TableDef,
    /// `raw.<dataset>_rejected`: rejected records with every violation.
    pub rejected: TableDef,
    /// `raw.<dataset>_dead_letter`: source records of batches that failed for good.
    pub dead_letter: TableDef,
}

impl DatasetTables {
    /// The definitions in the order a consumer commits a batch to them: the valid table last,
    /// so its checkpoint covers everything the others hold.
    pub fn in_commit_order(&self) -> [&TableDef; 3] {
        [&self.dead_letter, &self.rejected, &self.valid]
    }
}

/// Column of `_rejected` and `_dead_letter` naming the ingest job a record came with.
pub const JOB_ID_COLUMN: &str = "job_id";

/// Schema of `raw.<dataset>_rejected` (before [`INGESTED_AT_COLUMN`]): the processor's rejected
/// rows plus the ingest job, where `record_index` counts records within that job.
pub fn rejected_table_schema() -> ArrowSchema {
    let mut fields: Vec<Field> = crate::rejected_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(JOB_ID_COLUMN, DataType::Utf8, true));
    ArrowSchema::new(fields)
}

/// Schema of `raw.<dataset>_dead_letter` (before [`INGESTED_AT_COLUMN`]): one row per source
/// record of a batch that failed every attempt, with the error.
pub fn dead_letter_schema() -> ArrowSchema {
    ArrowSchema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("shard_id", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Utf8, false),
        Field::new("partition_key", DataType::Utf8, false),
        Field::new(JOB_ID_COLUMN, DataType::Utf8, true),
        Field::new("arrival_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("data", DataType::Binary, false),
        Field::new("error", DataType::Utf8, false),
    ])
}

/// The tables of a dataset, derived from its processor (contract + pipeline SQL).
pub async fn dataset_tables(processor: &Processor, config: &LakeConfig) -> LakeResult<DatasetTables> {
    let dataset = processor.contract().name.clone();
    let output = processor.output_schema().await?;
    let partition = if output.field_with_name("event_time").is_ok() {
        Some("event_time".to_string())
    } else {
        output
            .fields()
            .iter()
            .find(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
            .map(|f| f.name().clone())
    };
    let valid = TableDef::from_arrow(RAW_NAMESPACE, &dataset, &output, partition.as_deref(), config)?;
    let rejected = TableDef::from_arrow(
        RAW_NAMESPACE,
        &format!("{dataset}_rejected"),
        &rejected_table_schema(),
        Some(INGESTED_AT_COLUMN),
        config,
    )?;
    let dead_letter = TableDef::from_arrow(
        RAW_NAMESPACE,
        &format!("{dataset}_dead_letter"),
        &dead_letter_schema(),
        Some(INGESTED_AT_COLUMN),
        config,
    )?;
    Ok(DatasetTables { valid, rejected, dead_letter })
}

impl super::Lake {
    /// Creates the dataset's tables if missing (race-safe) and returns their definitions.
    pub async fn ensure_dataset(&self, processor: &Processor) -> LakeResult<DatasetTables> {
        let tables = dataset_tables(processor, self.config()).await?;
        for def in tables.in_commit_order() {
            self.ensure_table(def).await?;
        }
        Ok(tables)
    }
}
