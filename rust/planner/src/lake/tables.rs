//! Table definitions: a table's name, Iceberg schema, partitioning and properties, built from
//! an Arrow schema. What a dataset's tables look like is decided by [`crate::dataset`]; the
//! analytics half defines its own (`marts.*`, `ops.*`) through `weir.lake.create_table`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, TimeUnit};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::{PartitionSpec, Schema, Transform, UnboundPartitionSpec};

use super::commit::PREVIOUS_VERSIONS_PROPERTY;
use super::config::LakeConfig;
use super::error::{LakeError, LakeResult};

/// When the row reached the lake (UTC, microseconds). [`super::Lake::append`] fills it with the
/// commit's wall-clock time when the data has no such column.
pub const INGESTED_AT_COLUMN: &str = "ingested_at";

/// One partition field: a transform of a column, written `day(event_time)`, `month(x)`,
/// `year(x)`, `hour(x)`, `bucket[16](x)`, `truncate[4](x)` or a bare column name (identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionField {
    pub column: String,
    pub transform: Transform,
}

impl PartitionField {
    pub fn new(column: impl Into<String>, transform: Transform) -> Self {
        Self { column: column.into(), transform }
    }

    /// The partition field's name, as Iceberg's Java library names it: `event_time_day`,
    /// `user_id_bucket`, the column itself for identity.
    pub fn field_name(&self) -> String {
        let suffix = match self.transform {
            Transform::Identity => return self.column.clone(),
            Transform::Bucket(_) => "bucket",
            Transform::Truncate(_) => "trunc",
            Transform::Year => "year",
            Transform::Month => "month",
            Transform::Day => "day",
            Transform::Hour => "hour",
            Transform::Void => "null",
            Transform::Unknown => "unknown",
        };
        format!("{}_{suffix}", self.column)
    }
}

impl std::str::FromStr for PartitionField {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "partition {text:?}: expected a column or transform(column), with transform one of \
                 identity, year, month, day, hour, bucket[N], truncate[N]"
            )
        };
        let (transform, column) = match text.strip_suffix(')').and_then(|t| t.split_once('(')) {
            Some((transform, column)) => (transform.trim().parse::<Transform>().map_err(|_| bad())?, column.trim()),
            None => (Transform::Identity, text),
        };
        if column.is_empty() || column.contains(['(', ')', ',']) || matches!(transform, Transform::Void | Transform::Unknown) {
            return Err(bad());
        }
        Ok(Self { column: column.to_string(), transform })
    }
}

impl std::fmt::Display for PartitionField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.transform, self.column)
    }
}

/// A table to create if missing: its name, Iceberg schema, partitioning and properties.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub namespace: String,
    pub name: String,
    pub schema: Schema,
    pub partition: Vec<PartitionField>,
    pub properties: HashMap<String, String>,
}

impl TableDef {
    /// A definition from an Arrow schema: types Iceberg lacks are widened (unsigned → signed
    /// 64-bit, string views → strings) and every column is optional (contracts, not storage,
    /// decide what is required). Each partition field must name a column its transform
    /// applies to.
    pub fn from_arrow(
        namespace: &str,
        name: &str,
        schema: &ArrowSchema,
        partition: &[PartitionField],
        config: &LakeConfig,
    ) -> LakeResult<Self> {
        let qualified = format!("{namespace}.{name}");
        let schema_error = |message: String| LakeError::Schema { table: qualified.clone(), message };
        if namespace.trim().is_empty() || name.trim().is_empty() || namespace.contains('.') || name.contains('.') {
            return Err(LakeError::Table {
                table: qualified.clone(),
                message: "expected namespace.table, e.g. marts.fct_orders".into(),
            });
        }
        if schema.fields().is_empty() {
            return Err(schema_error("a table needs at least one column".into()));
        }
        let fields: Vec<Field> = schema.fields().iter().map(|f| storable_field(f)).collect();
        let iceberg_schema =
            arrow_schema_to_schema_auto_assign_ids(&ArrowSchema::new(fields)).map_err(|e| schema_error(e.to_string()))?;
        let def = Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            schema: iceberg_schema,
            partition: partition.to_vec(),
            properties: table_properties(config),
        };
        def.bound_partition_spec()?;
        Ok(def)
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The partition spec bound to the schema: checks each column exists and takes its
    /// transform (no `day` of a string).
    fn bound_partition_spec(&self) -> LakeResult<PartitionSpec> {
        let mut builder = PartitionSpec::builder(self.schema.clone());
        for field in &self.partition {
            if self.schema.field_by_name(&field.column).is_none() {
                return Err(LakeError::Schema {
                    table: self.qualified_name(),
                    message: format!("partition {field}: no column {}", field.column),
                });
            }
            builder = builder
                .add_partition_field(&field.column, field.field_name(), field.transform)
                .map_err(|e| LakeError::Schema { table: self.qualified_name(), message: format!("partition {field}: {e}") })?;
        }
        builder.build().map_err(|e| LakeError::Schema { table: self.qualified_name(), message: e.to_string() })
    }

    /// The partition spec to create the table with (unpartitioned when there is none).
    pub fn partition_spec(&self) -> LakeResult<UnboundPartitionSpec> {
        Ok(self.bound_partition_spec()?.into_unbound())
    }
}

/// Properties every Weir table gets: zstd Parquet (also declared for other writers, such as
/// pyiceberg, that honour it), the target file size, a commit retry budget generous
/// enough for many concurrent writers, and a bounded metadata log (the files that fall out
/// of it are deleted by maintenance once they are older than the time-travel window).
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
        (PREVIOUS_VERSIONS_PROPERTY.to_string(), config.maintenance.metadata_versions.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_fields_parse_and_print() {
        let day: PartitionField = "day(event_time)".parse().unwrap();
        assert_eq!(day, PartitionField::new("event_time", Transform::Day));
        assert_eq!((day.field_name(), day.to_string()), ("event_time_day".into(), "day(event_time)".into()));
        let bucket: PartitionField = " bucket[16]( user_id ) ".parse().unwrap();
        assert_eq!((bucket.transform, bucket.field_name()), (Transform::Bucket(16), "user_id_bucket".into()));
        assert_eq!("country".parse::<PartitionField>().unwrap().field_name(), "country");
        for bad in ["", "day()", "weekly(x)", "day(a, b)", "void(x)"] {
            assert!(bad.parse::<PartitionField>().unwrap_err().contains("expected a column"), "{bad}");
        }
    }

    #[test]
    fn partition_columns_must_exist_and_suit_the_transform() {
        let config = LakeConfig::new("/tmp/m.db", "/tmp/w");
        let schema = ArrowSchema::new(vec![
            Field::new("day", DataType::Date32, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        let ok = TableDef::from_arrow("marts", "t", &schema, &["month(day)".parse().unwrap()], &config).unwrap();
        assert_eq!(ok.partition_spec().unwrap().fields().len(), 1);
        let missing = TableDef::from_arrow("marts", "t", &schema, &["day(at)".parse().unwrap()], &config).unwrap_err();
        assert!(missing.to_string().contains("no column at"), "{missing}");
        let unsuited = TableDef::from_arrow("marts", "t", &schema, &["day(name)".parse().unwrap()], &config).unwrap_err();
        assert!(unsuited.to_string().contains("partition day(name)"), "{unsuited}");
        let unnamed = TableDef::from_arrow("marts", "", &schema, &[], &config).unwrap_err();
        assert!(unnamed.to_string().contains("namespace.table"), "{unnamed}");
    }
}
