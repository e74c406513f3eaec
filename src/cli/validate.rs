use std::path::PathBuf;
use std::process::ExitCode;

use osprey::job::{SourceConfig, WindowConfig};
use osprey::plan;

pub fn run(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for path in paths {
        match plan::validate(path) {
            Ok(j) => {
                let window = match &j.window {
                    WindowConfig::Tumbling { size } => format!("tumbling {}", ms(*size)),
                    WindowConfig::Hopping { size, slide } => format!("hopping {} every {}", ms(*size), ms(*slide)),
                    WindowConfig::Session { gap, key } => format!("session gap {} by [{}]", ms(*gap), key.join(", ")),
                    WindowConfig::Cumulative { size, ttl } => {
                        format!("cumulative, evaluated every {}{}", ms(*size), ttl.map(|t| format!(", idle groups dropped after {}", ms(t))).unwrap_or_default())
                    }
                };
                let source = match &j.source {
                    SourceConfig::Kafka(k) => format!("kafka topic {}", k.topic),
                    SourceConfig::File { pattern, .. } => format!("files {pattern}"),
                    SourceConfig::Generator(g) => format!("generator {}", g.stream.name()),
                };
                println!("ok: {} — job `{}`, {} columns from {source}, {window}", path.display(), j.name, j.columns.len());
            }
            Err(e) => {
                osprey::log_error!("{e}\n");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        osprey::log_error!("{failed} of {} job files have errors", paths.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(m: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(m as u64)).to_string()
}
