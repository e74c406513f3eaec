//! Planning: a loaded job's SQL planned with DataFusion, and the checks that need its result
//! columns (the kind's keys, the sink's key). It sits above `job/` (which needs no engine) and
//! `exec/` (which knows no job kinds), and joins them.

use std::path::Path;

use crate::decode::Decoder;
use crate::exec::{cumulative::CumulativeQuery, incremental::IncrementalQuery, JobQuery, WindowQuery};
use crate::job::{self, Job, JobError, WindowConfig};
use crate::kind::Planned;

/// Load and check a job file, then plan its SQL: what `osprey validate` runs.
pub fn validate(path: &Path) -> Result<Job, JobError> {
    let job = job::load(path)?;
    plan(&job)?;
    Ok(job)
}

/// Plan the SQL a job runs per window, checking what needs its result columns. A kind that
/// aggregates per pane itself (an SLO) runs its pane SQL around the job's; the job's own SQL is
/// planned alone first, so that an error points into the text the user wrote.
pub fn plan(job: &Job) -> Result<JobQuery, JobError> {
    let flow = job.dataflow();
    if let WindowConfig::Cumulative { size, .. } = job.window {
        // The SQL as the user wrote it plans over one window first: its errors point into it.
        let mut windowed = flow.clone();
        windowed.window = WindowConfig::Tumbling { size };
        WindowQuery::plan(&windowed)?;
        let query = CumulativeQuery::plan(&flow)?;
        check_against_result(job, &query.output_schema())?;
        return Ok(JobQuery::Cumulative(Box::new(query)));
    }
    let query = WindowQuery::plan(&flow)?;
    check_against_result(job, &query.output_schema())?;
    let Some((pane_sql, blame)) = job.kind.pane_sql(&job.sql.text) else { return Ok(fed_or_whole(&flow, query)) };
    let mut pane = flow;
    pane.sql.text = pane_sql;
    WindowQuery::plan(&pane)
        .map(|q| fed_or_whole(&pane, q))
        .map_err(|e| job.error_at_key(blame, format!("[{}]: the pane aggregation does not plan: {}", job.kind.name(), e.message)))
}

/// A tumbling window's SQL fed its rows while the window is open when its plan takes them as
/// they come (see [`IncrementalQuery`]), else run whole at the close.
fn fed_or_whole(flow: &crate::jobfile::Dataflow, query: WindowQuery) -> JobQuery {
    match IncrementalQuery::plan(flow, query) {
        Ok(q) => JobQuery::Incremental(Box::new(q)),
        Err((whole, _)) => JobQuery::Windowed(whole),
    }
}

/// What planning tells a kind about the job: the result columns and the decoded events'.
fn planned(job: &Job, output: &datafusion::arrow::datatypes::SchemaRef) -> Planned {
    Planned { output: output.clone(), decoded: Decoder::new(&job.dataflow()).schema(), event_time_index: job.event_time_index() }
}

/// What can be checked only once the SQL's result columns are known: the kind's checks and
/// its evaluator, built once and dropped.
pub fn check_against_result(job: &Job, output: &datafusion::arrow::datatypes::SchemaRef) -> Result<(), JobError> {
    let planned = planned(job, output);
    job.kind.evaluator(&job.name, &planned).map_err(|e| job.kind_error(e))?;
    job.kind.check(&planned).map_err(|e| job.kind_error(e))?;
    Ok(())
}
