//! Windowed SQL on DataFusion: the job's SQL over the rows of one window.
//!
//! The SQL is planned and optimised once, against the declared schema plus `window_start` and
//! `window_end`; each window then only gets a physical plan over its own rows. One target
//! partition keeps row order, and so the output, the same from run to run.

pub mod cumulative;
mod errors;
pub mod grouping;
pub mod incremental;
pub mod predicate;
mod table;
mod wildcard;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext, SQLOptions};

use crate::decode::Decoder;
use crate::source::metadata;
use crate::jobfile::{timestamp_type, Dataflow, JobError, WINDOW_END, WINDOW_START};
use crate::time::FiredWindow;
use crate::Millis;
use table::WindowTable;

/// A quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a job runs on each fired window: its SQL over the window's rows, or (a cumulative
/// window) over running aggregates since the start.
pub enum JobQuery {
    Windowed(WindowQuery),
    /// A tumbling window whose rows are fed to its SQL while it is open (see [`incremental`]).
    Incremental(Box<incremental::IncrementalQuery>),
    Cumulative(Box<cumulative::CumulativeQuery>),
}

impl JobQuery {
    pub fn output_schema(&self) -> SchemaRef {
        match self {
            JobQuery::Windowed(q) => q.output_schema(),
            JobQuery::Incremental(q) => q.whole().output_schema(),
            JobQuery::Cumulative(q) => q.output_schema(),
        }
    }

    /// Which records must meet in one process (see [`grouping`]).
    pub fn grouping(&self) -> grouping::Grouping {
        match self {
            JobQuery::Windowed(q) => q.grouping(),
            JobQuery::Incremental(q) => q.whole().grouping(),
            JobQuery::Cumulative(q) => q.grouping(),
        }
    }

    pub fn run(&mut self, window: &FiredWindow) -> datafusion::error::Result<QueryRows> {
        match self {
            JobQuery::Windowed(q) => Ok(QueryRows { rows: q.run(window)?, dropped: Vec::new(), changes_only: false }),
            JobQuery::Incremental(q) => Ok(QueryRows { rows: q.run(window)?, dropped: Vec::new(), changes_only: false }),
            JobQuery::Cumulative(q) => {
                let r = q.run(window)?;
                Ok(QueryRows { rows: r.changed, dropped: r.dropped, changes_only: true })
            }
        }
    }

    /// The query's own state for a checkpoint (a windowed query keeps none between windows; an
    /// incremental one's open executions are not saved: the window's rows are, and run whole).
    pub fn save_state(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            JobQuery::Windowed(_) | JobQuery::Incremental(_) => Ok(Vec::new()),
            JobQuery::Cumulative(q) => q.save_state(),
        }
    }

    pub fn load_state(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            JobQuery::Windowed(_) | JobQuery::Incremental(_) => Ok(()),
            JobQuery::Cumulative(q) => q.load_state(bytes),
        }
    }

    /// Forget what an incremental query was fed (the window state lost rows).
    pub fn forget_fed(&mut self) {
        if let JobQuery::Incremental(q) = self {
            q.forget();
        }
    }

    /// Counters for the run's summary: a cumulative window's groups, an incremental one's feeds.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        match self {
            JobQuery::Windowed(_) => Vec::new(),
            JobQuery::Incremental(q) => q.stats(),
            JobQuery::Cumulative(q) => {
                let s = q.state();
                vec![("groups", q.groups() as u64), ("peak groups", s.peak_groups), ("groups dropped after ttl", s.dropped_groups)]
            }
        }
    }
}

/// One fired window's result.
pub struct QueryRows {
    pub rows: Vec<RecordBatch>,
    /// A cumulative window: the rows of groups `ttl` dropped (their last values).
    pub dropped: Vec<RecordBatch>,
    /// `rows` are only the groups that changed (a cumulative window); others are as before.
    pub changes_only: bool,
}

/// A job's SQL, planned and ready to run on windows.
pub struct WindowQuery {
    state: SessionState,
    plan: LogicalPlan,
    table: Arc<WindowTable>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    runtime: tokio::runtime::Runtime,
    /// Columns of decoded batches that the SQL sees, in order.
    visible: Vec<usize>,
    /// The SQL holds an aggregate whose result depends on how its rows are cut into batches
    /// ([`BATCH_SENSITIVE`]): each window's rows are handed over as one batch.
    one_batch: bool,
    replanner: table::Replanner,
}

/// Aggregates whose result depends on how rows are cut into batches and in what order they
/// come: the t-digest behind the approximate percentiles merges each batch it is given (and
/// DataFusion cuts its input into batches of its own), so the same rows arriving in other
/// chunks (a file split in two, Parquet row groups, live fetch timing) gave other p99s. Such
/// a job gets each window's rows as one batch and a batch size DataFusion never cuts, so each
/// group's digest is built from all its values at once and depends only on them.
const BATCH_SENSITIVE: [&str; 3] = ["approx_percentile_cont", "approx_percentile_cont_with_weight", "approx_median"];

fn batch_sensitive(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            let _ = e.apply(|e| {
                if let datafusion::logical_expr::Expr::AggregateFunction(f) = e {
                    found |= BATCH_SENSITIVE.contains(&f.func.name());
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

impl WindowQuery {
    /// Plan the job's SQL against its decoded schema; errors point into the job or SQL file.
    pub fn plan(job: &Dataflow) -> Result<WindowQuery, JobError> {
        // The SQL sees the declared columns and the metadata columns it names.
        let decoded = Decoder::new(job).schema();
        let named = metadata::referenced_by(&job.sql.text);
        let visible: Vec<usize> = (0..decoded.fields().len())
            .filter(|&i| {
                let name = decoded.field(i).name();
                !metadata::is_metadata_column(name) || named.contains(&name.as_str())
            })
            .collect();
        let mut fields: Vec<Field> = visible.iter().map(|&i| decoded.field(i).clone()).collect();
        fields.push(Field::new(WINDOW_START, timestamp_type(), false));
        fields.push(Field::new(WINDOW_END, timestamp_type(), false));
        let input_schema = Arc::new(Schema::new(fields));

        let config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        let table = Arc::new(WindowTable::new(input_schema.clone()));
        ctx.register_table("events", table.clone()).expect("a fresh context takes the table");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");

        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let sql = &job.sql;
        let state = ctx.state();
        let plan = runtime
            .block_on(async {
                let mut statement = state.sql_to_statement(&sql.text, &state.config().options().sql_parser.dialect)?;
                if let datafusion::sql::parser::Statement::Statement(s) = &mut statement {
                    wildcard::hide_from_wildcards(s, &named);
                }
                let plan = state.statement_to_plan(statement).await?;
                options.verify_plan(&plan)?;
                Ok::<_, datafusion::error::DataFusionError>(plan)
            })
            .map_err(|e| errors::to_job_error(sql, &input_schema, &e))?;
        let plan = state.optimize(&plan).map_err(|e| errors::to_job_error(sql, &input_schema, &e))?;
        let output_schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());

        let one_batch = batch_sensitive(&plan);
        let mut state = state;
        if one_batch {
            let config = state.config().clone().with_batch_size(1 << 30);
            *state.config_mut() = config;
        }
        let query = WindowQuery { state, plan, table, input_schema, output_schema, runtime, visible, one_batch, replanner: table::Replanner::default() };
        // Planning the physical side too catches type errors that only show there.
        query.run_batches(Vec::new()).map_err(|e| errors::to_job_error(sql, &query.input_schema, &e))?;

        {
            for k in &job.output_key {
                if query.output_schema.field_with_name(k).is_err() {
                    let columns: Vec<&str> = query.output_schema.fields().iter().map(|f| f.name().as_str()).collect();
                    return Err(sql.error_at(1, 1, 1, format!(
                        "sink key `{k}` is not a column of the SQL result (its columns: {})",
                        columns.join(", ")
                    ))
                    .with_help("select the key column in the SQL, or change [sink] key"));
                }
            }
        }
        Ok(query)
    }

    /// The columns the SQL sees in `events`.
    pub fn input_schema(&self) -> SchemaRef {
        self.input_schema.clone()
    }

    /// Which records must meet in one process (see [`grouping`]).
    pub fn grouping(&self) -> grouping::Grouping {
        let inputs: Vec<String> = self.input_schema.fields().iter().map(|f| f.name().clone()).collect();
        grouping::of_plan(&self.plan, &inputs)
    }

    /// The optimised logical plan, as DataFusion prints it.
    pub fn explain(&self) -> String {
        self.plan.display_indent_schema().to_string()
    }

    /// The columns of the SQL result.
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// The SQL's result over one window.
    pub fn run(&self, window: &FiredWindow) -> datafusion::error::Result<Vec<RecordBatch>> {
        let given: Vec<&RecordBatch> = window.batches.iter().filter(|b| b.num_rows() > 0).collect();
        let rows: usize = given.iter().map(|b| b.num_rows()).sum();
        // A live read hands the window what each poll brought, often a few records: the
        // aggregation's cost per batch then outweighs its cost per row (a second of 50,000
        // rows took 3.9 ms in batches of 50, 1.2 ms as one), so small batches are made one.
        let small = given.len() > 1 && rows / given.len() < SMALL_BATCH_ROWS;
        if (self.one_batch || small) && !given.is_empty() {
            let one = concat_batches(&given[0].schema(), given.iter().copied())?;
            return self.run_batches(vec![with_window_columns(&one, &self.visible, &self.input_schema, window.start, window.end)?]);
        }
        let batches = given
            .into_iter()
            .map(|b| with_window_columns(b, &self.visible, &self.input_schema, window.start, window.end))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        self.run_batches(batches)
    }

    fn run_batches(&self, batches: Vec<RecordBatch>) -> datafusion::error::Result<Vec<RecordBatch>> {
        self.runtime.block_on(async {
            let physical = self.replanner.plan(&self.state, &self.plan, &self.table, batches).await?;
            collect(physical, self.state.task_ctx()).await
        })
    }
}

/// Batches of fewer rows than this, on average, are run as one (see [`WindowQuery::run`]).
const SMALL_BATCH_ROWS: usize = 1024;

fn with_window_columns(batch: &RecordBatch, visible: &[usize], schema: &SchemaRef, start: Millis, end: Millis) -> datafusion::error::Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = visible.iter().map(|&i| batch.column(i).clone()).collect();
    columns.push(Arc::new(TimestampMillisecondArray::from_value(start, n).with_timezone("UTC")));
    columns.push(Arc::new(TimestampMillisecondArray::from_value(end, n).with_timezone("UTC")));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod batch_tests {
    #[test]
    fn approx_percentiles_are_found_in_the_plan() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/http_red.toml")).unwrap();
        let job = crate::job::parse(std::path::Path::new("jobs/http_red.toml"), &text).unwrap();
        let q = super::WindowQuery::plan(&job.dataflow()).unwrap();
        assert!(q.one_batch, "{}", q.plan.display_indent());
    }

    /// A window handed over in many small batches (a live read) is run as one batch; its rows
    /// are those of the same records in large batches, float sums included.
    #[test]
    fn a_window_in_small_batches_gives_the_rows_of_the_same_records_in_large_ones() {
        use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
        use datafusion::arrow::datatypes::{DataType, TimeUnit};
        use datafusion::arrow::record_batch::RecordBatch;
        use std::sync::Arc;
        let text = r#"name = "w"
sql = "SELECT window_start, service, count(*) AS n, sum(bytes) AS bytes, sum(ms) AS ms, max(ms) AS slowest FROM events GROUP BY window_start, service ORDER BY service"
[source]
kind = "file"
path = "x.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
bytes = "int64"
ms = "float64"
[event_time]
column = "ts"
[window]
kind = "tumbling"
size = "1s"
"#;
        let job = crate::job::parse(std::path::Path::new("w.toml"), text).unwrap();
        let flow = job.dataflow();
        let schema = crate::decode::Decoder::new(&flow).schema();
        let services = ["checkout", "frontend", "inventory", "payments", "search"];
        // Records `from..to` of one second: floats whose sums depend on their order.
        let batch = |from: usize, to: usize| -> RecordBatch {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| -> ArrayRef {
                    match (f.name().as_str(), f.data_type()) {
                        ("service", _) => Arc::new(StringArray::from_iter_values((from..to).map(|i| services[i * 7 % 5]))),
                        ("ms", _) => Arc::new(Float64Array::from_iter_values((from..to).map(|i| 0.1 + (i % 13) as f64 * 1e-3 + (i as f64).sqrt()))),
                        (_, DataType::Int64) => Arc::new(Int64Array::from_iter_values((from..to).map(|i| i as i64))),
                        (_, DataType::Timestamp(TimeUnit::Millisecond, tz)) => {
                            Arc::new(TimestampMillisecondArray::from_iter_values((from..to).map(|i| (i % 1000) as i64)).with_timezone_opt(tz.clone()))
                        }
                        (_, other) => datafusion::arrow::array::new_null_array(other, to - from),
                    }
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let window = |cut: usize| crate::time::FiredWindow {
            start: 0,
            end: 1000,
            key: Vec::new(),
            batches: (0..10_000).step_by(cut).map(|i| batch(i, (i + cut).min(10_000))).collect(),
            update: false,
            revision: 0,
        };
        let q = super::WindowQuery::plan(&flow).unwrap();
        let rows = |cut: usize| -> Vec<String> {
            let mut out = Vec::new();
            for b in q.run(&window(cut)).unwrap() {
                crate::output::json::write_rows(&b, &mut out);
            }
            String::from_utf8(out).unwrap().lines().map(String::from).collect()
        };
        let large = rows(5_000);
        assert_eq!(large.len(), 5, "{large:?}");
        for cut in [7, 100, 1_000] {
            assert_eq!(rows(cut), large, "in batches of {cut}");
        }
    }
}
