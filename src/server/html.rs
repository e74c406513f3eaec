//! What every server-rendered page shares: escaping, the document around a page's body, and
//! times as people read them. No script anywhere: the pages work with JavaScript off.

use crate::Millis;

/// Text safe inside HTML elements and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment: everything but unreserved characters percent-encoded.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-01-05 09:14 UTC`
pub fn time(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| t.to_string())
}

/// `09:14`
pub fn clock(t: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(t).map(|d| d.format("%H:%M").to_string()).unwrap_or_else(|| t.to_string())
}

/// The whole page: `title` (text, escaped here), `body` (markup). `refresh`: reload every
/// few seconds, as a page left open on a wall screen should.
pub fn document(title: &str, body: &str, refresh: bool) -> String {
    let refresh = if refresh { "<meta http-equiv=\"refresh\" content=\"5\">" } else { "" };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>{title}</title>
<style>{STYLE}</style></head>
<body>
{body}
<p class="foot"><a href="/">all jobs</a> · <a href="/metrics">/metrics</a> · <a href="/openapi.json">/openapi.json</a></p>
</body></html>
"#,
        title = escape(title),
    )
}

/// Colours from Okabe and Ito's palette, told apart by people with any common colour
/// blindness; lines also differ by dash, so nothing rests on colour alone.
const STYLE: &str = r#"
body { font: 14px system-ui, sans-serif; margin: 2em; color: #1a1a1a; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
a { color: #0060a0; }
.running, .green { color: #1e6b3a; } .failed, .red { color: #a3200f; font-weight: 600; } .stopped { color: #666; } .amber { color: #8a5a00; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 1em; }
figure { margin: 0; }
figcaption { font-size: 12px; color: #444; }
svg.chart { background: #fcfcfc; border: 1px solid #e4e4e4; }
svg.chart text { font: 10px system-ui, sans-serif; fill: #333; }
svg.chart .axis { stroke: #bbb; stroke-width: 1; }
svg.chart .line { fill: none; stroke-width: 1.8; }
svg.chart .s0 { stroke: #0072B2; } svg.chart .s1 { stroke: #D55E00; stroke-dasharray: 5 3; }
svg.chart .s2 { stroke: #009E73; stroke-dasharray: 1 2; } svg.chart .s3 { stroke: #CC79A7; stroke-dasharray: 8 2 2 2; }
svg.chart .threshold { stroke: #555; stroke-dasharray: 3 3; }
svg.chart .span { fill: #D55E00; fill-opacity: 0.18; }
svg.chart .key0 { fill: #0072B2; } svg.chart .key1 { fill: #D55E00; } svg.chart .key2 { fill: #009E73; } svg.chart .key3 { fill: #CC79A7; }
ol.timeline { list-style: none; padding: 0; }
ol.timeline li { padding: 2px 0; }
.transition.firing .what { color: #a3200f; } .transition.resolved .what { color: #1e6b3a; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
.foot { margin-top: 2em; color: #666; }
"#;
