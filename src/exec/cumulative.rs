//! Cumulative windows: running aggregates per group since the start, evaluated every pane.
//!
//! The job's SQL is split the way DataFusion splits an aggregate into partial and final
//! states, but across panes instead of partitions, so state grows with groups, not events:
//!
//! ```text
//! pane rows ──► partial (DataFusion): SELECT g, sum(x) AS a0, count(*) AS a1, max(ts) AS last FROM events WHERE w GROUP BY g
//! partial rows ──► merge (per group, in place): a0 += , a1 += , last = max
//! changed groups ──► final (DataFusion): the job's SQL with sum(x) → sum(a0), count(*) → sum(a1), over `state`
//! ```
//!
//! Only the groups a pane changed are evaluated (and those `ttl` dropped, so their alerts
//! resolve): a pane costs what its events cost, not what the state holds.
//!
//! An aggregate is kept only if its partial merges exactly (count, sum, min, max, avg as sum
//! and count, bool_and/or, bit_and/or/xor); one whose state is every value (median,
//! count(DISTINCT), percentiles) is refused at validation with the reason. Decimals are
//! widened to 38 digits in the state, so sums stay exact `Decimal128` (never a float). Groups
//! whose last event is older than `ttl` are dropped after each merge.

use std::ops::ControlFlow;
use std::sync::Arc;

use std::collections::BTreeSet;

// hashbrown with a fast hash: a pane looks up every group it holds, and SipHash was a tenth of it.
use datafusion::common::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use super::table::TableQuery;
use super::WindowQuery;
use crate::jobfile::{timestamp_type, Dataflow, JobError, WindowConfig, WINDOW_END, WINDOW_START};
use crate::time::FiredWindow;
use crate::Millis;

/// Aggregates whose partial states merge exactly, and how.
const MERGEABLE: &[(&str, Merge)] = &[
    ("count", Merge::Sum),
    ("sum", Merge::Sum),
    ("min", Merge::Min),
    ("max", Merge::Max),
    ("bool_and", Merge::And),
    ("bool_or", Merge::Or),
];

/// Aggregates whose state is every value seen: no running partial keeps them.
const UNMERGEABLE: &[&str] = &[
    "median", "approx_median", "approx_distinct", "approx_percentile_cont", "approx_percentile_cont_with_weight",
    "percentile_cont", "array_agg", "string_agg", "stddev", "stddev_pop", "stddev_samp", "var", "var_pop", "var_samp",
    "variance", "var_population", "var_sample", "covar", "covar_pop", "covar_samp", "corr", "first_value", "last_value",
    "nth_value", "grouping", "regr_slope", "regr_intercept", "regr_count", "regr_r2", "regr_avgx", "regr_avgy",
    "regr_sxx", "regr_syy", "regr_sxy", "bit_and", "bit_or", "bit_xor",
];

const LAST: &str = "__osprey_last";

/// What a cumulative job runs, from its SQL: the partial query per pane, how each partial
/// column merges, and the final query over the merged values.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub partial: String,
    pub merges: Vec<Merge>,
    pub final_: String,
    /// The final query for state rows that are one per group (as they always are): each merge
    /// of one state column is the column itself, no GROUP BY, HAVING as WHERE. It gives the
    /// final query's rows without its hash aggregation over every changed group of a pane.
    pub final_unique: String,
}

/// Why a job's SQL cannot run cumulatively.
fn refuse(job: &Dataflow, message: impl Into<String>, help: &str) -> JobError {
    job.sql.error_at(1, 1, 1, message).with_help(help)
}

/// Split the job's SQL into partial, merge and final queries.
pub fn split(job: &Dataflow) -> Result<Split, JobError> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, &job.sql.text)
        .map_err(|e| refuse(job, format!("SQL syntax: {e}"), "fix the SQL"))?;
    let one = "a cumulative window runs one SELECT ... FROM events GROUP BY <columns>";
    if statements.len() != 1 {
        return Err(refuse(job, "a cumulative window runs one SQL statement", one));
    }
    let Statement::Query(query) = &mut statements[0] else {
        return Err(refuse(job, "a cumulative window runs a query", one));
    };
    if query.with.is_some() {
        return Err(refuse(job, "a cumulative window's SQL cannot have WITH", one));
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(refuse(job, "a cumulative window's SQL is one SELECT (no UNION)", one));
    };
    let from_events = select.from.len() == 1
        && select.from[0].joins.is_empty()
        && matches!(&select.from[0].relation, TableFactor::Table { name, .. } if name.to_string().eq_ignore_ascii_case("events"));
    if !from_events {
        return Err(refuse(job, "a cumulative window's SQL reads `events` alone (no joins or subqueries)", one));
    }
    if select.distinct.is_some() || select.qualify.is_some() || !select.named_window.is_empty() {
        return Err(refuse(job, "a cumulative window's SQL cannot use DISTINCT, QUALIFY or WINDOW", one));
    }
    let group: Vec<String> = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
            let mut out = Vec::new();
            for e in exprs {
                match e {
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => out.push(e.to_string()),
                    other => {
                        return Err(refuse(
                            job,
                            format!("a cumulative window groups by columns; `{other}` is an expression"),
                            "group by the columns themselves (GROUP BY account, symbol)",
                        ));
                    }
                }
            }
            out
        }
        _ => return Err(refuse(job, "a cumulative window groups by a list of columns (no GROUP BY ALL, ROLLUP or CUBE)", one)),
    };
    // The window columns are the same for every group of an evaluation: not part of the state.
    let state_group: Vec<String> =
        group.iter().filter(|g| !g.eq_ignore_ascii_case(WINDOW_START) && !g.eq_ignore_ascii_case(WINDOW_END)).cloned().collect();
    let selection = select.selection.take();

    // Replace every aggregate call with its merge over a state column, noting its partial.
    struct Rewrite {
        partials: Vec<(String, Merge)>, // (partial expression, its merge) per state column
        error: Option<(String, String)>,
        /// Write each merge as its state column alone (see [`Split::final_unique`]).
        unique: bool,
    }
    impl Rewrite {
        fn column(&mut self, partial: String, merge: Merge) -> String {
            let name = format!("__osprey_a{}", self.partials.len());
            self.partials.push((partial, merge));
            name
        }
    }
    impl VisitorMut for Rewrite {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            let Expr::Function(f) = expr else { return ControlFlow::Continue(()) };
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or(&name).trim_matches('"').to_string();
            let distinct = matches!(&f.args, FunctionArguments::List(l) if l.duplicate_treatment.is_some_and(|d| d.to_string().eq_ignore_ascii_case("DISTINCT")));
            let aggregate = MERGEABLE.iter().any(|(n, _)| *n == name) || name == "avg" || name == "mean" || UNMERGEABLE.contains(&name.as_str());
            if !aggregate {
                return ControlFlow::Continue(());
            }
            if f.over.is_some() {
                self.error = Some((format!("`{f}` is a window function"), "window functions have no running partial; aggregate with count, sum, min, max, avg".into()));
                return ControlFlow::Break(());
            }
            if distinct || UNMERGEABLE.contains(&name.as_str()) || !f.within_group.is_empty() {
                self.error = Some((
                    format!("`{f}` cannot be kept as a running partial in a cumulative window: its state is every value seen"),
                    "use count, sum, min, max, avg, bool_and or bool_or (they merge exactly), or a tumbling or hopping window".into(),
                ));
                return ControlFlow::Break(());
            }
            let replacement = if name == "avg" || name == "mean" {
                let mut sum = f.clone();
                sum.name = datafusion::sql::sqlparser::ast::ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new("sum")]);
                let mut count = f.clone();
                count.name = datafusion::sql::sqlparser::ast::ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new("count")]);
                let s = self.column(sum.to_string(), Merge::Sum);
                let c = self.column(count.to_string(), Merge::Sum);
                match self.unique {
                    true => format!("(CAST({s} AS DOUBLE) / CAST({c} AS DOUBLE))"),
                    false => format!("(CAST(sum({s}) AS DOUBLE) / CAST(sum({c}) AS DOUBLE))"),
                }
            } else {
                let merge = MERGEABLE.iter().find(|(n, _)| *n == name).map(|(_, m)| *m).expect("mergeable");
                let column = self.column(f.to_string(), merge);
                match self.unique {
                    true => column,
                    false => format!("{}({column})", merge.sql()),
                }
            };
            match Parser::new(&GenericDialect {}).try_with_sql(&replacement).and_then(|mut p| p.parse_expr()) {
                Ok(e) => *expr = e,
                Err(e) => {
                    self.error = Some((format!("cannot rewrite `{f}`: {e}"), String::new()));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut unique_statement = statements[0].clone();
    let mut rewrite = Rewrite { partials: Vec::new(), error: None, unique: false };
    rewrite_final(&mut statements[0], &mut rewrite)
        .map_err(|()| refuse(job, "a cumulative window's SQL names its columns (no SELECT *)", "SELECT account, sum(qty) AS net FROM events GROUP BY account"))?;
    let mut unique = Rewrite { partials: Vec::new(), error: None, unique: true };
    let _ = rewrite_final(&mut unique_statement, &mut unique);
    if let Statement::Query(q) = &mut unique_statement {
        if let SetExpr::Select(select) = q.body.as_mut() {
            select.group_by = GroupByExpr::Expressions(Vec::new(), Vec::new());
            select.selection = select.having.take();
        }
    }
    if let Some((message, help)) = rewrite.error {
        return Err(refuse(job, message, &help));
    }
    if rewrite.partials.is_empty() {
        return Err(refuse(
            job,
            "a cumulative window runs aggregates since the start; this SQL has none",
            "aggregate per group (SELECT account, sum(qty) AS net FROM events GROUP BY account), or use a tumbling window",
        ));
    }
    let event_time = super::quote_ident(&job.event_time.column);
    let mut partial: Vec<String> = state_group.clone();
    for (i, (p, _)) in rewrite.partials.iter().enumerate() {
        partial.push(format!("{p} AS __osprey_a{i}"));
    }
    partial.push(format!("max({event_time}) AS {LAST}"));
    let group_by = if state_group.is_empty() { String::new() } else { format!(" GROUP BY {}", state_group.join(", ")) };
    let where_ = selection.map(|w| format!(" WHERE {w}")).unwrap_or_default();
    Ok(Split {
        partial: format!("SELECT {} FROM events{where_}{group_by}", partial.join(", ")),
        merges: rewrite.partials.iter().map(|(_, m)| *m).collect(),
        final_: statements[0].to_string(),
        final_unique: unique_statement.to_string(),
    })
}

/// Rewrite what a final query evaluates over groups (the projection, HAVING and ORDER BY):
/// aggregate calls become merges of state columns; FROM events becomes FROM state (the WHERE
/// moved into the partial query). `Err`: a `SELECT *`.
fn rewrite_final<V: VisitorMut<Break = ()>>(statement: &mut Statement, rewrite: &mut V) -> Result<(), ()> {
    let Statement::Query(query) = statement else { return Ok(()) };
    let SetExpr::Select(select) = query.body.as_mut() else { return Ok(()) };
    for item in &mut select.projection {
        match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let _ = e.visit(rewrite);
            }
            _ => return Err(()),
        }
    }
    if let Some(h) = &mut select.having {
        let _ = h.visit(rewrite);
    }
    if let TableFactor::Table { name, .. } = &mut select.from[0].relation {
        *name = datafusion::sql::sqlparser::ast::ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new("state")]);
    }
    if let Some(order) = &mut query.order_by {
        let _ = order.visit(rewrite);
    }
    Ok(())
}

/// How a partial column merges into a group's running value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Sum,
    Min,
    Max,
    And,
    Or,
}

impl Merge {
    /// The aggregate that merges partials in SQL: the final query uses it over the state.
    fn sql(self) -> &'static str {
        match self {
            Merge::Sum => "sum",
            Merge::Min => "min",
            Merge::Max => "max",
            Merge::And => "bool_and",
            Merge::Or => "bool_or",
        }
    }

    fn apply(self, acc: &mut ScalarValue, v: &ScalarValue, ty: &DataType) -> datafusion::error::Result<()> {
        if v.is_null() {
            return Ok(());
        }
        if acc.is_null() {
            *acc = v.clone();
            return Ok(());
        }
        match self {
            // Exact: integers and Decimal128 add without rounding (an overflow is an error).
            // (The common types add in place in `merge_from`, before they get here.)
            Merge::Sum => *acc = acc.add_checked(v)?.cast_to(ty)?,
            Merge::Min if v < acc => *acc = v.clone(),
            Merge::Max if v > acc => *acc = v.clone(),
            Merge::And => *acc = ScalarValue::Boolean(Some(acc == &ScalarValue::Boolean(Some(true)) && v == &ScalarValue::Boolean(Some(true)))),
            Merge::Or => *acc = ScalarValue::Boolean(Some(acc == &ScalarValue::Boolean(Some(true)) || v == &ScalarValue::Boolean(Some(true)))),
            _ => {}
        }
        Ok(())
    }
}

fn overflow(ty: &DataType) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!("a running sum overflowed {ty}"))
}

/// One group's running partials and the event time of its last event.
#[derive(Debug, Clone)]
struct Group {
    values: Vec<ScalarValue>,
    last: Millis,
}

/// A cumulative job's queries and its running state.
pub struct CumulativeQuery {
    partial: WindowQuery,
    final_: TableQuery,
    /// [`Split::final_unique`], when it plans to the final query's columns and types.
    final_unique: Option<TableQuery>,
    /// The partial query's columns: group columns, partials (decimals widened), last event.
    state_schema: SchemaRef,
    /// `state_schema` plus `window_start` and `window_end`, what the final query reads.
    final_input: SchemaRef,
    groups_n: usize,
    merges: Vec<Merge>,
    converter: RowConverter,
    state: CumulativeState,
    ttl: Option<Millis>,
}

/// A group's key: its group columns in Arrow's row format, whose bytes order as the values do.
type Key = Box<[u8]>;

/// What a cumulative query remembers: the running partials of every live group. Hashed by
/// key (a pane looks each of its groups up once); evaluations and checkpoints take their
/// groups in key order, so output never depends on hashing.
#[derive(Debug, Default)]
pub struct CumulativeState {
    groups: HashMap<Key, Group>,
    /// With a `ttl`: every group by the time of its last event, so dropping idle groups
    /// looks only at those (not at every group, every pane).
    by_last: BTreeSet<(Millis, Key)>,
    /// The first pane's start: `window_start` of every evaluation.
    pub since: Option<Millis>,
    pub dropped_groups: u64,
    pub peak_groups: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    groups: crate::state::SerdeBatches,
    since: Option<Millis>,
    dropped_groups: u64,
    peak_groups: u64,
}

/// One evaluation: the final rows of the groups this pane changed, and of those `ttl` dropped.
pub struct CumulativeRows {
    pub changed: Vec<RecordBatch>,
    pub dropped: Vec<RecordBatch>,
}

impl CumulativeQuery {
    /// Which records must meet in one process: the running groups' columns.
    pub fn grouping(&self) -> super::grouping::Grouping {
        self.partial.grouping()
    }

    pub fn plan(job: &Dataflow) -> Result<CumulativeQuery, JobError> {
        let WindowConfig::Cumulative { size, ttl } = job.window else { unreachable!("a cumulative job") };
        let split = split(job)?;
        let mut partial_job = job.clone();
        partial_job.sql.text = split.partial.clone();
        partial_job.window = WindowConfig::Tumbling { size };
        let partial = WindowQuery::plan(&partial_job)?;
        let widened: Vec<Field> = partial
            .output_schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Decimal128(_, s) => Field::new(f.name(), DataType::Decimal128(38, *s), true),
                DataType::Decimal256(_, s) => Field::new(f.name(), DataType::Decimal256(76, *s), true),
                t => Field::new(f.name(), t.clone(), true),
            })
            .collect();
        let state_schema = Arc::new(Schema::new(widened.clone()));
        let groups_n = widened.len() - split.merges.len() - 1;
        let converter = RowConverter::new(widened[..groups_n].iter().map(|f| SortField::new(f.data_type().clone())).collect())
            .map_err(|e| refuse(job, format!("cumulative window: the group columns: {e}"), "group by plain columns"))?;
        let mut with_window = widened;
        with_window.push(Field::new(WINDOW_START, timestamp_type(), false));
        with_window.push(Field::new(WINDOW_END, timestamp_type(), false));
        let final_input = Arc::new(Schema::new(with_window));
        let final_ = TableQuery::plan("state", final_input.clone(), &split.final_).map_err(|e| {
            refuse(job, format!("SQL over the running aggregates: {}", super::errors::clean(&e.to_string())), "columns outside aggregates must be in GROUP BY")
        })?;
        let merges = split.merges;
        let same_columns = |q: &TableQuery| {
            let (a, b) = (q.output_schema(), final_.output_schema());
            a.fields().len() == b.fields().len() && a.fields().iter().zip(b.fields()).all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
        };
        let final_unique = TableQuery::plan("state", final_input.clone(), &split.final_unique).ok().filter(same_columns);
        Ok(CumulativeQuery { partial, final_, final_unique, state_schema, final_input, groups_n, merges, converter, state: CumulativeState::default(), ttl })
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.final_.output_schema()
    }

    pub fn input_schema(&self) -> SchemaRef {
        self.partial.input_schema()
    }

    pub fn state(&self) -> &CumulativeState {
        &self.state
    }

    /// Groups kept now.
    pub fn groups(&self) -> usize {
        self.state.groups.len()
    }

    /// Fold one pane in and evaluate the groups it changed, and those `ttl` dropped.
    pub fn run(&mut self, window: &FiredWindow) -> datafusion::error::Result<CumulativeRows> {
        let since = *self.state.since.get_or_insert(window.start);
        // Where each changed group's key is: (partial batch, row), in `keys`.
        let mut changed: Vec<(usize, usize)> = Vec::new();
        let mut keys_by_batch = Vec::new();
        let indexed = self.ttl.is_some();
        for b in self.partial.run(window)? {
            let b = conform(&b, &self.state_schema)?;
            let keys = self.converter.convert_columns(&b.columns()[..self.groups_n])?;
            let batch = keys_by_batch.len();
            let last = cast(b.column(b.num_columns() - 1), &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let last = last.as_primitive::<TimestampMillisecondType>();
            let partials: Vec<&dyn Array> = (0..self.merges.len()).map(|i| b.column(self.groups_n + i).as_ref()).collect();
            for row in 0..b.num_rows() {
                let key = keys.row(row);
                let t = if last.is_valid(row) { last.value(row) } else { window.start };
                let state = &mut self.state;
                match state.groups.get_mut(key.data()) {
                    Some(g) => {
                        for (i, partial) in partials.iter().enumerate() {
                            let ty = self.state_schema.field(self.groups_n + i).data_type();
                            merge_from(self.merges[i], &mut g.values[i], *partial, row, ty)?;
                        }
                        if indexed && t > g.last {
                            let mut entry = (g.last, Key::from(key.data()));
                            state.by_last.remove(&entry);
                            entry.0 = t;
                            state.by_last.insert(entry);
                        }
                        g.last = g.last.max(t);
                    }
                    None => {
                        let values = partials.iter().map(|a| ScalarValue::try_from_array(*a, row)).collect::<datafusion::error::Result<Vec<_>>>()?;
                        if indexed {
                            state.by_last.insert((t, key.data().into()));
                        }
                        state.groups.insert(key.data().into(), Group { values, last: t });
                    }
                }
                changed.push((batch, row));
            }
            keys_by_batch.push(keys);
        }
        let key_at = |&(b, row): &(usize, usize)| keys_by_batch[b].row(row).data();
        changed.sort_unstable_by(|x, y| key_at(x).cmp(key_at(y)));
        changed.dedup_by(|x, y| key_at(x) == key_at(y));
        let mut dropped: Vec<(Key, Group)> = Vec::new();
        if let Some(ttl) = self.ttl {
            let cutoff = window.end - ttl;
            while self.state.by_last.first().is_some_and(|(last, _)| *last < cutoff) {
                let (_, k) = self.state.by_last.pop_first().expect("checked");
                let g = self.state.groups.remove(&k).expect("indexed groups exist");
                dropped.push((k, g));
            }
            self.state.dropped_groups += dropped.len() as u64;
        }
        debug_assert!(!indexed || self.state.by_last.len() == self.state.groups.len(), "every group indexed once by its last event");
        self.state.peak_groups = self.state.peak_groups.max(self.state.groups.len() as u64);
        let changed: Vec<(&[u8], &Group)> = changed.iter().filter_map(|at| self.state.groups.get_key_value(key_at(at))).map(|(k, g)| (&**k, g)).collect();
        let changed = self.evaluate(&changed, since, window.end)?;
        let dropped: Vec<(&[u8], &Group)> = dropped.iter().map(|(k, g)| (&**k, g)).collect();
        let dropped = self.evaluate(&dropped, since, window.end)?;
        Ok(CumulativeRows { changed, dropped })
    }

    /// Groups as the state schema's columns, in the order given: keys, partials, last event.
    fn columns(&self, groups: &[(&[u8], &Group)]) -> datafusion::error::Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let mut columns: Vec<ArrayRef> = self.converter.convert_rows(groups.iter().map(|(k, _)| parser.parse(k)))?;
        for i in 0..self.merges.len() {
            let ty = self.state_schema.field(self.groups_n + i).data_type();
            columns.push(column_of(groups.iter().map(|(_, g)| &g.values[i]), groups.len(), ty)?);
        }
        columns.push(Arc::new(TimestampMillisecondArray::from(groups.iter().map(|(_, g)| g.last).collect::<Vec<_>>())));
        Ok(columns)
    }

    /// The running state for a checkpoint: every group as a row of the state schema (keys,
    /// partials, last event) in an Arrow IPC stream, so types and exact decimals survive.
    pub fn save_state(&self) -> anyhow::Result<Vec<u8>> {
        let mut groups: Vec<(&[u8], &Group)> = self.state.groups.iter().map(|(k, g)| (&**k, g)).collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let columns = self.columns(&groups)?;
        let fields: Vec<Field> = self.state_schema.fields().iter().take(columns.len() - 1).map(|f| f.as_ref().clone()).collect();
        let mut fields = fields;
        fields.push(Field::new("_last", DataType::Timestamp(TimeUnit::Millisecond, None), false));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let saved = SavedState {
            groups: crate::state::SerdeBatches(vec![batch]),
            since: self.state.since,
            dropped_groups: self.state.dropped_groups,
            peak_groups: self.state.peak_groups,
        };
        crate::state::to_bytes(&saved)
    }

    /// Continue from [`CumulativeQuery::save_state`].
    pub fn load_state(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let saved: SavedState = crate::state::from_bytes(bytes)?;
        let mut state = CumulativeState { since: saved.since, dropped_groups: saved.dropped_groups, peak_groups: saved.peak_groups, ..Default::default() };
        for b in &saved.groups.0 {
            anyhow::ensure!(b.num_columns() == self.groups_n + self.merges.len() + 1, "the saved groups have other columns than this job's");
            let keys = self.converter.convert_columns(&b.columns()[..self.groups_n])?;
            let last = b.column(b.num_columns() - 1).as_primitive::<TimestampMillisecondType>();
            for row in 0..b.num_rows() {
                let key: Key = keys.row(row).data().into();
                let values = (0..self.merges.len())
                    .map(|i| ScalarValue::try_from_array(b.column(self.groups_n + i).as_ref(), row))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                if self.ttl.is_some() {
                    state.by_last.insert((last.value(row), key.clone()));
                }
                state.groups.insert(key, Group { values, last: last.value(row) });
            }
        }
        self.state = state;
        Ok(())
    }

    /// The job's SQL over some groups' running values.
    fn evaluate(&self, groups: &[(&[u8], &Group)], since: Millis, end: Millis) -> datafusion::error::Result<Vec<RecordBatch>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let n = groups.len();
        let mut columns = self.columns(groups)?;
        let last_field = self.state_schema.field(self.state_schema.fields().len() - 1);
        let last = columns.pop().expect("the last event's column");
        columns.push(cast(&last, last_field.data_type())?);
        columns.push(Arc::new(TimestampMillisecondArray::from_value(since, n).with_timezone("UTC")));
        columns.push(Arc::new(TimestampMillisecondArray::from_value(end, n).with_timezone("UTC")));
        let batch = RecordBatch::try_new(self.final_input.clone(), columns)?;
        let Some(unique) = &self.final_unique else { return self.final_.run(vec![batch]) };
        // In the final query's schema (its nullability), which the rows are checked against.
        let schema = self.final_.output_schema();
        unique.run(vec![batch])?.into_iter().map(|b| Ok(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)).collect()
    }
}

/// Merge row `row` of a pane's partial column into a running value: the common types read
/// straight from the array and add (checked, decimals within their precision) or compare in
/// place; the rest through a [`ScalarValue`] and [`Merge::apply`], whose sum goes through
/// one-row arrays.
fn merge_from(merge: Merge, acc: &mut ScalarValue, partial: &dyn Array, row: usize, ty: &DataType) -> datafusion::error::Result<()> {
    if partial.is_null(row) {
        return Ok(());
    }
    match (merge, &mut *acc, partial.data_type()) {
        (Merge::Sum, ScalarValue::Decimal128(Some(a), p, s), DataType::Decimal128(q, t)) if (*p, *s) == (*q, *t) && ty == partial.data_type() => {
            let sum = a.checked_add(partial.as_primitive::<Decimal128Type>().value(row));
            *a = sum.filter(|x| x.unsigned_abs() < 10u128.pow(*p as u32)).ok_or_else(|| overflow(ty))?;
        }
        (Merge::Sum, ScalarValue::Int64(Some(a)), DataType::Int64) => {
            *a = a.checked_add(partial.as_primitive::<Int64Type>().value(row)).ok_or_else(|| overflow(ty))?;
        }
        (Merge::Sum, ScalarValue::UInt64(Some(a)), DataType::UInt64) => {
            *a = a.checked_add(partial.as_primitive::<UInt64Type>().value(row)).ok_or_else(|| overflow(ty))?;
        }
        (Merge::Sum, ScalarValue::Float64(Some(a)), DataType::Float64) => *a += partial.as_primitive::<Float64Type>().value(row),
        (Merge::Min | Merge::Max, ScalarValue::Utf8(Some(a)), DataType::Utf8) => {
            let v = partial.as_string::<i32>().value(row);
            if (merge == Merge::Max && v > a.as_str()) || (merge == Merge::Min && v < a.as_str()) {
                a.clear();
                a.push_str(v);
            }
        }
        _ => merge.apply(acc, &ScalarValue::try_from_array(partial, row)?, ty)?,
    }
    Ok(())
}

/// `n` running values as an array of type `ty`: the common types built in place, the rest
/// through [`ScalarValue::iter_to_array`] (which takes each value by copy).
fn column_of<'a>(values: impl Iterator<Item = &'a ScalarValue> + Clone, n: usize, ty: &DataType) -> datafusion::error::Result<ArrayRef> {
    let array: ArrayRef = match ty {
        DataType::Utf8 if values.clone().all(|v| matches!(v, ScalarValue::Utf8(_))) => {
            Arc::new(StringArray::from_iter(values.map(|v| if let ScalarValue::Utf8(s) = v { s.as_deref() } else { None })))
        }
        DataType::Decimal128(p, s) if values.clone().all(|v| matches!(v, ScalarValue::Decimal128(_, q, t) if (q, t) == (p, s))) => Arc::new(
            Decimal128Array::from_iter(values.map(|v| if let ScalarValue::Decimal128(x, ..) = v { *x } else { None })).with_precision_and_scale(*p, *s)?,
        ),
        DataType::Int64 if values.clone().all(|v| matches!(v, ScalarValue::Int64(_))) => {
            Arc::new(Int64Array::from_iter(values.map(|v| if let ScalarValue::Int64(x) = v { *x } else { None })))
        }
        DataType::Float64 if values.clone().all(|v| matches!(v, ScalarValue::Float64(_))) => {
            Arc::new(Float64Array::from_iter(values.map(|v| if let ScalarValue::Float64(x) = v { *x } else { None })))
        }
        _ if n == 0 => datafusion::arrow::array::new_empty_array(ty),
        _ => ScalarValue::iter_to_array(values.cloned())?,
    };
    Ok(if array.data_type() == ty { array } else { cast(&array, ty)? })
}

/// A batch cast to `schema`'s column types (decimals widened; names from the schema).
fn conform(b: &RecordBatch, schema: &SchemaRef) -> datafusion::error::Result<RecordBatch> {
    let columns = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(sql: &str) -> Dataflow {
        let text = format!(
            "name = \"t\"\nkind = \"invariant\"\nsql = \"\"\"{sql}\"\"\"\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\n[source.schema]\nts = \"timestamp\"\naccount = \"string\"\nqty = \"decimal(18,4)\"\nside = \"string\"\n[event_time]\ncolumn = \"ts\"\n[window]\nkind = \"cumulative\"\nsize = \"1m\"\n[invariant]\nkey = [\"account\"]\n"
        );
        crate::job::parse(std::path::Path::new("t.toml"), &text).unwrap().dataflow()
    }

    #[test]
    fn an_aggregate_query_splits_into_partial_merge_and_final() {
        let s = split(&job("SELECT account, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS net, avg(qty) AS mean, count(*) AS n FROM events WHERE side <> 'x' GROUP BY account HAVING count(*) > 1")).unwrap();
        assert_eq!(
            s.partial,
            "SELECT account, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS __osprey_a0, sum(qty) AS __osprey_a1, count(qty) AS __osprey_a2, count(*) AS __osprey_a3, count(*) AS __osprey_a4, max(\"ts\") AS __osprey_last FROM events WHERE side <> 'x' GROUP BY account"
        );
        assert_eq!(s.merges, [Merge::Sum; 5], "sums, counts and avg's two halves all merge by adding");
        assert!(s.final_.contains("FROM state") && s.final_.contains("HAVING sum(__osprey_a4) > 1") && !s.final_.contains("WHERE"), "{}", s.final_);
        assert_eq!(
            s.final_unique,
            "SELECT account, __osprey_a0 AS net, (CAST(__osprey_a1 AS DOUBLE) / CAST(__osprey_a2 AS DOUBLE)) AS mean, __osprey_a3 AS n FROM state WHERE __osprey_a4 > 1",
            "one state row per group: each merge is its column"
        );
    }

    #[test]
    fn sums_merge_exactly_and_an_overflow_is_an_error() {
        use datafusion::arrow::array::Int32Array;
        let ty = DataType::Decimal128(38, 4);
        let decimal = |x: i128| Decimal128Array::from(vec![x]).with_precision_and_scale(38, 4).unwrap();
        let mut acc = ScalarValue::Decimal128(Some(1), 38, 4);
        for _ in 0..1000 {
            merge_from(Merge::Sum, &mut acc, &decimal(1_000_1), 0, &ty).unwrap();
        }
        assert_eq!(acc, ScalarValue::Decimal128(Some(1 + 1000 * 1_000_1), 38, 4), "0.0001 + 1000 × 1.0001, exactly");
        let mut near = ScalarValue::Decimal128(Some(10i128.pow(38) - 1), 38, 4);
        assert!(merge_from(Merge::Sum, &mut near, &decimal(1), 0, &ty).is_err(), "39 digits do not fit");
        let mut big = ScalarValue::Int64(Some(i64::MAX));
        assert!(merge_from(Merge::Sum, &mut big, &Int64Array::from(vec![1]), 0, &DataType::Int64).is_err());
        // Other types take the general path, with the same meaning.
        let mut small = ScalarValue::Int32(Some(2));
        merge_from(Merge::Sum, &mut small, &Int32Array::from(vec![3]), 0, &DataType::Int32).unwrap();
        assert_eq!(small, ScalarValue::Int32(Some(5)));
        let mut nothing = ScalarValue::Int64(None);
        merge_from(Merge::Sum, &mut nothing, &Int64Array::from(vec![7]), 0, &DataType::Int64).unwrap();
        assert_eq!(nothing, ScalarValue::Int64(Some(7)), "a null running sum takes the first value");
        let mut name = ScalarValue::Utf8(Some("b".into()));
        merge_from(Merge::Max, &mut name, &StringArray::from(vec!["c"]), 0, &DataType::Utf8).unwrap();
        merge_from(Merge::Max, &mut name, &StringArray::from(vec!["a"]), 0, &DataType::Utf8).unwrap();
        assert_eq!(name, ScalarValue::Utf8(Some("c".into())), "max of strings in place");
    }

    #[test]
    fn aggregates_without_a_running_partial_are_refused_with_the_reason() {
        for sql in ["SELECT account, median(qty) AS m FROM events GROUP BY account", "SELECT account, count(DISTINCT side) AS n FROM events GROUP BY account"] {
            let e = split(&job(sql)).unwrap_err();
            assert!(e.message.contains("its state is every value seen"), "{sql}: {}", e.message);
        }
        assert!(split(&job("SELECT * FROM events")).unwrap_err().message.contains("names its columns"));
    }

    /// One state row per group: the final query without its aggregation gives the rows (values,
    /// types, order, HAVING) the aggregating final query gives, pane after pane.
    #[test]
    fn the_final_query_over_one_row_per_group_gives_the_aggregating_one_s_rows() {
        use datafusion::arrow::array::{Int32Array, Int64Array};
        let sql = "SELECT account, sum(qty) AS net, avg(qty) AS mean, count(*) AS n, count(qty) AS priced, max(side) AS last_side, \
                   min(qty) AS least, bool_or(qty > 5) AS big FROM events GROUP BY account HAVING count(*) > 2 ORDER BY account";
        let mut unique = CumulativeQuery::plan(&job(sql)).unwrap();
        assert!(unique.final_unique.is_some(), "{sql}: plans without aggregation");
        let mut aggregating = CumulativeQuery::plan(&job(sql)).unwrap();
        aggregating.final_unique = None;
        let schema = unique.input_schema();
        let mut x: u64 = 5;
        for pane in 0..6i64 {
            let n = 30;
            let mut rnd = || {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                x >> 33
            };
            let rows: Vec<(i64, String, Option<i128>, String)> = (0..n)
                .map(|i| {
                    let r = rnd();
                    let qty = (r % 7 != 0).then_some((r % 100_000) as i128);
                    (pane * 60_000 + i * 100, format!("a{}", r % 9), qty, ["buy", "sell"][(r % 2) as usize].to_string())
                })
                .collect();
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| -> ArrayRef {
                    match (f.name().as_str(), f.data_type()) {
                        ("ts", t) => cast(&(Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef), t).unwrap(),
                        ("account", _) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()))),
                        ("qty", DataType::Decimal128(p, s)) => Arc::new(Decimal128Array::from_iter(rows.iter().map(|r| r.2)).with_precision_and_scale(*p, *s).unwrap()),
                        ("side", _) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3.clone()))),
                        (_, DataType::Int32) => Arc::new(Int32Array::from_iter_values((0..n).map(|_| 0))),
                        (_, t) => cast(&(Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef), t).unwrap(),
                    }
                })
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
            let window = FiredWindow { start: pane * 60_000, end: (pane + 1) * 60_000, key: Vec::new(), batches: vec![batch], update: false, revision: 0 };
            let (a, b) = (unique.run(&window).unwrap(), aggregating.run(&window).unwrap());
            assert_eq!(a.changed, b.changed, "pane {pane}");
            assert!(a.changed.iter().map(|b| b.num_rows()).sum::<usize>() > 0 || pane == 0, "pane {pane}: groups pass the HAVING");
        }
    }
}
