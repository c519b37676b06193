//! Turning Arrow batches into Iceberg data files: conform the batches to the table schema
//! (by column name), split them by partition and write zstd Parquet through iceberg-rust's
//! writers, partitions on all cores at once. Nothing here commits; see [`super::append`] and [`super::maintain`].

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{can_cast_types, cast, take_record_batch};
use datafusion::arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use iceberg::arrow::{arrow_struct_to_literal, schema_to_arrow_schema, PartitionValueCalculator};
use iceberg::spec::{DataFile, DataFileFormat, Literal, PartitionKey, PartitionSpecRef};
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
    let partitions = split_by_partition(&schema, &spec, &batches).context(name, "cannot compute partitions")?;
    let builder = Arc::new(builder);
    // Largest partitions first, and a new one started as soon as any finishes, so no core
    // waits behind a large partition at the end; the files are listed in partition order.
    let mut partitions: Vec<(usize, (PartitionKey, Vec<PartitionRows>))> = partitions.into_iter().enumerate().collect();
    partitions.sort_by_key(|(_, (_, parts))| std::cmp::Reverse(parts.iter().map(PartitionRows::len).sum::<usize>()));
    let mut written: Vec<(usize, Vec<DataFile>)> = futures::stream::iter(partitions.into_iter().map(|(order, (key, parts))| {
        let builder = builder.clone();
        let table = name.to_string();
        async move {
            let task = tokio::spawn({
                let table = table.clone();
                async move {
                    let mut writer = builder.build(Some(key)).await.context(&table, "cannot open a data file")?;
                    for rows in parts {
                        let batches =
                            rows.parts().map_err(|e| LakeError::Table { table: table.clone(), message: e.to_string() })?;
                        for batch in batches {
                            writer.write(batch).await.context(&table, "cannot write a data file")?;
                        }
                    }
                    writer.close().await.context(&table, "cannot finish a data file")
                }
            });
            let files =
                task.await.map_err(|e| LakeError::Table { table, message: format!("a data file writer stopped: {e}") })??;
            Ok::<_, LakeError>((order, files))
        }
    }))
    .buffer_unordered(config.write_concurrency())
    .try_collect()
    .await?;
    written.sort_by_key(|(order, _)| *order);
    Ok(written.into_iter().flat_map(|(_, files)| files).collect())
}

/// Rows of one input batch that belong to one partition, in arrival order. They are cut
/// out by the partition's writer task ([`PartitionRows::parts`]), so on all cores too.
struct PartitionRows {
    batch: RecordBatch,
    rows: Rows,
}

#[derive(Clone)]
enum Rows {
    /// The whole batch.
    All,
    /// Runs of consecutive rows as (offset, length): zero-copy slices. Events mostly arrive
    /// in time order, so a day's rows come in long runs.
    Runs(Vec<(usize, usize)>),
    /// Scattered rows, gathered into a new batch.
    Scattered(UInt32Array),
}

/// Runs shorter than this on average are gathered instead of sliced (many tiny slices cost
/// the Parquet writer more than one copy).
const MIN_AVERAGE_RUN: usize = 256;

impl PartitionRows {
    fn new(batch: RecordBatch, rows: Vec<u32>) -> Self {
        if rows.len() == batch.num_rows() {
            return Self { batch, rows: Rows::All };
        }
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &row in &rows {
            match runs.last_mut() {
                Some((offset, length)) if *offset + *length == row as usize => *length += 1,
                _ => runs.push((row as usize, 1)),
            }
        }
        let rows = if runs.len() * MIN_AVERAGE_RUN <= rows.len() {
            Rows::Runs(runs)
        } else {
            Rows::Scattered(UInt32Array::from(rows))
        };
        Self { batch, rows }
    }

    fn len(&self) -> usize {
        match &self.rows {
            Rows::All => self.batch.num_rows(),
            Rows::Runs(runs) => runs.iter().map(|(_, length)| length).sum(),
            Rows::Scattered(rows) => rows.len(),
        }
    }

    /// The rows as batches to write.
    fn parts(self) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(match self.rows {
            Rows::All => vec![self.batch],
            Rows::Runs(runs) => runs.into_iter().map(|(offset, length)| self.batch.slice(offset, length)).collect(),
            Rows::Scattered(rows) => vec![take_record_batch(&self.batch, &rows)?],
        })
    }
}

/// Groups the rows of `batches` by partition (in order of first appearance, rows in arrival
/// order). Partition values are computed column-wise by the spec's transforms and rows are
/// grouped by their encoded values: iceberg-rust's `RecordBatchPartitionSplitter` builds a
/// literal per row and filters the whole batch once per partition, which for a bulk append
/// over thirty days took longer than encoding the files.
fn split_by_partition(
    schema: &iceberg::spec::SchemaRef,
    spec: &PartitionSpecRef,
    batches: &[RecordBatch],
) -> iceberg::Result<Vec<(PartitionKey, Vec<PartitionRows>)>> {
    let calculator = PartitionValueCalculator::try_new(spec, schema)?;
    let partition_type = calculator.partition_type().clone();
    let arrow_error = |e: ArrowError| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string());
    let mut partitions: Vec<(PartitionKey, Vec<PartitionRows>)> = Vec::new();
    let mut known: HashMap<Vec<u8>, usize> = HashMap::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let values = calculator.calculate(batch)?;
        let values = values.as_any().downcast_ref::<StructArray>().ok_or_else(|| {
            iceberg::Error::new(iceberg::ErrorKind::DataInvalid, "partition values are not a struct")
        })?;
        let converter = RowConverter::new(values.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())
            .map_err(arrow_error)?;
        let encoded = converter.convert_columns(values.columns()).map_err(arrow_error)?;
        // Per partition met in this batch: (index in `partitions`, its rows here).
        let mut here: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut in_batch: HashMap<&[u8], usize> = HashMap::new();
        // Rows usually come in runs of one partition (events arrive in time order).
        let mut last: Option<(&[u8], usize)> = None;
        for row in 0..batch.num_rows() {
            let key = encoded.row(row).data();
            let known_slot = match last {
                Some((last_key, slot)) if last_key == key => Some(slot),
                _ => in_batch.get(key).copied(),
            };
            let slot = match known_slot {
                Some(slot) => slot,
                None => {
                    let index = match known.get(key) {
                        Some(&index) => index,
                        None => {
                            let first = values.slice(row, 1);
                            let data = match arrow_struct_to_literal(&(Arc::new(first) as ArrayRef), &partition_type)?.pop() {
                                Some(Some(Literal::Struct(data))) => data,
                                _ => {
                                    return Err(iceberg::Error::new(
                                        iceberg::ErrorKind::DataInvalid,
                                        "a partition value is not a struct",
                                    ))
                                }
                            };
                            known.insert(key.to_vec(), partitions.len());
                            partitions.push((PartitionKey::new(spec.as_ref().clone(), schema.clone(), data), Vec::new()));
                            partitions.len() - 1
                        }
                    };
                    in_batch.insert(key, here.len());
                    here.push((index, Vec::new()));
                    here.len() - 1
                }
            };
            last = Some((key, slot));
            here[slot].1.push(row as u32);
        }
        for (index, rows) in here {
            partitions[index].1.push(PartitionRows::new(batch.clone(), rows));
        }
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array};
    use iceberg::spec::{NestedField, PartitionSpec, PrimitiveType, Schema, Transform, Type};

    /// Rows of two batches over partitions `value % 3` (and a null value): grouped in order
    /// of first appearance, each partition's rows in arrival order, with its key.
    #[test]
    fn rows_are_grouped_by_partition_in_arrival_order() {
        let schema = Arc::new(
            Schema::builder()
                .with_fields(vec![
                    NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                    NestedField::optional(2, "bucket", Type::Primitive(PrimitiveType::Int)).into(),
                ])
                .build()
                .unwrap(),
        );
        let spec = Arc::new(
            PartitionSpec::builder(schema.clone()).add_partition_field("bucket", "bucket", Transform::Identity).unwrap().build().unwrap(),
        );
        let arrow = Arc::new(schema_to_arrow_schema(&schema).unwrap());
        let batch = |ids: Vec<i64>, buckets: Vec<Option<i32>>| {
            RecordBatch::try_new(arrow.clone(), vec![Arc::new(Int64Array::from(ids)), Arc::new(Int32Array::from(buckets))]).unwrap()
        };
        let batches = vec![
            batch(vec![0, 1, 2, 3, 4], vec![Some(1), Some(2), Some(1), None, Some(2)]),
            batch(vec![5, 6], vec![Some(7), Some(7)]),
            batch(vec![7, 8], vec![Some(2), None]),
        ];
        let partitions = split_by_partition(&schema, &spec, &batches).unwrap();
        let seen: Vec<(Option<Literal>, Vec<i64>)> = partitions
            .iter()
            .map(|(key, parts)| {
                let ids = parts
                    .iter()
                    .flat_map(|rows| PartitionRows { batch: rows.batch.clone(), rows: rows.rows.clone() }.parts().unwrap())
                    .flat_map(|part| part.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                    .collect();
                (key.data().fields()[0].clone(), ids)
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some(Literal::int(1)), vec![0, 2]),
                (Some(Literal::int(2)), vec![1, 4, 7]),
                (None, vec![3, 8]),
                (Some(Literal::int(7)), vec![5, 6]),
            ]
        );
        // A batch wholly in one partition is passed on as it is.
        assert!(matches!(partitions[3].1[0].rows, Rows::All));
    }

    /// Long runs of a partition's rows are cut out as slices, scattered rows gathered.
    #[test]
    fn long_runs_are_sliced_and_scattered_rows_gathered() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![datafusion::arrow::datatypes::Field::new(
            "id",
            datafusion::arrow::datatypes::DataType::Int64,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..2000))]).unwrap();
        let ids = |rows: PartitionRows| -> Vec<i64> {
            rows.parts()
                .unwrap()
                .iter()
                .flat_map(|p| p.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect()
        };
        let runs: Vec<u32> = (0..600).chain(1000..1500).collect();
        let sliced = PartitionRows::new(batch.clone(), runs.clone());
        assert!(matches!(&sliced.rows, Rows::Runs(r) if r == &vec![(0, 600), (1000, 500)]));
        assert_eq!(sliced.len(), 1100);
        assert_eq!(ids(sliced), runs.iter().map(|&r| r as i64).collect::<Vec<_>>());
        let every_other: Vec<u32> = (0..2000).step_by(2).collect();
        let scattered = PartitionRows::new(batch, every_other.clone());
        assert!(matches!(scattered.rows, Rows::Scattered(_)));
        assert_eq!(ids(scattered), every_other.iter().map(|&r| r as i64).collect::<Vec<_>>());
    }
}
