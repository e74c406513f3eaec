//! Alertmanager, API v2 (`POST /api/v2/alerts`), from a thread of its own so that an
//! unreachable Alertmanager never stops the job or holds back the Kafka copy.
//!
//! The sender keeps the latest state of every alert not yet delivered and retries with
//! backoff (1 s doubling to 30 s), counting failures. Firing alerts are sent again every
//! `resend_interval` with `endsAt` four intervals ahead (as Prometheus does), so Alertmanager
//! never resolves them on its own; a resolved alert is sent with its `endsAt`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::AlertDestination;
use crate::alert::{parse_time, Alert, Status};

/// Delivery counters, readable while the job runs.
#[derive(Debug, Default)]
pub struct Delivery {
    pub posted: AtomicU64,
    pub failed_posts: AtomicU64,
    pub undelivered: AtomicU64,
}

enum Msg {
    Alert(String, Value, bool),
    Finish(Sender<u64>),
}

pub struct Alertmanager {
    urls: Vec<String>,
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    pub delivery: Arc<Delivery>,
    generator_url: String,
}

/// How long the end of a run waits for an Alertmanager that does not answer.
const FINAL_ATTEMPT: Duration = Duration::from_secs(5);

impl Alertmanager {
    pub fn new(urls: Vec<String>, resend: Duration, generator_url: String) -> Self {
        let (tx, rx) = channel();
        let delivery = Arc::new(Delivery::default());
        let (u, d) = (urls.clone(), delivery.clone());
        let thread = std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || Delivering { urls: u, resend, delivery: d }.run(rx))
            .expect("a thread");
        Alertmanager { urls, tx, thread: Some(thread), delivery, generator_url }
    }
}

impl AlertDestination for Alertmanager {
    fn send(&mut self, a: &Alert, _: &[u8]) -> anyhow::Result<()> {
        let mut annotations = a.annotations.clone();
        annotations.entry("osprey_fingerprint".into()).or_insert_with(|| a.fingerprint.clone());
        let mut body = json!({
            "labels": a.labels,
            "annotations": annotations,
            "startsAt": a.starts_at,
            "generatorURL": self.generator_url,
        });
        if let Some(end) = &a.ends_at {
            // Alertmanager treats an end in its future as still firing.
            let now = chrono::Utc::now().timestamp_millis();
            body["endsAt"] = Value::String(crate::alert::rfc3339(parse_time(end).unwrap_or(now).min(now)));
        }
        let _ = self.tx.send(Msg::Alert(a.fingerprint.clone(), body, a.status == Status::Firing));
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(()) // delivery is the sender's; the job never waits for Alertmanager
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        let (tx, rx) = channel();
        if self.tx.send(Msg::Finish(tx)).is_ok() {
            if let Ok(left) = rx.recv() {
                if left > 0 {
                    crate::log_warn!(
                        "alerts: Alertmanager at {} did not take {left} alert updates (they are in the other alert destinations)",
                        self.urls.join(", ")
                    );
                }
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("Alertmanager {}", self.urls.join(", "))
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

struct Delivering {
    urls: Vec<String>,
    resend: Duration,
    delivery: Arc<Delivery>,
}

impl Delivering {
    fn run(self, rx: Receiver<Msg>) {
        let mut firing: BTreeMap<String, Value> = BTreeMap::new();
        let mut pending: BTreeMap<String, Value> = BTreeMap::new();
        let mut backoff = Duration::from_secs(1);
        let mut next_attempt = Instant::now();
        let mut next_resend = Instant::now() + self.resend;
        loop {
            let wait = if pending.is_empty() { next_resend } else { next_attempt.min(next_resend) };
            match rx.recv_timeout(wait.saturating_duration_since(Instant::now())) {
                Ok(Msg::Alert(fp, body, is_firing)) => {
                    if is_firing {
                        firing.insert(fp.clone(), body.clone());
                    } else {
                        firing.remove(&fp);
                    }
                    pending.insert(fp, body);
                    // Take whatever else is queued, then post once.
                    continue;
                }
                Ok(Msg::Finish(reply)) => {
                    let deadline = Instant::now() + FINAL_ATTEMPT;
                    while !pending.is_empty() && Instant::now() < deadline {
                        if self.post_all(&mut pending) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    self.delivery.undelivered.store(pending.len() as u64, Relaxed);
                    let _ = reply.send(pending.len() as u64);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_resend {
                for (fp, body) in &firing {
                    pending.insert(fp.clone(), body.clone());
                }
                next_resend = now + self.resend;
            }
            if !pending.is_empty() && now >= next_attempt {
                if self.post_all(&mut pending) {
                    backoff = Duration::from_secs(1);
                    next_attempt = now;
                } else {
                    next_attempt = now + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            self.delivery.undelivered.store(pending.len() as u64, Relaxed);
        }
    }

    /// Post every pending alert to every Alertmanager; true (and nothing pending) when all took them.
    fn post_all(&self, pending: &mut BTreeMap<String, Value>) -> bool {
        let valid_until = chrono::Utc::now().timestamp_millis() + 4 * self.resend.as_millis() as i64;
        let alerts: Vec<Value> = pending
            .values()
            .map(|b| {
                let mut b = b.clone();
                if b.get("endsAt").is_none() {
                    b["endsAt"] = Value::String(crate::alert::rfc3339(valid_until));
                }
                b
            })
            .collect();
        let body = serde_json::to_vec(&alerts).expect("JSON");
        let mut ok = true;
        for url in &self.urls {
            match post(&format!("{url}/api/v2/alerts"), &body) {
                Ok(()) => {
                    self.delivery.posted.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    let n = self.delivery.failed_posts.fetch_add(1, Relaxed);
                    if n == 0 || (n + 1).is_power_of_two() {
                        crate::log_warn!("alerts: cannot deliver to Alertmanager at {url} (attempt {}): {e}; retrying", n + 1);
                    }
                    ok = false;
                }
            }
        }
        if ok {
            pending.clear();
        }
        ok
    }
}

/// A JSON POST over HTTP/1.1; Ok on a 2xx answer.
pub fn post(url: &str, body: &[u8]) -> anyhow::Result<()> {
    let (status, text) = request("POST", url, Some(body))?;
    if !(200..300).contains(&status) {
        anyhow::bail!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
    }
    Ok(())
}

/// A plain HTTP/1.1 request (no TLS): the status and the body.
pub fn request(method: &str, url: &str, body: Option<&[u8]>) -> anyhow::Result<(u16, String)> {
    request_with(method, url, body, "application/json", &[])
}

/// [`request`] with a content type and extra headers (`Authorization`).
pub fn request_with(method: &str, url: &str, body: Option<&[u8]>, content_type: &str, headers: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("`{url}` is not an http:// URL"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("`{host}` does not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or(&[]);
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow::anyhow!("not an HTTP answer"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
