use std::path::Path;

use super::*;

fn job(name: &str, source: &str, schema: &str) -> Job {
    let text = format!(
        "name = \"{name}\"\nsql = \"SELECT count(*) AS n FROM events\"\n[source]\n{source}\n[source.schema]\n{schema}\n[event_time]\ncolumn = \"ts\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n"
    );
    crate::job::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

const TOPIC: &str = "kind = \"kafka\"\ntopic = \"in\"";

#[test]
fn jobs_over_one_source_share_it_and_others_read_their_own() {
    let jobs = [
        job("a", TOPIC, "ts = \"timestamp\"\nservice = \"string\""),
        job("b", TOPIC, "ts = \"timestamp\"\nlatency_ms = \"float64\""),
        job("c", "kind = \"kafka\"\ntopic = \"other\"", "ts = \"timestamp\""),
        job("d", TOPIC, "ts = \"timestamp\"\nservice = \"string\"\nlatency_ms = \"float64\""),
    ];
    let (shares, alone) = plan(&jobs, |_| None);
    assert_eq!(shares, vec![Share { jobs: vec![0, 1, 3] }, Share { jobs: vec![2] }]);
    assert!(alone.is_empty());
}

#[test]
fn a_column_read_as_another_type_reads_alone_and_says_why() {
    let jobs = [
        job("a", TOPIC, "ts = \"timestamp\"\nstatus = \"int64\""),
        job("b", TOPIC, "ts = \"timestamp\"\nstatus = \"string\""),
        job("c", TOPIC, "ts = \"timestamp\"\nhttp = \"string\""),
        job("d", TOPIC, "ts = \"timestamp\"\n\"http.status\" = \"int64\""),
    ];
    let (shares, alone) = plan(&jobs, |_| None);
    assert_eq!(shares, vec![Share { jobs: vec![0, 2] }]);
    assert_eq!(alone.iter().map(|a| a.job).collect::<Vec<_>>(), vec![1, 3]);
    assert!(alone[0].reason.contains("`status` as Utf8, job `a` as Int64"), "{}", alone[0].reason);
    assert!(alone[1].reason.contains("one is a field of the other"), "{}", alone[1].reason);
}

#[test]
fn a_job_that_must_read_alone_does() {
    let jobs = [job("a", TOPIC, "ts = \"timestamp\""), job("b", TOPIC, "ts = \"timestamp\"")];
    let (shares, alone) = plan(&jobs, |j| (j.name == "a").then(|| "two stages".to_string()));
    assert_eq!(shares, vec![Share { jobs: vec![1] }]);
    assert_eq!(alone[0].job, 0);
}

#[test]
fn a_share_names_its_group_after_its_jobs_unless_they_name_one() {
    let a = job("a", TOPIC, "ts = \"timestamp\"");
    let b = job("b", TOPIC, "ts = \"timestamp\"");
    assert_eq!(group(&[&b, &a]), "osprey-a+b");
    let g = "kind = \"kafka\"\ntopic = \"in\"\ngroup = \"fleet\"";
    assert_eq!(group(&[&job("a", g, "ts = \"timestamp\""), &job("b", g, "ts = \"timestamp\"")]), "fleet");
}
