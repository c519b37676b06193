//! Turning Arrow batches into Iceberg data files: conform the batches to the table schema
//! (by column name), split them by partition and write zstd Parquet through iceberg-rust's
//! writers, partitions on all cores at once. Nothing here commits; see [`super::append`] and [`super::maintain`].

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions, TimestampMicrosecondArray};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use iceberg::arrow::{schema_to_arrow_schema, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey, Struct};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};

use super::config::LakeConfig;
use super::error::{IcebergContext, LakeError, LakeResult};
use super::tables::INGESTED_AT_COLUMN;

/// The table's current schema as Arrow, with Iceberg field ids in the field metadata.
pub(crate) fn table_arrow_schema(table: &Table, name: &str) -> LakeResult<SchemaRef> {
    let schema = schema_to_arrow_schema(table.metadata().current_schema()).context(name, "cannot convert the table schema")?;
    Ok(Arc::new(schema))
}

/// Where each table column comes from.
enum Source {
    Column(usize),
    IngestedAt,
    Null,
}

/// Reorders and casts `batches` (with `schema`) to the table's Arrow schema `target`.
/// Columns match by name. A column the table lacks is an error (data is never dropped
/// silently); a missing optional column becomes nulls, and a missing
/// [`INGESTED_AT_COLUMN`] gets `ingested_at_micros`.
pub(crate) fn conform_batches(
    table: &str,
    target: &SchemaRef,
    schema: &ArrowSchema,
    batches: &[RecordBatch],
    ingested_at_micros: i64,
) -> LakeResult<Vec<RecordBatch>> {
    let schema_error = |message: String| LakeError::Schema { table: table.to_string(), message };
    let unknown: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| target.field_with_name(f.name()).is_err())
        .map(|f| f.name().as_str())
        .collect();
    if !unknown.is_empty() {
        return Err(schema_error(format!(
            "columns not in the table: {} (table columns: {})",
            unknown.join(", "),
            target.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut plan = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let source = match schema.index_of(field.name()) {
            Ok(index) => {
                let from = schema.field(index).data_type();
                if !can_cast_types(from, field.data_type()) {
                    return Err(schema_error(format!(
                        "column {} is {from}, which cannot be stored as {}",
                        field.name(),
                        field.data_type()
                    )));
                }
                Source::Column(index)
            }
            Err(_) if field.name() == INGESTED_AT_COLUMN => Source::IngestedAt,
            Err(_) if field.is_nullable() => Source::Null,
            Err(_) => return Err(schema_error(format!("required column {} is missing", field.name()))),
        };
        plan.push(source);
    }
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|batch| {
            let rows = batch.num_rows();
            let columns = plan
                .iter()
                .zip(target.fields())
                .map(|(source, field)| -> LakeResult<ArrayRef> {
                    Ok(match source {
                        Source::Column(i) => cast(batch.column(*i), field.data_type())?,
                        Source::IngestedAt => cast(
                            &(Arc::new(TimestampMicrosecondArray::from(vec![ingested_at_micros; rows])) as ArrayRef),
                            field.data_type(),
                        )?,
                        Source::Null => new_null_array(field.data_type(), rows),
                    })
                })
                .collect::<LakeResult<Vec<_>>>()?;
            RecordBatch::try_new_with_options(target.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(rows)))
                .map_err(|e| schema_error(e.to_string()))
        })
        .collect()
}

fn writer_properties(config: &LakeConfig) -> WriterProperties {
    let level = ZstdLevel::try_new(config.zstd_level).unwrap_or_default();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_created_by(format!("weir {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes conformed batches as Parquet data files of `table`, one or more per partition,
/// up to [`LakeConfig::write_concurrency`] partitions encoded at once.
pub(crate) async fn write_data_files(
    table: &Table,
    name: &str,
    batches: Vec<RecordBatch>,
    config: &LakeConfig,
) -> LakeResult<Vec<DataFile>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let parquet = ParquetWriterBuilder::new(writer_properties(config), schema.clone());
    let locations = DefaultLocationGenerator::new(metadata).context(name, "cannot place data files")?;
    let file_names = DefaultFileNameGenerator::new(format!("weir-{}", uuid::Uuid::now_v7()), None, DataFileFormat::Parquet);
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        config.target_file_size_bytes,
        table.file_io().clone(),
        locations,
        file_names,
    );
    let builder = DataFileWriterBuilder::new(rolling);
    if spec.is_unpartitioned() {
        let mut writer = builder.build(None).await.context(name, "cannot open a data file")?;
        for batch in batches {
            writer.write(batch).await.context(name, "cannot write a data file")?;
        }
        return writer.close().await.context(name, "cannot finish a data file");
    }
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
        .context(name, "cannot compute partitions")?;
    // Each partition's rows, in arrival order, then one writer per partition: up to one
    // partition encoding per core.
    let mut partitions: Vec<(PartitionKey, Vec<RecordBatch>)> = Vec::new();
    let mut index: HashMap<Struct, usize> = HashMap::new();
    for batch in batches {
        for (key, part) in splitter.split(&batch).context(name, "cannot compute partitions")? {
            match index.get(key.data()) {
                Some(&i) => partitions[i].1.push(part),
                None => {
                    index.insert(key.data().clone(), partitions.len());
                    partitions.push((key, vec![part]));
                }
            }
        }
    }
    let builder = Arc::new(builder);
    let written: Vec<Vec<DataFile>> = futures::stream::iter(partitions.into_iter().map(|(key, parts)| {
        let builder = builder.clone();
        let table = name.to_string();
        async move {
            let task = tokio::spawn({
                let table = table.clone();
                async move {
                    let mut writer = builder.build(Some(key)).await.context(&table, "cannot open a data file")?;
                    for part in parts {
                        writer.write(part).await.context(&table, "cannot write a data file")?;
                    }
                    writer.close().await.context(&table, "cannot finish a data file")
                }
            });
            task.await.map_err(|e| LakeError::Table { table, message: format!("a data file writer stopped: {e}") })?
        }
    }))
    .buffered(config.write_concurrency())
    .try_collect()
    .await?;
    Ok(written.into_iter().flatten().collect())
}
