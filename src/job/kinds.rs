//! The one list of job kinds. A kind's code lives in its own folder; this names it.

use toml::Spanned;

use crate::kind::{Kind, KindEntry};
use crate::jobfile::{closest, Checker, JobError, Spans};

/// Every job kind, in the order their tables are checked. The first is the default.
pub const KINDS: &[KindEntry] = &[crate::query::KIND, crate::invariant::kind::KIND, crate::slo::kind::KIND, crate::anomaly::kind::KIND];

/// The job's kind, with its table read; every other kind's table refused.
pub fn parse(cx: &Checker, kind_key: Option<&Spanned<String>>, spans: &mut Spans) -> Result<Box<dyn Kind>, JobError> {
    let wanted = kind_key.map(|k| k.get_ref().as_str()).unwrap_or(KINDS[0].name);
    if !KINDS.iter().any(|k| k.name == wanted) {
        let k = kind_key.expect("the default kind is listed");
        let mut e = cx.err(k, format!("unknown job kind `{wanted}`"));
        if let Some(near) = closest(wanted, names()) {
            e = e.with_help(format!("did you mean `{near}`?"));
        }
        return Err(e);
    }
    let mut chosen = None;
    for entry in KINDS {
        if let Some(kind) = (entry.parse)(cx, entry.name == wanted, kind_key, spans)? {
            chosen = Some(kind);
        }
    }
    Ok(chosen.expect("the wanted kind is listed and parses when selected"))
}

/// The kinds' names, as written in job files.
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name)
}
