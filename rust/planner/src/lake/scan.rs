//! Parallel scans of lake tables for DataFusion: [`LakeTable`] (a table provider) and
//! [`LakeScanExec`] (its execution plan).
//!
//! iceberg-datafusion 0.10 reads a table as one stream, so DataFusion decodes and filters it
//! on one core. Here Iceberg plans the snapshot's files (manifest and partition pruning on
//! the pushed-down filters, column statistics) and the files, split into byte ranges of
//! whole row groups when there are fewer files than cores, are spread over
//! `target_partitions` partitions, balanced by bytes. Each partition reads its pieces with
//! Iceberg's Arrow reader, which maps columns by field id (schema evolution), applies
//! delete files and the predicate to row groups and pages, so the results are exactly
//! Iceberg's. `EXPLAIN` shows the files scanned and pruned and the partitions; the plan
//! reports the row count (exact when nothing filters or deletes) to DataFusion in the same
//! process (datafusion-ffi, between Weir and datafusion-python, carries no statistics).
//!
//! Each scan asks the catalog for the table's metadata file; the parsed metadata (the
//! lake's) and the planned files (here) are kept per metadata file, which never changes,
//! so a query run again on an unchanged table reads no metadata or manifest.
//!
//! Used by `weir.connect()` (through the Python crate's session providers) for every table
//! of the lake and for time travel (a snapshot).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result as DFResult, Statistics};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableType;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::TryStreamExt;
use datafusion::parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;

use super::catalog::Lake;
use super::error::{IcebergContext, LakeResult};

/// Files smaller than this are not split: one row group's worth of reading.
const MIN_PIECE_BYTES: u64 = 4 * 1024 * 1024;

/// Files a partition reads at once: the next one is opened (footer, first pages) while the
/// current one is decoded.
const FILES_OPEN_PER_PARTITION: usize = 2;

fn df_error(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Where a [`LakeTable`] reads from.
#[derive(Debug, Clone)]
enum Source {
    /// The table's current snapshot, looked up in the catalog at every scan (the lake
    /// reuses its parsed metadata while the catalog's pointer has not moved).
    Current { lake: Arc<Lake>, name: String },
    /// One snapshot of a loaded table (time travel).
    Snapshot { table: Table, snapshot_id: i64 },
}

/// A lake table as a DataFusion table provider whose scans run on every core.
#[derive(Debug, Clone)]
pub struct LakeTable {
    source: Source,
    schema: SchemaRef,
}

impl LakeTable {
    /// The table `name` (`namespace.table`) of `lake`: each scan reads its current
    /// snapshot; the columns are those of its schema now.
    pub async fn current(lake: Arc<Lake>, name: &str) -> LakeResult<Self> {
        let table = lake.load_table(name).await?;
        let schema = schema_to_arrow_schema(table.metadata().current_schema()).context(name, "cannot read the schema")?;
        Ok(Self { source: Source::Current { lake, name: name.to_string() }, schema: Arc::new(schema) })
    }

    /// `table` as it was at `snapshot_id`, with that snapshot's schema.
    pub fn at_snapshot(table: Table, snapshot_id: i64) -> iceberg::Result<Self> {
        let snapshot = table.metadata().snapshot_by_id(snapshot_id).ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("table {} has no snapshot {snapshot_id}", table.identifier()),
            )
        })?;
        let snapshot_schema = snapshot.schema(table.metadata())?;
        let schema = Arc::new(schema_to_arrow_schema(&snapshot_schema)?);
        Ok(Self { source: Source::Snapshot { table, snapshot_id }, schema })
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let (table, snapshot_id) = match &self.source {
            Source::Current { lake, name } => {
                (lake.load_table(name).await.map_err(|e| DataFusionError::External(Box::new(e)))?, None)
            }
            Source::Snapshot { table, snapshot_id } => (table.clone(), Some(*snapshot_id)),
        };
        let options = state.config_options();
        let partitions = options.execution.target_partitions.max(1);
        let batch_size = options.execution.batch_size;
        // The filters as one physical predicate, for DataFusion's Parquet reader to skip row
        // groups and pages with (the native path below).
        let physical = match conjunction(filters.iter().cloned()) {
            Some(expr) => {
                let schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                Some(state.create_physical_expr(expr, &schema)?)
            }
            None => None,
        };
        let mut exec =
            LakeScanExec::plan(table, snapshot_id, self.schema.clone(), projection, filters, limit, partitions, batch_size)
                .await?;
        exec.read_natively(self.schema.clone(), projection, physical)?;
        Ok(Arc::new(exec))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Iceberg prunes files, row groups and rows with what it can convert; DataFusion
        // still filters every row.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// The files Iceberg plans for a scan of `columns` of `table` (at `snapshot_id`, else its
/// current snapshot) with `predicate`. Metadata files never change once written, so the
/// plan is kept per metadata file, snapshot, columns and predicate: a query run again on an
/// unchanged table reads no manifest (a few hundred files' manifests cost tens of
/// milliseconds, a good part of a query over a small day).
async fn planned_files(
    table: &Table,
    snapshot_id: Option<i64>,
    columns: &[String],
    predicate: Option<&Predicate>,
) -> DFResult<Vec<FileScanTask>> {
    /// Plans kept at most; all are dropped when it is reached (tables change rarely
    /// within one process's queries, and a plan is a few hundred bytes per file).
    const KEPT: usize = 256;
    static PLANS: OnceLock<Mutex<HashMap<String, Arc<Vec<FileScanTask>>>>> = OnceLock::new();
    let key = table
        .metadata_location()
        .map(|location| format!("{location}\n{snapshot_id:?}\n{columns:?}\n{predicate:?}"));
    let plans = PLANS.get_or_init(Default::default);
    if let Some(key) = &key {
        if let Some(tasks) = plans.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(tasks.as_ref().clone());
        }
    }
    let mut builder = table.scan().select(columns.iter().cloned());
    if let Some(id) = snapshot_id {
        builder = builder.snapshot_id(id);
    }
    if let Some(p) = predicate {
        builder = builder.with_filter(p.clone());
    }
    let tasks: Vec<FileScanTask> =
        builder.build().map_err(df_error)?.plan_files().await.map_err(df_error)?.try_collect().await.map_err(df_error)?;
    if let Some(key) = key {
        let mut plans = plans.lock().unwrap_or_else(|e| e.into_inner());
        if plans.len() >= KEPT {
            plans.clear();
        }
        plans.insert(key, Arc::new(tasks.clone()));
    }
    Ok(tasks)
}

/// What a scan reads: the snapshot's files Iceberg kept, as pieces per partition.
pub struct LakeScanExec {
    table: Table,
    snapshot_id: Option<i64>,
    /// Columns read from the files, named as in the snapshot's schema (the first column for
    /// a scan of no columns).
    columns: Vec<String>,
    /// Where each output column comes from when the snapshot lacks some (read them as
    /// null): its index in `columns`, or `None`.
    sources: Option<Vec<Option<usize>>>,
    predicate: Option<Predicate>,
    limit: Option<usize>,
    batch_size: usize,
    /// Per partition, the file pieces it reads.
    groups: Vec<Vec<FileScanTask>>,
    files_scanned: usize,
    /// Data files of the snapshot, if its summary says.
    files_total: Option<usize>,
    statistics: Statistics,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// DataFusion's own Parquet reader over the same pieces, where it reads them exactly as
    /// Iceberg would (see [`LakeScanExec::read_natively`]); else Iceberg's Arrow reader.
    native: Option<Arc<dyn ExecutionPlan>>,
    /// "LakeScanExec: table=... files=N of M (K pruned) partitions=P ...": the plan's name
    /// as well as its display, because a plan crossing datafusion-ffi (`weir.connect()`)
    /// shows only its name in `EXPLAIN`.
    description: String,
}

impl fmt::Debug for LakeScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeScanExec")
            .field("table", self.table.identifier())
            .field("snapshot_id", &self.snapshot_id)
            .field("partitions", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl LakeScanExec {
    /// Plans a scan of `table` (at `snapshot_id`, else its current snapshot) whose rows have
    /// `schema`, over up to `partitions` partitions.
    #[allow(clippy::too_many_arguments)]
    pub async fn plan(
        table: Table,
        snapshot_id: Option<i64>,
        schema: SchemaRef,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        partitions: usize,
        batch_size: usize,
    ) -> DFResult<Self> {
        let output = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        let snapshot = match snapshot_id {
            Some(id) => table.metadata().snapshot_by_id(id),
            None => table.metadata().current_snapshot(),
        };
        // Iceberg resolves the columns of a scan in the *snapshot's* schema. The table's
        // schema can be newer (a column added or renamed since the last commit, as a
        // contract change applied on start does): read each column under its name in the
        // snapshot's schema (same field id) and give null for columns it lacks.
        let snapshot_schema = match snapshot {
            Some(s) => Some(s.schema(table.metadata()).map_err(df_error)?),
            None => None,
        };
        let mut columns: Vec<String> = Vec::new();
        let mut sources: Vec<Option<usize>> = Vec::new();
        for field in output.fields() {
            let id = field.metadata().get(PARQUET_FIELD_ID_META_KEY).and_then(|id| id.parse::<i32>().ok());
            let name = match (&snapshot_schema, id) {
                (Some(schema), Some(id)) => schema.name_by_field_id(id).filter(|n| !n.contains('.')).map(str::to_string),
                _ => Some(field.name().clone()),
            };
            sources.push(name.map(|name| {
                columns.push(name);
                columns.len() - 1
            }));
        }
        let missing = sources.iter().any(Option::is_none);
        if columns.is_empty() {
            let first = snapshot_schema.as_ref().and_then(|s| s.as_struct().fields().first().map(|f| f.name.clone()));
            if let Some(first) = first.or_else(|| schema.fields().first().map(|f| f.name().clone())) {
                columns.push(first);
            }
        }
        // Filters on columns the snapshot lacks or names differently are left to DataFusion
        // (they are inexact anyway).
        let same_in_snapshot = |name: &str| {
            let Some(snapshot_schema) = &snapshot_schema else { return true };
            let id = schema
                .field_with_name(name)
                .ok()
                .and_then(|f| f.metadata().get(PARQUET_FIELD_ID_META_KEY))
                .and_then(|id| id.parse::<i32>().ok());
            id.is_some() && snapshot_schema.field_by_name(name).map(|f| f.id) == id
        };
        let readable: Vec<Expr> =
            filters.iter().filter(|f| f.column_refs().iter().all(|c| same_in_snapshot(c.name()))).cloned().collect();
        let predicate = convert_filters_to_predicate(&readable);
        let tasks = planned_files(&table, snapshot_id, &columns, predicate.as_ref()).await?;
        let files_scanned = tasks.len();
        let files_total =
            snapshot.and_then(|s| s.summary().additional_properties.get("total-data-files")).and_then(|n| n.parse().ok());
        let rows: Option<usize> = tasks
            .iter()
            .map(|t| t.record_count.filter(|_| t.deletes.is_empty()).map(|n| n as usize))
            .sum();
        let num_rows = match (rows, &predicate) {
            (Some(n), None) => Precision::Exact(n),
            (Some(n), Some(_)) => Precision::Inexact(n),
            (None, _) => Precision::Absent,
        };
        let statistics = Statistics { num_rows, ..Statistics::new_unknown(&output) };
        let groups = spread(tasks, partitions, !output.fields().is_empty());
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(groups.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let mut exec = Self {
            table,
            snapshot_id,
            columns,
            sources: missing.then_some(sources),
            predicate,
            limit,
            batch_size,
            groups,
            files_scanned,
            files_total,
            statistics,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            native: None,
            description: String::new(),
        };
        exec.description = exec.describe();
        Ok(exec)
    }

    fn describe(&self) -> String {
        let mut text = format!("LakeScanExec: table={}", self.table.identifier());
        if let Some(id) = self.snapshot_id {
            text += &format!(" snapshot={id}");
        }
        text += &format!(" files={}", self.files_scanned);
        if let Some(n) = self.files_total {
            text += &format!(" of {n} ({} pruned)", n.saturating_sub(self.files_scanned));
        }
        let reader = if self.native.is_some() { "parquet" } else { "iceberg" };
        text += &format!(" partitions={} reader={reader} projection=[{}]", self.groups.len(), self.columns.join(", "));
        if let Some(p) = &self.predicate {
            text += &format!(" predicate=[{p}]");
        }
        if let Some(limit) = self.limit {
            text += &format!(" limit={limit}");
        }
        text
    }

    /// Whether every column read (and every field nested in it) has had one name and one
    /// field id in all the table's schemas: no rename (same id, another name) and no drop
    /// and re-add (same name, another id, whose old files' values Iceberg reads as null).
    /// Only then does matching by name, as DataFusion's Parquet reader does, give Iceberg's
    /// rows.
    fn columns_kept_their_names(&self) -> bool {
        let metadata = self.table.metadata();
        let current = metadata.current_schema();
        let read: Vec<(i32, &String)> = current
            .field_id_to_name_map()
            .iter()
            .filter(|(_, full)| {
                self.columns.iter().any(|c| *full == c || full.strip_prefix(c.as_str()).is_some_and(|r| r.starts_with('.')))
            })
            .map(|(id, full)| (*id, full))
            .collect();
        if self.columns.iter().any(|c| current.field_by_name(c).is_none()) {
            return false;
        }
        metadata.schemas_iter().all(|schema| {
            read.iter().all(|(id, full)| {
                schema.name_by_field_id(*id).is_none_or(|n| n == full.as_str())
                    && schema.field_id_by_name(full).is_none_or(|other| other == *id)
            })
        })
    }

    /// Reads the pieces with DataFusion's Parquet reader (`DataSourceExec`: row groups and
    /// pages pruned by `predicate`, the next file fetched while one is decoded) instead of
    /// Iceberg's Arrow reader, when that gives exactly Iceberg's rows: local files, no delete
    /// files, and every column read with one name and one field id in every schema the table
    /// had (columns are matched by name there, by field id in Iceberg; Weir never renames or
    /// drops, other writers might). A column older files lack reads as null, a widened type
    /// is cast, as Iceberg does.
    fn read_natively(
        &mut self,
        table_schema: SchemaRef,
        projection: Option<&Vec<usize>>,
        predicate: Option<Arc<dyn PhysicalExpr>>,
    ) -> DFResult<()> {
        let local = |path: &str| {
            let path = path.strip_prefix("file://").unwrap_or(path);
            path.starts_with('/').then(|| path.to_string())
        };
        let tasks = self.groups.iter().flatten();
        if tasks.clone().any(|t| !t.deletes.is_empty() || local(&t.data_file_path).is_none()) {
            return Ok(());
        }
        if !self.columns_kept_their_names() {
            return Ok(());
        }
        let indices: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..table_schema.fields().len()).collect());
        let mut source = ParquetSource::new(table_schema);
        if let Some(predicate) = predicate {
            source = source.with_predicate(predicate);
        }
        let groups: Vec<FileGroup> = self
            .groups
            .iter()
            .map(|group| {
                FileGroup::new(
                    group
                        .iter()
                        .map(|t| {
                            let path = local(&t.data_file_path).expect("checked above");
                            let file = PartitionedFile::new(path, t.file_size_in_bytes);
                            let whole = t.start == 0 && t.length == t.file_size_in_bytes;
                            if whole { file } else { file.with_range(t.start as i64, (t.start + t.length) as i64) }
                        })
                        .collect(),
                )
            })
            .collect();
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(indices))?
            .with_limit(self.limit)
            .with_batch_size(Some(self.batch_size))
            .build();
        let native: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        if native.properties().output_partitioning().partition_count() != self.groups.len()
            || native.schema().fields().len() != self.schema().fields().len()
        {
            return Ok(()); // not the plan this scan promised: keep Iceberg's reader
        }
        self.native = Some(native);
        self.description = self.describe();
        Ok(())
    }

    /// The file pieces each partition reads: (data file path, start, length).
    pub fn pieces(&self) -> Vec<Vec<(String, u64, u64)>> {
        self.groups.iter().map(|g| g.iter().map(|t| (t.data_file_path.clone(), t.start, t.length)).collect()).collect()
    }

    /// Data files the scan reads, and how many the snapshot has (if its summary says).
    pub fn files(&self) -> (usize, Option<usize>) {
        (self.files_scanned, self.files_total)
    }
}

/// `tasks` as up to `partitions` groups of similar bytes: when there are fewer files than
/// partitions (and `split`: not for a scan of no columns), large files are split into byte ranges (the reader takes the row groups whose
/// middle falls in its range, so each row group is read once), then the pieces are dealt,
/// largest first, to the group with the fewest bytes.
fn spread(tasks: Vec<FileScanTask>, partitions: usize, split: bool) -> Vec<Vec<FileScanTask>> {
    let total: u64 = tasks.iter().map(|t| t.length).sum();
    let mut pieces: Vec<FileScanTask> = Vec::new();
    if split && tasks.len() < partitions && total > 0 {
        let piece_bytes = (total / partitions as u64).max(MIN_PIECE_BYTES);
        for task in tasks {
            let splittable = task.start == 0 && task.length == task.file_size_in_bytes && task.deletes.is_empty();
            let count = if splittable { task.length.div_ceil(piece_bytes).max(1) } else { 1 };
            if count == 1 {
                pieces.push(task);
                continue;
            }
            let step = task.length.div_ceil(count);
            for k in 0..count {
                let start = k * step;
                let mut piece = task.clone();
                piece.start = start;
                piece.length = step.min(task.length - start);
                piece.record_count = None;
                pieces.push(piece);
            }
        }
    } else {
        pieces = tasks;
    }
    pieces.sort_by(|a, b| b.length.cmp(&a.length).then_with(|| a.data_file_path.cmp(&b.data_file_path)));
    let count = partitions.min(pieces.len()).max(1);
    let mut groups: Vec<(u64, Vec<FileScanTask>)> = (0..count).map(|_| (0, Vec::new())).collect();
    for piece in pieces {
        let lightest = groups.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one group");
        lightest.0 += piece.length;
        lightest.1.push(piece);
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

impl DisplayAs for LakeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl ExecutionPlan for LakeScanExec {
    fn name(&self) -> &str {
        &self.description
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DFResult<Statistics> {
        Ok(match partition {
            None => self.statistics.clone(),
            Some(_) => Statistics::new_unknown(&self.schema()),
        })
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let tasks = self.groups.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("LakeScanExec has {} partitions, not {}", self.groups.len(), partition + 1))
        })?;
        MetricBuilder::new(&self.metrics).counter("file_pieces", partition).add(tasks.len());
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let reader = self
            .table
            .reader_builder()
            .with_batch_size(self.batch_size)
            .with_data_file_concurrency_limit(FILES_OPEN_PER_PARTITION)
            .with_row_group_filtering_enabled(true)
            .with_row_selection_enabled(true)
            .build();
        let schema = self.schema();
        let no_columns = schema.fields().is_empty();
        // `count(*)` over whole files with nothing to filter or delete: the manifests' row
        // counts, without opening a file.
        let counts: Option<Vec<usize>> = (no_columns && self.predicate.is_none())
            .then(|| tasks.iter().map(|t| t.record_count.filter(|_| t.deletes.is_empty()).map(|n| n as usize)).collect())
            .flatten();
        if let Some(counts) = counts {
            let mut remaining = self.limit.unwrap_or(usize::MAX);
            let batch_size = self.batch_size.max(1);
            let mut batches = Vec::new();
            for count in counts {
                let mut left = count.min(remaining);
                remaining -= left;
                while left > 0 {
                    let rows = left.min(batch_size);
                    left -= rows;
                    let options = RecordBatchOptions::new().with_row_count(Some(rows));
                    batches.push(RecordBatch::try_new_with_options(schema.clone(), Vec::new(), &options)?);
                }
            }
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            baseline.record_output(rows);
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches.into_iter().map(Ok)))));
        }
        if let Some(native) = &self.native {
            let stream = native.execute(partition, context)?;
            let schema_out = schema.clone();
            // Batches in the table's Arrow types (with Iceberg's field ids), as promised.
            let stream = stream
                .map_ok(move |batch| {
                    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                    RecordBatch::try_new_with_options(schema_out.clone(), batch.columns().to_vec(), &options)
                })
                .and_then(|batch| futures::future::ready(batch.map_err(DataFusionError::from)))
                .inspect_ok(move |batch| baseline.record_output(batch.num_rows()));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)));
        }
        let stream = futures::stream::once(async move {
            let tasks: iceberg::scan::FileScanTaskStream = Box::pin(futures::stream::iter(tasks.into_iter().map(Ok)));
            reader.read(tasks).map(|result| result.stream().map_err(df_error))
        })
        .map_err(df_error)
        .try_flatten();
        let schema_out = schema.clone();
        let sources = self.sources.clone();
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let stream = stream
            .try_filter_map(move |batch| {
                let kept = batch.num_rows().min(remaining);
                remaining -= kept;
                let batch = match kept {
                    0 => None,
                    // A scan for `count(*)`: the rows, without the column read to count them.
                    _ if no_columns => {
                        let options = RecordBatchOptions::new().with_row_count(Some(kept));
                        Some(RecordBatch::try_new_with_options(schema_out.clone(), Vec::new(), &options).map_err(DataFusionError::from))
                    }
                    _ => Some(match &sources {
                        // Columns the snapshot lacks, as nulls, in the table's order.
                        Some(sources) => {
                            let columns = sources
                                .iter()
                                .zip(schema_out.fields())
                                .map(|(source, field)| match source {
                                    Some(i) => batch.column(*i).slice(0, kept),
                                    None => new_null_array(field.data_type(), kept),
                                })
                                .collect();
                            let options = RecordBatchOptions::new().with_row_count(Some(kept));
                            RecordBatch::try_new_with_options(schema_out.clone(), columns, &options).map_err(DataFusionError::from)
                        }
                        None => Ok(batch.slice(0, kept)),
                    }),
                };
                futures::future::ready(batch.transpose())
            })
            .inspect_ok(move |batch| baseline.record_output(batch.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataFileFormat, NestedField, PrimitiveType, Schema as IcebergSchema, Type};

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn task(path: &str, bytes: u64) -> FileScanTask {
        let schema = IcebergSchema::builder()
            .with_fields(vec![Arc::new(NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)))])
            .build()
            .unwrap();
        FileScanTask::builder()
            .with_file_size_in_bytes(bytes)
            .with_start(0)
            .with_length(bytes)
            .with_record_count(Some(1000))
            .with_data_file_path(path.to_string())
            .with_data_file_format(DataFileFormat::Parquet)
            .with_schema(Arc::new(schema))
            .with_project_field_ids(vec![1])
            .with_case_sensitive(true)
            .build()
    }

    /// A piece of a file: (path, start, length).
    type Piece<'a> = (&'a str, u64, u64);

    /// Per group: its bytes, and its pieces.
    fn shape(groups: &[Vec<FileScanTask>]) -> Vec<(u64, Vec<Piece<'_>>)> {
        groups
            .iter()
            .map(|g| (g.iter().map(|t| t.length).sum(), g.iter().map(|t| (t.data_file_path.as_str(), t.start, t.length)).collect()))
            .collect()
    }

    #[test]
    fn many_files_are_dealt_out_by_size_without_splitting() {
        let tasks: Vec<FileScanTask> = [9, 1, 5, 4, 3, 2].iter().map(|&m| task(&format!("f{m}"), m * MIB)).collect();
        let groups = spread(tasks, 2, true);
        let bytes: Vec<u64> = shape(&groups).iter().map(|(b, _)| b / MIB).collect();
        assert_eq!(bytes, vec![12, 12], "{:?}", shape(&groups));
        assert!(groups.iter().flatten().all(|t| t.start == 0 && t.record_count == Some(1000)));
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 6);
    }

    #[test]
    fn fewer_files_than_partitions_are_split_into_byte_ranges_covering_each_file_once() {
        let groups = spread(vec![task("big", 40 * MIB), task("small", 2 * MIB)], 4, true);
        assert_eq!(groups.len(), 4);
        let mut big: Vec<(u64, u64)> =
            groups.iter().flatten().filter(|t| t.data_file_path == "big").map(|t| (t.start, t.length)).collect();
        big.sort();
        // Contiguous ranges from 0 to the end: every row group's middle is in exactly one.
        let mut end = 0;
        for (start, length) in &big {
            assert_eq!(*start, end);
            end += length;
        }
        assert_eq!((end, big.len()), (40 * MIB, 4));
        assert!(groups.iter().flatten().filter(|t| t.data_file_path == "big").all(|t| t.record_count.is_none()));
        // The small file is read whole.
        let small: Vec<&FileScanTask> = groups.iter().flatten().filter(|t| t.data_file_path == "small").collect();
        assert_eq!((small.len(), small[0].length, small[0].record_count), (1, 2 * MIB, Some(1000)));
    }

    #[test]
    fn small_files_and_counted_scans_are_not_split_and_no_files_give_one_empty_partition() {
        let groups = spread(vec![task("a", MIB)], 8, true);
        assert_eq!(shape(&groups), vec![(MIB, vec![("a", 0, MIB)])]);
        let groups = spread(Vec::new(), 8, true);
        assert_eq!((groups.len(), groups[0].len()), (1, 0));
        // A scan of no columns (`count(*)`) keeps files whole: their row counts answer it.
        let groups = spread(vec![task("big", 40 * MIB)], 4, false);
        assert_eq!(shape(&groups), vec![(40 * MIB, vec![("big", 0, 40 * MIB)])]);
    }
}
