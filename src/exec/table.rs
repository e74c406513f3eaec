//! The `events` table: a provider whose rows are swapped for each window, so the SQL is parsed
//! and optimised once per job and only physically planned per window.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug)]
pub struct WindowTable {
    schema: SchemaRef,
    rows: Mutex<Vec<RecordBatch>>,
}

impl WindowTable {
    pub fn new(schema: SchemaRef) -> Self {
        WindowTable { schema, rows: Mutex::new(Vec::new()) }
    }

    /// The rows the next physical plan will read.
    pub fn set_rows(&self, rows: Vec<RecordBatch>) {
        *self.rows.lock().expect("not poisoned") = rows;
    }
}

#[async_trait]
impl TableProvider for WindowTable {
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows.lock().expect("not poisoned").clone();
        Ok(MemorySourceConfig::try_new_exec(&[rows], self.schema.clone(), projection.cloned())?)
    }
}

/// A query over one swappable table of other rows (a cumulative job's state): planned once,
/// run many times.
pub struct TableQuery {
    state: datafusion::execution::context::SessionState,
    plan: datafusion::logical_expr::LogicalPlan,
    table: Arc<WindowTable>,
    runtime: tokio::runtime::Runtime,
    output: SchemaRef,
    replanner: Replanner,
}

impl TableQuery {
    pub fn plan(name: &str, schema: SchemaRef, sql: &str) -> Result<TableQuery> {
        use datafusion::prelude::{SessionConfig, SessionContext, SQLOptions};
        let config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        let table = Arc::new(WindowTable::new(schema));
        ctx.register_table(name, table.clone())?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let state = ctx.state();
        let plan = runtime.block_on(async {
            let plan = state.create_logical_plan(sql).await?;
            options.verify_plan(&plan)?;
            state.optimize(&plan)
        })?;
        let output: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let query = TableQuery { state, plan, table, runtime, output, replanner: Replanner::default() };
        query.run(Vec::new())?; // the physical side's errors, now
        Ok(query)
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    pub fn run(&self, rows: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        self.runtime.block_on(async {
            let physical = self.replanner.plan(&self.state, &self.plan, &self.table, rows).await?;
            datafusion::physical_plan::collect(physical, self.state.task_ctx()).await
        })
    }
}

/// A physical plan made at the first window and run again over each later window's rows, its
/// scans of the window table swapped for scans of the new rows. Planning runs some twenty
/// optimizer passes: on a cumulative job's one-second panes it cost more than running the plan.
///
/// Only plans of operators known to run again from a fresh stream are reused, and only when
/// every scan is of the window table: a plan the optimizer answered from the first window's
/// statistics (`count(*)` without `GROUP BY` becomes a constant) scans nothing, and is planned
/// for each window as before.
#[derive(Default)]
pub struct Replanner {
    /// `None` before the first window; then the template (its scans empty), or `None` when the
    /// plan is not reusable.
    template: Mutex<Option<Option<Arc<dyn ExecutionPlan>>>>,
}

/// Operators whose `execute` starts over from their inputs each time (no state kept between
/// executions beyond what `reset_state` renews).
const RERUNNABLE: [&str; 13] = [
    "DataSourceExec",
    "ProjectionExec",
    "FilterExec",
    "AggregateExec",
    "SortExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "SortPreservingMergeExec",
    "GlobalLimitExec",
    "LocalLimitExec",
    "UnionExec",
    "BoundedWindowAggExec",
    "WindowAggExec",
];

impl Replanner {
    /// The physical plan of `logical` over `rows` (which `table` serves while it is planned).
    pub async fn plan(&self, state: &SessionState, logical: &LogicalPlan, table: &WindowTable, rows: Vec<RecordBatch>) -> Result<Arc<dyn ExecutionPlan>> {
        let cached = self.template.lock().expect("not poisoned").clone();
        if let Some(Some(template)) = cached {
            return swap_rows(template, &rows);
        }
        table.set_rows(rows);
        let planned = state.query_planner().create_physical_plan(logical, state).await;
        table.set_rows(Vec::new());
        let planned = planned?;
        if cached.is_none() {
            let template = if reusable(&planned) { Some(swap_rows(planned.clone(), &[])?) } else { None };
            *self.template.lock().expect("not poisoned") = Some(template);
        }
        Ok(planned)
    }
}

/// Of the [`RERUNNABLE`] operators (a reused plan holds no others), those an execution fed a
/// window's rows as they come cannot hold: they merge several inputs, or compute over rows
/// they must all have at once. The rest take their input batch by batch, whatever its cut
/// (an aggregation updates its groups row by row; a sort buffers): see [`Replanner::fed`].
const NOT_FEEDABLE: [&str; 5] = ["CoalescePartitionsExec", "SortPreservingMergeExec", "UnionExec", "BoundedWindowAggExec", "WindowAggExec"];

impl Replanner {
    /// Why the plan cannot be fed its rows as they come, or `None` when it can: it must be
    /// reusable, read the window table once, aggregate, and hold no [`NOT_FEEDABLE`] operator.
    pub fn not_feedable(&self) -> Option<String> {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        let Some(Some(template)) = self.template.lock().expect("not poisoned").clone() else {
            return Some("its plan is made again for each window".into());
        };
        let (mut scans, mut aggregates, mut other) = (0, 0, None);
        let _ = template.apply(|node| {
            match node.name() {
                "DataSourceExec" => scans += 1,
                "AggregateExec" => aggregates += 1,
                name if NOT_FEEDABLE.contains(&name) => other = Some(name.to_string()),
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        match (other, scans, aggregates) {
            (Some(name), _, _) => Some(format!("its plan has a {name}, which would see only part of the window's rows")),
            (None, s, _) if s != 1 => Some("its plan reads the window's rows more than once".into()),
            (None, _, 0) => Some("the SQL aggregates nothing".into()),
            _ => None,
        }
    }

    /// A fresh copy of the plan whose scan reads what is pushed to `feed`, or `None` before
    /// the first window or when the plan is not reusable.
    pub fn fed(&self, feed: &Arc<Feed>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::datasource::source::DataSource;
        use datafusion::physical_plan::streaming::StreamingTableExec;
        let Some(Some(template)) = self.template.lock().expect("not poisoned").clone() else { return Ok(None) };
        let fed = template.transform_up(|node| {
            if let Some(m) = memory_source(&node) {
                let schema = m.original_schema();
                let partition: Arc<dyn datafusion::physical_plan::streaming::PartitionStream> = Arc::new(FedPartition { schema: schema.clone(), feed: feed.clone() });
                let scan = StreamingTableExec::try_new(schema, vec![partition], m.projection().as_ref(), Vec::new(), false, m.fetch())?;
                return Ok(Transformed::yes(Arc::new(scan) as Arc<dyn ExecutionPlan>));
            }
            Ok(Transformed::yes(node.reset_state()?))
        })?;
        Ok(Some(fed.data))
    }
}

/// Rows pushed to an open window's execution: its scan takes them in order, says `Pending`
/// while there are none (the caller polls again after the next push), and ends once closed.
#[derive(Debug, Default)]
pub struct Feed {
    queue: Mutex<(std::collections::VecDeque<RecordBatch>, bool)>,
}

impl Feed {
    pub fn push(&self, batch: RecordBatch) {
        self.queue.lock().expect("not poisoned").0.push_back(batch);
    }

    /// No more rows: the scan ends after those pushed.
    pub fn close(&self) {
        self.queue.lock().expect("not poisoned").1 = true;
    }
}

#[derive(Debug)]
struct FedPartition {
    schema: SchemaRef,
    feed: Arc<Feed>,
}

impl datafusion::physical_plan::streaming::PartitionStream for FedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<datafusion::execution::TaskContext>) -> datafusion::physical_plan::SendableRecordBatchStream {
        use std::task::Poll;
        let feed = self.feed.clone();
        let rows = futures::stream::poll_fn(move |_| {
            let mut q = feed.queue.lock().expect("not poisoned");
            match q.0.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(b))),
                None if q.1 => Poll::Ready(None),
                None => Poll::Pending,
            }
        });
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(self.schema.clone(), rows))
    }
}

fn memory_source(node: &Arc<dyn ExecutionPlan>) -> Option<&MemorySourceConfig> {
    node.downcast_ref::<DataSourceExec>()?.data_source().downcast_ref::<MemorySourceConfig>()
}

fn reusable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let (mut ok, mut scans) = (true, 0);
    let _ = plan.apply(|node| {
        ok &= RERUNNABLE.contains(&node.name());
        if node.name() == "DataSourceExec" {
            scans += 1;
            ok &= memory_source(node).is_some_and(|m| m.sort_information().is_empty());
        }
        Ok(if ok { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    });
    ok && scans > 0
}

/// `template` with every scan reading `rows` instead, and every operator's state renewed.
fn swap_rows(template: Arc<dyn ExecutionPlan>, rows: &[RecordBatch]) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::datasource::source::DataSource;
    let swapped = template.transform_up(|node| {
        if let Some(m) = memory_source(&node) {
            let fresh = MemorySourceConfig::try_new(&[rows.to_vec()], m.original_schema(), m.projection().clone())?.with_limit(m.fetch());
            return Ok(Transformed::yes(DataSourceExec::from_data_source(fresh) as Arc<dyn ExecutionPlan>));
        }
        Ok(Transformed::yes(node.reset_state()?))
    })?;
    Ok(swapped.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn rows(schema: &SchemaRef, values: &[(&str, i64)]) -> Vec<RecordBatch> {
        let service = StringArray::from_iter_values(values.iter().map(|v| v.0));
        let n = Int64Array::from_iter_values(values.iter().map(|v| v.1));
        vec![RecordBatch::try_new(schema.clone(), vec![Arc::new(service), Arc::new(n)]).unwrap()]
    }

    /// A plan made once runs each later window over that window's rows: the same rows a plan
    /// made for that window gives, also where the optimizer would answer from statistics.
    #[test]
    fn a_plan_made_once_gives_each_window_its_own_rows() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("service", DataType::Utf8, false), Field::new("n", DataType::Int64, false)]));
        let windows = [
            vec![("a", 1), ("b", 5), ("a", 3)],
            vec![("c", 7)],
            vec![],
            vec![("b", 2), ("b", 9), ("a", 4), ("c", 1)],
        ];
        let sqls = [
            "SELECT service, count(*) AS c, sum(n) AS s FROM t GROUP BY service ORDER BY service",
            "SELECT count(*) AS c, max(n) AS m FROM t",
            "SELECT service, n FROM t WHERE n > 2 ORDER BY n DESC LIMIT 2",
            "SELECT count(*) AS c FROM t",
        ];
        for sql in sqls {
            let reused = TableQuery::plan("t", schema.clone(), sql).unwrap();
            for w in &windows {
                let fresh = TableQuery::plan("t", schema.clone(), sql).unwrap();
                let show = |b: Vec<RecordBatch>| datafusion::arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string();
                assert_eq!(show(reused.run(rows(&schema, w)).unwrap()), show(fresh.run(rows(&schema, w)).unwrap()), "{sql} over {w:?}");
            }
        }
        let grouped = TableQuery::plan("t", schema.clone(), sqls[0]).unwrap();
        grouped.run(rows(&schema, &windows[0])).unwrap();
        assert!(matches!(*grouped.replanner.template.lock().unwrap(), Some(Some(_))), "a grouped query's plan is reused");
    }
}
