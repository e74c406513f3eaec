//! Charts drawn on the server as inline SVG: lines over time, dashed threshold lines, and
//! shaded spans (when an alert pair fired). Readable without script; every label escaped; the
//! first and last value of each line also in `data-` attributes, for tools and tests.

use std::fmt::Write;

use super::html::{clock, escape, time};
use crate::Millis;

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 130.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 18.0;

pub struct Line {
    pub label: String,
    pub points: Vec<(Millis, f64)>,
}

pub struct Shade {
    pub label: String,
    pub start: Millis,
    /// `None`: still open, drawn to the chart's right edge.
    pub end: Option<Millis>,
}

/// How values read on the axis and in titles.
#[derive(Clone, Copy)]
pub enum Unit {
    /// 0.42 reads 42%.
    Percent,
    /// A burn rate: 14.4×.
    Times,
    PerSecond,
    Millis,
    Count,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{:.0}%", v * 100.0),
            Unit::Times => format!("{}×", short(v)),
            Unit::PerSecond => format!("{}/s", short(v)),
            Unit::Millis => format!("{} ms", short(v)),
            Unit::Count => short(v),
        }
    }
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub struct Chart {
    /// What it shows, for people (the figure caption) and screen readers (its title).
    pub title: String,
    /// Names the chart for tools: `budget`, `burn page-1h-5m`, `records-in`.
    pub class: String,
    pub unit: Unit,
    pub lines: Vec<Line>,
    pub thresholds: Vec<(f64, String)>,
    pub shades: Vec<Shade>,
    /// The time axis; `None`: from the data.
    pub x: Option<(Millis, Millis)>,
    /// Start the value axis at zero (rates, counts) unless a value is below it.
    pub floor_zero: bool,
}

impl Chart {
    pub fn new(title: impl Into<String>, class: impl Into<String>, unit: Unit) -> Chart {
        Chart { title: title.into(), class: class.into(), unit, lines: Vec::new(), thresholds: Vec::new(), shades: Vec::new(), x: None, floor_zero: true }
    }

    /// The chart as a `<figure>` holding the SVG and its caption.
    pub fn render(&self) -> String {
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let (x0, x1) = self.x.unwrap_or_else(|| {
            let lo = points().map(|p| p.0).min().unwrap_or(0);
            let hi = points().map(|p| p.0).max().unwrap_or(lo);
            (lo, hi)
        });
        let x1 = if x1 <= x0 { x0 + 1 } else { x1 };
        let values = points().map(|p| p.1).chain(self.thresholds.iter().map(|t| t.0)).filter(|v| v.is_finite());
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if self.floor_zero {
            lo = lo.min(0.0);
        }
        if hi - lo < 1e-9 {
            hi = lo + 1.0;
        }
        // Ticks at the data's own bounds; the plot leaves a little room above them.
        let ticks = [lo, (lo + hi) / 2.0, hi];
        hi += (hi - lo) * 0.08;
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |t: Millis| LEFT + (t - x0) as f64 / (x1 - x0) as f64 * pw;
        let sy = |v: f64| TOP + (1.0 - (v - lo) / (hi - lo)) * ph;
        let mut svg = String::new();
        let title = escape(&self.title);
        writeln!(
            svg,
            r#"<svg class="chart {class}" role="img" aria-label="{title}" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>"#,
            class = escape(&self.class),
        )
        .unwrap();
        for s in &self.shades {
            let (a, b) = (sx(s.start.max(x0)), sx(s.end.unwrap_or(x1).min(x1)));
            let until = s.end.map(time).unwrap_or_else(|| "now".into());
            writeln!(
                svg,
                r#"<rect class="span" data-rule="{rule}" data-start="{start}" data-end="{end}" x="{a:.1}" y="{TOP}" width="{w:.1}" height="{ph}"><title>{rule} fired {from} to {until}</title></rect>"#,
                rule = escape(&s.label),
                start = s.start,
                end = s.end.map(|e| e.to_string()).unwrap_or_default(),
                w = (b - a).max(1.5),
                from = time(s.start),
            )
            .unwrap();
        }
        // Axes: three value ticks, the time range at both ends.
        writeln!(svg, r#"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y}"/><line class="axis" x1="{LEFT}" y1="{y}" x2="{r}" y2="{y}"/>"#, y = TOP + ph, r = WIDTH - RIGHT).unwrap();
        for v in ticks {
            writeln!(svg, r#"<text x="{x}" y="{y:.1}" text-anchor="end">{label}</text>"#, x = LEFT - 4.0, y = sy(v) + 3.0, label = escape(&self.unit.format(v))).unwrap();
        }
        writeln!(svg, r#"<text x="{LEFT}" y="{y}">{a}</text><text x="{r}" y="{y}" text-anchor="end">{b}</text>"#, y = HEIGHT - 4.0, r = WIDTH - RIGHT, a = clock(x0), b = clock(x1)).unwrap();
        for (v, label) in &self.thresholds {
            let y = sy(*v);
            writeln!(
                svg,
                r#"<line class="threshold" data-value="{v}" x1="{LEFT}" y1="{y:.1}" x2="{r}" y2="{y:.1}"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                r = WIDTH - RIGHT,
                tx = WIDTH - RIGHT - 2.0,
                ty = y - 3.0,
                label = escape(label),
            )
            .unwrap();
        }
        let mut key_x = LEFT + 4.0;
        for (i, l) in self.lines.iter().enumerate() {
            let style = i % 4;
            let coords: Vec<String> = l.points.iter().filter(|p| p.1.is_finite()).map(|&(t, v)| format!("{:.1},{:.1}", sx(t), sy(v))).collect();
            let first = l.points.first().map(|p| p.1.to_string()).unwrap_or_default();
            let last = l.points.last().map(|p| p.1.to_string()).unwrap_or_default();
            writeln!(
                svg,
                r#"<polyline class="line s{style}" data-series="{label}" data-first="{first}" data-last="{last}" points="{coords}"/>"#,
                label = escape(&l.label),
                coords = coords.join(" "),
            )
            .unwrap();
            // The key, top left, one entry per line.
            let now = l.points.last().map(|p| self.unit.format(p.1)).unwrap_or_else(|| "—".into());
            let text = format!("{} {now}", l.label);
            writeln!(svg, r#"<rect class="key{style}" x="{key_x}" y="6" width="10" height="4"/><text x="{tx}" y="12">{text}</text>"#, tx = key_x + 13.0, text = escape(&text)).unwrap();
            // About 5.5 px a character at 10 px.
            key_x += 24.0 + text.chars().count() as f64 * 5.5;
        }
        svg.push_str("</svg>");
        format!("<figure>{svg}<figcaption>{title}</figcaption></figure>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_its_labels_and_keeps_its_values_readable() {
        let mut c = Chart::new("budget <left>", "budget", Unit::Percent);
        c.lines.push(Line { label: "<script>x</script>".into(), points: vec![(0, 1.0), (60_000, 0.4)] });
        c.thresholds.push((0.0, "exhausted".into()));
        c.shades.push(Shade { label: "page\"-1h".into(), start: 30_000, end: None });
        let svg = c.render();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains(r#"data-first="1" data-last="0.4""#), "{svg}");
        assert!(svg.contains(r#"data-rule="page&quot;-1h""#), "{svg}");
        assert!(svg.contains("<title>budget &lt;left&gt;</title>"), "{svg}");
    }

    #[test]
    fn an_empty_chart_still_draws() {
        let svg = Chart::new("nothing yet", "empty", Unit::PerSecond).render();
        assert!(svg.starts_with("<figure><svg") && svg.ends_with("</figure>"));
    }
}
