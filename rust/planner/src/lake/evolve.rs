//! Schema evolution: compares a table's live schema and partitioning with the definition Weir
//! derives for it (for a dataset's tables, from its contract and pipeline SQL), applies the
//! changes Iceberg allows in one schema-change commit, and refuses the others before any
//! data moves.
//!
//! * Compatible: a new column (always optional: rows written before it read as null), a
//!   required column made optional, and the type promotions of the Iceberg spec (int → long,
//!   float → double, decimal(P, S) → decimal(P', S) with P' > P).
//! * Breaking: a column the definition no longer has (removed, or renamed: a rename shows as
//!   one column removed and one added), any other type change (narrowing included), and a
//!   different partitioning.
//!
//! The commit is Weir's own compare-and-swap, like every commit: it takes the process's turn
//! at the table, and when another process changed the table first the comparison is made
//! again against the winner's schema, so consumers racing to apply the same change leave
//! exactly one schema change. An empty snapshot follows it, so that readers (which scan
//! with the current snapshot's schema) see the new columns at once. Old snapshots keep
//! their own schema (time travel reads them with it); new columns get fresh field ids, so
//! old data files read them as null.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, TableMetadata, Type};

use super::catalog::Lake;
use super::commit::{commit_metadata_change, commit_snapshot, Change};
use super::error::{IcebergContext, LakeError, LakeResult};
use super::tables::{PartitionField, TableDef};

/// One difference between a table and its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// A column the definition has and the table lacks: added as an optional column.
    AddColumn { column: String, data_type: String },
    /// A required column of the table that the definition makes optional.
    MakeOptional { column: String },
    /// A type Iceberg widens in place (int → long, float → double, decimal precision).
    Promote { column: String, from: String, to: String },
    /// A column the table has and the definition lacks (removed or renamed).
    DropColumn { column: String, data_type: String },
    /// A type change Iceberg cannot make: a narrower type, or another type altogether.
    ChangeType { column: String, from: String, to: String },
    /// A different partitioning of the table.
    Repartition { from: Vec<String>, to: Vec<String> },
}

impl SchemaChange {
    /// Whether Weir applies this change itself (otherwise it refuses it).
    pub fn is_compatible(&self) -> bool {
        matches!(self, Self::AddColumn { .. } | Self::MakeOptional { .. } | Self::Promote { .. })
    }

    /// The column concerned (`None` for a partitioning change).
    pub fn column(&self) -> Option<&str> {
        match self {
            Self::AddColumn { column, .. }
            | Self::MakeOptional { column }
            | Self::Promote { column, .. }
            | Self::DropColumn { column, .. }
            | Self::ChangeType { column, .. } => Some(column),
            Self::Repartition { .. } => None,
        }
    }

    /// A short name of the kind of change: `add`, `optional`, `promote`, `drop`, `type`,
    /// `partition`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AddColumn { .. } => "add",
            Self::MakeOptional { .. } => "optional",
            Self::Promote { .. } => "promote",
            Self::DropColumn { .. } => "drop",
            Self::ChangeType { .. } => "type",
            Self::Repartition { .. } => "partition",
        }
    }
}

impl std::fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AddColumn { column, data_type } => {
                write!(f, "add column {column} ({data_type}, optional; rows written before read it as null)")
            }
            Self::MakeOptional { column } => write!(f, "make column {column} optional"),
            Self::Promote { column, from, to } => write!(f, "promote column {column} from {from} to {to}"),
            Self::DropColumn { column, data_type } => write!(
                f,
                "column {column} ({data_type}) is in the table but no longer in the definition: removing or \
                 renaming a column would hide the data already stored in it"
            ),
            Self::ChangeType { column, from, to } => write!(
                f,
                "column {column} is {from} in the table but {to} in the definition: Iceberg only widens int to \
                 long, float to double and a decimal's precision"
            ),
            Self::Repartition { from, to } => write!(
                f,
                "partitioning changes from [{}] to [{}]: the files already stored are partitioned the old way",
                from.join(", "),
                to.join(", ")
            ),
        }
    }
}

/// The changes that would make the table whose metadata is `metadata` match `def`: columns
/// by name, in the definition's order, then the table's columns the definition lacks, then
/// the partitioning. Empty when they match.
pub fn schema_changes(metadata: &TableMetadata, def: &TableDef) -> Vec<SchemaChange> {
    let live = metadata.current_schema();
    let mut changes = Vec::new();
    for field in def.schema.as_struct().fields() {
        let Some(old) = live.as_struct().field_by_name(&field.name) else {
            changes.push(SchemaChange::AddColumn { column: field.name.clone(), data_type: field.field_type.to_string() });
            continue;
        };
        if !same_type(&old.field_type, &field.field_type) {
            let (from, to) = (old.field_type.to_string(), field.field_type.to_string());
            let column = field.name.clone();
            changes.push(match (old.field_type.as_ref(), field.field_type.as_ref()) {
                (Type::Primitive(a), Type::Primitive(b)) if promotes(a, b) => SchemaChange::Promote { column, from, to },
                _ => SchemaChange::ChangeType { column, from, to },
            });
        }
        if old.required && !field.required {
            changes.push(SchemaChange::MakeOptional { column: field.name.clone() });
        }
    }
    for old in live.as_struct().fields() {
        if def.schema.as_struct().field_by_name(&old.name).is_none() {
            changes.push(SchemaChange::DropColumn { column: old.name.clone(), data_type: old.field_type.to_string() });
        }
    }
    let partitioned: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| match live.name_by_field_id(f.source_id) {
            Some(column) => PartitionField::new(column, f.transform).to_string(),
            None => format!("{}(#{})", f.transform, f.source_id),
        })
        .collect();
    let wanted: Vec<String> = def.partition.iter().map(PartitionField::to_string).collect();
    if partitioned != wanted {
        changes.push(SchemaChange::Repartition { from: partitioned, to: wanted });
    }
    changes
}

/// Whether Iceberg can promote `from` to `to` in place.
fn promotes(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    match (from, to) {
        (PrimitiveType::Int, PrimitiveType::Long) | (PrimitiveType::Float, PrimitiveType::Double) => true,
        (PrimitiveType::Decimal { precision: p1, scale: s1 }, PrimitiveType::Decimal { precision: p2, scale: s2 }) => {
            s1 == s2 && p2 > p1
        }
        _ => false,
    }
}

/// The same type, nested fields compared by name, type and optionality (not by field id:
/// a definition's ids are its own).
fn same_type(a: &Type, b: &Type) -> bool {
    let same_field = |x: &NestedFieldRef, y: &NestedFieldRef| {
        x.name == y.name && x.required == y.required && same_type(&x.field_type, &y.field_type)
    };
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::Struct(x), Type::Struct(y)) => {
            x.fields().len() == y.fields().len() && x.fields().iter().zip(y.fields()).all(|(f, g)| same_field(f, g))
        }
        (Type::List(x), Type::List(y)) => same_field(&x.element_field, &y.element_field),
        (Type::Map(x), Type::Map(y)) => same_field(&x.key_field, &y.key_field) && same_field(&x.value_field, &y.value_field),
        _ => false,
    }
}

/// `field` with fresh ids from `next_id` on, nested fields included.
fn with_fresh_ids(field: &NestedField, next_id: &mut i32) -> NestedFieldRef {
    *next_id += 1;
    let id = *next_id;
    let field_type = match field.field_type.as_ref() {
        Type::Primitive(_) => field.field_type.as_ref().clone(),
        Type::Struct(s) => Type::Struct(StructType::new(s.fields().iter().map(|f| with_fresh_ids(f, next_id)).collect())),
        Type::List(l) => Type::List(ListType::new(with_fresh_ids(&l.element_field, next_id))),
        Type::Map(m) => Type::Map(MapType::new(with_fresh_ids(&m.key_field, next_id), with_fresh_ids(&m.value_field, next_id))),
    };
    Arc::new(NestedField { id, field_type: Box::new(field_type), ..field.clone() })
}

/// The table's schema with the compatible `changes` applied: promoted types and relaxed
/// columns in place, new columns at the end with ids after `last_column_id`.
fn evolved_schema(live: &Schema, def: &TableDef, changes: &[SchemaChange], last_column_id: i32) -> LakeResult<Schema> {
    let mut fields: Vec<NestedFieldRef> = live.as_struct().fields().to_vec();
    let mut next_id = last_column_id;
    for change in changes {
        let position = |column: &str| fields.iter().position(|f| f.name == column);
        match change {
            SchemaChange::AddColumn { column, .. } => {
                let field = def.schema.as_struct().field_by_name(column).expect("an added column is in the definition");
                let added = with_fresh_ids(&NestedField { required: false, ..field.as_ref().clone() }, &mut next_id);
                fields.push(added);
            }
            SchemaChange::MakeOptional { column } => {
                let i = position(column).expect("a relaxed column is in the table");
                fields[i] = Arc::new(NestedField { required: false, ..fields[i].as_ref().clone() });
            }
            SchemaChange::Promote { column, .. } => {
                let i = position(column).expect("a promoted column is in the table");
                let to = def.schema.as_struct().field_by_name(column).expect("a promoted column is in the definition");
                fields[i] = Arc::new(NestedField { field_type: to.field_type.clone(), ..fields[i].as_ref().clone() });
            }
            breaking => return Err(LakeError::Internal(format!("cannot apply a breaking change: {breaking}"))),
        }
    }
    Schema::builder()
        .with_fields(fields)
        .with_identifier_field_ids(live.identifier_field_ids())
        .build()
        .map_err(|e| LakeError::Schema { table: def.qualified_name(), message: format!("cannot evolve the schema: {e}") })
}

impl Lake {
    /// What would change to bring the table `def` names to `def`; `None` when the table does
    /// not exist yet (it would be created as `def` says).
    pub async fn schema_changes(&self, def: &TableDef) -> LakeResult<Option<Vec<SchemaChange>>> {
        let name = def.qualified_name();
        let ident = Lake::ident(&name)?;
        if !self.catalog().table_exists(&ident).await.context(&name, "cannot read the catalog")? {
            return Ok(None);
        }
        let table = self.load_table(&name).await?;
        Ok(Some(schema_changes(table.metadata(), def)))
    }

    /// Brings the existing table `def` names to `def` in one schema-change commit when every
    /// change is compatible, and returns the changes made (none when it already matches).
    /// A breaking change is refused with [`LakeError::Incompatible`] and nothing is changed.
    pub async fn evolve_table(&self, def: &TableDef) -> LakeResult<Vec<SchemaChange>> {
        let name = def.qualified_name();
        let committed = commit_metadata_change(self, &name, |metadata, location| {
            let changes = schema_changes(metadata, def);
            let breaking: Vec<String> = changes.iter().filter(|c| !c.is_compatible()).map(ToString::to_string).collect();
            if !breaking.is_empty() {
                return Err(LakeError::Incompatible { table: name.clone(), changes: breaking });
            }
            if changes.is_empty() {
                return Ok(None);
            }
            let schema = evolved_schema(metadata.current_schema(), def, &changes, metadata.last_column_id())?;
            let built = metadata
                .clone()
                .into_builder(Some(location.to_string()))
                .add_current_schema(schema)
                .and_then(|builder| builder.build())
                .context(&name, "cannot build the evolved metadata")?;
            Ok(Some((built.metadata, changes)))
        })
        .await?;
        let changes = match committed {
            Some((changes, attempts)) => {
                tracing::info!(
                    target: "weir::audit",
                    component = "lake",
                    event = "schema_evolved",
                    table = %name,
                    changes = %serde_json::to_string(&changes.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
                    attempts,
                );
                changes
            }
            None => Vec::new(),
        };
        self.snapshot_current_schema(&name).await?;
        Ok(changes)
    }

    /// Readers scan a table with its current snapshot's schema (iceberg-rust, and so
    /// `weir.connect()`), so after a schema change they would not see the new columns, and a
    /// query naming one would fail, until the next commit. An empty snapshot written with
    /// the new schema (summary `weir.schema-id`) ends that at once; it is also written when
    /// a writer died between the schema change and it.
    async fn snapshot_current_schema(&self, name: &str) -> LakeResult<()> {
        let table = self.load_table(name).await?;
        let metadata = table.metadata();
        let schema_id = metadata.current_schema_id();
        if metadata.current_snapshot().is_some_and(|s| s.schema_id() != Some(schema_id)) {
            let properties = HashMap::from([(SCHEMA_ID_PROPERTY.to_string(), schema_id.to_string())]);
            commit_snapshot(self, name, Change::Append { added: &[] }, None, &properties).await?;
        }
        Ok(())
    }
}

/// Snapshot summary key of the empty snapshot that follows a schema change: the schema id.
pub const SCHEMA_ID_PROPERTY: &str = "weir.schema-id";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::LakeConfig;
    use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema, TimeUnit};
    use iceberg::spec::{FormatVersion, TableMetadataBuilder};

    fn def(fields: Vec<Field>, partition: &[&str]) -> TableDef {
        let config = LakeConfig::new("/tmp/m.db", "/tmp/w");
        let partition: Vec<PartitionField> = partition.iter().map(|p| p.parse().unwrap()).collect();
        TableDef::from_arrow("raw", "t", &ArrowSchema::new(fields), &partition, &config).unwrap()
    }

    fn metadata(def: &TableDef) -> TableMetadata {
        let sort_order = iceberg::spec::SortOrder::unsorted_order();
        TableMetadataBuilder::new(def.schema.clone(), def.partition_spec().unwrap(), sort_order, "/tmp/w/raw/t".into(), FormatVersion::V2, Default::default())
            .unwrap()
            .build()
            .unwrap()
            .metadata
    }

    fn base() -> Vec<Field> {
        vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("reading", DataType::Int32, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]
    }

    #[test]
    fn a_matching_definition_changes_nothing() {
        let table = def(base(), &["day(at)"]);
        assert_eq!(schema_changes(&metadata(&table), &table), vec![]);
    }

    #[test]
    fn added_columns_and_promotions_are_compatible_and_applied() {
        let table = def(base(), &["day(at)"]);
        let live = metadata(&table);
        let mut fields = base();
        fields[1] = Field::new("reading", DataType::Int64, true);
        fields.push(Field::new("humidity", DataType::Float64, true));
        let wanted = def(fields, &["day(at)"]);
        let changes = schema_changes(&live, &wanted);
        assert_eq!(
            changes,
            vec![
                SchemaChange::Promote { column: "reading".into(), from: "int".into(), to: "long".into() },
                SchemaChange::AddColumn { column: "humidity".into(), data_type: "double".into() },
            ]
        );
        assert!(changes.iter().all(SchemaChange::is_compatible));
        let evolved = evolved_schema(live.current_schema(), &wanted, &changes, live.last_column_id()).unwrap();
        let reading = evolved.field_by_name("reading").unwrap();
        // Same field id, wider type; the new column gets the next id.
        assert_eq!((reading.id, reading.field_type.to_string()), (live.current_schema().field_by_name("reading").unwrap().id, "long".into()));
        assert_eq!(evolved.field_by_name("humidity").unwrap().id, live.last_column_id() + 1);
        assert!(!evolved.field_by_name("humidity").unwrap().required);
    }

    #[test]
    fn removed_renamed_narrowed_and_repartitioned_are_breaking() {
        let mut fields = base();
        fields[1] = Field::new("reading", DataType::Int64, true);
        let table = def(fields, &["day(at)"]);
        let live = metadata(&table);
        // `id` renamed to `device`, `reading` narrowed to int, partitioned by month.
        let wanted = def(
            vec![
                Field::new("device", DataType::Utf8, true),
                Field::new("reading", DataType::Int32, true),
                Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            ],
            &["month(at)"],
        );
        let changes = schema_changes(&live, &wanted);
        let kinds: Vec<(&str, Option<&str>, bool)> = changes.iter().map(|c| (c.kind(), c.column(), c.is_compatible())).collect();
        assert_eq!(
            kinds,
            vec![
                ("add", Some("device"), true),
                ("type", Some("reading"), false),
                ("drop", Some("id"), false),
                ("partition", None, false),
            ]
        );
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert!(text[1].contains("reading is long in the table but int"), "{}", text[1]);
        assert!(text[2].contains("column id (string) is in the table but no longer"), "{}", text[2]);
        assert!(text[3].contains("from [day(at)] to [month(at)]"), "{}", text[3]);
    }

    #[test]
    fn a_different_type_is_not_a_promotion() {
        assert!(promotes(&PrimitiveType::Int, &PrimitiveType::Long));
        assert!(!promotes(&PrimitiveType::Long, &PrimitiveType::Int));
        assert!(!promotes(&PrimitiveType::Int, &PrimitiveType::Double));
        assert!(promotes(&PrimitiveType::Decimal { precision: 9, scale: 2 }, &PrimitiveType::Decimal { precision: 18, scale: 2 }));
        assert!(!promotes(&PrimitiveType::Decimal { precision: 9, scale: 2 }, &PrimitiveType::Decimal { precision: 18, scale: 3 }));
    }
}
