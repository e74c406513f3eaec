//! Checkpoints written by an earlier version still restore (`tests/fixtures/checkpoints-v1`).

use super::{osprey, osprey_ok, stderr};

/// One job of each kind, and the input its checkpoint was written over.
const JOBS: &[(&str, &str, &str)] = &[
    ("query", "http_red", "http.jsonl"),
    ("slo", "api_availability", "http.jsonl"),
    ("anomaly", "http_anomaly", "http.jsonl"),
    ("invariant", "position_limit", "trading.jsonl"),
    ("deadline", "order_deadline", "trading.jsonl"),
];

#[test]
fn checkpoints_of_the_version_before_kinds_were_a_trait_restore_and_nothing_is_emitted_twice() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints-v1");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    osprey_ok(&["generate", "--stream", "http-requests", "--events", "4000", "--rate", "20", "--output", "http.jsonl"], d);
    osprey_ok(&["generate", "--stream", "trading-events", "--events", "4000", "--rate", "20", "--knight-at", "60s", "--output", "trading.jsonl"], d);
    for (file, job, _input) in JOBS {
        std::fs::copy(fixture.join(format!("{file}.toml")), d.join(format!("{file}.toml"))).unwrap();
        let state = d.join("state").join(job);
        std::fs::create_dir_all(&state).unwrap();
        for entry in std::fs::read_dir(fixture.join("state").join(job)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), state.join(entry.file_name())).unwrap();
        }
        let out = format!("{file}.out.jsonl");
        let log = osprey_ok(&["run", &format!("{file}.toml"), "--state-dir", "state", "--output", &out], d);
        assert!(log.contains("restored checkpoint"), "{file}: the old checkpoint restores\n{log}");
        // The checkpoint was written at the end of the same input: everything is in it already.
        let written = std::fs::read_to_string(d.join(&out)).unwrap_or_default();
        assert!(written.is_empty(), "{file}: a restored run emits nothing that the first run emitted\n{written}");
    }
    // The same checkpoint does not fit a changed job: the check that would refuse it is live.
    let changed = std::fs::read_to_string(d.join("slo.toml")).unwrap().replace("objective = 0.995", "objective = 0.99");
    std::fs::write(d.join("slo_changed.toml"), changed).unwrap();
    let o = osprey(&["run", "slo_changed.toml", "--state-dir", "state", "--output", "changed.jsonl"], d);
    assert!(!o.status.success() && stderr(&o).contains("does not fit"), "a changed job refuses the old state\n{}", stderr(&o));
}

/// A file job restarted from its checkpoint reads the file again from its start, skipping to
/// the checkpoint's position. A checkpoint taken while it skips (here every millisecond) is at
/// that position, not at the skipped chunk's end: a restart from one set back counted the
/// records between twice (the engine asserts it, so the run fails if it happens).
#[test]
fn a_file_job_restarted_checkpoints_nothing_before_its_restored_position() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    osprey_ok(&["generate", "--stream", "trading-events", "--events", "20000", "--rate", "50", "--knight-at", "60s", "--output", "trading.jsonl"], d);
    let job = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/knight/position_limit.toml")).unwrap();
    let job = job.replacen("kind = \"kafka\"\ntopic = \"trading-events\"", "kind = \"file\"\npath = \"trading.jsonl\"", 1);
    std::fs::write(d.join("position_limit.toml"), job).unwrap();
    osprey_ok(&["run", "position_limit.toml", "--state-dir", "state", "--output", "first.jsonl"], d);
    let first = std::fs::read_to_string(d.join("first.jsonl")).unwrap();
    assert!(!first.is_empty(), "the Knight positions fire");
    let log = osprey_ok(&["run", "position_limit.toml", "--state-dir", "state", "--checkpoint-interval", "1ms", "--output", "again.jsonl"], d);
    assert!(log.contains("restored checkpoint"), "{log}");
    let again = std::fs::read_to_string(d.join("again.jsonl")).unwrap_or_default();
    assert!(again.is_empty(), "the restored run emits nothing again\n{again}");
}
