//! The anomaly kind: `[anomaly]` read and checked, and its evaluator (detectors per series,
//! DBSCAN incidents).

use serde::Deserialize;
use toml::Spanned;

use super::{defaults, AnomalyConfig, AnomalyEvaluator, DetectorKind};
use crate::alert::Evaluator;
use crate::kind::{self, Kind, KindEntry, KindError, Planned};
use crate::jobfile::file::OneOrMany;
use crate::jobfile::{closest, Checker, JobError, Spans};

pub const KIND: KindEntry = KindEntry { name: "anomaly", parse };

#[derive(Deserialize)]
struct Tables {
    anomaly: Option<Spanned<AnomalyFile>>,
}

/// `[anomaly]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyFile {
    pub series: Spanned<OneOrMany>,
    pub features: Spanned<OneOrMany>,
    pub detectors: Option<Spanned<OneOrMany>>,
    pub threshold: Option<Spanned<f64>>,
    /// Windows of history each detector keeps per series.
    pub baseline: Option<Spanned<i64>>,
    /// Windows of history before a detector scores.
    pub warmup: Option<Spanned<i64>>,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub runbook_url: Option<String>,
    pub cluster: Option<Spanned<ClusterFile>>,
}

/// `[anomaly.cluster]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub eps: Option<Spanned<f64>>,
    pub min_points: Option<Spanned<i64>>,
}

fn parse(cx: &Checker, selected: bool, kind_key: Option<&Spanned<String>>, spans: &mut Spans) -> Result<Option<Box<dyn Kind>>, JobError> {
    let tables: Tables = cx.tables()?;
    let Some(table) = kind::own_table(cx, "anomaly", tables.anomaly.as_ref(), selected, kind_key, "add [anomaly] with series = [\"service\"] and features = [\"p99_ms\"]: result columns of the SQL")? else { return Ok(None) };
    let t = table.get_ref();
    spans.insert("anomaly.series", t.series.span());
    spans.insert("anomaly.features", t.features.span());
    let features = t.features.get_ref().clone().into_vec();
    if features.is_empty() {
        return Err(cx.err(&t.features, "`features` names no column").with_help("features = [\"p99_ms\", \"error_rate\"]"));
    }
    let detectors = match &t.detectors {
        None => defaults::DETECTORS.to_vec(),
        Some(d) => {
            let mut out = Vec::new();
            for name in d.get_ref().clone().into_vec() {
                let kind = DetectorKind::parse(&name).ok_or_else(|| {
                    let e = cx.err(d, format!("unknown detector `{name}`"));
                    match closest(&name, DetectorKind::NAMES.iter().copied()) {
                        Some(near) => e.with_help(format!("did you mean `{near}`?")),
                        None => e.with_help(format!("the detectors are {}", DetectorKind::NAMES.join(", "))),
                    }
                })?;
                if !out.contains(&kind) {
                    out.push(kind);
                }
            }
            if out.is_empty() {
                return Err(cx.err(d, "`detectors` is empty").with_help("remove it for the default (likelihood)"));
            }
            out
        }
    };
    let threshold = match &t.threshold {
        Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => return Err(cx.err(v, "`threshold` must be between 0 and 1 (scores are in [0, 1])")),
        None => defaults::THRESHOLD,
    };
    let baseline = cx.at_least(&t.baseline, "baseline", defaults::BASELINE, 8)?;
    let warmup = cx.at_least(&t.warmup, "warmup", defaults::WARMUP.min(baseline), 2)?;
    let (eps, min_points) = match &t.cluster {
        None => (defaults::EPS, defaults::MIN_POINTS),
        Some(c) => {
            let c = c.get_ref();
            let eps = match &c.eps {
                Some(e) if *e.get_ref() > 0.0 => *e.get_ref(),
                Some(e) => return Err(cx.err(e, "`eps` must be above 0")),
                None => defaults::EPS,
            };
            (eps, cx.at_least(&c.min_points, "min_points", defaults::MIN_POINTS, 1)?)
        }
    };
    Ok(Some(Box::new(AnomalyConfig {
        series: t.series.get_ref().clone().into_vec(),
        features,
        detectors,
        threshold,
        baseline,
        warmup,
        eps,
        min_points,
        severity: t.severity.clone().unwrap_or_else(|| "warning".into()),
        summary: t.summary.clone(),
        runbook_url: t.runbook_url.clone(),
    })))
}

impl Kind for AnomalyConfig {
    /// Each series' detectors need only its own records, but DBSCAN clusters a window's
    /// anomalous series into incidents across all of them: every record meets in one process.
    fn state_key(&self) -> Option<Vec<String>> {
        Some(Vec::new())
    }

    fn name(&self) -> &'static str {
        "anomaly"
    }

    fn evaluator(&self, job: &str, planned: &Planned) -> Result<Option<Box<dyn Evaluator>>, KindError> {
        let e = AnomalyEvaluator::new(job, self.clone(), &planned.output)
            .map_err(|e| KindError::new(format!("anomaly.{}", e.key), format!("[anomaly] {}: {}", e.key, e.message)))?;
        Ok(Some(Box::new(e)))
    }

    fn shape(&self) -> String {
        format!("Anomaly|None|None|Some({self:?})")
    }
}
