//! The SLO kind: `[slo]` read and checked, and what an SLO job does in the engine (its pane is
//! its window, its SQL is counted per pane, its evaluator computes burn rates).

use rust_decimal::Decimal;
use serde::Deserialize;
use toml::Spanned;

use super::{BurnAlert, Condition, SloConfig, SloEvaluator};
use crate::alert::{AlertsConfig, Evaluator};
use crate::kind::{self, Kind, KindEntry, KindError, Planned};
use crate::jobfile::file::{OneOrMany, WindowFile};
use crate::jobfile::{closest, Checker, JobError, Spans, WindowConfig};
use crate::Millis;

pub const KIND: KindEntry = KindEntry { name: "slo", parse };

/// The tables an SLO job reads from its file.
#[derive(Deserialize)]
struct Tables {
    slo: Option<Spanned<SloFile>>,
    window: Option<Spanned<WindowFile>>,
}

/// `[slo]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    /// Fraction of good events, for example 0.999.
    pub objective: Spanned<toml::Value>,
    pub period: Option<Spanned<String>>,
    pub good: Option<Spanned<String>>,
    pub bad: Option<Spanned<String>>,
    pub labels: Option<Spanned<OneOrMany>>,
    pub pane: Option<Spanned<String>>,
    pub min_events: Option<Spanned<i64>>,
    pub max_series: Option<Spanned<i64>>,
    pub alert: Option<Vec<Spanned<SloAlertFile>>>,
    /// The alert's summary; `{label}`, `{long_window}`, `{burn_rate_long}`... from the evaluation.
    pub summary: Option<String>,
    pub runbook_url: Option<String>,
}

/// `[[slo.alert]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloAlertFile {
    pub severity: Option<String>,
    pub long: Spanned<String>,
    pub short: Spanned<String>,
    pub burn_rate: Spanned<toml::Value>,
}

fn parse(cx: &Checker, selected: bool, kind_key: Option<&Spanned<String>>, spans: &mut Spans) -> Result<Option<Box<dyn Kind>>, JobError> {
    let tables: Tables = cx.tables()?;
    let Some(table) = kind::own_table(cx, "slo", tables.slo.as_ref(), selected, kind_key, "add [slo] with objective = 0.999 and good = \"<SQL boolean over one event>\" (or bad = \"...\")")? else { return Ok(None) };
    let t = table.get_ref();
    let objective = super::exact(t.objective.get_ref())
        .filter(|o| *o > Decimal::ZERO && *o < Decimal::ONE)
        .ok_or_else(|| {
            cx.err(&t.objective, "`objective` must be a fraction between 0 and 1 (exclusive)")
                .with_help("objective = 0.999 means 99.9% of events are good; the error budget is the other 0.1%")
        })?;
    let condition = match (&t.good, &t.bad) {
        (Some(g), None) => {
            spans.insert("slo.good", g.span());
            Condition::Good(g.get_ref().clone())
        }
        (None, Some(b)) => {
            spans.insert("slo.bad", b.span());
            Condition::Bad(b.get_ref().clone())
        }
        (Some(g), Some(_)) => {
            return Err(cx.err(g, "[slo] has both `good` and `bad`").with_help("keep one: bad events are the ones that are not good"));
        }
        (None, None) => {
            return Err(cx.err_at(table.span(), "[slo] needs `good` or `bad`")
                .with_help("good = \"status < 500\": an SQL boolean over one event"));
        }
    };
    let labels = match &t.labels {
        Some(l) => {
            spans.insert("slo.labels", l.span());
            l.get_ref().clone().into_vec()
        }
        None => Vec::new(),
    };
    let pane_text = t.pane.as_ref().map(|p| (p, "pane")).or_else(|| {
        tables.window.as_ref().and_then(|w| w.get_ref().size.as_ref()).map(|s| (s, "size"))
    });
    let pane = match pane_text {
        Some((p, key)) => {
            if let Some(p) = &t.pane {
                spans.insert("slo.pane", p.span());
            }
            cx.positive_duration(p, key)?
        }
        None => 60_000,
    };
    let period = match &t.period {
        Some(p) => cx.positive_duration(p, "period")?,
        None => 30 * 86_400_000,
    };
    let period_text = t.period.as_ref().map(|p| p.get_ref().trim().to_string()).unwrap_or_else(|| "30d".into());
    let multiple = |d: Millis, at: &toml::Spanned<String>, key: &str| -> Result<(), JobError> {
        if d % pane != 0 {
            return Err(cx
                .err(at, format!("`{key}` = `{}` is not a whole number of panes ({})", at.get_ref(), humantime::format_duration(std::time::Duration::from_millis(pane as u64))))
                .with_help("windows are sums of panes: use a multiple of the pane, or a shorter pane"));
        }
        Ok(())
    };
    if let Some(p) = &t.period {
        multiple(period, p, "period")?;
    }
    let alerts = match &t.alert {
        None => super::default_alerts(),
        Some(list) if list.is_empty() => {
            return Err(cx.err_at(table.span(), "[slo] has an empty list of alerts")
                .with_help("remove `alert = []` for the SRE workbook's four pairs, or add [[slo.alert]] tables"));
        }
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                let a = a.get_ref();
                let long = cx.positive_duration(&a.long, "long")?;
                let short = cx.positive_duration(&a.short, "short")?;
                multiple(long, &a.long, "long")?;
                multiple(short, &a.short, "short")?;
                if long / pane > 100_000 {
                    return Err(cx.err(&a.long, "`long` spans more than 100,000 panes").with_help("use a longer pane"));
                }
                let burn_rate = super::exact(a.burn_rate.get_ref()).filter(|r| *r > Decimal::ZERO).ok_or_else(|| {
                    cx.err(&a.burn_rate, "`burn_rate` must be a number above 0")
                        .with_help("14.4 pages when a 30-day budget would last about two days")
                })?;
                out.push(BurnAlert {
                    severity: a.severity.clone().unwrap_or_else(|| "page".into()),
                    long,
                    short,
                    long_text: a.long.get_ref().trim().to_string(),
                    short_text: a.short.get_ref().trim().to_string(),
                    burn_rate,
                });
            }
            out
        }
    };
    for a in &alerts {
        if alerts.iter().filter(|b| b.rule() == a.rule()).count() > 1 {
            return Err(cx.err_at(table.span(), format!("two [[slo.alert]] pairs are both `{}`", a.rule()))
                .with_help("give each pair its own severity or windows"));
        }
    }
    Ok(Some(Box::new(SloConfig {
        objective,
        period,
        period_text,
        condition,
        labels,
        pane,
        min_events: cx.at_least(&t.min_events, "min_events", 0, 0)? as u64,
        max_series: cx.at_least(&t.max_series, "max_series", 10_000, 1)?,
        alerts,
        summary: t.summary.clone(),
        runbook_url: t.runbook_url.clone(),
    })))
}

impl SloConfig {
    /// An SLO job's `[window]`, when written: tumbling, one pane long.
    fn written_window(&self, cx: &Checker, w: &Spanned<WindowFile>, pane_written: bool) -> Result<WindowConfig, JobError> {
    let w = w.get_ref();
    let size = w.size.as_ref().map(|s| cx.positive_duration(s, "size")).transpose()?;
    if w.kind.get_ref() != "tumbling" || size.is_none() || w.slide.is_some() || w.gap.is_some() || w.key.is_some() {
        return Err(cx
            .err(&w.kind, "an SLO job's window is its pane: kind = \"tumbling\" with size = the pane")
            .with_help("remove [window] (the pane is [slo] pane, 1m by default); sliding windows come from [[slo.alert]] long and short"));
    }
    let size = size.expect("checked");
    if pane_written && size != self.pane {
        return Err(cx
            .err(w.size.as_ref().expect("checked"), "[window] size differs from [slo] pane")
            .with_help("remove [window]: an SLO job's window is its pane"));
    }
    Ok(WindowConfig::Tumbling { size })
}
}

impl Kind for SloConfig {
    fn state_key(&self) -> Option<Vec<String>> {
        Some(self.labels.clone())
    }

    fn name(&self) -> &'static str {
        "slo"
    }

    /// An SLO counts every event unless its SQL says which.
    fn default_sql(&self) -> Option<&'static str> {
        Some(kind::EVERY_EVENT_SQL)
    }

    /// The window is the pane: `[window]`, when written, must say the same.
    fn window(&mut self, cx: &Checker, written: Option<&Spanned<WindowFile>>, spans: &Spans) -> Option<Result<WindowConfig, JobError>> {
        let window = match written {
            Some(w) => match self.written_window(cx, w, spans.contains_key("slo.pane")) {
                Ok(w) => w,
                Err(e) => return Some(Err(e)),
            },
            None => WindowConfig::Tumbling { size: self.pane },
        };
        if let WindowConfig::Tumbling { size } = window {
            self.pane = size;
        }
        Some(Ok(window))
    }

    /// Every pair's record, as Prometheus evaluates them; inhibition is the reader's choice.
    fn alert_defaults(&self, alerts: &mut AlertsConfig) {
        alerts.inhibit.clear();
    }

    fn pane_sql(&self, sql: &str) -> Option<(String, &'static str)> {
        Some((super::pane_sql(sql, self), "slo.labels"))
    }

    fn check(&self, planned: &Planned) -> Result<(), KindError> {
        let output = &planned.output;
        let columns = || output.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        for l in &self.labels {
            if output.index_of(l).is_err() {
                let mut e = KindError::new("slo.labels", format!("[slo] label `{l}` is not a column of the SQL result (its columns: {})", columns()));
                if let Some(near) = closest(l, output.fields().iter().map(|f| f.name().as_str())) {
                    e = e.with_help(format!("did you mean `{near}`?"));
                }
                return Err(e);
            }
            if super::evaluator::ROW_COLUMNS.contains(&l.as_str()) || l.starts_with("burn_rate_") {
                return Err(KindError::new("slo.labels", format!("[slo] label `{l}` has the name of a column of the SLO's rows"))
                    .with_help("rename it in the SQL (SELECT *, x AS my_label FROM events)"));
            }
        }
        let (key, text) = match &self.condition {
            Condition::Good(g) => ("slo.good", g),
            Condition::Bad(b) => ("slo.bad", b),
        };
        crate::exec::predicate::RowPredicate::compile(text, output).map_err(|e| {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default().to_string();
            KindError::new(key, format!("[slo] {}: {first}", &key[4..]))
                .with_help(format!("an SQL boolean over one event; the columns are: {}", columns()))
        })?;
        Ok(())
    }

    fn evaluator(&self, job: &str, _planned: &Planned) -> Result<Option<Box<dyn Evaluator>>, KindError> {
        Ok(Some(Box::new(SloEvaluator::new(job, self.clone()))))
    }

    fn shape(&self) -> String {
        format!("Slo|Some({self:?})|None|None")
    }
}
