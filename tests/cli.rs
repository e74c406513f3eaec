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
    // Four bad records in seven: past the default --max-dead-letter-ratio of 0.5.
    let o = osprey(&["replay", "red.toml", "--output", "out.jsonl", "--dead-letters", "dlq.jsonl", "--max-dead-letter-ratio", "0.6"], d);
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
    assert!(stderr(&o).contains("1 record was late"), "{}", stderr(&o));
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
        ("unknown column, nothing near", RED_JOB.replace("max(duration_ms)", "max(nosuch)"), "max(nosuch)", vec!["unknown column `nosuch`", "the columns of `events` are"]),
        ("unknown column in WHERE", RED_JOB.replace("FROM events GROUP", "FROM events\nWHERE zzz > 1 GROUP"), "WHERE zzz", vec!["unknown column `zzz`"]),
        ("operator types in WHERE", RED_JOB.replace("FROM events GROUP", "FROM events\nWHERE status + 'abc' > 1 GROUP"), "WHERE status", vec!["`+` cannot combine"]),
        ("column not grouped", RED_JOB.replace("GROUP BY window_start, window_end, service", "GROUP BY window_start, window_end"), "SELECT window_start", vec!["`service` must be in GROUP BY"]),
        ("mixed case unquoted", RED_JOB.replace("service = \"string\"", "serviceName = \"string\"").replace(", service", ", serviceName").replace("BY service", "BY serviceName"), "SELECT window_start", vec!["\"serviceName\" in double quotes"]),
        ("sub-millisecond window", RED_JOB.replace("size = \"1m\"", "size = \"1500us\""), "size = \"1500us\"", vec!["not a whole number of milliseconds"]),
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

fn rows_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, "requests.jsonl", 2_000, &[]);
    write_job(d, "red.toml", RED_JOB);
    let before = std::fs::read(d.join("requests.jsonl")).unwrap();
    for args in [
        vec!["replay", "red.toml", "--output", "requests.jsonl"],
        vec!["replay", "red.toml", "--output", "./sub/../requests.jsonl", "--quiet"],
        vec!["replay", "red.toml", "--output", "out.jsonl", "--dead-letters", "requests.jsonl"],
        vec!["replay", "red.toml", "--input", "*.jsonl", "--output", "out.jsonl", "--late", "requests.jsonl"],
    ] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let o = osprey(&args, d);
        assert!(!o.status.success(), "{args:?} must be refused");
        assert!(stderr(&o).contains("is also an input file"), "{}", stderr(&o));
        assert_eq!(std::fs::read(d.join("requests.jsonl")).unwrap(), before, "{args:?} left the input as it was");
    }
    let o = osprey(&["replay", "red.toml", "--output", "same.jsonl", "--dead-letters", "same.jsonl"], d);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("are the same file"), "{}", stderr(&o));
}

#[test]
fn a_line_holding_two_objects_and_a_fraction_in_an_integer_column_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "red.toml", RED_JOB);
    let rec = |s: u32, status: &str| format!("{{\"ts\":\"2026-01-05T09:00:{s:02}Z\",\"service\":\"a\",\"status\":{status},\"duration_ms\":1,\"bytes\":1}}");
    let lines = [
        rec(1, "200"),
        format!("{}{}", rec(2, "200"), rec(3, "200")),  // two objects, no space
        format!("{} {}", rec(4, "200"), rec(5, "200")), // two objects, a space
        rec(6, "200.5"),
        rec(7, "200.9999"),
        rec(8, "200.0"), // whole: its value
        rec(9, "2e2"),
        rec(10, "9223372036854775808"), // past int64
        (11..61).map(|s| rec(s, "200")).collect::<Vec<_>>().join(""), // fifty on one line
        rec(11, "201"),
    ];
    std::fs::write(d.join("requests.jsonl"), lines.join("\n") + "\n").unwrap();
    let o = osprey(&["replay", "red.toml", "--output", "out.jsonl", "--dead-letters", "dlq.jsonl", "--max-dead-letter-ratio", "1"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = rows_of(&d.join("out.jsonl"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["requests"], 4, "lines 1, 6 (200.0), 7 (2e2) and 10");
    let dlq = rows_of(&d.join("dlq.jsonl"));
    let offsets: Vec<i64> = dlq.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, vec![2, 3, 4, 5, 8, 9]);
    assert!(dlq[0]["reason"].as_str().unwrap().contains("one JSON object per record") || dlq[0]["reason"].as_str().unwrap().contains("trailing"), "{}", dlq[0]);
    assert!(dlq[2]["reason"].as_str().unwrap().contains("200.5"), "{}", dlq[2]);
    assert!(dlq[4]["reason"].as_str().unwrap().contains("range"), "{}", dlq[4]);
    assert_eq!(dlq[5]["raw"].as_str().unwrap(), lines[8]);
    assert!(stderr(&o).contains("6 records did not decode"), "{}", stderr(&o));
}

#[test]
fn a_second_run_keeps_the_first_runs_files_and_a_concurrent_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "red.toml", RED_JOB);
    let good = "{\"ts\":\"2026-01-05T09:00:01Z\",\"service\":\"a\",\"status\":200,\"duration_ms\":1,\"bytes\":1}";
    std::fs::write(d.join("requests.jsonl"), format!("{good}\nnot json\n")).unwrap();
    let args = ["replay", "red.toml", "--output", "out.jsonl", "--dead-letters", "dlq.jsonl"];
    assert!(osprey(&args, d).status.success());
    let first_out = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    // The second run has no bad record: its dead-letter file is empty, the first one's kept.
    std::fs::write(d.join("requests.jsonl"), format!("{good}\n")).unwrap();
    let o = osprey(&args, d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is kept as"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.join("dlq.jsonl")).unwrap(), "", "no dead letter in this run");
    let names: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let kept_dlq = names.iter().find(|n| n.starts_with("dlq.jsonl.")).expect("the first run's dead letters are kept");
    assert_eq!(rows_of(&d.join(kept_dlq)).len(), 1);
    let kept_out = names.iter().find(|n| n.starts_with("out.jsonl.")).expect("the first run's results are kept");
    assert_eq!(std::fs::read_to_string(d.join(kept_out)).unwrap(), first_out);

    // A file another process holds is refused, not shared.
    let holder = std::fs::OpenOptions::new().append(true).open(d.join("out.jsonl")).unwrap();
    holder.lock().unwrap();
    let o = osprey(&args, d);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("being written by another run"), "{}", stderr(&o));
}

#[test]
fn losses_are_reported_even_when_quiet_and_a_replay_of_the_wrong_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "red.toml", RED_JOB);
    // A binary file: nothing decodes.
    std::fs::write(d.join("archive.jsonl"), (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    let o = osprey(&["replay", "red.toml", "--input", "archive.jsonl", "--output", "out.jsonl", "--quiet"], d);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("did not decode"), "quiet still says what was lost: {}", stderr(&o));
    // Accepting every ratio lets it pass.
    let o = osprey(&["replay", "red.toml", "--input", "archive.jsonl", "--output", "out2.jsonl", "--max-dead-letter-ratio", "1"], d);
    assert!(o.status.success(), "{}", stderr(&o));

    // Records of another shape: they decode, but no declared column but the time is ever there.
    let other = (0..20).map(|s| format!("{{\"ts\":\"2026-01-05T09:00:{s:02}Z\",\"symbol\":\"X\",\"qty\":1}}")).collect::<Vec<_>>().join("\n");
    std::fs::write(d.join("orders.jsonl"), other).unwrap();
    let o = osprey(&["replay", "red.toml", "--input", "orders.jsonl", "--output", "out3.jsonl", "--quiet"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("warning") && err.contains("`service`") && err.contains("`status`") && !err.contains("`ts`"), "{err}");
}

#[test]
fn updated_and_incomplete_windows_are_marked_and_an_emptied_window_is_retracted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = RED_JOB
        .replace("FROM events GROUP BY window_start, window_end, service ORDER BY service", "FROM events GROUP BY window_start, window_end, service HAVING sum(bytes) > 0 ORDER BY service")
        .replace("watermark_delay = \"5s\"", "watermark_delay = \"0s\"\nallowed_lateness = \"10m\"");
    write_job(d, "red.toml", &job);
    let rec = |t: &str, bytes: i64| format!("{{\"ts\":\"2026-01-05T{t}Z\",\"service\":\"a\",\"status\":200,\"duration_ms\":1,\"bytes\":{bytes}}}");
    // Window 09:00 fires at 09:01:05, is updated by 09:00:30 (+1 byte), then emptied by -6 bytes.
    let lines = [rec("09:00:10", 5), rec("09:01:05", 1), rec("09:00:30", 1), rec("09:00:40", -6), rec("09:02:30", 1)];
    std::fs::write(d.join("requests.jsonl"), lines.join("\n")).unwrap();
    let o = osprey(&["replay", "red.toml", "--output", "out.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = rows_of(&d.join("out.jsonl"));
    let first: Vec<&Value> = out.iter().filter(|r| r["window_start"] == "2026-01-05T09:00:00Z").collect();
    assert_eq!(first.len(), 3, "{out:?}");
    assert_eq!(first[0]["bytes"], 5);
    assert!(first[0].get("_revision").is_none(), "a first firing carries no marker");
    assert_eq!(first[1]["bytes"], 6);
    assert_eq!(first[1]["_revision"], 1);
    assert_eq!(first[2]["_revision"], 2);
    assert_eq!(first[2]["_rows"], 0, "the update removed the window's only row: {}", first[2]);
}

#[test]
fn the_command_line_refuses_what_a_job_file_would() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, words) in [
        (vec!["generate", "--rate", "0", "-n", "1"], "rate above 0"),
        (vec!["generate", "--rate", "100000000", "-n", "1"], "at most"),
        (vec!["generate", "--malformed", "1.5", "-n", "1"], "fraction between 0 and 1"),
        (vec!["generate", "--partitions", "0", "-n", "1"], "partitions"),
        (vec!["demo", "--speed", "0"], "speed above 0"),
        (vec!["demo", "--duration", "0s"], "above zero"),
        (vec!["replay", "x.toml", "--max-dead-letter-ratio", "2"], "fraction"),
    ] {
        let o = osprey(&args, d);
        assert_eq!(o.status.code(), Some(2), "{args:?} is a usage error: {}", stderr(&o));
        assert!(stderr(&o).contains(words), "{args:?}: {}", stderr(&o));
    }
    // --events counts events, whatever the stream makes per order.
    let o = osprey(&["generate", "--stream", "trading-events", "--events", "100"], d);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 100);
    // A reader that stops early is not an error.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["generate", "--events", "1000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Broken pipe"), "{}", stderr(&o));
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_record_and_job_paths_are_relative_to_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("jobs")).unwrap();
    let job = RED_JOB.replace("[event_time]", "[sink]\nkind = \"file\"\npath = \"out/red.jsonl\"\n[dead_letter]\nkind = \"file\"\npath = \"out/red.dlq.jsonl\"\n[event_time]");
    write_job(&d.join("jobs"), "red.toml", &job);
    let line = "{\"ts\":\"2026-01-05T09:00:01Z\",\"service\":\"a\",\"status\":200,\"duration_ms\":1,\"bytes\":1}";
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(format!("{line}\n{line}\n").as_bytes());
    std::fs::write(d.join("jobs/requests.jsonl"), bytes).unwrap();
    let o = osprey(&["replay", "jobs/red.toml"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = rows_of(&d.join("jobs/out/red.jsonl"));
    assert_eq!(out[0]["requests"], 2, "both records decode");
    assert_eq!(std::fs::read_to_string(d.join("jobs/out/red.dlq.jsonl")).unwrap(), "");
}

const POSITION_JOB: &str = r#"name = "position_burst"
kind = "invariant"
sql = """
SELECT window_start, window_end, account, symbol,
       sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS net
FROM events WHERE event = 'fill'
GROUP BY window_start, window_end, account, symbol
"""
[source]
kind = "file"
path = "trades.jsonl"
[source.schema]
ts = "timestamp"
event = "string"
order_id = "string"
account = "string"
symbol = "string"
side = "string"
qty = "int64"
price = "decimal(18,4)"
[event_time]
column = "ts"
watermark_delay = "0s"
[window]
kind = "tumbling"
size = "1m"
[invariant]
key = ["account", "symbol"]
violation = "abs(net) > 10000"
severity = "critical"
summary = "{account} net {net} {symbol} within a minute, past 10,000"
value = "net"
threshold = 10000
runbook_url = "https://runbooks.example/position"
[alerts]
file = "alerts.jsonl"
"#;

fn fill(t: &str, account: &str, symbol: &str, side: &str, qty: i64) -> String {
    format!(
        "{{\"ts\":\"2026-01-05T{t}Z\",\"event\":\"fill\",\"order_id\":\"O-{t}\",\"account\":\"{account}\",\"symbol\":\"{symbol}\",\"side\":\"{side}\",\"qty\":{qty},\"price\":\"101.2500\"}}"
    )
}

fn schema_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(include_str!("../schema/alert-v1.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every record validates against the shipped schema (which does refuse a broken one).
fn assert_valid_alerts(records: &[Value]) {
    let v = schema_validator();
    if let Some(first) = records.first() {
        let mut broken = first.clone();
        broken["status"] = Value::from("open");
        assert!(!v.is_valid(&broken), "the schema must refuse an unknown status");
        let mut broken = first.clone();
        broken.as_object_mut().unwrap().remove("fingerprint");
        assert!(!v.is_valid(&broken), "the schema must refuse a record without a fingerprint");
    }
    for r in records {
        let errors: Vec<String> = v.iter_errors(r).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{r}\n{errors:?}");
    }
}

#[test]
fn an_invariant_fires_once_per_violating_key_with_evidence_and_resolves_when_it_holds_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "pos.toml", POSITION_JOB);
    let lines = [
        fill("09:00:05", "ACC-1", "AAPL", "buy", 6000),
        fill("09:00:10", "ACC-2", "MSFT", "buy", 9000), // under the limit: never fires
        fill("09:00:30", "ACC-1", "AAPL", "buy", 6000), // ACC-1 AAPL: 12000 in 09:00
        fill("09:01:10", "ACC-1", "AAPL", "buy", 7000),
        fill("09:01:20", "ACC-1", "AAPL", "sell", 200),
        fill("09:01:40", "ACC-1", "AAPL", "buy", 5000), // 11800 in 09:01: still firing
        fill("09:02:10", "ACC-1", "AAPL", "buy", 100),  // 100 in 09:02: resolved
        fill("09:03:10", "ACC-3", "TSLA", "sell", 20000), // short past the limit
    ];
    std::fs::write(d.join("trades.jsonl"), lines.join("\n") + "\n").unwrap();
    let o = osprey(&["replay", "pos.toml", "--rows", "rows.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 alerts fired, 1 resolved"), "{}", stderr(&o));
    let alerts = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&alerts);
    let got: Vec<(String, String, u64, String, Option<String>)> = alerts
        .iter()
        .map(|a| {
            (
                a["labels"]["account"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
                a["sequence"].as_u64().unwrap(),
                a["starts_at"].as_str().unwrap().to_string(),
                a["ends_at"].as_str().map(str::to_string),
            )
        })
        .collect();
    let brief = |account: &str, status: &str, seq: u64, starts: &str, ends: Option<&str>| {
        (account.to_string(), status.to_string(), seq, starts.to_string(), ends.map(str::to_string))
    };
    // ACC-3 breaks the limit in the last window: it fires, and nothing after it resolves it.
    assert_eq!(
        got,
        [
            brief("ACC-1", "firing", 1, "2026-01-05T09:01:00Z", None),
            brief("ACC-1", "resolved", 2, "2026-01-05T09:01:00Z", Some("2026-01-05T09:03:00Z")),
            brief("ACC-3", "firing", 1, "2026-01-05T09:04:00Z", None),
        ]
    );
    let first = &alerts[0];
    assert_eq!(first["labels"]["alertname"], "position_burst");
    assert_eq!(first["labels"]["symbol"], "AAPL");
    assert_eq!(first["annotations"]["summary"], "ACC-1 net 12000 AAPL within a minute, past 10,000");
    assert_eq!(first["annotations"]["runbook_url"], "https://runbooks.example/position");
    assert_eq!((first["value"].as_i64(), first["threshold"].as_i64()), (Some(12000), Some(10000)));
    let records = first["evidence"]["records"].as_array().unwrap();
    assert_eq!(records.iter().map(|r| r["offset"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 3], "the offending lines");
    assert!(records[0]["source"].as_str().unwrap().ends_with("trades.jsonl"));
    assert_eq!(records[0]["record"]["price"], "101.2500", "exact decimals in evidence");
    assert_eq!(first["evidence"]["values"]["net"], 12000);
    // Evaluated rows: every candidate of every window.
    assert_eq!(rows_of(&d.join("rows.jsonl")).len(), 5);
    // The same input gives the same records, byte for byte.
    let o = osprey(&["replay", "pos.toml", "--output", "again.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(d.join("again.jsonl")).unwrap(), std::fs::read(d.join("alerts.jsonl")).unwrap());

    // People read the stream: a line per record, and the fatigue figures.
    let o = osprey(&["alerts", "tail", "--input", "alerts.jsonl"], d);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.lines().next().unwrap().starts_with("FIRING") && text.contains("account=ACC-1 symbol=AAPL") && text.contains("value 12000 (threshold 10000)"), "{text}");
    let o = osprey(&["alerts", "stats", "--input", "alerts.jsonl", "--json"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((stats["total"]["fired"].as_u64(), stats["total"]["resolved"].as_u64()), (Some(2), Some(1)));
    assert_eq!(stats["total"]["deduplicated"], 1, "ACC-1 held at 09:02 without a repeat");
    assert_eq!(stats["total"]["median_firing_seconds"], 120.0);

    // Where the invariant holds, nothing fires.
    std::fs::write(d.join("trades.jsonl"), [fill("09:00:05", "ACC-1", "AAPL", "buy", 600), fill("09:01:05", "ACC-1", "AAPL", "sell", 600)].join("\n")).unwrap();
    let o = osprey(&["replay", "pos.toml", "--output", "none.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.join("none.jsonl")).unwrap(), "");
}

#[test]
fn an_alert_storm_folds_into_one_alert_and_for_holds_an_alert_pending() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = POSITION_JOB.replace("file = \"alerts.jsonl\"", "file = \"alerts.jsonl\"\nstorm_limit = 2\nfor = \"1m\"");
    write_job(d, "pos.toml", &job);
    // Six accounts break the limit in 09:00 and 09:01; a seventh only in 09:00 (never held
    // for a minute, so it never fires).
    let mut lines = Vec::new();
    for minute in 0..2 {
        for acc in 1..=6 {
            lines.push(fill(&format!("09:0{minute}:{:02}", 10 + acc), &format!("ACC-{acc}"), "AAPL", "buy", 20000));
        }
    }
    lines.push(fill("09:00:30", "ACC-7", "AAPL", "buy", 20000));
    lines.sort();
    lines.push(fill("09:02:30", "ACC-1", "AAPL", "buy", 1));
    std::fs::write(d.join("trades.jsonl"), lines.join("\n") + "\n").unwrap();
    let o = osprey(&["replay", "pos.toml"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let alerts = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&alerts);
    let firing: Vec<&Value> = alerts.iter().filter(|a| a["status"] == "firing").collect();
    // 6 fire at 09:02 (held for 1m since 09:01): 2 shown, 4 folded into one storm alert.
    assert_eq!(firing.len(), 3, "{alerts:?}");
    let storm = firing.iter().find(|a| a["rule"] == "storm").expect("a storm alert");
    assert_eq!(storm["starts_at"], "2026-01-05T09:02:00Z");
    let resolved_storm = alerts.iter().find(|a| a["rule"] == "storm" && a["status"] == "resolved").expect("the storm resolves");
    assert_eq!(resolved_storm["evidence"]["folded"], 4);
    assert!(!alerts.iter().any(|a| a["labels"]["account"] == "ACC-7"), "ACC-7 never held for `for`");
    assert!(stderr(&o).contains("8 folded into 1 storm alert"), "{}", stderr(&o));
}

/// A real Alertmanager (Debian's prometheus-alertmanager) on a free loopback port.
struct Alertmanager {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am.yml"), "route:\n  receiver: devnull\nreceivers:\n  - name: devnull\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bin = ["prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("Alertmanager is not installed: ./scripts/test.sh installs prometheus-alertmanager");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if matches!(osprey::alert::dest::alertmanager::request("GET", &format!("{url}/-/ready"), None), Ok((200, _))) {
                return Alertmanager { child, url, _dir: dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("Alertmanager did not become ready: {}", std::fs::read_to_string(dir.path().join("am.log")).unwrap_or_default());
    }

    /// Alerts Alertmanager holds as active (not resolved), by their Osprey fingerprint.
    fn active(&self) -> Vec<Value> {
        let (status, body) = osprey::alert::dest::alertmanager::request("GET", &format!("{}/api/v2/alerts", self.url), None).unwrap();
        assert_eq!(status, 200, "{body}");
        let all: Vec<Value> = serde_json::from_str(&body).unwrap();
        all.into_iter().filter(|a| a["status"]["state"] != "resolved").collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn alerts_reach_a_real_alertmanager_and_later_show_as_resolved_and_an_unreachable_one_loses_nothing() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = POSITION_JOB.replace("file = \"alerts.jsonl\"", &format!("file = \"alerts.jsonl\"\nalertmanager = [\"{}\"]", am.url));
    write_job(d, "pos.toml", &job);
    // ACC-3 breaks the limit in the last window: it fires and stays firing.
    std::fs::write(d.join("trades.jsonl"), [fill("09:00:05", "ACC-1", "AAPL", "buy", 60), fill("09:01:10", "ACC-3", "TSLA", "sell", 20000)].join("\n")).unwrap();
    let o = osprey(&["replay", "pos.toml"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let fired = rows_of(&d.join("alerts.jsonl"));
    assert_eq!(fired.len(), 1);
    let fp = fired[0]["fingerprint"].as_str().unwrap().to_string();
    let active = am.active();
    let ours: Vec<&Value> = active.iter().filter(|a| a["annotations"]["osprey_fingerprint"] == fp.as_str()).collect();
    assert_eq!(ours.len(), 1, "{active:?}");
    assert_eq!(ours[0]["labels"]["account"], "ACC-3");
    assert_eq!(ours[0]["labels"]["alertname"], "position_burst");
    assert_eq!(ours[0]["labels"]["severity"], "critical");
    assert_eq!(ours[0]["startsAt"].as_str().unwrap().get(..19), Some("2026-01-05T09:02:00"));
    assert!(ours[0]["generatorURL"].as_str().unwrap().contains("position_burst"));

    // The same key, then a window where it holds: the resolved record reaches Alertmanager.
    std::fs::write(
        d.join("trades.jsonl"),
        [fill("09:01:10", "ACC-3", "TSLA", "sell", 20000), fill("09:02:10", "ACC-3", "TSLA", "buy", 5), fill("09:03:10", "ACC-1", "AAPL", "buy", 1)].join("\n"),
    )
    .unwrap();
    let o = osprey(&["replay", "pos.toml"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&fired);
    assert_valid_alerts(&records);
    assert_eq!(records.iter().map(|r| r["status"].as_str().unwrap()).collect::<Vec<_>>(), ["firing", "resolved"]);
    assert!(am.active().iter().all(|a| a["annotations"]["osprey_fingerprint"] != fp.as_str()), "resolved: {:?}", am.active());

    // Nobody listens: the replay still ends, the file has every record, and the loss is said.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let job = POSITION_JOB.replace("file = \"alerts.jsonl\"", &format!("file = \"alerts.jsonl\"\nalertmanager = [\"http://127.0.0.1:{closed}\"]"));
    write_job(d, "pos.toml", &job);
    let o = osprey(&["replay", "pos.toml"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows_of(&d.join("alerts.jsonl")).len(), 2);
    assert!(stderr(&o).contains("cannot deliver to Alertmanager"), "{}", stderr(&o));
    assert!(stderr(&o).contains("did not take 1 alert updates"), "{}", stderr(&o));
}

#[test]
fn explain_describe_and_completions_tell_what_a_job_will_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "pos.toml", POSITION_JOB);
    let o = osprey(&["explain", "pos.toml"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Aggregate: groupBy") && text.contains("Filter: events.event = Utf8(\"fill\")"), "{text}");
    assert!(text.contains("net                      Int64"), "{text}");
    let o = osprey(&["describe", "pos.toml"], d);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("price                    Decimal { precision: 18, scale: 4 }") || text.contains("price"), "{text}");
    assert!(text.contains("one alert per [account, symbol] where abs(net) > 10000"), "{text}");
    assert!(text.contains("alerts to:") && text.contains("alerts.jsonl"), "{text}");
    let o = osprey(&["completions", "bash"], d);
    assert!(String::from_utf8_lossy(&o.stdout).contains("replay"));
}

#[test]
fn messages_can_be_json_lines_and_filtered_by_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_job(d, "red.toml", RED_JOB);
    let good = "{\"ts\":\"2026-01-05T09:00:01Z\",\"service\":\"a\",\"status\":200,\"duration_ms\":1,\"bytes\":1}";
    std::fs::write(d.join("requests.jsonl"), format!("{good}\n{good}\nnot json\n")).unwrap();
    let o = osprey(&["replay", "red.toml", "--output", "out.jsonl", "--log-format", "json"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stderr(&o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    assert!(lines.iter().any(|l| l["level"] == "info" && l["message"].as_str().unwrap().contains("3 records in")));
    assert!(lines.iter().any(|l| l["level"] == "warn" && l["message"].as_str().unwrap().contains("1 record did not decode")));
    // warn hides the summary, never the loss.
    let o = osprey(&["replay", "red.toml", "--output", "out2.jsonl", "--log-level", "warn"], d);
    assert!(!stderr(&o).contains("records in") && stderr(&o).contains("did not decode"), "{}", stderr(&o));
    // An error is JSON too.
    let o = osprey(&["replay", "nope.toml", "--log-format", "json"], d);
    let err: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(err["level"], "error");
}

/// Replays a bundled Knight check over `lines` (its Kafka source replaced by a file); its alerts.
fn knight(check: &str, lines: &[String]) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("trading.jsonl"), lines.join("\n") + "\n").unwrap();
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("jobs/knight/{check}.toml"));
    let o = osprey(&["replay", job.to_str().unwrap(), "--input", "trading.jsonl", "--output", "alerts.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let alerts = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&alerts);
    (alerts, stderr(&o))
}

fn heartbeat(t: &str, service: &str, host: &str, build: &str) -> String {
    format!("{{\"ts\":\"2026-01-05T{t}Z\",\"event\":\"heartbeat\",\"service\":\"{service}\",\"host\":\"{host}\",\"build\":\"{build}\"}}")
}

fn cash(t: &str, batch: &str, account: &str, amount: &str) -> String {
    format!("{{\"ts\":\"2026-01-05T{t}Z\",\"event\":\"cash\",\"batch_id\":\"{batch}\",\"account\":\"{account}\",\"amount\":\"{amount}\"}}")
}

#[test]
fn knight_version_skew_fires_for_a_service_on_two_builds_and_not_for_one_on_a_single_build() {
    let mut lines = Vec::new();
    for s in (0..60).step_by(10) {
        for h in 1..=8 {
            // Router: host 8 still on the old build. Gateway: all on one build.
            let build = if h == 8 { "v2.13.9" } else { "v2.14.1" };
            lines.push(heartbeat(&format!("09:00:{s:02}"), "router", &format!("trade-{h}"), build));
            lines.push(heartbeat(&format!("09:00:{s:02}"), "gateway", &format!("gw-{h}"), "v5.0.0"));
        }
    }
    // The next minute: the router fixed.
    lines.push(heartbeat("09:01:10", "router", "trade-8", "v2.14.1"));
    lines.push(heartbeat("09:02:10", "gateway", "gw-1", "v5.0.0"));
    let (alerts, err) = knight("version_skew", &lines);
    let fired: Vec<&Value> = alerts.iter().filter(|a| a["status"] == "firing").collect();
    assert_eq!(fired.len(), 1, "{alerts:?}\n{err}");
    assert_eq!(fired[0]["labels"]["service"], "router");
    assert_eq!(fired[0]["value"], 2);
    assert_eq!(fired[0]["annotations"]["summary"], "router runs 2 builds at once (from v2.13.9 and v2.14.1) across 8 hosts");
    assert_eq!(fired[0]["starts_at"], "2026-01-05T09:01:00Z");
    assert!(alerts.iter().any(|a| a["status"] == "resolved" && a["labels"]["service"] == "router"), "resolved once fixed");
}

#[test]
fn knight_cash_conservation_sums_exact_decimals_that_floats_get_wrong() {
    let lines = vec![
        // 0.1 + 0.2 - 0.3: zero exactly, 5.55e-17 in binary floating point: must hold.
        cash("09:00:01", "B-1", "ACC-1", "0.1"),
        cash("09:00:02", "B-1", "ACC-2", "0.2"),
        cash("09:00:03", "B-1", "ACC-3", "-0.3"),
        // One ten-thousandth created from nothing: must fire.
        cash("09:00:10", "B-2", "ACC-1", "1000000.0001"),
        cash("09:00:11", "B-2", "ACC-2", "-1000000.0000"),
        // Balanced, in the next minute.
        cash("09:01:10", "B-3", "ACC-1", "12.5000"),
        cash("09:01:11", "B-3", "ACC-2", "-12.5"),
    ];
    let (alerts, err) = knight("cash_conservation", &lines);
    let fired: Vec<&Value> = alerts.iter().filter(|a| a["status"] == "firing").collect();
    assert_eq!(fired.len(), 1, "{alerts:?}\n{err}");
    assert_eq!(fired[0]["labels"]["batch_id"], "B-2");
    assert_eq!(fired[0]["value"], "0.0001", "the exact decimal, as a string");
    assert_eq!(fired[0]["threshold"], "0");
    let records = fired[0]["evidence"]["records"].as_array().unwrap();
    assert_eq!(records.iter().map(|r| r["offset"].as_i64().unwrap()).collect::<Vec<_>>(), vec![4, 5]);
}

/// A file of OTLP/JSON export requests (one a line, as the Collector's file exporter writes
/// them) replayed by the bundled RED job: one row per server span, a broken line a dead letter.
#[test]
fn otlp_json_lines_replay_through_the_bundled_red_job_and_a_broken_line_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let span = |svc: &str, route: &str, kind: u8, end_ms: u64, status: u16| {
        let end = (1_767_571_200_000 + end_ms) * 1_000_000;
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET {route}","kind":{kind},"startTimeUnixNano":"{}","endTimeUnixNano":"{end}","attributes":[{{"key":"http.route","value":{{"stringValue":"{route}"}}}},{{"key":"http.response.status_code","value":{{"intValue":"{status}"}}}}]}}]}}]}}]}}"#,
            end - 5_000_000
        )
    };
    let lines = [
        span("api", "/cart", 2, 1_000, 200),
        span("api", "/cart", 2, 2_000, 503),
        span("api", "/cart", 3, 2_500, 200), // a client span: not a request
        "{\"resourceSpans\": [ {\"scopeSpans\": ".to_string(),
        span("api", "/pay", 2, 61_000, 200),
    ];
    std::fs::write(d.join("spans.jsonl"), lines.join("\n") + "\n").unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/otel/red.toml")).unwrap();
    let text = text
        .replacen("kind = \"kafka\"\ntopic = \"otlp_spans\"", "kind = \"file\"\npath = \"spans.jsonl\"", 1)
        .replacen("format = \"otlp_proto\"", "format = \"otlp_json\"", 1);
    assert!(text.contains("path = \"spans.jsonl\"") && text.contains("otlp_json"), "the source was replaced");
    write_job(d, "red.toml", &text);
    let o = osprey(&["replay", "red.toml", "--output", "red.jsonl"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<(String, String, i64, i64)> = rows_of(&d.join("red.jsonl"))
        .iter()
        .map(|r| (r["window_start"].as_str().unwrap().to_string(), r["route"].as_str().unwrap().to_string(), r["requests"].as_i64().unwrap(), r["errors"].as_i64().unwrap()))
        .collect();
    assert_eq!(rows, vec![("2026-01-05T00:00:00Z".into(), "/cart".into(), 2, 1), ("2026-01-05T00:01:00Z".into(), "/pay".into(), 1, 0)]);
    let dead = std::fs::read_to_string(d.join("osprey-out/otel_red.dlq.jsonl")).unwrap();
    let dead: Vec<Value> = dead.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["offset"], 4, "the broken line, by its line number: {dead:?}");
    assert!(dead[0]["reason"].as_str().unwrap().contains("OTLP/JSON"), "{dead:?}");
}

/// What a job wrote (sorted lines: dead letters and late records of two files interleave by
/// the read order only).
fn lines_of(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn jobs_over_one_source_share_one_read_and_each_gets_what_it_would_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    generate(&d.join("in"), "a.jsonl", 20_000, &["--malformed", "0.01"]);
    generate(&d.join("in"), "b.jsonl", 30_000, &["--seed", "7", "--malformed", "0.01", "--late", "0.02"]);
    // Records only `red` cannot read (bytes is not an integer), which `p99` counts.
    let extra: String = (0..40)
        .map(|i| format!("{{\"ts\":\"2026-01-05T09:0{}:{:02}Z\",\"service\":\"checkout\",\"status\":200,\"duration_ms\":{i},\"bytes\":\"lots\"}}\n", 1 + i % 3, i))
        .collect();
    std::io::Write::write_all(&mut std::fs::OpenOptions::new().append(true).open(d.join("in/a.jsonl")).unwrap(), extra.as_bytes()).unwrap();
    let routes = "[dead_letter]\nkind = \"file\"\npath = \"dlq.jsonl\"\n[late]\nkind = \"file\"\npath = \"late.jsonl\"\n";
    let input = format!("path = \"{}/in/*.jsonl\"", d.display());
    let red = RED_JOB.replace("path = \"requests.jsonl\"", &input).replace("[event_time]", &format!("{routes}[event_time]"));
    let p99 = r#"name = "p99"
sql = """
SELECT window_start, service, count(*) AS n, approx_percentile_cont(duration_ms, 0.99) AS p99
FROM events GROUP BY window_start, service ORDER BY service
"""
[source]
kind = "file"
path = "IN"
[source.schema]
ts = "timestamp"
service = "string"
duration_ms = "float64"
[event_time]
column = "ts"
watermark_delay = "2s"
[window]
kind = "hopping"
size = "2m"
slide = "1m"
"#
    .replace("path = \"IN\"", &input)
    .replace("[event_time]", &format!("{routes}[event_time]"));
    // `status` as text: it reads on its own.
    let text = red.replace("name = \"red\"", "name = \"text\"").replace("status = \"int64\"", "status = \"string\"").replace("CASE WHEN status >= 500", "CASE WHEN status >= '500'");
    for (name, job) in [("red", &red), ("p99", &p99), ("text", &text)] {
        for side in ["alone", "shared"] {
            std::fs::create_dir_all(d.join(side).join(name)).unwrap();
            write_job(&d.join(side).join(name), "job.toml", job);
        }
        let o = osprey(&["replay", &format!("alone/{name}/job.toml"), "--output", &format!("alone/{name}/out.jsonl"), "--quiet", "--max-dead-letter-ratio", "1"], d);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = osprey(&["replay", "shared/red/job.toml", "shared/p99/job.toml", "shared/text/job.toml", "--output-dir", "shared", "--max-dead-letter-ratio", "1"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("red, p99: one read and one decode of their source"), "{err}");
    assert!(err.contains("text: reads its source on its own: it reads `status` as Utf8, job `red` as Int64"), "{err}");
    for name in ["red", "p99", "text"] {
        let alone = std::fs::read_to_string(d.join(format!("alone/{name}/out.jsonl"))).unwrap();
        let shared = std::fs::read_to_string(d.join(format!("shared/{name}.jsonl"))).unwrap();
        assert!(alone.lines().count() >= 15, "{name}: {alone}");
        assert_eq!(alone, shared, "job `{name}`: the shared read changed its rows");
        for route in ["dlq.jsonl", "late.jsonl"] {
            assert_eq!(lines_of(&d.join(format!("alone/{name}/{route}"))), lines_of(&d.join(format!("shared/{name}/{route}"))), "job `{name}`: {route}");
        }
    }
    let dead = |name: &str| lines_of(&d.join(format!("shared/{name}/dlq.jsonl"))).len();
    assert_eq!(dead("red"), dead("p99") + 40, "the 40 records only `red` cannot read are p99's rows, not its dead letters");
    let late: usize = ["red", "p99", "text"].iter().map(|n| lines_of(&d.join(format!("shared/{n}/late.jsonl"))).len()).sum();
    assert!(late > 0, "the late records were compared: {err}");
    // One file for several jobs is refused, and so are two jobs of one name.
    let o = osprey(&["replay", "shared/red/job.toml", "shared/p99/job.toml", "--output", "x.jsonl"], d);
    assert!(!o.status.success() && stderr(&o).contains("--output names one file"), "{}", stderr(&o));
    let o = osprey(&["replay", "shared/red/job.toml", "alone/red/job.toml", "--output-dir", "twice"], d);
    assert!(!o.status.success() && stderr(&o).contains("two jobs are named `red`"), "{}", stderr(&o));
}
