//! A dataset's lake tables, derived from its contract and pipeline SQL so that changing a rule
//! or a column is one edit. This module joins the processor (which knows the columns) and the
//! lake (which stores tables); neither knows the other.
//!
//! - `raw.<dataset>`: the pipeline's output plus `ingested_at`, partitioned as the contract's
//!   `x-weir-partition` declares (e.g. `["day(event_time)"]`); without a declaration, by day
//!   of the output's first timestamp column.
//! - `raw.<dataset>_rejected`: one row per rejected record (`record_index`, the `raw` text,
//!   every violation, the ingest `job_id`, the Kinesis position) plus `ingested_at`,
//!   partitioned by `day(ingested_at)`.
//! - `raw.<dataset>_dead_letter`: source records of consumer batches that failed every retry,
//!   with the error, partitioned by `day(ingested_at)`.

use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::Transform;

use crate::lake::{
    ingested_at_type, Lake, LakeConfig, LakeError, PartitionField, SchemaChange, TableDef, INGESTED_AT_COLUMN,
};
use crate::{Processor, ProcessorError};

/// The namespace of the tables the ingestion path writes.
pub const RAW_NAMESPACE: &str = "raw";
/// Suffix of the table of rejected records (`raw.<dataset>_rejected`).
pub const REJECTED_SUFFIX: &str = "_rejected";
/// Suffix of the table of records that failed every retry (`raw.<dataset>_dead_letter`).
pub const DEAD_LETTER_SUFFIX: &str = "_dead_letter";
/// Column of `_rejected` and `_dead_letter` naming the ingest job a record came with.
pub const JOB_ID_COLUMN: &str = "job_id";

/// Deriving or creating a dataset's tables failed: in the contract or pipeline, or in the lake.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// The names of a dataset's tables, in the order valid, rejected, dead letter.
pub fn table_names(dataset: &str) -> [String; 3] {
    [
        format!("{RAW_NAMESPACE}.{dataset}"),
        format!("{RAW_NAMESPACE}.{dataset}{REJECTED_SUFFIX}"),
        format!("{RAW_NAMESPACE}.{dataset}{DEAD_LETTER_SUFFIX}"),
    ]
}

/// The dataset a `raw.*` table belongs to, by its name alone (`raw.x_rejected` → `x`).
pub fn dataset_of(table: &str) -> Option<&str> {
    let name = table.strip_prefix(RAW_NAMESPACE)?.strip_prefix('.')?;
    let name = name.strip_suffix(REJECTED_SUFFIX).or_else(|| name.strip_suffix(DEAD_LETTER_SUFFIX)).unwrap_or(name);
    (!name.is_empty() && !name.contains('.')).then_some(name)
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

/// Schema of `raw.<dataset>_rejected` (before `ingested_at`): the processor's rejected rows
/// plus the ingest job, where `record_index` counts records within that job, and the
/// Kinesis record the event came in (`shard_id`, `sequence_number`, `arrival_time`). An
/// event of another producer's record has no job: its `record_index` counts events within
/// the Kinesis record or, for a KPL aggregated record, within the user record numbered
/// `sub_sequence_number`. The position columns came after the first tables were made, so
/// older rows have them null (a compatible change the tables evolve by).
pub fn rejected_table_schema() -> ArrowSchema {
    let mut fields: Vec<Field> = crate::rejected_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(JOB_ID_COLUMN, DataType::Utf8, true));
    fields.push(Field::new("shard_id", DataType::Utf8, true));
    fields.push(Field::new("sequence_number", DataType::Utf8, true));
    fields.push(Field::new("sub_sequence_number", DataType::Int64, true));
    fields.push(Field::new("arrival_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true));
    ArrowSchema::new(fields)
}

/// Schema of `raw.<dataset>_dead_letter` (before `ingested_at`): one row per source record of
/// a batch that failed every attempt (or that cannot be read), with the error.
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
        // Whether the record's rejected events were committed to `_rejected` by an attempt
        // before the batch failed (a replay does not store them again). Added after the
        // first tables were made: null in older rows.
        Field::new("rejected_stored", DataType::Boolean, true),
    ])
}

/// `schema` with `ingested_at` appended unless it has one.
fn with_ingested_at(schema: &ArrowSchema) -> ArrowSchema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    if !fields.iter().any(|f| f.name() == INGESTED_AT_COLUMN) {
        fields.push(Field::new(INGESTED_AT_COLUMN, ingested_at_type(), true));
    }
    ArrowSchema::new(fields)
}

/// The partitioning of `raw.<dataset>`: the contract's declaration, else day of the first
/// timestamp column of the pipeline's output.
fn valid_partition(processor: &Processor, output: &ArrowSchema) -> Result<Vec<PartitionField>, DatasetError> {
    let contract = processor.contract();
    if let Some(declared) = &contract.partition {
        return declared
            .iter()
            .map(|text| {
                text.parse::<PartitionField>().map_err(|message| {
                    DatasetError::Processor(ProcessorError::Contract {
                        contract: contract.name.clone(),
                        path: "/x-weir-partition".into(),
                        keyword: "x-weir-partition".into(),
                        message,
                    })
                })
            })
            .collect();
    }
    Ok(output
        .fields()
        .iter()
        .find(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        .map(|f| PartitionField::new(f.name().clone(), Transform::Day))
        .into_iter()
        .collect())
}

/// The tables of a dataset, derived from its processor (contract + pipeline SQL).
pub async fn dataset_tables(processor: &Processor, config: &LakeConfig) -> Result<DatasetTables, DatasetError> {
    let dataset = processor.contract().name.clone();
    let [valid_name, rejected_name, dead_letter_name] = table_names(&dataset).map(|n| n[RAW_NAMESPACE.len() + 1..].to_string());
    let output = processor.output_schema().await?;
    let by_ingestion = [PartitionField::new(INGESTED_AT_COLUMN, Transform::Day)];
    let valid = TableDef::from_arrow(
        RAW_NAMESPACE,
        &valid_name,
        &with_ingested_at(&output),
        &valid_partition(processor, &output)?,
        config,
    )?;
    let rejected =
        TableDef::from_arrow(RAW_NAMESPACE, &rejected_name, &with_ingested_at(&rejected_table_schema()), &by_ingestion, config)?;
    let dead_letter =
        TableDef::from_arrow(RAW_NAMESPACE, &dead_letter_name, &with_ingested_at(&dead_letter_schema()), &by_ingestion, config)?;
    Ok(DatasetTables { valid, rejected, dead_letter })
}

/// Creates the dataset's tables if missing and evolves existing ones to the contract and
/// pipeline's shape (both race-safe), then returns their definitions. A breaking change
/// (see [`crate::lake::SchemaChange`]) fails with [`LakeError::Incompatible`] before any
/// table is changed: every table is compared first.
pub async fn ensure_dataset(lake: &Lake, processor: &Processor) -> Result<DatasetTables, DatasetError> {
    let tables = dataset_tables(processor, lake.config()).await?;
    let changes = dataset_changes(lake, &tables).await?;
    if let Some((table, breaking)) = changes.iter().find_map(|(table, changes)| {
        let breaking: Vec<String> = changes.iter().flatten().filter(|c| !c.is_compatible()).map(ToString::to_string).collect();
        (!breaking.is_empty()).then_some((table, breaking))
    }) {
        return Err(LakeError::Incompatible { table: table.clone(), changes: breaking }.into());
    }
    for def in tables.in_commit_order() {
        // A table created meanwhile by an older definition is evolved too.
        lake.ensure_table(def).await?;
        lake.evolve_table(def).await?;
    }
    record_contract_version(lake, &tables.valid.qualified_name(), &processor.contract().version).await?;
    Ok(tables)
}

/// Property of `raw.<dataset>`: the contract versions its tables were ensured with, oldest
/// first, as a JSON list of `{"version", "since_ms", "schema_id", "after_snapshot_id"}`
/// (the schema then current, and the snapshot the version's first rows come after). Kept
/// in the table, so it outlives expired snapshots; `weir contract history` reads it.
pub const CONTRACT_HISTORY_PROPERTY: &str = "weir.contract-history";

/// Appends `version` to the table's [`CONTRACT_HISTORY_PROPERTY`] unless it is the last
/// one there. Returns whether it was appended.
async fn record_contract_version(lake: &Lake, table: &str, version: &str) -> Result<bool, LakeError> {
    lake.update_properties(table, |metadata| {
        let mut history: Vec<serde_json::Value> = metadata
            .properties()
            .get(CONTRACT_HISTORY_PROPERTY)
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        if history.last().and_then(|last| last.get("version")).and_then(|v| v.as_str()) == Some(version) {
            return None;
        }
        history.push(serde_json::json!({
            "version": version,
            "since_ms": chrono::Utc::now().timestamp_millis(),
            "schema_id": metadata.current_schema_id(),
            "after_snapshot_id": metadata.current_snapshot().map(|s| s.snapshot_id()),
        }));
        Some(std::collections::HashMap::from([(CONTRACT_HISTORY_PROPERTY.to_string(), serde_json::Value::from(history).to_string())]))
    })
    .await
}

/// For each of the dataset's tables (in commit order), its name and what its definition
/// would change in it; `None` for a table that does not exist yet.
pub async fn dataset_changes(
    lake: &Lake,
    tables: &DatasetTables,
) -> Result<Vec<(String, Option<Vec<SchemaChange>>)>, DatasetError> {
    let mut changes = Vec::new();
    for def in tables.in_commit_order() {
        changes.push((def.qualified_name(), lake.schema_changes(def).await?));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_and_their_dataset_agree() {
        let names = table_names("shop_events");
        assert_eq!(names, ["raw.shop_events", "raw.shop_events_rejected", "raw.shop_events_dead_letter"]);
        for name in &names {
            assert_eq!(dataset_of(name), Some("shop_events"));
        }
        for other in ["marts.shop_events", "raw.", "raw._rejected", "shop_events"] {
            assert_eq!(dataset_of(other), None, "{other}");
        }
    }
}
