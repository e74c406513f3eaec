//! The query kind: a job whose SQL result rows are its output, sent to `[sink]`.

use toml::Spanned;

use crate::alert::Evaluator;
use crate::kind::{Kind, KindEntry, KindError, Planned};
use crate::jobfile::{Checker, JobError, Spans};

pub const KIND: KindEntry = KindEntry { name: "query", parse };

/// `kind = "query"` (the default): it has no table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query;

fn parse(_cx: &Checker, selected: bool, _kind_key: Option<&Spanned<String>>, _spans: &mut Spans) -> Result<Option<Box<dyn Kind>>, JobError> {
    Ok(selected.then(|| Box::new(Query) as Box<dyn Kind>))
}

impl Kind for Query {
    fn name(&self) -> &'static str {
        "query"
    }

    fn raises_alerts(&self) -> bool {
        false
    }

    fn evaluator(&self, _job: &str, _planned: &Planned) -> Result<Option<Box<dyn Evaluator>>, KindError> {
        Ok(None)
    }

    fn shape(&self) -> String {
        "Query|None|None|None".into()
    }
}
