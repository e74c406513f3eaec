//! `/metrics`: the jobs' counters in the Prometheus text format (checked with promtool).

use std::fmt::Write;

use super::registry::{Registry, Status};

/// A label value, escaped as the text format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(reg: &Registry) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, fn(&crate::metrics::CountersSnapshot) -> u64); 10] = [
        ("osprey_job_records_in_total", "Records read from the job's source.", |c| c.records_in),
        ("osprey_job_rows_out_total", "Result rows written.", |c| c.rows_out),
        ("osprey_job_decode_errors_total", "Records that did not decode (dead letters).", |c| c.decode_errors),
        ("osprey_job_late_records_total", "Records later than the allowed lateness (routed to [late]).", |c| c.late_records),
        ("osprey_job_windows_closed_total", "Windows fired.", |c| c.windows_closed),
        ("osprey_job_window_updates_total", "Windows fired again by late records within the allowed lateness.", |c| c.window_updates),
        ("osprey_job_alerts_emitted_total", "Alert transitions written (fired and resolved).", |c| c.alerts_emitted),
        ("osprey_job_alerts_suppressed_total", "Alert evaluations kept quiet: deduplicated, inhibited, folded into storms.", |c| c.alerts_suppressed),
        ("osprey_job_checkpoints_total", "Checkpoints written durably.", |c| c.checkpoints),
        ("osprey_job_checkpoint_failures_total", "Checkpoints that could not be written (offsets stay at the last good one).", |c| c.checkpoint_failures),
    ];
    for (name, help, get) in counters {
        writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter").unwrap();
        for e in reg.jobs.values() {
            let value = e.counters.as_ref().map(|c| get(&c.snapshot())).unwrap_or(0);
            writeln!(out, "{name}{{job=\"{}\"}} {value}", escape(&e.job.name)).unwrap();
        }
    }
    writeln!(out, "# HELP osprey_job_consumer_lag Records behind the end of a source partition (Kafka).\n# TYPE osprey_job_consumer_lag gauge").unwrap();
    for e in reg.jobs.values() {
        let Some(c) = &e.counters else { continue };
        for (p, n) in c.lag.lock().expect("not poisoned").iter() {
            writeln!(out, "osprey_job_consumer_lag{{job=\"{}\",partition=\"{}\"}} {n}", escape(&e.job.name), escape(p)).unwrap();
        }
    }
    writeln!(out, "# HELP osprey_job_checkpoint_bytes Size of the job's last durable checkpoint.\n# TYPE osprey_job_checkpoint_bytes gauge").unwrap();
    for e in reg.jobs.values() {
        let value = e.counters.as_ref().map(|c| c.snapshot().checkpoint_bytes).unwrap_or(0);
        writeln!(out, "osprey_job_checkpoint_bytes{{job=\"{}\"}} {value}", escape(&e.job.name)).unwrap();
    }
    writeln!(out, "# HELP osprey_job_checkpoint_duration_seconds Time the job's last checkpoint took (state copied, written, synced).\n# TYPE osprey_job_checkpoint_duration_seconds gauge").unwrap();
    for e in reg.jobs.values() {
        let value = e.counters.as_ref().map(|c| c.snapshot().checkpoint_micros).unwrap_or(0);
        writeln!(out, "osprey_job_checkpoint_duration_seconds{{job=\"{}\"}} {}", escape(&e.job.name), value as f64 / 1e6).unwrap();
    }
    writeln!(out, "# HELP osprey_job_watermark_seconds The job's watermark (event time, Unix seconds).\n# TYPE osprey_job_watermark_seconds gauge").unwrap();
    for e in reg.jobs.values() {
        if let Some(c) = &e.counters {
            let wm = c.snapshot().watermark;
            if wm != i64::MIN {
                writeln!(out, "osprey_job_watermark_seconds{{job=\"{}\"}} {}", escape(&e.job.name), wm as f64 / 1000.0).unwrap();
            }
        }
    }
    writeln!(out, "# HELP osprey_job_alerts_fired_total Alerts fired by the job's last completed run.\n# TYPE osprey_job_alerts_fired_total counter").unwrap();
    for e in reg.jobs.values() {
        writeln!(out, "osprey_job_alerts_fired_total{{job=\"{}\"}} {}", escape(&e.job.name), e.run.lock().expect("not poisoned").alerts_fired).unwrap();
    }
    writeln!(
        out,
        "# HELP osprey_job_window_output_seconds From a window's close (the watermark passed its end) to its output written.\n# TYPE osprey_job_window_output_seconds histogram"
    )
    .unwrap();
    for e in reg.jobs.values() {
        let Some(c) = &e.counters else { continue };
        let l = c.latency();
        let job = escape(&e.job.name);
        for (le, n) in &l.buckets {
            writeln!(out, "osprey_job_window_output_seconds_bucket{{job=\"{job}\",le=\"{le}\"}} {n}").unwrap();
        }
        writeln!(out, "osprey_job_window_output_seconds_bucket{{job=\"{job}\",le=\"+Inf\"}} {}", l.count).unwrap();
        writeln!(out, "osprey_job_window_output_seconds_sum{{job=\"{job}\"}} {}", l.sum_seconds).unwrap();
        writeln!(out, "osprey_job_window_output_seconds_count{{job=\"{job}\"}} {}", l.count).unwrap();
    }
    writeln!(out, "# HELP osprey_job_status 1 for the job's current status.\n# TYPE osprey_job_status gauge").unwrap();
    for e in reg.jobs.values() {
        let status = e.run.lock().expect("not poisoned").status;
        for s in [Status::Running, Status::Stopped, Status::Failed] {
            let name = serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            writeln!(out, "osprey_job_status{{job=\"{}\",status=\"{name}\"}} {}", escape(&e.job.name), (s == status) as u8).unwrap();
        }
    }
    out
}
