//! Catalog, schema and table providers for datafusion-python sessions (`weir.connect()`).
//!
//! - They run the lake's async work inside the module's Tokio runtime: datafusion-python polls
//!   a foreign provider's `scan` and `table` futures on its own threads, where iceberg's
//!   catalog (sqlx) finds no Tokio context; streams already enter the runtime handed to
//!   datafusion-ffi.
//! - The catalog looks up namespaces and tables it has not seen in the metastore, so a session
//!   sees tables created after it was opened; known tables cost nothing extra (each scan reads
//!   the table's current snapshot anyway).
//! - Tables are scanned on every core by the lake's [`LakeTable`]; metadata tables
//!   (`t$snapshots`, ...) are iceberg-datafusion's.
//! - They outlive the session object: datafusion-ffi reaches the session's task context through
//!   a weak reference, which dies with a temporary `weir.connect()` while its DataFrames live
//!   on (`weir.connect().sql(...).to_pylist()`); [`SessionOrOwnContext`] then falls back to
//!   a context with DataFusion's and Weir's functions.
//! - Writes through SQL are refused: they would bypass Weir's zstd writer and audit log (use
//!   `weir.append` or `weir.lake.overwrite`).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::execution::{TaskContext, TaskContextProvider};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_ffi::execution::FFI_TaskContextProvider;
use datafusion_ffi::proto::logical_extension_codec::{FFI_LogicalExtensionCodec, ForeignLogicalExtensionCodec};
use iceberg::Catalog;
use iceberg_datafusion::IcebergCatalogProvider;
use weir_planner::lake::{Lake, LakeTable};

use crate::runtime::runtime;

/// Runs `work` to completion on the module's runtime from synchronous code that may itself be
/// running inside another runtime (datafusion-python's), on a short-lived thread.
fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| scope.spawn(|| runtime().block_on(work)).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The session's task context while the session lives, else one with DataFusion's built-in
/// and Weir's functions (enough to decode the filters and plans of a query over the lake).
#[derive(Debug)]
pub struct SessionOrOwnContext {
    session: FFI_TaskContextProvider,
}

impl TaskContextProvider for SessionOrOwnContext {
    fn task_ctx(&self) -> Arc<TaskContext> {
        <Arc<TaskContext>>::try_from(&self.session).unwrap_or_else(|_| {
            static OWN: OnceLock<SessionContext> = OnceLock::new();
            OWN.get_or_init(|| {
                let ctx = SessionContext::new();
                for udf in weir_udfs::all_udfs() {
                    ctx.register_udf(udf.as_ref().clone());
                }
                ctx
            })
            .task_ctx()
        })
    }
}

/// A codec for exporting providers to a session: the session's own codec, with a task context
/// that survives the session ([`SessionOrOwnContext`]). Keep the returned context alive as
/// long as the exported provider (the codec holds it weakly).
pub fn lasting_codec(session: &FFI_LogicalExtensionCodec) -> (FFI_LogicalExtensionCodec, KeepAlive) {
    let context = Arc::new(SessionOrOwnContext { session: session.task_ctx_provider.clone() });
    let shared: Arc<dyn TaskContextProvider> = context.clone();
    let codec = FFI_LogicalExtensionCodec::new(
        Arc::new(ForeignLogicalExtensionCodec(session.clone())),
        Some(runtime().handle().clone()),
        &shared,
    );
    (codec, KeepAlive(context))
}

/// A task context kept alive by the provider that was exported with it.
#[derive(Clone)]
pub struct KeepAlive(#[allow(dead_code)] Arc<SessionOrOwnContext>);

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive(TaskContextProvider)")
    }
}

/// Polls `F` with the module's runtime entered.
struct InRuntime<F>(F);

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _guard = runtime().enter();
        // SAFETY: structural pinning of the only field; it is never moved out.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}

/// The lake's catalog as iceberg-datafusion sees it now; replaced when a query names a
/// namespace or table it does not know yet.
#[derive(Debug)]
pub struct RefreshingCatalog {
    lake: Arc<Lake>,
    catalog: Arc<dyn Catalog>,
    current: RwLock<Arc<IcebergCatalogProvider>>,
}

impl RefreshingCatalog {
    pub async fn open(lake: Arc<Lake>) -> iceberg::Result<Self> {
        let catalog = lake.catalog();
        let current = IcebergCatalogProvider::try_new(catalog.clone()).await?;
        Ok(Self { lake, catalog, current: RwLock::new(Arc::new(current)) })
    }

    fn current(&self) -> Arc<IcebergCatalogProvider> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lists the catalog again (in the module's runtime); on failure keeps what it had.
    async fn refresh(&self) -> Arc<IcebergCatalogProvider> {
        match InRuntime(IcebergCatalogProvider::try_new(self.catalog.clone())).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                fresh
            }
            Err(e) => {
                tracing::warn!(component = "lake", event = "catalog_refresh_failed", error = %e);
                self.current()
            }
        }
    }

    fn refresh_blocking(&self) -> Arc<IcebergCatalogProvider> {
        block_on(self.refresh())
    }
}

/// [`RefreshingCatalog`] for one session; holds the task context its codec refers to.
#[derive(Debug)]
pub struct LakeCatalogProvider {
    pub lake: Arc<RefreshingCatalog>,
    pub context: KeepAlive,
}

impl CatalogProvider for LakeCatalogProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema_names(&self) -> Vec<String> {
        // Listings (information_schema, SHOW TABLES) are rare: always fresh.
        self.lake.refresh_blocking().schema_names()
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let known = self.lake.current().schema(name).is_some() || self.lake.refresh_blocking().schema(name).is_some();
        known.then(|| {
            Arc::new(LakeSchemaProvider { lake: self.lake.clone(), namespace: name.to_string(), context: self.context.clone() })
                as Arc<dyn SchemaProvider>
        })
    }
}

#[derive(Debug)]
struct LakeSchemaProvider {
    lake: Arc<RefreshingCatalog>,
    namespace: String,
    context: KeepAlive,
}

impl LakeSchemaProvider {
    fn schema_of(&self, catalog: &IcebergCatalogProvider) -> Option<Arc<dyn SchemaProvider>> {
        catalog.schema(&self.namespace)
    }

    fn wrap(&self, table: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        Arc::new(LakeTableProvider { inner: table, context: Some(self.context.clone()) })
    }
}

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn table_names(&self) -> Vec<String> {
        self.schema_of(&self.lake.refresh_blocking()).map(|s| s.table_names()).unwrap_or_default()
    }
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let known = |catalog: &IcebergCatalogProvider| self.schema_of(catalog).is_some_and(|s| s.table_exist(name));
        if !known(&self.lake.current()) && !known(self.lake.refresh().await.as_ref()) {
            return Ok(None);
        }
        if name.contains('$') {
            // A metadata table (`t$snapshots`, ...): iceberg-datafusion's.
            let Some(schema) = self.schema_of(&self.lake.current()) else { return Ok(None) };
            return Ok(InRuntime(schema.table(name)).await?.map(|t| self.wrap(t)));
        }
        // A table: scanned on every core.
        let table = InRuntime(LakeTable::current(self.lake.lake.clone(), &format!("{}.{name}", self.namespace)))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(self.wrap(Arc::new(table))))
    }
    fn table_exist(&self, name: &str) -> bool {
        let has = |catalog: &IcebergCatalogProvider| self.schema_of(catalog).is_some_and(|s| s.table_exist(name));
        has(&self.lake.current()) || has(&self.lake.refresh_blocking())
    }
}

/// A table (of the lake, a lake snapshot or a Kinesis stream) for a session; holds the task
/// context its codec refers to, when it was exported on its own.
#[derive(Debug)]
pub struct LakeTableProvider {
    pub inner: Arc<dyn TableProvider>,
    #[allow(dead_code)] // held, not read: the exported codec refers to it weakly
    pub context: Option<KeepAlive>,
}

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // iceberg-datafusion 0.10 returns every column for an empty projection (`count(*)`),
        // which DataFusion rejects: read one column and project it away. (A `LakeTable` scans
        // no columns itself.)
        let own_scan = self.inner.as_any().is::<LakeTable>();
        if projection.is_some_and(|p| p.is_empty()) && !self.inner.schema().fields().is_empty() && !own_scan {
            let plan = InRuntime(self.inner.scan(state, Some(&vec![0]), filters, limit)).await?;
            let no_columns: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
            return Ok(Arc::new(ProjectionExec::try_new(no_columns, plan)?));
        }
        InRuntime(self.inner.scan(state, projection, filters, limit)).await
    }
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::NotImplemented(
            "writing lake tables through SQL is not supported: use weir.append(table, data), which writes \
             zstd Parquet and logs the commit"
                .into(),
        ))
    }
}
