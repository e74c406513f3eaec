//! The `events` table: a provider whose rows are swapped for each window, so the SQL is parsed
//! and optimised once per job and only physically planned per window.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
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
        let query = TableQuery { state, plan, table, runtime, output };
        query.run(Vec::new())?; // the physical side's errors, now
        Ok(query)
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    pub fn run(&self, rows: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        self.table.set_rows(rows);
        let result = self.runtime.block_on(async {
            let physical = self.state.query_planner().create_physical_plan(&self.plan, &self.state).await?;
            datafusion::physical_plan::collect(physical, self.state.task_ctx()).await
        });
        self.table.set_rows(Vec::new());
        result
    }
}
