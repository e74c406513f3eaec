//! The built-in generator: realistic telemetry with no broker, for `osprey demo`, tests and
//! benchmarks.
//!
//! Two streams:
//! - `http-requests`: request spans of a handful of services (status codes, long-tailed
//!   latencies, trace ids, hosts, build versions; one host runs an older build).
//! - `trading-events`: orders, fills, cancels, heartbeats and cash settlements of a small
//!   trading desk, prices and amounts as exact decimals ([`trading`]; the Knight scenario).
//!
//! Events are made in event-time order and delivered after a random transport delay, so each
//! partition sees them slightly out of order, as a real topic does. An optional incident raises
//! one service's error rate and latency for a while. The same seed gives the same bytes.

mod trading;
pub use trading::KNIGHT_ACCOUNT;

use std::collections::BinaryHeap;
use std::cmp::Reverse;
use std::fmt::Write as _;
use std::time::Instant;

use super::{Chunk, PartitionInfo, Payload, Poll, RawRecord, Source};
use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    HttpRequests,
    TradingEvents,
}

impl Stream {
    pub const NAMES: &'static [&'static str] = &["http-requests", "trading-events"];

    pub fn from_name(name: &str) -> Option<Stream> {
        match name {
            "http-requests" => Some(Stream::HttpRequests),
            "trading-events" => Some(Stream::TradingEvents),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::HttpRequests => "http-requests",
            Stream::TradingEvents => "trading-events",
        }
    }
}

/// An error burst and latency rise on one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Offset from the generator's start.
    pub at: Millis,
    pub duration: Millis,
    pub service: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub stream: Stream,
    /// Events per second of event time.
    pub rate: f64,
    pub partitions: u32,
    pub seed: u64,
    /// Event-time seconds per wall-clock second when run live.
    pub speed: f64,
    /// Event time of the first event.
    pub start: Millis,
    pub malformed_fraction: f64,
    pub late_fraction: f64,
    /// Largest ordinary transport delay: events arrive out of order by up to this much.
    pub max_delay: Millis,
    pub incident: Option<Incident>,
    /// trading-events: old code on one host from this offset on (the Knight scenario).
    pub knight_at: Option<Millis>,
}

/// Monday 2026-01-05 09:00:00 UTC: a fixed start, so a seed alone makes a run reproducible.
pub const DEFAULT_START: Millis = 1_767_603_600_000;

/// The highest event rate the generator takes (events per second of event time): beyond it,
/// events a microsecond apart would share a millisecond timestamp and live pacing cannot keep up.
pub const MAX_RATE: f64 = 1_000_000.0;

impl GeneratorConfig {
    pub fn new(stream: Stream) -> Self {
        GeneratorConfig {
            stream,
            rate: 200.0,
            partitions: 3,
            seed: 42,
            speed: 1.0,
            start: DEFAULT_START,
            malformed_fraction: 0.0,
            late_fraction: 0.0,
            max_delay: 2_000,
            incident: None,
            knight_at: None,
        }
    }
}

/// How the generator is paced.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// Event time follows the wall clock times `speed`; runs until stopped.
    Live,
    /// As fast as possible, until `events` events have been made.
    Count(u64),
}

pub struct Generator {
    cfg: GeneratorConfig,
    pacing: Pacing,
    rng: Rng,
    infos: Vec<PartitionInfo>,
    /// Made but not yet delivered: (delivery time, sequence, partition, line).
    in_flight: BinaryHeap<Reverse<(Millis, u64, u32, String)>>,
    /// Event time of the next event to make.
    cursor: f64,
    made: u64,
    delivered: u64,
    started: Option<Instant>,
    prices: Vec<i64>,
    desk: trading::Desk,
    ended: bool,
    partitions_ended: u32,
}

const SERVICES: &[(&str, &[&str], f64)] = &[
    // service, endpoints, median latency (ms)
    ("frontend", &["/", "/product", "/cart"], 35.0),
    ("checkout", &["/checkout", "/checkout/confirm"], 80.0),
    ("payments", &["/charge", "/refund"], 120.0),
    ("search", &["/search", "/suggest"], 25.0),
    ("inventory", &["/stock", "/reserve"], 15.0),
];
const SYMBOLS: &[(&str, i64)] = &[("AAPL", 1_872_300), ("MSFT", 4_151_000), ("NVDA", 1_390_500), ("TSLA", 2_480_700), ("AMZN", 2_218_800)];
pub const BUILD: &str = "v2.14.1";
pub const OLD_BUILD: &str = "v2.13.9";

impl Generator {
    pub fn new(cfg: GeneratorConfig, pacing: Pacing) -> Self {
        let infos = (0..cfg.partitions)
            .map(|p| PartitionInfo { name: format!("{}/{p}", cfg.stream.name()) })
            .collect();
        Generator {
            rng: Rng::new(cfg.seed),
            cursor: cfg.start as f64,
            prices: SYMBOLS.iter().map(|s| s.1).collect(),
            cfg,
            pacing,
            infos,
            in_flight: BinaryHeap::new(),
            made: 0,
            delivered: 0,
            started: None,
            desk: trading::Desk::default(),
            ended: false,
            partitions_ended: 0,
        }
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Event time up to which events may be made now.
    fn horizon(&mut self) -> f64 {
        match self.pacing {
            Pacing::Live => {
                let started = *self.started.get_or_insert_with(Instant::now);
                self.cfg.start as f64 + started.elapsed().as_secs_f64() * 1000.0 * self.cfg.speed
            }
            Pacing::Count(_) => f64::INFINITY,
        }
    }

    fn exhausted(&self) -> bool {
        matches!(self.pacing, Pacing::Count(n) if self.made >= n)
    }

    /// Make events up to `horizon` (at most `max`), putting them in flight.
    fn make(&mut self, horizon: f64, max: usize) {
        let step = 1000.0 / self.cfg.rate;
        for _ in 0..max {
            if self.cursor > horizon || self.exhausted() {
                break;
            }
            // Poisson arrivals: exponential gaps around the mean rate.
            self.cursor += -step * (1.0 - self.rng.next_f64()).ln();
            let ts = self.cursor as Millis;
            match self.cfg.stream {
                Stream::HttpRequests => self.make_request(ts),
                Stream::TradingEvents => self.make_trading(ts),
            }
        }
    }

    fn deliver(&mut self, ts: Millis, partition: u32, mut line: String) {
        if self.exhausted() {
            return; // an order's fills past the requested count are not made
        }
        let mut delay = (self.rng.next_f64() * self.cfg.max_delay as f64) as Millis;
        if self.cfg.late_fraction > 0.0 && self.rng.next_f64() < self.cfg.late_fraction {
            delay += 120_000 + (self.rng.next_f64() * 60_000.0) as Millis;
        }
        if self.cfg.malformed_fraction > 0.0 && self.rng.next_f64() < self.cfg.malformed_fraction {
            line = self.malform(line);
        }
        self.made += 1;
        let seq = self.made;
        self.in_flight.push(Reverse((ts + delay, seq, partition, line)));
    }

    fn malform(&mut self, line: String) -> String {
        match self.rng.below(3) {
            0 => line[..line.len() / 2].to_string(),
            1 => line.replacen("\"ts\":\"", "\"ts\":\"not a time ", 1),
            _ => format!("{{\"garbage\": true, \"seq\": {}}}", self.made),
        }
    }

    fn in_incident(&self, ts: Millis, service: &str) -> bool {
        self.cfg.incident.as_ref().is_some_and(|i| {
            i.service == service && ts >= self.cfg.start + i.at && ts < self.cfg.start + i.at + i.duration
        })
    }

    fn make_request(&mut self, ts: Millis) {
        let (service, endpoints, median) = SERVICES[self.rng.weighted(&[30, 15, 10, 30, 15])];
        let endpoint = endpoints[self.rng.below(endpoints.len() as u64) as usize];
        let incident = self.in_incident(ts, service);
        let mut latency = median * (self.rng.normal() * 0.6).exp();
        if self.rng.next_f64() < 0.01 {
            latency *= 8.0 + self.rng.next_f64() * 20.0; // the long tail: GC pauses, cold caches
        }
        let error_rate = if incident { 0.30 } else { 0.001 };
        let status = if self.rng.next_f64() < error_rate {
            [500, 502, 503, 504][self.rng.below(4) as usize]
        } else if self.rng.next_f64() < 0.03 {
            [400, 404, 429][self.rng.below(3) as usize]
        } else {
            200
        };
        if incident {
            latency *= 6.0;
        }
        let host_n = self.rng.below(3) + 1;
        let build = if service == "payments" && host_n == 3 { OLD_BUILD } else { BUILD };
        let method = if endpoint.contains("confirm") || endpoint == "/charge" || endpoint == "/reserve" { "POST" } else { "GET" };
        let trace = (self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128;
        let bytes = 200 + self.rng.below(20_000);
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "{{\"ts\":\"{}\",\"service\":\"{service}\",\"endpoint\":\"{endpoint}\",\"method\":\"{method}\",\"status\":{status},\"duration_ms\":{latency:.3},\"bytes\":{bytes},\"trace_id\":\"{trace:032x}\",\"host\":\"{service}-{host_n}\",\"build\":\"{build}\"}}",
            format_ts(ts)
        );
        let partition = (fnv(service.as_bytes()) % self.cfg.partitions as u64) as u32;
        self.deliver(ts, partition, line);
    }

    fn make_trading(&mut self, ts: Millis) {
        let knight = self.cfg.knight_at.map(|k| self.cfg.start + k);
        let mut made = Vec::new();
        self.desk.make(&mut self.rng, &mut self.prices, ts, knight, &mut made);
        for (t, key, line) in made {
            let partition = (key % self.cfg.partitions as u64) as u32;
            self.deliver(t, partition, line);
        }
    }

    /// In-flight events due by `horizon`, in delivery order: (partition, line).
    fn take_due(&mut self, horizon: f64) -> Vec<(u32, String)> {
        let mut due_lines = Vec::new();
        let drain_all = self.exhausted();
        while let Some(Reverse((due, ..))) = self.in_flight.peek() {
            if !drain_all && (*due as f64) > horizon.min(self.cursor) {
                break;
            }
            let Reverse((_, _, p, line)) = self.in_flight.pop().unwrap();
            due_lines.push((p, line));
        }
        due_lines
    }

    /// Make and deliver the next events; `None` once a counted run has delivered everything.
    fn step(&mut self) -> Option<Vec<(u32, String)>> {
        if self.ended {
            return None;
        }
        let horizon = self.horizon();
        self.make(horizon, 8192);
        let due = self.take_due(horizon);
        if self.exhausted() && self.in_flight.is_empty() {
            self.ended = true;
        }
        Some(due)
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_ts(ts: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ts)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

/// A generator behind the [`Source`] trait, handing out one partition's chunk at a time.
pub struct GeneratorSource {
    generator: Generator,
    ready: std::collections::VecDeque<Chunk>,
}

impl GeneratorSource {
    pub fn new(cfg: GeneratorConfig, pacing: Pacing) -> Self {
        GeneratorSource { generator: Generator::new(cfg, pacing), ready: Default::default() }
    }
}

impl Source for GeneratorSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.generator.infos
    }

    fn poll(&mut self, _watermarks: &[Millis]) -> anyhow::Result<Poll> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Ok(Poll::Chunk(chunk));
            }
            let g = &mut self.generator;
            let Some(due) = g.step() else {
                if g.partitions_ended < g.cfg.partitions {
                    g.partitions_ended += 1;
                    return Ok(Poll::PartitionEnd(g.partitions_ended as usize - 1));
                }
                return Ok(Poll::End);
            };
            if due.is_empty() {
                if matches!(g.pacing, Pacing::Live) {
                    return Ok(Poll::Idle);
                }
                continue;
            }
            // One chunk per partition, each in delivery order.
            let mut per_partition: Vec<(Vec<u8>, Vec<RawRecord>)> = vec![(Vec::new(), Vec::new()); g.cfg.partitions as usize];
            for (p, line) in due {
                let (data, records) = &mut per_partition[p as usize];
                let start = data.len() as u32;
                data.extend_from_slice(line.as_bytes());
                g.delivered += 1;
                records.push(RawRecord { start, end: data.len() as u32, offset: g.delivered as i64 });
                data.push(b'\n');
            }
            for (p, (data, records)) in per_partition.into_iter().enumerate() {
                if !records.is_empty() {
                    self.ready.push_back(Chunk { partition: p, bytes: data.len() as u64, payload: Payload::Json { data, records, meta: None }, behind: false });
                }
            }
        }
    }

    fn is_bounded(&self) -> bool {
        matches!(self.generator.pacing, Pacing::Count(_))
    }
}

/// Write `events` generated events as JSON lines, in delivery order: `osprey generate`.
pub fn write_json_lines(cfg: GeneratorConfig, events: u64, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    let mut result = Ok(());
    let written = for_each_event(cfg, events, |_, line| {
        if result.is_ok() {
            result = out.write_all(line.as_bytes()).and_then(|_| out.write_all(b"\n"));
        }
    });
    result.map(|_| written)
}

/// Hand each of `events` generated events to `f` in delivery order, with its partition.
pub fn for_each_event(cfg: GeneratorConfig, events: u64, mut f: impl FnMut(u32, &str)) -> u64 {
    let mut generator = Generator::new(cfg, Pacing::Count(events));
    let mut n = 0;
    while let Some(due) = generator.step() {
        for (p, line) in due {
            f(p, &line);
            n += 1;
        }
    }
    n
}

/// Like [`for_each_event`], paced live (event time follows the clock times `speed`) until `stop`.
pub fn for_each_event_live(cfg: GeneratorConfig, stop: &std::sync::atomic::AtomicBool, mut f: impl FnMut(u32, &str)) -> u64 {
    let mut generator = Generator::new(cfg, Pacing::Live);
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = generator.step().unwrap_or_default();
        if due.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for (p, line) in due {
            f(p, &line);
            n += 1;
        }
    }
    n
}

/// SplitMix64: tiny, fast, and the same sequence on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(cfg: GeneratorConfig, n: u64) -> String {
        let mut out = Vec::new();
        let written = write_json_lines(cfg, n, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(written >= n && written == text.lines().count() as u64);
        text
    }

    #[test]
    fn same_seed_same_bytes() {
        let cfg = GeneratorConfig::new(Stream::HttpRequests);
        assert_eq!(generate(cfg.clone(), 2000), generate(cfg.clone(), 2000));
        let other = GeneratorConfig { seed: 7, ..cfg.clone() };
        assert_ne!(generate(cfg, 2000), generate(other, 2000));
    }

    #[test]
    fn every_line_is_json_with_the_documented_fields() {
        for stream in [Stream::HttpRequests, Stream::TradingEvents] {
            let text = generate(GeneratorConfig::new(stream), 500);
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(v["ts"].as_str().unwrap().ends_with('Z'));
                assert!(v.get("host").is_some() && v.get("build").is_some());
            }
        }
    }

    #[test]
    fn incident_raises_errors_on_one_service() {
        let mut cfg = GeneratorConfig::new(Stream::HttpRequests);
        cfg.rate = 100.0;
        cfg.incident = Some(Incident { at: 60_000, duration: 60_000, service: "checkout".into() });
        let text = generate(cfg, 30_000);
        let (mut during, mut during_err, mut before, mut before_err) = (0, 0, 0, 0);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["service"] != "checkout" {
                continue;
            }
            let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap().timestamp_millis() - DEFAULT_START;
            let err = v["status"].as_i64().unwrap() >= 500;
            if (60_000..120_000).contains(&ts) {
                during += 1;
                during_err += err as i32;
            } else if ts < 60_000 {
                before += 1;
                before_err += err as i32;
            }
        }
        assert!(during_err as f64 / during as f64 > 0.2, "{during_err}/{during}");
        assert!((before_err as f64 / before as f64) < 0.05, "{before_err}/{before}");
    }
}
