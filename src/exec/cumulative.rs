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

use std::collections::BTreeMap;

use std::hash::BuildHasher;

// hashbrown with a fast hash: a pane looks up every group it holds, and SipHash was a tenth of it.
use hashbrown::{DefaultHashBuilder, HashTable};

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Decimal128Array, Float64Array, Int64Array, PrimitiveArray, StringArray, StringBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
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
    /// The partial query without the last event's time: what a scaled-out job's first stage
    /// sends per window and group (see `crate::shuffle::partials`).
    pub window_partial: String,
}

/// `sql`, a final query of [`split`], reading the table `table` instead of `state`.
pub fn reading(sql: &str, table: &str) -> String {
    use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
    let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else { return sql.to_string() };
    if let Some(Statement::Query(q)) = statements.first_mut() {
        if let SetExpr::Select(select) = q.body.as_mut() {
            if let Some(TableFactor::Table { name, .. }) = select.from.first_mut().map(|f| &mut f.relation) {
                *name = ObjectName::from(vec![Ident::new(table)]);
            }
        }
    }
    statements.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; ")
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
    let group_by = if state_group.is_empty() { String::new() } else { format!(" GROUP BY {}", state_group.join(", ")) };
    let where_ = selection.map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let window_partial = format!("SELECT {} FROM events{where_}{group_by}", partial.join(", "));
    partial.push(format!("max({event_time}) AS {LAST}"));
    Ok(Split {
        window_partial,
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

/// A group's place in the running columns.
type Slot = u32;

/// What a cumulative query remembers: the running partials of every live group, by column
/// (one vector per merge, indexed by the group's slot), so a pane's partials merge column by
/// column with the type looked at once, not a `ScalarValue` per group and partial. Hashed by
/// key (a pane looks each of its groups up once); evaluations and checkpoints take their
/// groups in key order, so output never depends on hashing or slots.
#[derive(Debug)]
pub struct CumulativeState {
    /// The held slots, hashed by their keys (in `keys`: a key is kept once, not again as the
    /// map's, which was a second allocation and copy for each of millions of groups).
    slots: HashTable<Slot>,
    hasher: DefaultHashBuilder,
    /// Per slot: its group's key (`None`: free, listed in `free`).
    keys: Vec<Option<Key>>,
    /// Per merge, per slot: the running value.
    values: Vec<Running>,
    /// Per slot: the event time of the group's last event.
    last: Vec<Millis>,
    free: Vec<Slot>,
    /// With a `ttl`: groups by the time of their last event, so dropping idle groups looks
    /// only at those (not at every group, every pane).
    by_last: ByLast,
    /// The first pane's start: `window_start` of every evaluation.
    pub since: Option<Millis>,
    pub dropped_groups: u64,
    pub peak_groups: u64,
}

/// One merge's running values, by slot: the common (type, merge) pairs typed, the rest as
/// [`ScalarValue`]s merged through [`merge_from`]. A free slot holds a null.
#[derive(Debug)]
enum Running {
    /// Exact sums, minima and maxima of `Decimal128(precision, _)`.
    Decimal(Vec<Option<i128>>, u8),
    Int64(Vec<Option<i64>>),
    /// Float sums (min and max go through [`ScalarValue`]'s ordering).
    Float64(Vec<Option<f64>>),
    /// String minima and maxima.
    Utf8(Vec<Option<String>>),
    Scalar(Vec<ScalarValue>, ScalarValue),
}

impl Running {
    fn new(merge: Merge, ty: &DataType, typed: bool) -> datafusion::error::Result<Running> {
        let ordered = matches!(merge, Merge::Sum | Merge::Min | Merge::Max);
        Ok(match ty {
            DataType::Decimal128(p, _) if typed && ordered => Running::Decimal(Vec::new(), *p),
            DataType::Int64 if typed && ordered => Running::Int64(Vec::new()),
            DataType::Float64 if typed && merge == Merge::Sum => Running::Float64(Vec::new()),
            DataType::Utf8 if typed && matches!(merge, Merge::Min | Merge::Max) => Running::Utf8(Vec::new()),
            _ => Running::Scalar(Vec::new(), ScalarValue::try_from(ty)?),
        })
    }

    /// Make room for `slots` slots (new ones null).
    fn grow(&mut self, slots: usize) {
        match self {
            Running::Decimal(v, _) => v.resize(slots, None),
            Running::Int64(v) => v.resize(slots, None),
            Running::Float64(v) => v.resize(slots, None),
            Running::Utf8(v) => v.resize(slots, None),
            Running::Scalar(v, null) => v.resize(slots, null.clone()),
        }
    }

    /// Slot `s` holds nothing (its group was dropped).
    fn clear(&mut self, s: usize) {
        match self {
            Running::Decimal(v, _) => v[s] = None,
            Running::Int64(v) => v[s] = None,
            Running::Float64(v) => v[s] = None,
            Running::Utf8(v) => v[s] = None,
            Running::Scalar(v, null) => v[s] = null.clone(),
        }
    }

    /// Merge `partial`'s rows into the slots `slots` gives them (one per row), in row order.
    fn merge(&mut self, merge: Merge, partial: &dyn Array, slots: &[Slot], ty: &DataType) -> datafusion::error::Result<()> {
        fn fold<T: Copy>(acc: &mut [Option<T>], slots: &[Slot], valid: impl Fn(usize) -> bool, value: impl Fn(usize) -> T, mut f: impl FnMut(T, T) -> datafusion::error::Result<T>) -> datafusion::error::Result<()> {
            for (row, &s) in slots.iter().enumerate() {
                if !valid(row) {
                    continue;
                }
                let v = value(row);
                let a = &mut acc[s as usize];
                *a = Some(match *a {
                    None => v,
                    Some(x) => f(x, v)?,
                });
            }
            Ok(())
        }
        let valid = |row: usize| partial.is_valid(row);
        match self {
            Running::Decimal(acc, precision) => {
                let values = partial.as_primitive::<Decimal128Type>();
                let limit = 10u128.pow(*precision as u32);
                match merge {
                    Merge::Sum => fold(acc, slots, valid, |r| values.value(r), |a, b| a.checked_add(b).filter(|x| x.unsigned_abs() < limit).ok_or_else(|| overflow(ty))),
                    Merge::Min => fold(acc, slots, valid, |r| values.value(r), |a, b| Ok(a.min(b))),
                    _ => fold(acc, slots, valid, |r| values.value(r), |a, b| Ok(a.max(b))),
                }
            }
            Running::Int64(acc) => {
                let values = partial.as_primitive::<Int64Type>();
                match merge {
                    Merge::Sum => fold(acc, slots, valid, |r| values.value(r), |a, b| a.checked_add(b).ok_or_else(|| overflow(ty))),
                    Merge::Min => fold(acc, slots, valid, |r| values.value(r), |a, b| Ok(a.min(b))),
                    _ => fold(acc, slots, valid, |r| values.value(r), |a, b| Ok(a.max(b))),
                }
            }
            Running::Float64(acc) => {
                let values = partial.as_primitive::<Float64Type>();
                fold(acc, slots, valid, |r| values.value(r), |a, b| Ok(a + b))
            }
            Running::Utf8(acc) => {
                let values = partial.as_string::<i32>();
                for (row, &s) in slots.iter().enumerate() {
                    if !valid(row) {
                        continue;
                    }
                    let v = values.value(row);
                    match &mut acc[s as usize] {
                        Some(a) if (merge == Merge::Max && v > a.as_str()) || (merge == Merge::Min && v < a.as_str()) => {
                            a.clear();
                            a.push_str(v);
                        }
                        Some(_) => {}
                        none => *none = Some(v.to_string()),
                    }
                }
                Ok(())
            }
            Running::Scalar(acc, _) => {
                for (row, &s) in slots.iter().enumerate() {
                    let a = &mut acc[s as usize];
                    if a.is_null() {
                        if partial.is_valid(row) {
                            *a = ScalarValue::try_from_array(partial, row)?;
                        }
                    } else {
                        merge_from(merge, a, partial, row, ty)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The running values of `slots`, in that order, as an array of type `ty`.
    fn column(&self, slots: &[Slot], ty: &DataType) -> datafusion::error::Result<ArrayRef> {
        let at = |s: &Slot| *s as usize;
        Ok(match self {
            Running::Decimal(v, _) => {
                let DataType::Decimal128(p, s) = ty else { unreachable!("a decimal column") };
                Arc::new(primitive::<Decimal128Type>(v, slots).with_precision_and_scale(*p, *s)?)
            }
            Running::Int64(v) => Arc::new(primitive::<Int64Type>(v, slots)),
            Running::Float64(v) => Arc::new(primitive::<Float64Type>(v, slots)),
            Running::Utf8(v) => {
                let bytes = slots.iter().map(|s| v[at(s)].as_ref().map_or(0, String::len)).sum();
                let mut b = StringBuilder::with_capacity(slots.len(), bytes);
                slots.iter().for_each(|s| b.append_option(v[at(s)].as_deref()));
                Arc::new(b.finish())
            }
            Running::Scalar(v, _) => column_of(slots.iter().map(|s| &v[at(s)]), slots.len(), ty)?,
        })
    }
}

/// The running values of `slots` as an array: the values, then the nulls apart (an
/// evaluation's arrays were a tenth of it built value by value through a builder).
fn primitive<T: ArrowPrimitiveType>(v: &[Option<T::Native>], slots: &[Slot]) -> PrimitiveArray<T> {
    let values: Vec<T::Native> = slots.iter().map(|&s| v[s as usize].unwrap_or_default()).collect();
    let nulls = NullBuffer::new(BooleanBuffer::collect_bool(slots.len(), |i| v[slots[i] as usize].is_some()));
    PrimitiveArray::new(values.into(), (nulls.null_count() > 0).then_some(nulls))
}

/// Slots by their group's last event, in buckets one pane wide: a group's last event is
/// mostly in the newest pane, so an entry is pushed onto the newest bucket, and idle groups
/// are whole old buckets taken at once. Entries go stale when a group's last event moves on
/// (a new entry is pushed; the old one is skipped when taken). A balanced tree of
/// `(last event, slot)`, kept exact, cost a third of finding a pane's groups; a binary heap
/// as much again in its pops.
#[derive(Debug)]
struct ByLast {
    width: Millis,
    buckets: BTreeMap<Millis, Vec<(Millis, Slot)>>,
    entries: usize,
}

impl ByLast {
    fn new(width: Millis) -> ByLast {
        assert!(width > 0, "a bucket is a pane wide");
        ByLast { width, buckets: BTreeMap::new(), entries: 0 }
    }

    fn push(&mut self, t: Millis, s: Slot) {
        let bucket = t.div_euclid(self.width);
        match self.buckets.last_entry() {
            Some(mut newest) if *newest.key() == bucket => newest.get_mut().push((t, s)),
            _ => self.buckets.entry(bucket).or_default().push((t, s)),
        }
        self.entries += 1;
    }

    /// Every entry before `cutoff`, taken out (stale ones included).
    fn take_before(&mut self, cutoff: Millis) -> Vec<(Millis, Slot)> {
        let edge = cutoff.div_euclid(self.width);
        let mut taken = Vec::new();
        while let Some(oldest) = self.buckets.first_entry() {
            if *oldest.key() >= edge {
                break;
            }
            taken.extend(oldest.remove());
        }
        if let Some(part) = self.buckets.get_mut(&edge) {
            part.retain(|&e| e.0 >= cutoff || {
                taken.push(e);
                false
            });
            if part.is_empty() {
                self.buckets.remove(&edge);
            }
        }
        self.entries -= taken.len();
        taken
    }
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

impl CumulativeState {
    fn new(merges: &[Merge], state_schema: &SchemaRef, groups_n: usize, typed: bool, pane: Millis) -> datafusion::error::Result<CumulativeState> {
        let values = merges.iter().enumerate().map(|(i, m)| Running::new(*m, state_schema.field(groups_n + i).data_type(), typed)).collect::<datafusion::error::Result<_>>()?;
        Ok(CumulativeState {
            slots: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            keys: Vec::new(),
            values,
            last: Vec::new(),
            free: Vec::new(),
            by_last: ByLast::new(pane),
            since: None,
            dropped_groups: 0,
            peak_groups: 0,
        })
    }

    /// The slot of `key`'s group, made (null values, last event `t`) if it is new.
    fn slot(&mut self, key: &[u8], t: Millis, indexed: bool) -> Slot {
        let hash = self.hasher.hash_one(key);
        if let Some(&s) = self.find(hash, key) {
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = self.keys.len();
                self.keys.push(None);
                self.last.push(t);
                self.values.iter_mut().for_each(|v| v.grow(s + 1));
                Slot::try_from(s).expect("fewer than 2^32 groups")
            }
        };
        self.keys[s as usize] = Some(key.into());
        self.last[s as usize] = t;
        if indexed {
            self.by_last.push(t, s);
        }
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.slots.insert_unique(hash, s, |&held| hasher.hash_one(keys[held as usize].as_deref().expect("a held slot has a key")));
        s
    }

    /// The slot holding `key` (hashed to `hash`).
    fn find(&self, hash: u64, key: &[u8]) -> Option<&Slot> {
        self.slots.find(hash, |&s| self.keys[s as usize].as_deref() == Some(key))
    }

    /// The groups whose last event is before `cutoff`, each once, with that last event.
    ///
    /// Every entry of a slot is at most its group's last event, so when a group is taken here
    /// all its entries go with it: a freed slot leaves none behind to be mistaken for the
    /// next group in it.
    fn idle_before(&mut self, cutoff: Millis) -> Vec<(Millis, Slot)> {
        let mut idle = self.by_last.take_before(cutoff);
        // Stale: the group's last event moved on since this entry.
        idle.retain(|&(t, s)| self.keys[s as usize].is_some() && self.last[s as usize] == t);
        // Stale entries are at most one per change of a group's last event.
        if crate::state::index_to_rebuild(self.by_last.entries, self.len()) {
            let width = self.by_last.width;
            self.by_last = ByLast::new(width);
            for &s in self.slots.iter() {
                self.by_last.push(self.last[s as usize], s);
            }
        }
        idle
    }

    /// The slot of `key`'s group, which had an event at `t` (its last event, if the latest).
    fn touch(&mut self, key: &[u8], t: Millis, indexed: bool) -> Slot {
        let s = self.slot(key, t, indexed);
        let held = &mut self.last[s as usize];
        if t > *held {
            *held = t;
            if indexed {
                self.by_last.push(t, s);
            }
        }
        s
    }

    /// Forget slot `s`'s group; returns its key.
    fn drop_slot(&mut self, s: Slot) -> Key {
        let hash = self.hasher.hash_one(self.key(s));
        self.slots.find_entry(hash, |&held| held == s).expect("a held slot is in the table").remove();
        let key = self.keys[s as usize].take().expect("a dropped slot is held");
        self.values.iter_mut().for_each(|v| v.clear(s as usize));
        self.free.push(s);
        key
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn key(&self, s: Slot) -> &[u8] {
        self.keys[s as usize].as_deref().expect("a held slot has a key")
    }
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
        let state = CumulativeState::new(&merges, &state_schema, groups_n, true, size)
            .map_err(|e| refuse(job, format!("cumulative window: the running aggregates: {e}"), "aggregate plain columns"))?;
        Ok(CumulativeQuery { partial, final_, final_unique, state_schema, final_input, groups_n, merges, converter, state, ttl })
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
        self.state.len()
    }

    /// Fold one pane in and evaluate the groups it changed, and those `ttl` dropped.
    pub fn run(&mut self, window: &FiredWindow) -> datafusion::error::Result<CumulativeRows> {
        let since = *self.state.since.get_or_insert(window.start);
        let mut changed: Vec<Slot> = Vec::new();
        let indexed = self.ttl.is_some();
        for b in self.partial.run(window)? {
            let b = conform(&b, &self.state_schema)?;
            let keys = self.converter.convert_columns(&b.columns()[..self.groups_n])?;
            let last = cast(b.column(b.num_columns() - 1), &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let last = last.as_primitive::<TimestampMillisecondType>();
            // One row per group (the partial query groups by the key): find or make each slot.
            let slots: Vec<Slot> = (0..b.num_rows())
                .map(|row| {
                    let t = if last.is_valid(row) { last.value(row) } else { window.start };
                    self.state.touch(keys.row(row).data(), t, indexed)
                })
                .collect();
            for (i, running) in self.state.values.iter_mut().enumerate() {
                let ty = self.state_schema.field(self.groups_n + i).data_type();
                running.merge(self.merges[i], b.column(self.groups_n + i).as_ref(), &slots, ty)?;
            }
            changed.extend(slots);
        }
        let state = &self.state;
        changed.sort_unstable_by(|x, y| state.key(*x).cmp(state.key(*y)));
        changed.dedup();
        let mut dropped: Vec<(Millis, Slot)> = Vec::new();
        if let Some(ttl) = self.ttl {
            dropped = self.state.idle_before(window.end - ttl);
            self.state.dropped_groups += dropped.len() as u64;
            // In the order of their last events, then keys.
            let state = &self.state;
            dropped.sort_unstable_by(|x, y| (x.0, state.key(x.1)).cmp(&(y.0, state.key(y.1))));
        }
        // A group dropped in this pane is evaluated as dropped, not as changed.
        if !dropped.is_empty() {
            let mut gone: Vec<Slot> = dropped.iter().map(|d| d.1).collect();
            gone.sort_unstable();
            changed.retain(|s| gone.binary_search(s).is_err());
        }
        let changed = self.evaluate(&changed, since, window.end)?;
        let dropped_slots: Vec<Slot> = dropped.iter().map(|d| d.1).collect();
        let dropped_rows = self.evaluate(&dropped_slots, since, window.end)?;
        for s in dropped_slots {
            self.state.drop_slot(s);
        }
        debug_assert!(!indexed || self.state.by_last.entries >= self.state.len(), "every group indexed by its last event");
        self.state.peak_groups = self.state.peak_groups.max(self.state.len() as u64);
        Ok(CumulativeRows { changed, dropped: dropped_rows })
    }

    /// Groups as the state schema's columns, in the order given: keys, partials, last event.
    fn columns(&self, slots: &[Slot]) -> datafusion::error::Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let mut columns: Vec<ArrayRef> = self.converter.convert_rows(slots.iter().map(|&s| parser.parse(self.state.key(s))))?;
        for (i, running) in self.state.values.iter().enumerate() {
            columns.push(running.column(slots, self.state_schema.field(self.groups_n + i).data_type())?);
        }
        columns.push(Arc::new(TimestampMillisecondArray::from(slots.iter().map(|&s| self.state.last[s as usize]).collect::<Vec<_>>())));
        Ok(columns)
    }

    /// The running state for a checkpoint: every group as a row of the state schema (keys,
    /// partials, last event) in an Arrow IPC stream, so types and exact decimals survive.
    pub fn save_state(&self) -> anyhow::Result<Vec<u8>> {
        let mut slots: Vec<Slot> = self.state.slots.iter().copied().collect();
        slots.sort_unstable_by(|x, y| self.state.key(*x).cmp(self.state.key(*y)));
        let columns = self.columns(&slots)?;
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
        let typed = !self.state.values.iter().all(|v| matches!(v, Running::Scalar(..)));
        let mut state = CumulativeState::new(&self.merges, &self.state_schema, self.groups_n, typed, self.state.by_last.width)?;
        (state.since, state.dropped_groups, state.peak_groups) = (saved.since, saved.dropped_groups, saved.peak_groups);
        let indexed = self.ttl.is_some();
        for b in &saved.groups.0 {
            anyhow::ensure!(b.num_columns() == self.groups_n + self.merges.len() + 1, "the saved groups have other columns than this job's");
            let keys = self.converter.convert_columns(&b.columns()[..self.groups_n])?;
            let last = b.column(b.num_columns() - 1).as_primitive::<TimestampMillisecondType>();
            let slots: Vec<Slot> = (0..b.num_rows()).map(|row| state.slot(keys.row(row).data(), last.value(row), indexed)).collect();
            // Each slot is new and null: merging its saved value sets it.
            for (i, running) in state.values.iter_mut().enumerate() {
                let ty = self.state_schema.field(self.groups_n + i).data_type();
                running.merge(self.merges[i], b.column(self.groups_n + i).as_ref(), &slots, ty)?;
            }
        }
        self.state = state;
        Ok(())
    }

    /// The job's SQL over some groups' running values.
    fn evaluate(&self, slots: &[Slot], since: Millis, end: Millis) -> datafusion::error::Result<Vec<RecordBatch>> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let n = slots.len();
        let mut columns = self.columns(slots)?;
        let last_field = self.state_schema.field(self.state_schema.fields().len() - 1);
        let last = columns.pop().expect("the last event's column");
        columns.push(match last_field.data_type() {
            // Naive milliseconds are UTC's: only the zone's name to add. (A cast reads each
            // value as a local time in the zone, a fifth of an evaluation.)
            DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => {
                Arc::new(last.as_primitive::<TimestampMillisecondType>().clone().with_timezone(tz.clone()))
            }
            ty => cast(&last, ty)?,
        });
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

    /// The one-minute pane `pane` of decoded rows at `times`: `ts` from the times, the declared
    /// columns from `column` (name, type), the metadata columns zeros and row numbers.
    fn pane_window(schema: &SchemaRef, pane: i64, times: &[i64], column: impl Fn(&str, &DataType) -> Option<ArrayRef>) -> FiredWindow {
        let n = times.len() as i64;
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match (f.name().as_str(), f.data_type()) {
                ("ts", t) => cast(&(Arc::new(Int64Array::from_iter_values(times.iter().copied())) as ArrayRef), t).unwrap(),
                (name, t) => column(name, t).unwrap_or_else(|| match t {
                    DataType::Int32 => Arc::new(datafusion::arrow::array::Int32Array::from_iter_values((0..n).map(|_| 0))),
                    _ => cast(&(Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef), t).unwrap(),
                }),
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        FiredWindow { start: pane * 60_000, end: (pane + 1) * 60_000, key: Vec::new(), batches: vec![batch], update: false, revision: 0 }
    }

    /// The running columns typed (decimals, integers, float sums, string min/max) give what
    /// `ScalarValue`s merged one by one give, pane after pane: nulls, groups dropped after the
    /// `ttl` and made again in their slots, and a checkpoint restored halfway.
    #[test]
    fn typed_running_columns_give_what_scalar_ones_give() {
        use datafusion::arrow::array::BooleanArray;
        let text = "name = \"t\"\nkind = \"query\"\nsql = \"\"\"SELECT account, sum(qty) AS net, min(qty) AS least, max(qty) AS most, sum(n) AS total, \
            min(n) AS lo, max(side) AS last_side, min(side) AS first_side, sum(price) AS gross, max(price) AS top, bool_or(flag) AS any_flag, \
            count(*) AS c FROM events GROUP BY account\"\"\"\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\n[source.schema]\nts = \"timestamp\"\n\
            account = \"string\"\nqty = \"decimal(18,4)\"\nside = \"string\"\nn = \"int64\"\nprice = \"float64\"\nflag = \"bool\"\n\
            [event_time]\ncolumn = \"ts\"\n[window]\nkind = \"cumulative\"\nsize = \"1m\"\nttl = \"3m\"\n";
        let job = crate::job::parse(std::path::Path::new("t.toml"), text).unwrap().dataflow();
        let mut typed = CumulativeQuery::plan(&job).unwrap();
        let mut scalar = CumulativeQuery::plan(&job).unwrap();
        scalar.state = CumulativeState::new(&scalar.merges, &scalar.state_schema, scalar.groups_n, false, scalar.state.by_last.width).unwrap();
        assert!(typed.state.values.iter().filter(|v| !matches!(v, Running::Scalar(..))).count() >= 8, "{:?}", typed.state.values);
        assert!(scalar.state.values.iter().all(|v| matches!(v, Running::Scalar(..))));
        let schema = typed.input_schema();
        let mut x: u64 = 11;
        let mut rnd = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        let (mut changed, mut dropped) = (0, 0);
        for pane in 0..12i64 {
            let n = 40;
            let rows: Vec<(i64, u64)> = (0..n).map(|i| (pane * 60_000 + i * 1_000, rnd())).collect();
            // Accounts come and go, so some stay quiet past the ttl and are made again later.
            let account = |r: u64| format!("a{}", (r % 7) + (pane as u64 / 4) * 3);
            let times: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let window = pane_window(&schema, pane, &times, |name, ty| -> Option<ArrayRef> {
                Some(match (name, ty) {
                    ("account", _) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| account(r.1)))),
                    ("qty", DataType::Decimal128(p, s)) => Arc::new(
                        Decimal128Array::from_iter(rows.iter().map(|r| (r.1 % 5 != 0).then_some((r.1 % 2_000_000) as i128 - 1_000_000))).with_precision_and_scale(*p, *s).unwrap(),
                    ),
                    ("side", _) => Arc::new(StringArray::from_iter(rows.iter().map(|r| (r.1 % 6 != 0).then(|| ["buy", "sell", "hold"][(r.1 % 3) as usize])))),
                    ("n", _) => Arc::new(Int64Array::from_iter(rows.iter().map(|r| (r.1 % 4 != 0).then_some((r.1 % 1000) as i64 - 500)))),
                    ("price", _) => Arc::new(Float64Array::from_iter(rows.iter().map(|r| (r.1 % 3 != 0).then_some((r.1 % 1000) as f64 / 8.0)))),
                    ("flag", _) => Arc::new(BooleanArray::from_iter(rows.iter().map(|r| (r.1 % 7 != 0).then_some(r.1 % 11 == 0)))),
                    _ => return None,
                })
            });
            let (a, b) = (typed.run(&window).unwrap(), scalar.run(&window).unwrap());
            assert_eq!(a.changed, b.changed, "pane {pane}: changed groups");
            assert_eq!(a.dropped, b.dropped, "pane {pane}: dropped groups");
            changed += a.changed.iter().map(|b| b.num_rows()).sum::<usize>();
            dropped += a.dropped.iter().map(|b| b.num_rows()).sum::<usize>();
            if pane == 6 {
                let saved = typed.save_state().unwrap();
                assert_eq!(saved, scalar.save_state().unwrap(), "the same checkpoint");
                let mut restored = CumulativeQuery::plan(&job).unwrap();
                restored.load_state(&saved).unwrap();
                assert_eq!(restored.save_state().unwrap(), saved, "restored as saved");
                typed = restored;
            }
        }
        assert!(changed > 50 && dropped > 5, "the scenario changes and drops groups: {changed}, {dropped}");
    }

    /// One state row per group: the final query without its aggregation gives the rows (values,
    /// types, order, HAVING) the aggregating final query gives, pane after pane.
    #[test]
    fn the_final_query_over_one_row_per_group_gives_the_aggregating_one_s_rows() {
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
            let times: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let window = pane_window(&schema, pane, &times, |name, ty| -> Option<ArrayRef> {
                Some(match (name, ty) {
                    ("account", _) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()))),
                    ("qty", DataType::Decimal128(p, s)) => Arc::new(Decimal128Array::from_iter(rows.iter().map(|r| r.2)).with_precision_and_scale(*p, *s).unwrap()),
                    ("side", _) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3.clone()))),
                    _ => return None,
                })
            });
            let (a, b) = (unique.run(&window).unwrap(), aggregating.run(&window).unwrap());
            assert_eq!(a.changed, b.changed, "pane {pane}");
            assert!(a.changed.iter().map(|b| b.num_rows()).sum::<usize>() > 0 || pane == 0, "pane {pane}: groups pass the HAVING");
        }
    }

    #[test]
    fn groups_idle_past_the_ttl_are_each_dropped_once_whatever_the_order_of_their_events() {
        // 97 groups touched at times up to 30 s out of order, panes of 10 s, idle past 57 s:
        // each pane, the groups taken are exactly those whose latest event is before the cutoff.
        let mut state = CumulativeState::new(&[], &Arc::new(Schema::empty()), 0, true, 10_000).unwrap();
        let mut latest: std::collections::HashMap<Vec<u8>, Millis> = Default::default();
        let mut x: u64 = 7;
        let mut taken = 0;
        for pane in 0..400i64 {
            let now = pane * 10_000;
            for _ in 0..50 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let key = vec![((x >> 33) % 97) as u8];
                let t = now - ((x >> 45) % 30_000) as i64;
                state.touch(&key, t, true);
                let held = latest.entry(key).or_insert(t);
                *held = (*held).max(t);
            }
            let cutoff = now - 57_000;
            let mut got: Vec<(Millis, Vec<u8>)> = state.idle_before(cutoff).iter().map(|&(t, s)| (t, state.key(s).to_vec())).collect();
            let mut want: Vec<(Millis, Vec<u8>)> = latest.iter().filter(|(_, t)| **t < cutoff).map(|(k, t)| (*t, k.clone())).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "pane {pane}");
            for (_, key) in &got {
                let s = *state.find(state.hasher.hash_one(key.as_slice()), key).unwrap();
                state.drop_slot(s);
                latest.remove(key);
            }
            taken += got.len();
        }
        assert!(taken > 1000, "groups were dropped and their slots reused: {taken}");
    }
}
