//! Which records of a job's input must meet in one process: what scale-out re-keys by.
//!
//! Two records must be computed together when they can reach the same output row: the same
//! group of an aggregate, the same partition of a window function. Shuffling by a set of input
//! columns keeps them together only if every group determines those columns' values, so only
//! a group expression that is a bare input column counts; a group by `lower(service)` makes
//! `service` unusable (`Foo` and `foo` share a group), and leaves an empty key: every record
//! together.

use std::collections::BTreeSet;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::jobfile::{WINDOW_END, WINDOW_START};

/// How a job's records depend on each other within a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// Each record's output is its own (filters, projections): records may be split anyhow.
    RowWise,
    /// Records that agree on these input columns must meet (empty: all of a window's records).
    Keys(Vec<String>),
}

impl Grouping {
    /// Both constraints at once: records must meet when either says so.
    pub fn and(self, other: Grouping) -> Grouping {
        match (self, other) {
            (Grouping::RowWise, g) | (g, Grouping::RowWise) => g,
            (Grouping::Keys(a), Grouping::Keys(b)) => Grouping::Keys(a.into_iter().filter(|c| b.contains(c)).collect()),
        }
    }

    /// Whether a topic keyed by `key` (input columns; empty: unknown) already holds every
    /// group's records in one partition.
    pub fn covered_by(&self, key: &[String]) -> bool {
        match self {
            Grouping::RowWise => true,
            Grouping::Keys(k) => !key.is_empty() && key.iter().all(|c| k.contains(c)),
        }
    }
}

/// The grouping of an optimised plan over `events`, whose columns are `inputs`.
pub fn of_plan(plan: &LogicalPlan, inputs: &[String]) -> Grouping {
    let mut out = Grouping::RowWise;
    let bare = |exprs: &[Expr]| -> Grouping {
        let mut cols = BTreeSet::new();
        for e in exprs {
            if let Expr::Column(c) = strip(e) {
                if inputs.iter().any(|i| i == &c.name) && c.name != WINDOW_START && c.name != WINDOW_END {
                    cols.insert(c.name.clone());
                }
            }
        }
        Grouping::Keys(cols.into_iter().collect())
    };
    let _ = plan.apply_with_subqueries(|node| {
        let here = match node {
            LogicalPlan::Aggregate(a) => Some(bare(&a.group_expr)),
            LogicalPlan::Window(w) => {
                let mut g = Grouping::RowWise;
                for e in &w.window_expr {
                    let partition_by = match strip(e) {
                        Expr::WindowFunction(f) => f.params.partition_by.clone(),
                        _ => Vec::new(),
                    };
                    g = g.and(bare(&partition_by));
                }
                Some(g)
            }
            // Rows of one window meeting each other some other way: all of them together.
            // (A sort only orders a window's rows: each process's share sorts alike.)
            LogicalPlan::Join(_) | LogicalPlan::Distinct(_) | LogicalPlan::Union(_) | LogicalPlan::Limit(_) => {
                Some(Grouping::Keys(Vec::new()))
            }
            _ => None,
        };
        if let Some(g) = here {
            out = std::mem::replace(&mut out, Grouping::RowWise).and(g);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        e => e,
    }
}
