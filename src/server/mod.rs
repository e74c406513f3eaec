//! `osprey serve`: many jobs in one process, submitted and operated over HTTP.
//!
//! Routes (JSON; `openapi.json` documents them): `GET /` (an HTML page of the jobs and their
//! firing alerts), `POST /v1/jobs` (the TOML job file as the
//! body), `POST /v1/validate`, `GET /v1/jobs`, `GET /v1/jobs/{name}`,
//! `POST /v1/jobs/{name}/stop`, `POST /v1/jobs/{name}/restart`, `DELETE /v1/jobs/{name}`,
//! `GET /metrics` (Prometheus text), `GET /healthz`, `GET /readyz`, `GET /openapi.json`.
//! The on-call page's data: `GET /v1/jobs/{name}/history` (rates, lag, latency, health),
//! `GET /v1/jobs/{name}/slo[/{series}]` (budget, burn rates, firing spans),
//! `GET /v1/alerts/timeline`, `GET /v1/jobs/{name}/alerts/{fingerprint}/{sequence}` (a record);
//! and its pages: `/jobs/{name}`, `/jobs/{name}/series/{id}`, `/jobs/{name}/alerts/...`.
//! Mutating routes need `Authorization: Bearer <OSPREY_TOKEN>` when a token is set; the server
//! refuses to listen beyond loopback without one.

mod charts;
mod figures;
mod html;
mod metrics;
mod page;
mod pages;
mod views;
pub mod registry;
pub mod shared;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use registry::Registry;

pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    pub cluster: Option<crate::kafka::Cluster>,
    /// The shared registry's compacted topic (with a cluster); else `<data-dir>/registry.json`.
    pub registry_topic: Option<String>,
}

struct Shared {
    registry: Mutex<Registry>,
    token: Option<String>,
}

type App = Arc<Shared>;

/// How often the page's rates, lag and latency are sampled.
const SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Sample every job's counters into its history.
fn sample(app: &App) {
    let now = chrono::Utc::now().timestamp_millis();
    let reg = app.registry.lock().expect("not poisoned");
    for e in reg.jobs.values() {
        if let Some(c) = &e.counters {
            e.history.samples.lock().expect("not poisoned").take(c, now);
        }
    }
}

/// Call `tick` every `pause`, on a thread of its own, until the server stops.
fn every(pause: std::time::Duration, stop: &Arc<std::sync::atomic::AtomicBool>, mut tick: impl FnMut() + Send + 'static) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            tick();
            std::thread::sleep(pause);
        }
    })
}

/// Largest job file accepted (bytes).
const MAX_BODY: usize = 1 << 20;

pub fn serve(settings: Settings, stop: Arc<std::sync::atomic::AtomicBool>) -> anyhow::Result<()> {
    if !settings.listen.ip().is_loopback() && settings.token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without a token: anyone who reaches it could run jobs. Set OSPREY_TOKEN, or listen on 127.0.0.1",
            settings.listen
        );
    }
    let (registry, follower) = Registry::open(settings.data_dir.clone(), settings.cluster.clone(), settings.registry_topic.as_deref())?;
    let app: App = Arc::new(Shared { registry: Mutex::new(registry), token: settings.token.clone() });
    let following = follower.map(|f| {
        let (app, stop) = (app.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let changes = f.poll(std::time::Duration::from_millis(200));
                if !changes.is_empty() {
                    app.registry.lock().expect("not poisoned").apply_changes(changes);
                }
            }
        })
    });
    let sampling = {
        let (app, mut next) = (app.clone(), std::time::Instant::now());
        every(std::time::Duration::from_millis(100), &stop, move || {
            if std::time::Instant::now() >= next {
                next += SAMPLE_INTERVAL;
                sample(&app);
            }
        })
    };
    // Started jobs join their share once the submissions around them have settled.
    let forming = {
        let app = app.clone();
        every(std::time::Duration::from_millis(50), &stop, move || app.registry.lock().expect("not poisoned").regroup_if_due())
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/jobs/{name}", get(job_page))
        .route("/jobs/{name}/series/{id}", get(series_page))
        .route("/jobs/{name}/alerts/{fingerprint}/{sequence}", get(alert_page))
        .route("/v1/jobs/{name}/history", get(history))
        .route("/v1/jobs/{name}/slo", get(slo))
        .route("/v1/jobs/{name}/slo/{id}", get(slo_series))
        .route("/v1/jobs/{name}/alerts/{fingerprint}/{sequence}", get(alert_record))
        .route("/v1/alerts/timeline", get(timeline))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/validate", post(validate))
        .route("/v1/jobs/{name}", get(show).delete(delete))
        .route("/v1/jobs/{name}/stop", post(stop_job))
        .route("/v1/jobs/{name}/restart", post(restart))
        .route("/v1/jobs/{name}/logs", get(logs))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(|| async { Json(json!({ "status": "ready" })) }))
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], include_str!("openapi.json")) }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route; GET /openapi.json lists them") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        crate::log_info!("serve: listening on http://{} (data in {})", listener.local_addr()?, settings.data_dir.display());
        let shutdown = async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
        anyhow::Ok(())
    })?;
    if let Some(t) = following {
        let _ = t.join();
    }
    let _ = sampling.join();
    let _ = forming.join();
    crate::log_info!("serve: stopping every job");
    app.registry.lock().expect("not poisoned").shutdown();
    Ok(())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": { "message": message.into() } }))).into_response()
}

/// Compare in constant time: how long it takes says nothing of how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

fn authorised(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &app.token else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if same(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "this route needs Authorization: Bearer <OSPREY_TOKEN>"))
    }
}

fn job_text(body: &Bytes) -> Result<String, Response> {
    String::from_utf8(body.to_vec()).map_err(|_| error(StatusCode::BAD_REQUEST, "the body is not UTF-8 text: send the TOML job file"))
}

fn refusal(r: registry::Refusal) -> Response {
    (StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY), Json(r.body)).into_response()
}

/// A route that takes a job file: the token checked, the body as text, `f` run off the
/// async threads (validation plans SQL) with the registry locked.
async fn with_job_text(app: App, headers: HeaderMap, body: Bytes, f: fn(&mut Registry, String) -> Response) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let text = match job_text(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    tokio::task::spawn_blocking(move || f(&mut app.registry.lock().expect("not poisoned"), text))
        .await
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    with_job_text(app, headers, body, |reg, text| match reg.submit(text) {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(r) => refusal(r),
    })
    .await
}

async fn validate(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    with_job_text(app, headers, body, |reg, text| match reg.check(&text) {
        Ok(job) => Json(json!({ "valid": true, "name": job.name, "kind": job.kind.name() })).into_response(),
        Err(r) => refusal(r),
    })
    .await
}

async fn list(State(app): State<App>) -> Json<Value> {
    let reg = app.registry.lock().expect("not poisoned");
    Json(json!({ "jobs": reg.jobs.values().map(|e| reg.view(e)).collect::<Vec<_>>() }))
}

async fn show(State(app): State<App>, Path(name): Path<String>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    match reg.jobs.get(&name) {
        Some(e) => Json(reg.view(e)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no job named `{name}`")),
    }
}

async fn logs(State(app): State<App>, Path(name): Path<String>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    match reg.jobs.get(&name) {
        Some(e) => {
            let lines: Vec<Value> =
                e.log.lock().expect("not poisoned").iter().map(|l| serde_json::from_str(l).unwrap_or(Value::Null)).collect();
            Json(json!({ "name": name, "lines": lines })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no job named `{name}`")),
    }
}

async fn change(app: App, headers: HeaderMap, name: String, what: &'static str) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    tokio::task::spawn_blocking(move || {
        let mut reg = app.registry.lock().expect("not poisoned");
        if !reg.jobs.contains_key(&name) {
            return error(StatusCode::NOT_FOUND, format!("no job named `{name}`"));
        }
        match what {
            "stop" => {
                reg.stop(&name);
            }
            "restart" => {
                reg.stop(&name);
                reg.start(&name);
            }
            _ => {
                reg.delete(&name);
                return Json(json!({ "deleted": name })).into_response();
            }
        }
        let view = reg.view(&reg.jobs[&name]);
        Json(view).into_response()
    })
    .await
    .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn stop_job(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    change(app, headers, name, "stop").await
}

async fn restart(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    change(app, headers, name, "restart").await
}

async fn delete(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    change(app, headers, name, "delete").await
}

async fn home(State(app): State<App>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    ([("content-type", "text/html; charset=utf-8")], page::render(&reg)).into_response()
}

async fn metrics_text(State(app): State<App>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    ([("content-type", "text/plain; version=0.0.4")], metrics::render(&reg)).into_response()
}

fn html(page: String) -> Response {
    ([("content-type", "text/html; charset=utf-8")], page).into_response()
}

fn no_job(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no job named `{name}`"))
}

async fn job_page(State(app): State<App>, Path(name): Path<String>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    match reg.jobs.get(&name) {
        Some(e) => html(pages::job(e)),
        None => no_job(&name),
    }
}

async fn series_page(State(app): State<App>, Path((name, id)): Path<(String, String)>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    let Some(e) = reg.jobs.get(&name) else { return no_job(&name) };
    match pages::series(e, &id) {
        Some(page) => html(page),
        None => error(StatusCode::NOT_FOUND, format!("job `{name}` has no SLO series `{id}`; GET /v1/jobs/{name}/slo lists them")),
    }
}

/// The record a timeline line links to, if the page still keeps it.
fn find_alert(reg: &Registry, name: &str, fingerprint: &str, sequence: &str) -> Result<crate::alert::Alert, Response> {
    let e = reg.jobs.get(name).ok_or_else(|| no_job(name))?;
    sequence
        .parse::<u64>()
        .ok()
        .and_then(|n| views::alert(e, fingerprint, n))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("job `{name}` keeps no transition {fingerprint}/{sequence} (the last 24 hours are kept); GET /v1/alerts/timeline lists them")))
}

async fn alert_page(State(app): State<App>, Path((name, fingerprint, sequence)): Path<(String, String, String)>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    match find_alert(&reg, &name, &fingerprint, &sequence) {
        Ok(a) => html(pages::alert(&reg.jobs[&name], &a)),
        Err(r) => r,
    }
}

async fn alert_record(State(app): State<App>, Path((name, fingerprint, sequence)): Path<(String, String, String)>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    match find_alert(&reg, &name, &fingerprint, &sequence) {
        Ok(a) => Json(a).into_response(),
        Err(r) => r,
    }
}

async fn history(State(app): State<App>, Path(name): Path<String>) -> Response {
    let reg = app.registry.lock().expect("not poisoned");
    match reg.jobs.get(&name) {
        Some(e) => Json(views::history(e)).into_response(),
        None => no_job(&name),
    }
}

/// Series with their points in `GET /v1/jobs/{name}/slo` (the rest: summaries).
const SLO_DETAILED: usize = 10;

fn slo_view(reg: &Registry, name: &str, id: Option<&str>) -> Response {
    let Some(e) = reg.jobs.get(name) else { return no_job(name) };
    match views::slo(e, id, SLO_DETAILED) {
        Some(v) if id.is_some() && v["series"].as_array().is_none_or(|s| s.is_empty()) => {
            error(StatusCode::NOT_FOUND, format!("job `{name}` has no SLO series `{}`; GET /v1/jobs/{name}/slo lists them", id.unwrap_or_default()))
        }
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("job `{name}` is a {} job, not an SLO", e.job.kind.name())),
    }
}

async fn slo(State(app): State<App>, Path(name): Path<String>) -> Response {
    slo_view(&app.registry.lock().expect("not poisoned"), &name, None)
}

async fn slo_series(State(app): State<App>, Path((name, id)): Path<(String, String)>) -> Response {
    slo_view(&app.registry.lock().expect("not poisoned"), &name, Some(&id))
}

async fn timeline(State(app): State<App>) -> Json<Value> {
    Json(views::timeline(&app.registry.lock().expect("not poisoned")))
}
