//! The `osprey` binary as users run it: validate, replay, run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn osprey(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osprey")).args(args).current_dir(dir).output().expect("osprey runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn generate(dir: &Path, name: &str, events: u64, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["generate", "--events", &*Box::leak(events.to_string().into_boxed_str()), "--rate", "100", "--output"];
    args.push(path.to_str().unwrap());
    args.extend_from_slice(extra);
    let o = osprey(&args, dir);
    assert!(o.status.success(), "{}", stderr(&o));
    path
}

const RED_JOB: &str = r#"name = "red"
sql = """
SELECT window_start, window_end, service, count(*) AS requests,
       sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors,
       sum(bytes) AS bytes, max(duration_ms) AS slowest
FROM events GROUP BY window_start, window_end, service ORDER BY service
"""
[source]
kind = "file"
path = "requests.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
status = "int64"
duration_ms = "float64"
bytes = "int64"
[event_time]
column = "ts"
watermark_delay = "5s"
[window]
kind = "tumbling"
size = "1m"
"#;

fn write_job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn replay(dir: &Path, job: &str, input: &str, out: &str) -> String {
    let o = osprey(&["replay", job, "--input", input, "--output", out, "--quiet"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read_to_string(dir.join(out)).unwrap()
}

#[test]
fn replays_are_byte_identical_and_splitting_the_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = generate(d, "requests.jsonl", 30_000, &[]);
    write_job(d, "red.toml", RED_JOB);
    let first = replay(d, "red.toml", "requests.jsonl", "a.jsonl");
    let second = replay(d, "red.toml", "requests.jsonl", "b.jsonl");
    assert!(first.lines().count() > 20);
    assert_eq!(first, second);

    // Split in time: three consecutive files.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::create_dir(d.join("parts")).unwrap();
    for (i, part) in lines.chunks(lines.len() / 3 + 1).enumerate() {
        std::fs::write(d.join(format!("parts/{i}.jsonl")), part.join("\n") + "\n").unwrap();
    }
    assert_eq!(replay(d, "red.toml", "parts/*.jsonl", "c.jsonl"), first);

    // Split by key, as per-partition archives covering the same hours.
    std::fs::create_dir(d.join("by_service")).unwrap();
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let f = files.entry(v["service"].as_str().unwrap().to_string()).or_default();
        f.push_str(line);
        f.push('\n');
    }
    for (service, body) in &files {
        std::fs::write(d.join(format!("by_service/{service}.jsonl")), body).unwrap();
    }
    assert_eq!(replay(d, "red.toml", "by_service/*.jsonl", "d.jsonl"), first);
}

#[test]
fn parquet_archives_replay_like_json_lines() {
    use datafusion::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, "requests.jsonl", 5_000, &[]);
    write_job(d, "red.toml", RED_JOB);
    let expected = replay(d, "red.toml", "requests.jsonl", "json.jsonl");
    // Convert with DataFusion's own reader and writer.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        let opts = datafusion::datasource::file_format::options::JsonReadOptions::default().file_extension(".jsonl");
        let df = ctx.read_json(d.join("requests.jsonl").to_str().unwrap(), opts).await.unwrap();
        df.write_parquet(
            d.join("requests.parquet").to_str().unwrap(),
            datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
    });
    assert_eq!(replay(d, "red.toml", "requests.parquet", "parquet.jsonl"), expected);
}

#[test]
fn bad_records_are_dead_lettered_and_the_replay_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "red.toml", RED_JOB);
    let good = |s: u32, service: &str| format!("{{\"ts\":\"2026-01-05T09:{:02}:{:02}Z\",\"service\":\"{service}\",\"status\":200,\"duration_ms\":1.5,\"bytes\":10}}", s / 60, s % 60);
    let lines = [
        good(1, "a"),
        "{\"ts\":\"2026-01-05T09:00:02Z\",\"service\":".to_string(), // malformed
        "{\"ts\":\"2026-01-05T09:00:03Z\",\"service\":\"a\",\"status\":\"two hundred\"}".to_string(), // wrong type
        "{\"service\":\"a\",\"status\":200}".to_string(),             // no event time
        good(70, "b"),
        good(200, "a"),
        "{\"ts\":\"2026-01-05T09:03:30Z\",\"service\":\"a\",\"sta".to_string(), // truncated last line
    ];
    std::fs::write(d.join("requests.jsonl"), lines.join("\n")).unwrap();
    let o = osprey(&["replay", "red.toml", "--output", "out.jsonl", "--dead-letters", "dlq.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("4 records did not decode"), "{}", stderr(&o));
    let out: Vec<Value> = std::fs::read_to_string(d.join("out.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let requests: i64 = out.iter().map(|r| r["requests"].as_i64().unwrap()).sum();
    assert_eq!(requests, 3, "every good record is counted, in three windows");
    assert_eq!(out.len(), 3);
    let dlq: Vec<Value> = std::fs::read_to_string(d.join("dlq.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let offsets: Vec<i64> = dlq.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, vec![2, 3, 4, 7]);
    for r in &dlq {
        let line = r["offset"].as_i64().unwrap() as usize;
        assert_eq!(r["raw"].as_str().unwrap(), lines[line - 1], "the original bytes");
        assert!(r["source"].as_str().unwrap().ends_with("requests.jsonl"));
        assert!(!r["reason"].as_str().unwrap().is_empty());
        assert_eq!(r["job"], "red");
    }
    assert!(dlq[1]["reason"].as_str().unwrap().contains("two hundred"), "{}", dlq[1]);
    assert!(dlq[2]["reason"].as_str().unwrap().contains("missing event time"), "{}", dlq[2]);
}

#[test]
fn late_records_are_counted_and_routed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "red.toml", RED_JOB);
    let rec = |t: &str| format!("{{\"ts\":\"2026-01-05T{t}Z\",\"service\":\"a\",\"status\":200,\"duration_ms\":1,\"bytes\":1}}");
    // 09:00:58 arrives after the watermark passed 09:01:00 (09:01:10 - 5 s).
    let lines = [rec("09:00:10"), rec("09:00:59"), rec("09:01:10"), rec("09:00:58"), rec("09:01:30")];
    std::fs::write(d.join("requests.jsonl"), lines.join("\n")).unwrap();
    let o = osprey(&["replay", "red.toml", "--output", "out.jsonl", "--late", "late.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 records were late"), "{}", stderr(&o));
    let late: Vec<Value> = std::fs::read_to_string(d.join("late.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["offset"], 4);
    assert_eq!(late[0]["event_time"], "2026-01-05T09:00:58.000Z");
    assert_eq!(late[0]["record"]["service"], "a");
    let out = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["requests"], 2, "the late record is not in its closed window");
}

/// Each kind of job-file error, with the line it must point at and words the message must hold.
#[test]
fn bad_job_files_are_refused_with_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        ("toml syntax", RED_JOB.replace("size = \"1m\"", "size = \"1m"), "size = \"1m", vec!["string"]),
        ("unknown key", RED_JOB.replace("size = \"1m\"", "sise = \"1m\""), "sise", vec!["unknown key `sise`", "did you mean `size`"]),
        ("unknown column", RED_JOB.replace("sum(bytes)", "sum(bites)"), "sum(bites)", vec!["bites", "did you mean `bytes`"]),
        ("type error", RED_JOB.replace("sum(bytes)", "sum(service)"), "sum(service)", vec!["`sum` does not take (Utf8)"]),
        ("sql syntax", RED_JOB.replace("FROM events GROUP", "FROM events GROUPS"), "FROM events GROUPS", vec!["SQL"]),
        ("unknown table", RED_JOB.replace("FROM events", "FROM requests"), "FROM requests", vec!["requests", "events"]),
        ("bad duration", RED_JOB.replace("watermark_delay = \"5s\"", "watermark_delay = \"5 parsecs\""), "watermark_delay", vec!["bad duration", "5 parsecs"]),
        ("unknown type", RED_JOB.replace("status = \"int64\"", "status = \"in64\""), "status = \"in64\"", vec!["unknown column type", "did you mean `int64`"]),
        ("event time type", RED_JOB.replace("column = \"ts\"", "column = \"service\""), "column = \"service\"", vec!["must be declared as \"timestamp\""]),
        ("event time missing", RED_JOB.replace("column = \"ts\"", "column = \"tss\""), "column = \"tss\"", vec!["not in [source.schema]", "did you mean `ts`"]),
        ("window without size", RED_JOB.replace("size = \"1m\"", ""), "kind = \"tumbling\"", vec!["needs `size`"]),
        ("unknown window kind", RED_JOB.replace("kind = \"tumbling\"", "kind = \"tumblin\""), "tumblin", vec!["did you mean `tumbling`"]),
        ("slide longer than size", RED_JOB.replace("kind = \"tumbling\"\nsize = \"1m\"", "kind = \"hopping\"\nsize = \"1m\"\nslide = \"5m\""), "slide", vec!["longer than `size`"]),
    ];
    for (what, text, needle, words) in cases {
        let path = write_job(d, "bad.toml", &text);
        let o = osprey(&["validate", path.to_str().unwrap()], d);
        let err = stderr(&o);
        assert!(!o.status.success(), "{what}: accepted");
        let line = line_of(&text, needle);
        assert!(err.contains(&format!("bad.toml:{line}:")), "{what}: expected line {line}:\n{err}");
        for w in words {
            assert!(err.contains(w), "{what}: expected `{w}` in:\n{err}");
        }
    }
    // A missing sql_file names the key and the file.
    let text = RED_JOB.replacen("sql = \"\"\"", "sql_file = \"sql/nope.sql\"\nunused = \"\"\"", 1);
    let path = write_job(d, "bad.toml", &text);
    let o = osprey(&["validate", path.to_str().unwrap()], d);
    assert!(!o.status.success());
}

#[test]
fn every_bundled_job_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut jobs = Vec::new();
    let mut dirs = vec![root.join("jobs")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                jobs.push(p);
            }
        }
    }
    assert!(jobs.len() >= 4);
    for job in jobs {
        let o = osprey(&["validate", job.to_str().unwrap()], root);
        assert!(o.status.success(), "{}: {}", job.display(), stderr(&o));
    }
}

#[test]
fn run_stops_cleanly_on_sigterm_and_says_what_it_did_with_open_windows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = RED_JOB
        .replace("kind = \"file\"\npath = \"requests.jsonl\"", "kind = \"generator\"\nstream = \"http-requests\"\nrate = 100\nspeed = 120")
        .replace("size = \"1m\"", "size = \"10s\"");
    write_job(d, "live.toml", &job);
    let child = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["run", "live.toml", "--output", "live.jsonl"])
        .current_dir(d)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stopped"), "{err}");
    assert!(err.contains("discarded") || err.contains("no window was open"), "{err}");
    let rows = std::fs::read_to_string(d.join("live.jsonl")).unwrap();
    assert!(rows.lines().count() >= 5, "several 10 s windows closed in 3 s at 120x:\n{rows}");
}

#[test]
fn select_star_shows_declared_columns_and_metadata_only_where_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("requests.jsonl"), "{\"ts\":\"2026-01-05T09:00:00Z\",\"service\":\"a\",\"status\":500}\n").unwrap();
    let keys = |sql: &str| {
        write_job(d, "star.toml", &RED_JOB.replacen(&RED_JOB[RED_JOB.find("sql = ").unwrap()..RED_JOB.find("[source]").unwrap()], &format!("sql = \"{sql}\"\n"), 1));
        let out = replay(d, "star.toml", "requests.jsonl", "star.jsonl");
        keys_in_order(out.lines().next().unwrap())
    };
    let declared = ["ts", "service", "status", "duration_ms", "bytes", "window_start", "window_end"];
    assert_eq!(keys("SELECT * FROM events"), declared);
    let mut with_offset: Vec<&str> = declared.to_vec();
    with_offset.push("_offset");
    assert_eq!(keys("SELECT *, _offset FROM events"), with_offset);
    assert_eq!(keys("SELECT _partition, _offset, _topic FROM events"), ["_partition", "_offset", "_topic"]);
}

/// The keys of a JSON object in the order written (serde_json's map sorts them).
fn keys_in_order(line: &str) -> Vec<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_str(line).deserialize_map(Keys).unwrap()
}
