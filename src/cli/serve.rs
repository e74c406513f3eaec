//! `osprey serve` and its client commands: `submit`, `jobs`, `stop`, `logs`.

use std::path::PathBuf;
use std::process::ExitCode;

use osprey::alert::dest::alertmanager::request_with;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback one needs OSPREY_TOKEN.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: std::net::SocketAddr,
    /// Where submitted jobs' files live, and the only place their sources and sinks may read and write.
    #[arg(long, default_value = "osprey-data")]
    data_dir: PathBuf,
    /// Kafka bootstrap servers for the jobs; also OSPREY_BROKERS.
    #[arg(long)]
    brokers: Option<String>,
    /// With --brokers: the compacted topic holding the job registry, shared by every server
    /// that names it (without Kafka: <data-dir>/registry.json).
    #[arg(long, default_value = "osprey.registry")]
    registry_topic: String,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let token = std::env::var("OSPREY_TOKEN").ok().filter(|t| !t.is_empty());
    let brokers = a.brokers.or_else(|| std::env::var("OSPREY_BROKERS").ok().filter(|b| !b.is_empty()));
    let settings = osprey::server::Settings { listen: a.listen, data_dir: a.data_dir, token, cluster: brokers.map(osprey::kafka::Cluster::new), registry_topic: Some(a.registry_topic) };
    osprey::server::serve(settings, super::stop_on_signal())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct Client {
    /// The server (also OSPREY_SERVER).
    #[arg(long, env = "OSPREY_SERVER", default_value = "http://127.0.0.1:7070")]
    server: String,
}

fn call(c: &Client, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<serde_json::Value> {
    let token = std::env::var("OSPREY_TOKEN").unwrap_or_default();
    let auth = format!("Bearer {token}");
    let headers: Vec<(&str, &str)> = if token.is_empty() { Vec::new() } else { vec![("Authorization", auth.as_str())] };
    let url = format!("{}{path}", c.server.trim_end_matches('/'));
    let (status, text) = request_with(method, &url, body, "application/toml", &headers)
        .map_err(|e| anyhow::anyhow!("cannot reach the server at {} ({e}); start one with `osprey serve`, or pass --server", c.server))?;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if !(200..300).contains(&status) {
        let message = value["error"]["text"].as_str().or(value["error"]["message"].as_str()).map(str::to_string).unwrap_or_else(|| value.to_string());
        anyhow::bail!("the server refused ({status}): {message}");
    }
    Ok(value)
}

fn line(j: &serde_json::Value) -> String {
    format!(
        "{:<24} {:<10} {:<8} in {:>10}  out {:>8}  dead letters {:>6}  late {:>6}  watermark {}{}",
        j["name"].as_str().unwrap_or(""),
        j["kind"].as_str().unwrap_or(""),
        j["status"].as_str().unwrap_or(""),
        j["records_in"],
        j["records_out"],
        j["decode_errors"],
        j["late_records"],
        j["watermark"].as_str().unwrap_or("-"),
        j["last_error"].as_str().map(|e| format!("\n  error: {e}")).unwrap_or_default()
    )
}

pub fn submit(c: Client, file: PathBuf) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let j = call(&c, "POST", "/v1/jobs", Some(&text))?;
    println!("{}", line(&j));
    Ok(ExitCode::SUCCESS)
}

pub fn jobs(c: Client) -> anyhow::Result<ExitCode> {
    let v = call(&c, "GET", "/v1/jobs", None)?;
    for j in v["jobs"].as_array().into_iter().flatten() {
        println!("{}", line(j));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(c: Client, name: String) -> anyhow::Result<ExitCode> {
    println!("{}", line(&call(&c, "POST", &format!("/v1/jobs/{name}/stop"), Some(b""))?));
    Ok(ExitCode::SUCCESS)
}

/// What the server knows of a job's run: its status, counters and last error.
pub fn logs(c: Client, name: String) -> anyhow::Result<ExitCode> {
    let j = call(&c, "GET", &format!("/v1/jobs/{name}/logs"), None)?;
    for line in j["lines"].as_array().into_iter().flatten() {
        let text = |k: &str| line[k].as_str().unwrap_or_default().to_string();
        println!("{} {:5} {}", text("time"), text("level"), text("message"));
    }
    let status = call(&c, "GET", &format!("/v1/jobs/{name}"), None)?;
    println!("-- {name}: {}{}", status["status"].as_str().unwrap_or("?"), status["last_error"].as_str().map(|e| format!(", last error: {e}")).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
