//! Catalog, schema and table providers that run the lake's async work inside the module's
//! Tokio runtime. datafusion-python polls a foreign provider's `scan` and `table` futures on
//! its own threads, where iceberg's catalog (sqlx) finds no Tokio context; streams already
//! enter the runtime handed to datafusion-ffi. Writes through SQL are refused: they would
//! bypass Weir's zstd writer and audit log (use `weir.append`).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
use datafusion::physical_plan::ExecutionPlan;

use crate::runtime::runtime;

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

#[derive(Debug)]
pub struct LakeCatalogProvider(pub Arc<dyn CatalogProvider>);

impl CatalogProvider for LakeCatalogProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names()
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0.schema(name).map(|s| Arc::new(LakeSchemaProvider(s)) as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
struct LakeSchemaProvider(Arc<dyn SchemaProvider>);

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = InRuntime(self.0.table(name)).await?;
        Ok(table.map(|t| Arc::new(LakeTableProvider(t)) as Arc<dyn TableProvider>))
    }
    fn table_exist(&self, name: &str) -> bool {
        self.0.table_exist(name)
    }
}

#[derive(Debug)]
pub struct LakeTableProvider(pub Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        self.0.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // iceberg-datafusion 0.10 returns every column for an empty projection (`count(*)`),
        // which DataFusion rejects: read one column and project it away.
        if projection.is_some_and(|p| p.is_empty()) && !self.0.schema().fields().is_empty() {
            let plan = InRuntime(self.0.scan(state, Some(&vec![0]), filters, limit)).await?;
            let no_columns: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
            return Ok(Arc::new(ProjectionExec::try_new(no_columns, plan)?));
        }
        InRuntime(self.0.scan(state, projection, filters, limit)).await
    }
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
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
