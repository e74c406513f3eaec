//! The bundled Knight checks (`jobs/knight/`) over trading data where they hold and where they
//! break, the generator's desk (every check holds) and its Knight scenario (they fire).

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use super::{assert_valid_alerts, osprey_ok, rows_of};

fn check_path(check: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("jobs/knight/{check}.toml")).to_string_lossy().into_owned()
}

/// Replays a bundled check over `lines` (its Kafka source replaced by a file): its alerts and stderr.
fn knight(check: &str, lines: &[String]) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("trading.jsonl"), lines.join("\n") + "\n").unwrap();
    let err = osprey_ok(&["replay", &check_path(check), "--input", "trading.jsonl", "--output", "alerts.jsonl"], d);
    let alerts = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&alerts);
    (alerts, err)
}

fn at(t: &str) -> String {
    format!("2026-01-05T{t}Z")
}

fn order(t: &str, id: &str, account: &str, side: &str, qty: &str) -> String {
    format!("{{\"ts\":\"{}\",\"event\":\"order\",\"order_id\":\"{id}\",\"account\":\"{account}\",\"symbol\":\"AAPL\",\"side\":\"{side}\",\"qty\":\"{qty}\",\"price\":\"187.2300\",\"host\":\"trade-1\",\"build\":\"v2\"}}", at(t))
}

fn fill(t: &str, id: &str, trade: &str, account: &str, side: &str, qty: &str, leaves: &str) -> String {
    format!(
        "{{\"ts\":\"{}\",\"event\":\"fill\",\"order_id\":\"{id}\",\"trade_id\":\"{trade}\",\"account\":\"{account}\",\"symbol\":\"AAPL\",\"side\":\"{side}\",\"qty\":\"{qty}\",\"price\":\"187.2300\",\"leaves_qty\":\"{leaves}\",\"host\":\"trade-2\",\"build\":\"v2\"}}",
        at(t)
    )
}

fn cancel(t: &str, id: &str) -> String {
    format!("{{\"ts\":\"{}\",\"event\":\"cancel\",\"order_id\":\"{id}\",\"account\":\"ACC-1\",\"symbol\":\"AAPL\",\"host\":\"trade-1\",\"build\":\"v2\"}}", at(t))
}

fn firing(alerts: &[Value]) -> Vec<&Value> {
    alerts.iter().filter(|a| a["status"] == "firing").collect()
}

#[test]
fn self_trade_fires_for_a_trade_on_both_sides_even_across_minutes_and_not_for_one_side() {
    let holds = vec![fill("09:00:10", "O-1", "T-1", "ACC-1", "buy", "100", "0"), fill("09:00:20", "O-2", "T-2", "ACC-2", "sell", "100", "0")];
    assert!(knight("self_trade", &holds).0.is_empty());
    // T-9's buy at 09:00:59.9 and its sell at 09:01:00.2: two minutes, one trade.
    let mut breaks = holds.clone();
    breaks.push(fill("09:00:59.900", "O-3", "T-9", "ACC-3", "buy", "250", "0"));
    breaks.push(fill("09:01:00.200", "O-4", "T-9", "ACC-4", "sell", "250", "0"));
    let (alerts, _) = knight("self_trade", &breaks);
    let f = firing(&alerts);
    assert_eq!(f.len(), 1, "{alerts:?}");
    assert_eq!(f[0]["labels"]["trade_id"], "T-9");
    assert_eq!(f[0]["evidence"]["values"]["bought"], "250.0000");
    assert!(f[0]["evidence"]["records"].as_array().is_some_and(|r| !r.is_empty()), "{}", f[0]);
}

#[test]
fn position_limit_is_cumulative_and_exact_and_resolves_when_the_position_comes_back() {
    // 6,000 + 4,000 = 10,000: at the limit, not past it.
    let holds = vec![fill("09:00:10", "O-1", "T-1", "ACC-1", "buy", "6000", "0"), fill("09:05:10", "O-2", "T-2", "ACC-1", "buy", "4000", "0")];
    assert!(knight("position_limit", &holds).0.is_empty());
    let mut breaks = holds.clone();
    breaks.push(fill("09:10:10", "O-3", "T-3", "ACC-1", "buy", "0.0001", "0"));
    breaks.push(fill("09:20:10", "O-4", "T-4", "ACC-1", "sell", "5000", "0"));
    breaks.push(fill("09:30:10", "O-5", "T-5", "ACC-2", "sell", "100", "0"));
    let (alerts, _) = knight("position_limit", &breaks);
    assert_eq!(alerts.len(), 2, "fires once, resolves once: {alerts:?}");
    assert_eq!(alerts[0]["value"], "10000.0001");
    assert_eq!(alerts[0]["labels"]["account"], "ACC-1");
    assert_eq!(alerts[0]["starts_at"], at("09:10:20"));
    assert_eq!((alerts[1]["status"].as_str(), alerts[1]["ends_at"].as_str()), (Some("resolved"), Some(at("09:20:20").as_str())));
}

#[test]
fn overfill_fires_when_fills_pass_the_order_and_not_when_they_meet_it() {
    let holds = vec![
        order("09:00:00", "O-1", "ACC-1", "buy", "500"),
        fill("09:00:01", "O-1", "T-1", "ACC-1", "buy", "200", "300"),
        fill("09:03:01", "O-1", "T-2", "ACC-1", "buy", "300", "0"),
    ];
    assert!(knight("overfill", &holds).0.is_empty());
    let mut breaks = holds.clone();
    breaks.push(fill("09:04:01", "O-1", "T-3", "ACC-1", "buy", "0.5", "0"));
    let (alerts, _) = knight("overfill", &breaks);
    let f = firing(&alerts);
    assert_eq!(f.len(), 1, "{alerts:?}");
    assert_eq!((f[0]["labels"]["order_id"].as_str(), f[0]["value"].as_str()), (Some("O-1"), Some("500.5000")));
}

#[test]
fn order_deadline_fires_at_the_deadline_and_resolves_when_the_order_closes_late() {
    let holds = vec![
        order("09:00:00", "O-1", "ACC-1", "buy", "100"),
        cancel("09:00:29", "O-1"),
        order("09:00:05", "O-2", "ACC-1", "buy", "100"),
        fill("09:00:35", "O-2", "T-1", "ACC-1", "buy", "100", "0"),
        order("09:01:00", "O-9", "ACC-1", "sell", "100"),
        fill("09:01:30", "O-9", "T-9", "ACC-1", "sell", "100", "0"),
        order("09:02:00", "O-3", "ACC-1", "buy", "100"),
    ];
    // The records come in delivery order, not event-time order; O-3 opens 20 s before the
    // input ends: its deadline has not passed.
    let mut shuffled = holds.clone();
    shuffled.swap(1, 2);
    let mut tail = shuffled.clone();
    tail.push(cancel("09:02:20", "O-77"));
    assert!(knight("order_deadline", &tail).0.is_empty(), "every order closed in time (30 s exactly counts)");
    // In delivery order: O-4 never closes, O-5 fills only in part, O-6 is cancelled late.
    let mut breaks = vec![tail[0].clone(), tail[1].clone()];
    breaks.push(order("09:00:10", "O-4", "ACC-1", "buy", "100"));
    breaks.push(order("09:00:12", "O-5", "ACC-1", "buy", "100"));
    breaks.push(fill("09:00:13", "O-5", "T-5", "ACC-1", "buy", "40", "60"));
    breaks.push(order("09:00:14", "O-6", "ACC-1", "buy", "100"));
    breaks.extend(tail[2..4].iter().cloned());
    breaks.push(cancel("09:00:50", "O-6"));
    breaks.extend(tail[4..].iter().cloned());
    let (alerts, err) = knight("order_deadline", &breaks);
    let summary: Vec<(String, String, String)> = alerts
        .iter()
        .map(|a| (a["labels"]["order_id"].as_str().unwrap().into(), a["status"].as_str().unwrap().into(), a["ends_at"].as_str().unwrap_or(a["starts_at"].as_str().unwrap()).into()))
        .collect();
    let expect = |id: &str, status: &str, t: &str| (id.to_string(), status.to_string(), at(t));
    assert_eq!(
        summary,
        vec![expect("O-4", "firing", "09:00:40"), expect("O-5", "firing", "09:00:42"), expect("O-6", "firing", "09:00:44"), expect("O-6", "resolved", "09:00:50")],
        "{err}"
    );
    let record = &alerts[0]["evidence"]["records"][0];
    assert_eq!(record["source"], "trading.jsonl");
    assert_eq!(record["offset"], 3, "the opening record's line");
    assert_eq!(alerts[0]["evidence"]["deadline"], at("09:00:40"));
}

#[test]
fn a_million_fills_whose_float_sum_drifts_sum_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 600,000 buys and 500,000 sells of 0.1, interleaved: exactly 10,000 net, at the limit.
    let mut text = String::with_capacity(90_000_000);
    let mut float = 0.0f64;
    let t0: i64 = 1_767_603_600_000;
    for i in 0..1_100_000i64 {
        let side = if i % 11 < 6 { "buy" } else { "sell" };
        float += if side == "buy" { 0.1 } else { -0.1 };
        writeln!(text, "{{\"ts\":{},\"event\":\"fill\",\"account\":\"ACC-1\",\"symbol\":\"AAPL\",\"side\":\"{side}\",\"qty\":\"0.1\"}}", t0 + i).unwrap();
    }
    assert!(float != 10_000.0, "the float sum drifts ({float}), or this test shows nothing");
    std::fs::write(d.join("fills.jsonl"), &text).unwrap();
    osprey_ok(&["replay", &check_path("position_limit"), "--input", "fills.jsonl", "--output", "a.jsonl", "--rows", "rows.jsonl", "--quiet"], d);
    assert_eq!(std::fs::read_to_string(d.join("a.jsonl")).unwrap(), "", "exactly at the limit: nothing fires");
    let rows = rows_of(&d.join("rows.jsonl"));
    assert_eq!(rows.last().unwrap()["net"], "10000.0000");
    // One ten-thousandth more is past it.
    writeln!(text, "{{\"ts\":{},\"event\":\"fill\",\"account\":\"ACC-1\",\"symbol\":\"AAPL\",\"side\":\"buy\",\"qty\":\"0.0001\"}}", t0 + 1_100_000).unwrap();
    std::fs::write(d.join("fills.jsonl"), &text).unwrap();
    osprey_ok(&["replay", &check_path("position_limit"), "--input", "fills.jsonl", "--output", "b.jsonl", "--quiet"], d);
    let alerts = rows_of(&d.join("b.jsonl"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["value"], "10000.0001");
}

#[test]
fn cumulative_state_is_bounded_by_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = std::fs::read_to_string(check_path("overfill")).unwrap().replace("ttl = \"6h\"", "ttl = \"2m\"");
    std::fs::write(d.join("overfill.toml"), job).unwrap();
    // 12,000 orders over two hours, each filled once: 100 an minute.
    let mut lines = Vec::new();
    for i in 0..12_000 {
        let s = i * 600;
        let t = format!("{:02}:{:02}:{:02}.{:03}", 9 + s / 3_600_000, s / 60_000 % 60, s / 1000 % 60, s % 1000);
        lines.push(order(&t, &format!("O-{i}"), "ACC-1", "buy", "100"));
        lines.push(fill(&t, &format!("O-{i}"), &format!("T-{i}"), "ACC-1", "buy", "100", "0"));
    }
    std::fs::write(d.join("t.jsonl"), lines.join("\n") + "\n").unwrap();
    let err = osprey_ok(&["replay", "overfill.toml", "--input", "t.jsonl", "--output", "a.jsonl"], d);
    let figure = |name: &str| -> u64 {
        let at = err.find(&format!("{name} ")).unwrap_or_else(|| panic!("no `{name}` in {err}"));
        err[at + name.len() + 1..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert!(figure("peak groups") <= 2 * 100 + 20, "{err}");
    assert!(figure("groups dropped after ttl") >= 11_000, "{err}");
}

#[test]
fn the_desk_holds_every_check_and_the_knight_scenario_breaks_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    osprey_ok(&["generate", "--stream", "trading-events", "--events", "60000", "--output", "normal.jsonl"], d);
    osprey_ok(&["generate", "--stream", "trading-events", "--events", "60000", "--knight-at", "30s", "--output", "knight.jsonl"], d);
    for check in ["self_trade", "position_limit", "overfill", "order_deadline", "version_skew", "cash_conservation"] {
        osprey_ok(&["replay", &check_path(check), "--input", "normal.jsonl", "--output", &format!("{check}.normal.jsonl"), "--quiet"], d);
        assert_eq!(std::fs::read_to_string(d.join(format!("{check}.normal.jsonl"))).unwrap(), "", "{check} holds on the normal desk");
        osprey_ok(&["replay", &check_path(check), "--input", "knight.jsonl", "--output", &format!("{check}.knight.jsonl"), "--quiet"], d);
        let alerts = rows_of(&d.join(format!("{check}.knight.jsonl")));
        if check == "cash_conservation" {
            assert!(alerts.is_empty(), "settlements still balance");
        } else {
            assert!(!alerts.is_empty(), "{check} fires in the Knight scenario");
        }
        // Only what the old code did: trade-8's account, its build, its orders (past 1,000 a
        // minute, the rest fold into a storm alert).
        for a in firing(&alerts).into_iter().filter(|a| a["rule"] != "storm") {
            match check {
                "position_limit" => assert_eq!(a["labels"]["account"], "ACC-7"),
                "version_skew" => assert!(a["annotations"]["summary"].as_str().unwrap().contains("v2.13.9")),
                "overfill" | "order_deadline" => assert!(a["evidence"].to_string().contains("trade-8"), "{a}"),
                _ => {}
            }
        }
    }
}

/// A Knight check run on a file with checkpoints, killed with SIGKILL at several points and
/// restarted each time, raises exactly the alert transitions (same fingerprints, sequence
/// numbers, evidence) of one uninterrupted replay: the cumulative positions, the deadline
/// timers and the alert stage all come back from the checkpoint.
#[test]
fn knight_checks_killed_and_restarted_from_checkpoints_raise_the_alerts_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    osprey_ok(&["generate", "--stream", "trading-events", "--events", "150000", "--knight-at", "20s", "--output", "knight.jsonl"], d);
    for check in ["position_limit", "order_deadline"] {
        let text = std::fs::read_to_string(check_path(check)).unwrap();
        let text = text.replacen("kind = \"kafka\"\ntopic = \"trading-events\"", "kind = \"file\"\npath = \"knight.jsonl\"", 1);
        assert!(text.contains("path = \"knight.jsonl\""), "{check}: the file source replaced the topic");
        std::fs::write(d.join(format!("{check}.toml")), &text).unwrap();
        let rows = format!("{check}.once.rows.jsonl");
        osprey_ok(&["replay", &format!("{check}.toml"), "--output", &format!("{check}.once.jsonl"), "--rows", &rows, "--quiet"], d);
        let read = |f: &str| -> std::collections::BTreeSet<String> {
            std::fs::read_to_string(d.join(f)).unwrap_or_default().lines().map(String::from).collect()
        };
        let once = read(&format!("{check}.once.jsonl"));
        let once_rows = read(&rows);
        assert!(!once.is_empty(), "{check} fires in the Knight scenario");
        let mut seen = std::collections::BTreeSet::new();
        let mut seen_rows = std::collections::BTreeSet::new();
        let mut restored = 0;
        let newest = || -> u64 {
            std::fs::read_dir(d.join("state").join(check))
                .map(|it| it.filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("checkpoint-")?.strip_suffix(".bin")?.parse().ok()).max().unwrap_or(0))
                .unwrap_or(0)
        };
        // Each killed run first writes a checkpoint past the one it restored, so the runs
        // together get through the input, then dies at once or a little later.
        for (i, after) in [Some(0u64), Some(30), Some(0), Some(80), None].into_iter().enumerate() {
            let out = format!("{check}.{i}.jsonl");
            let log = std::fs::File::create(d.join(format!("{check}.{i}.log"))).unwrap();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_osprey"))
                .args(["run", &format!("{check}.toml"), "--state-dir", "state", "--checkpoint-interval", "20ms", "--output", &out, "--rows", &format!("{check}.{i}.rows.jsonl")])
                .current_dir(d)
                .stderr(log)
                .spawn()
                .unwrap();
            if let Some(after) = after {
                let before = newest();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while newest() <= before + 1 && child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                std::thread::sleep(std::time::Duration::from_millis(after));
                let _ = child.kill(); // SIGKILL
            }
            child.wait().unwrap();
            seen.extend(read(&out));
            seen_rows.extend(read(&format!("{check}.{i}.rows.jsonl")));
            restored += std::fs::read_to_string(d.join(format!("{check}.{i}.log"))).unwrap().contains("restored checkpoint") as usize;
        }
        assert!(restored >= 1, "{check}: a restart continued from a checkpoint");
        // Only the differences, so a failure shows what was lost or added.
        let differ = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| -> (Vec<String>, Vec<String>) {
            (b.difference(a).cloned().collect(), a.difference(b).cloned().collect())
        };
        let (missing, extra) = differ(&seen, &once);
        assert!(missing.is_empty() && extra.is_empty(), "{check}: the alert transitions of one uninterrupted run; missing {missing:#?}; extra {extra:#?}");
        let (missing, extra) = differ(&seen_rows, &once_rows);
        assert!(missing.is_empty() && extra.is_empty(), "{check}: the evaluated rows (running positions) of one uninterrupted run; missing {missing:#?}; extra {extra:#?}");
    }
}
