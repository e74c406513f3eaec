//! SLO jobs: error-budget burn rates and multi-window, multi-burn-rate alerts (the SRE
//! workbook, chapter 5), with the error budget left.
//!
//! The job's SQL (default `SELECT * FROM events`) gives the events; Osprey wraps it in one
//! aggregation per pane (`count(*)` and the count of good events, per label set), so DataFusion
//! does the counting and the operator only keeps **pane partials**: by pane, the series that
//! counted in it, for the longest alert window, and running sums per series and window, so a
//! 3-day window costs the same per evaluation as a 5-minute one. See [`store`].
//!
//! At each pane end `t`, once the watermark has passed it, for each series and window `w`:
//! `burn(w) = bad in [t-w, t) / all in [t-w, t) / (1 - objective)`. A pair fires while both its
//! windows burn faster than its rate (compared exactly, in decimals) and both hold at least
//! `min_events` events. Every pane end is evaluated, also those in which no event arrived, as
//! Prometheus evaluates its rules every interval.

pub mod evaluator;
pub mod kind;
mod legacy;
pub mod rules;
pub mod store;

use rust_decimal::Decimal;

use crate::Millis;

pub use evaluator::SloEvaluator;

/// `[slo]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SloConfig {
    /// Fraction of good events, in (0, 1), as written (exact).
    pub objective: Decimal,
    pub period: Millis,
    /// The period as written ("30d"), for rows and rules.
    pub period_text: String,
    pub condition: Condition,
    pub labels: Vec<String>,
    pub pane: Millis,
    pub min_events: u64,
    pub max_series: usize,
    pub alerts: Vec<BurnAlert>,
    pub summary: Option<String>,
    pub runbook_url: Option<String>,
}

/// Which events count against the budget: an SQL boolean over one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Good where true; false or NULL is bad.
    Good(String),
    /// Bad where true; false or NULL is good.
    Bad(String),
}

/// One `[[slo.alert]]`: a long and a short window that must both burn faster than `burn_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnAlert {
    pub severity: String,
    pub long: Millis,
    pub short: Millis,
    /// The windows as written in the job file: the `long_window` / `short_window` labels.
    pub long_text: String,
    pub short_text: String,
    pub burn_rate: Decimal,
}

impl BurnAlert {
    /// The rule name in alert records: `page-1h-5m`.
    pub fn rule(&self) -> String {
        format!("{}-{}-{}", self.severity, compact(&self.long_text), compact(&self.short_text))
    }
}

impl SloConfig {
    /// The error budget as a fraction of events: `1 - objective`.
    pub fn budget(&self) -> Decimal {
        Decimal::ONE - self.objective
    }
}

/// The SRE workbook's four pairs: page 1h/5m at 14.4, page 6h/30m at 6, ticket 1d/2h at 3,
/// ticket 3d/6h at 1.
pub fn default_alerts() -> Vec<BurnAlert> {
    let pair = |severity: &str, long: &str, short: &str, rate: i64| BurnAlert {
        severity: severity.into(),
        long: humantime::parse_duration(long).expect("a duration").as_millis() as Millis,
        short: humantime::parse_duration(short).expect("a duration").as_millis() as Millis,
        long_text: long.into(),
        short_text: short.into(),
        burn_rate: Decimal::new(rate, 1),
    };
    vec![pair("page", "1h", "5m", 144), pair("page", "6h", "30m", 60), pair("ticket", "1d", "2h", 30), pair("ticket", "3d", "6h", 10)]
}

/// A duration as written, without spaces: `1h 30m` → `1h30m` (for rule and column names).
pub fn compact(text: &str) -> String {
    text.split_whitespace().collect()
}

/// An exact decimal for a number written in TOML: a float's shortest form (`0.999`), not its
/// binary value (0.99899999999999999911...).
pub fn exact(value: &toml::Value) -> Option<Decimal> {
    match value {
        toml::Value::Integer(i) => Some(Decimal::from(*i)),
        toml::Value::Float(f) if f.is_finite() => format!("{f}").parse().ok().or_else(|| Decimal::from_f64_retain(*f)),
        toml::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub use crate::exec::quote_ident;

/// Result columns of the pane aggregation (beside the label columns).
pub const EVENTS_COLUMN: &str = "_osprey_slo_events";
pub const GOOD_COLUMN: &str = "_osprey_slo_good";

/// The SQL Osprey runs per pane: the job's SQL as a subquery, counted per label set.
pub fn pane_sql(user_sql: &str, config: &SloConfig) -> String {
    let inner = user_sql.trim().trim_end_matches(';').trim_end();
    let labels: Vec<String> = config.labels.iter().map(|l| quote_ident(l)).collect();
    let good = match &config.condition {
        Condition::Good(g) => format!("CASE WHEN ({g}) THEN 1 ELSE 0 END"),
        Condition::Bad(b) => format!("CASE WHEN ({b}) THEN 0 ELSE 1 END"),
    };
    let mut select: Vec<String> = labels.iter().map(|l| format!("CAST({l} AS VARCHAR) AS {l}")).collect();
    select.push(format!("count(*) AS {EVENTS_COLUMN}"));
    select.push(format!("sum({good}) AS {GOOD_COLUMN}"));
    let group = if labels.is_empty() { String::new() } else { format!(" GROUP BY {}", labels.join(", ")) };
    format!("SELECT {} FROM (\n{inner}\n) AS slo_events{group}", select.join(", "))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_numbers_become_the_decimals_written() {
        assert_eq!(exact(&toml::Value::Float(0.999)).unwrap().to_string(), "0.999");
        assert_eq!(exact(&toml::Value::Float(14.4)).unwrap().to_string(), "14.4");
        assert_eq!(exact(&toml::Value::Integer(3)).unwrap(), Decimal::from(3));
        let a = &default_alerts()[0];
        assert_eq!((a.rule().as_str(), a.long, a.short, a.burn_rate.to_string().as_str()), ("page-1h-5m", 3_600_000, 300_000, "14.4"));
    }
}
