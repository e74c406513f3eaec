//! `SELECT *` over `events` means the declared columns and the window, even when the query
//! names a metadata column elsewhere (`SELECT *, _offset ...`): each wildcard over `events`
//! gets an `EXCLUDE` of the metadata columns, so they appear only where they are named.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_statements_mut, ExcludeSelectItem, Ident, ObjectName, Query, SelectItem, SetExpr, Statement, TableFactor,
    VisitMut, VisitorMut,
};

/// Add `EXCLUDE (names)` to every wildcard that selects from `events` directly.
pub fn hide_from_wildcards(statement: &mut Statement, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    struct Hide<'a>(&'a [&'a str]);
    impl VisitorMut for Hide<'_> {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            fix(&mut query.body, self.0);
            ControlFlow::Continue(())
        }
    }
    let _ = visit_statements_mut(statement, |s| s.visit(&mut Hide(names)));
}

fn fix(body: &mut SetExpr, names: &[&str]) {
    match body {
        SetExpr::Select(select) => {
            let reads_events = select.from.iter().any(|t| {
                matches!(&t.relation, TableFactor::Table { name, .. } if name.to_string().eq_ignore_ascii_case("events"))
            });
            if !reads_events {
                return;
            }
            for item in &mut select.projection {
                let options = match item {
                    SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o) => o,
                    _ => continue,
                };
                let mut excluded: Vec<ObjectName> = match options.opt_exclude.take() {
                    Some(ExcludeSelectItem::Single(n)) => vec![n],
                    Some(ExcludeSelectItem::Multiple(v)) => v,
                    None => Vec::new(),
                };
                for n in names {
                    if !excluded.iter().any(|e| e.to_string().eq_ignore_ascii_case(n)) {
                        excluded.push(ObjectName::from(vec![Ident::new(*n)]));
                    }
                }
                options.opt_exclude = Some(ExcludeSelectItem::Multiple(excluded));
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            fix(left, names);
            fix(right, names);
        }
        SetExpr::Query(q) => fix(&mut q.body, names),
        _ => {}
    }
}
