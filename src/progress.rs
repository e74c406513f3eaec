//! The replay progress bar: bytes read, events/s and ETA, on a terminal only.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    events: u64,
    by_records: bool,
}

/// How much work there is.
#[derive(Debug, Clone, Copy)]
pub enum Total {
    Bytes(u64),
    Records(u64),
    Unknown,
}

impl Progress {
    /// A bar on stderr over the total bytes (files) or records (a Kafka range), or nothing
    /// when stderr is not a terminal.
    pub fn new(label: &str, total: Total, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let (len, template) = match total {
                Total::Bytes(t) => (Some(t), "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}"),
                Total::Records(t) => (Some(t), "{prefix} [{bar:30}] {pos}/{len} records, {msg} ETA {eta}"),
                Total::Unknown => (None, "{prefix} {spinner} {msg}"),
            };
            let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        let by_records = matches!(total, Total::Records(_));
        Progress { bar, started: Instant::now(), events: 0, by_records }
    }

    pub fn advance(&mut self, bytes: u64, events: u64) {
        self.events += events;
        if let Some(bar) = &self.bar {
            bar.inc(if self.by_records { events } else { bytes });
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{} events, {:.0} events/s", self.events, self.events as f64 / secs));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
