//! [`PreparedQuery`]: a pipeline query planned once and run on every batch.
//!
//! Planning a query (parse, analyse, optimise, build the physical plan) costs about 2 ms
//! whatever the input size: most of the time when the API checks a few small requests. A
//! prepared query plans its SQL once per input schema over [`EventsSlot`], a table whose
//! rows are not known at planning time, and keeps the physical plan. Each run copies the
//! plan with its operators' state reset ([`reset_plan_states`]) and the batch bound into its
//! leaf ([`EventsExec`]), so concurrent runs never share state or rows.
//!
//! Plans must not depend on the rows: the slot reports no statistics (so no count or min/max
//! is folded into the plan) and dynamic filters, which carry state between operators, are
//! turned off for prepared queries.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{collect, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::prelude::SessionContext;

use crate::processor::session::{session_state, EVENTS_TABLE};

/// Input schemas a prepared query keeps plans for (the contract's; tables from Python may
/// bring others).
const MAX_PLANS: usize = 8;

/// A physical plan for one input schema, and the task context to run it with.
struct Plan {
    input: SchemaRef,
    output: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

/// SQL over the `events` table, planned once per input schema.
pub struct PreparedQuery {
    sql: String,
    plans: Mutex<Vec<Arc<Plan>>>,
}

impl fmt::Debug for PreparedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedQuery").field("sql", &self.sql).finish_non_exhaustive()
    }
}

impl PreparedQuery {
    pub fn new(sql: impl Into<String>) -> Self {
        Self { sql: sql.into(), plans: Mutex::new(Vec::new()) }
    }

    /// Runs the query over `events`: its output schema and batches.
    pub async fn run(&self, events: RecordBatch) -> DFResult<(SchemaRef, Vec<RecordBatch>)> {
        let prepared = self.plan_for(events.schema()).await?;
        let plan = bind(reset_plan(prepared.plan.clone())?, &events)?;
        let batches = collect(plan, prepared.task.clone()).await?;
        Ok((prepared.output.clone(), batches))
    }

    async fn plan_for(&self, input: SchemaRef) -> DFResult<Arc<Plan>> {
        let cached = |plans: &Vec<Arc<Plan>>| plans.iter().find(|p| p.input == input).cloned();
        if let Some(plan) = cached(&self.plans.lock().expect("plan cache lock")) {
            return Ok(plan);
        }
        let mut state = session_state();
        state.config_mut().options_mut().set("datafusion.optimizer.enable_dynamic_filter_pushdown", "false")?;
        let ctx = SessionContext::new_with_state(state);
        ctx.register_table(EVENTS_TABLE, Arc::new(EventsSlot { schema: input.clone() }))?;
        let frame = ctx.sql(&self.sql).await?;
        let output: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let plan = frame.create_physical_plan().await?;
        let plan = Arc::new(Plan { input, output, plan, task: ctx.task_ctx() });
        let mut plans = self.plans.lock().expect("plan cache lock");
        if plans.len() >= MAX_PLANS {
            plans.remove(0);
        }
        plans.push(plan.clone());
        Ok(plan)
    }
}

/// A copy of `plan` with every operator's run state (join build sides, sort buffers) fresh.
fn reset_plan(plan: Arc<dyn ExecutionPlan>) -> DFResult<Arc<dyn ExecutionPlan>> {
    datafusion::physical_plan::execution_plan::reset_plan_states(plan)
}

/// `plan` with `events` bound into its [`EventsExec`] leaves.
fn bind(plan: Arc<dyn ExecutionPlan>, events: &RecordBatch) -> DFResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| match node.as_any().downcast_ref::<EventsExec>() {
        Some(leaf) => Ok(Transformed::yes(Arc::new(leaf.with_events(events.clone())) as Arc<dyn ExecutionPlan>)),
        None => Ok(Transformed::no(node)),
    })
    .map(|t| t.data)
}

/// The `events` table of a prepared query: a schema, rows bound per run.
#[derive(Debug)]
struct EventsSlot {
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for EventsSlot {
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(EventsExec { projection: projection.cloned(), schema, properties, events: None }))
    }
}

/// The leaf of a prepared plan: the bound batch (projected), or an error when none is bound.
#[derive(Debug)]
struct EventsExec {
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    events: Option<RecordBatch>,
}

impl EventsExec {
    fn with_events(&self, events: RecordBatch) -> Self {
        Self {
            projection: self.projection.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            events: Some(events),
        }
    }
}

impl DisplayAs for EventsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "EventsExec: rows={:?}", self.events.as_ref().map(RecordBatch::num_rows))
    }
}

impl ExecutionPlan for EventsExec {
    fn name(&self) -> &str {
        "EventsExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let Some(events) = &self.events else {
            return Err(DataFusionError::Internal("a prepared query ran without its events bound".into()));
        };
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("EventsExec has one partition, not {partition}")));
        }
        let batch = match &self.projection {
            Some(p) => events.project(p)?,
            None => events.clone(),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter([Ok(batch)]))))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;

    fn events(kinds: &[&str], qty: &[Option<i64>]) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("kind", DataType::Utf8, true), Field::new("qty", DataType::Int64, true)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(StringArray::from(kinds.to_vec())), Arc::new(Int64Array::from(qty.to_vec()))],
        )
        .unwrap()
    }

    async fn text(query: &PreparedQuery, batch: RecordBatch) -> String {
        let (_, batches) = query.run(batch).await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn a_plan_is_reused_with_each_runs_own_rows() {
        // A join, an aggregate and a sort: operators that keep state while they run.
        let query = PreparedQuery::new(
            "SELECT e.kind, count(*) AS n, sum(m.w * e.qty) AS total FROM events e \
             CROSS JOIN (VALUES (1), (10)) AS m(w) GROUP BY e.kind ORDER BY e.kind",
        );
        let first = text(&query, events(&["a", "b", "a"], &[Some(1), Some(2), Some(3)])).await;
        let second = text(&query, events(&["c"], &[Some(5)])).await;
        assert!(first.contains("| a    | 4 | 44    |") && first.contains("| b    | 2 | 22    |"), "{first}");
        assert!(second.contains("| c    | 2 | 55    |") && !second.contains("| a "), "{second}");
        assert_eq!(query.plans.lock().unwrap().len(), 1);
        // Concurrent runs do not see each other's rows.
        let runs = (0..16).map(|i| {
            let query = &query;
            async move { (i, text(query, events(&["x"], &[Some(i)])).await) }
        });
        for (i, out) in futures::future::join_all(runs).await {
            assert!(out.contains(&format!("| x    | 2 | {}", 11 * i)), "{i}: {out}");
        }
        // Another input schema gets its own plan.
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("kind", DataType::Utf8, true), Field::new("qty", DataType::Int32, true)])),
            vec![Arc::new(StringArray::from(vec!["z"])), Arc::new(datafusion::arrow::array::Int32Array::from(vec![7]))],
        )
        .unwrap();
        assert!(text(&query, other).await.contains("| z    | 2 | 77 "));
        assert_eq!(query.plans.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn counts_are_computed_from_the_rows_not_folded_into_the_plan() {
        let query = PreparedQuery::new("SELECT count(*) AS n FROM events");
        assert!(text(&query, events(&["a", "b"], &[None, None])).await.contains("| 2 |"));
        assert!(text(&query, events(&["a", "b", "c"], &[None, None, None])).await.contains("| 3 |"));
    }
}
