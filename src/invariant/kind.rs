//! The invariant kind: `[invariant]` (with `[invariant.deadline]`) read and checked, and the
//! evaluator each builds: a check of every result row, or timers per key.

use serde::Deserialize;
use toml::Spanned;

use super::{DeadlineConfig, DeadlineEvaluator, InvariantConfig, InvariantEvaluator};
use crate::alert::{AlertsConfig, Evaluator};
use crate::kind::{self, Kind, KindEntry, KindError, Planned};
use crate::jobfile::file::OneOrMany;
use crate::jobfile::{Checker, JobError, Span, Spans};

pub const KIND: KindEntry = KindEntry { name: "invariant", parse };

#[derive(Deserialize)]
struct Tables {
    invariant: Option<Spanned<InvariantFile>>,
}

/// `[invariant]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvariantFile {
    /// Required but for deadline jobs, whose key is the deadline's.
    pub key: Option<Spanned<OneOrMany>>,
    pub violation: Option<Spanned<String>>,
    pub severity: Option<String>,
    pub summary: Option<Spanned<String>>,
    /// The result column whose value is the alert's `value`.
    pub value: Option<Spanned<String>>,
    /// The limit, for the alert's `threshold` (a number or a decimal string).
    pub threshold: Option<Spanned<toml::Value>>,
    pub runbook_url: Option<String>,
    pub deadline: Option<Spanned<DeadlineFile>>,
}

/// `[invariant.deadline]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineFile {
    pub key: Spanned<OneOrMany>,
    /// SQL boolean over one event: it opens a timer for its key.
    pub opens: Spanned<String>,
    /// SQL boolean over one event: it closes its key's timer.
    pub closes: Spanned<String>,
    pub within: Spanned<String>,
}

fn parse(cx: &Checker, selected: bool, kind_key: Option<&Spanned<String>>, spans: &mut Spans) -> Result<Option<Box<dyn Kind>>, JobError> {
    let tables: Tables = cx.tables()?;
    let Some(table) = kind::own_table(cx, "invariant", tables.invariant.as_ref(), selected, kind_key, "add [invariant] with key = [\"<column>\"] and violation = \"<SQL boolean over a result row>\"")? else { return Ok(None) };
    let t = table.get_ref();
    let deadline = match &t.deadline {
        None => None,
        Some(d) => {
            let d = d.get_ref();
            spans.insert("invariant.deadline.key", d.key.span());
            spans.insert("invariant.deadline.opens", d.opens.span());
            spans.insert("invariant.deadline.closes", d.closes.span());
            let key = d.key.get_ref().clone().into_vec();
            if key.is_empty() {
                return Err(cx.err(&d.key, "`key` names no column").with_help("key = [\"order_id\"]: the events' columns naming one timer"));
            }
            if let Some(v) = &t.violation {
                return Err(cx
                    .err(v, "a deadline job has no `violation`: missing the deadline is the violation")
                    .with_help("remove `violation`, or put the check in a job of its own"));
            }
            Some(DeadlineConfig {
                key,
                opens: d.opens.get_ref().clone(),
                closes: d.closes.get_ref().clone(),
                within: cx.positive_duration(&d.within, "within")?,
                within_text: d.within.get_ref().trim().to_string(),
            })
        }
    };
    let key = match (&t.key, &deadline) {
        (Some(k), _) => {
            spans.insert("invariant.key", k.span());
            let key = k.get_ref().clone().into_vec();
            if key.is_empty() {
                return Err(cx.err(k, "`key` names no column").with_help("key = [\"account\", \"symbol\"]: the columns naming one violation"));
            }
            if let Some(d) = &deadline {
                if d.key != key {
                    return Err(cx.err(k, "[invariant] key differs from [invariant.deadline] key").with_help("remove [invariant] key: a deadline's alerts are keyed by its own key"));
                }
            }
            key
        }
        (None, Some(d)) => d.key.clone(),
        (None, None) => {
            return Err(cx.err_at(table.span(), "[invariant] needs `key`")
                .with_help("key = [\"account\", \"symbol\"]: the result columns naming one violation"));
        }
    };
    if let Some(v) = &t.violation {
        spans.insert("invariant.violation", v.span());
    }
    if let Some(v) = &t.value {
        spans.insert("invariant.value", v.span());
    }
    if let Some(s) = &t.summary {
        spans.insert("invariant.summary", s.span());
    }
    let threshold = match &t.threshold {
        None => serde_json::Value::Null,
        Some(v) => match v.get_ref() {
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(x) => serde_json::Number::from_f64(*x).map(serde_json::Value::Number).unwrap_or_default(),
            toml::Value::String(s) if crate::decode::convert::parse_decimal(s, 38, 10).is_ok() => s.clone().into(),
            _ => {
                return Err(cx
                    .err(v, "`threshold` is not a number")
                    .with_help("write the limit as a number, or an exact decimal as a string: threshold = \"10000.00\""));
            }
        },
    };
    Ok(Some(Box::new(InvariantConfig {
        key,
        violation: t.violation.as_ref().map(|v| v.get_ref().clone()),
        severity: t.severity.clone().unwrap_or_else(|| "critical".into()),
        summary: t.summary.as_ref().map(|s| s.get_ref().clone()),
        value: t.value.as_ref().map(|v| v.get_ref().clone()),
        threshold,
        runbook_url: t.runbook_url.clone(),
        deadline,
    })))
}

impl Kind for InvariantConfig {
    fn state_key(&self) -> Option<Vec<String>> {
        Some(match &self.deadline {
            Some(d) => d.key.clone(),
            None => self.key.clone(),
        })
    }

    fn name(&self) -> &'static str {
        "invariant"
    }

    /// A deadline watches every event unless its SQL says which.
    fn default_sql(&self) -> Option<&'static str> {
        self.deadline.is_some().then_some(kind::EVERY_EVENT_SQL)
    }

    fn check_alerts(&self, cx: &Checker, alerts: &AlertsConfig, at: Span) -> Result<(), JobError> {
        if self.deadline.is_some() && (alerts.timing.for_ > 0 || alerts.timing.keep_firing_for > 0) {
            return Err(cx
                .err_at(at, "a deadline job takes no `for` or `keep_firing_for`")
                .with_help("the deadline is the wait: lengthen [invariant.deadline] within instead"));
        }
        Ok(())
    }

    fn evaluator(&self, job: &str, planned: &Planned) -> Result<Option<Box<dyn Evaluator>>, KindError> {
        if self.deadline.is_some() {
            let e = DeadlineEvaluator::new(job, self.clone(), &planned.decoded, planned.event_time_index)
                .map_err(|e| KindError::new(format!("invariant.{}", e.key), format!("[invariant.{}]: {}", e.key.replace('.', "] "), e.message)))?;
            return Ok(Some(Box::new(e)));
        }
        let e = InvariantEvaluator::new(job, self.clone(), &planned.output)
            .map_err(|e| KindError::new(format!("invariant.{}", e.key), format!("[invariant] {}: {}", e.key, e.message)))?;
        Ok(Some(Box::new(e)))
    }

    fn shape(&self) -> String {
        format!("Invariant|None|Some({self:?})|None")
    }

    fn describe(&self) -> Vec<String> {
        vec![format!(
            "invariant: one alert per [{}] where {} (severity {})",
            self.key.join(", "),
            self.violation.as_deref().unwrap_or("every row"),
            self.severity
        )]
    }
}
