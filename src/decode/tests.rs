use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type, TimestampMillisecondType};

use super::*;
use crate::source::RawRecord;

fn job(schema: &str) -> Dataflow {
    let text = format!(
        "name = \"t\"\nsql = \"SELECT * FROM events\"\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\n[source.schema]\n{schema}\n[event_time]\ncolumn = \"ts\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n"
    );
    crate::job::parse(Path::new("t.toml"), &text).unwrap().dataflow()
}

fn lines(text: &str) -> Payload {
    let mut records = Vec::new();
    let mut start = 0;
    for (i, line) in text.split('\n').enumerate() {
        if !line.trim().is_empty() {
            records.push(RawRecord { start: start as u32, end: (start + line.len()) as u32, offset: i as i64 + 1 });
        }
        start += line.len() + 1;
    }
    Payload::Json { data: text.as_bytes().to_vec(), records, meta: None }
}

#[test]
fn good_records_decode_in_bulk_with_every_type() {
    let j = job("ts = \"timestamp\"\nn = \"int64\"\nprice = \"decimal(18,4)\"\ns = \"string\"\nok = \"bool\"\n\"http.status\" = \"int32\"");
    let d = Decoder::new(&j).decode(
        0,
        &lines(concat!(
            "{\"ts\":\"2026-01-05T09:00:00Z\",\"n\":1,\"price\":\"12.5\",\"s\":\"a\",\"ok\":true,\"http\":{\"status\":200}}\n",
            "{\"ts\":1767603600001,\"n\":2,\"price\":3.25,\"s\":7,\"http\":null}\n",
            "{\"ts\":\"1767603600002\",\"price\":\"1e2\",\"extra\":\"ignored\"}",
        )),
    );
    assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
    let b = &d.batch;
    assert_eq!(b.num_rows(), 3);
    let ts = b.column(0).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.values().to_vec(), vec![1_767_603_600_000, 1_767_603_600_001, 1_767_603_600_002]);
    assert_eq!(b.column(2).as_primitive::<Decimal128Type>().values().to_vec(), vec![125_000, 32_500, 1_000_000]);
    assert_eq!(b.column(3).as_string::<i32>().value(1), "7", "numbers coerce to declared strings");
    assert!(b.column(1).is_null(2), "missing fields are null");
    assert_eq!(b.schema().field(5).name(), "http.status");
    assert_eq!(b.column(5).as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(0), 200);
    assert!(b.column(5).is_null(1), "a null parent makes a null leaf");
    assert_eq!(d.offsets, vec![1, 2, 3]);
}

#[test]
fn bad_records_become_dead_letters_with_reason_position_and_bytes() {
    let j = job("ts = \"timestamp\"\nn = \"int64\"\nprice = \"decimal(18,2)\"");
    let text = concat!(
        "{\"ts\":\"2026-01-05T09:00:00Z\",\"n\":1}\n",      // 1 good
        "{\"ts\":\"2026-01-05T09:00:01Z\",\"n\":\n",         // 2 malformed
        "{\"ts\":\"2026-01-05T09:00:02Z\",\"n\":\"abc\"}\n", // 3 wrong type
        "{\"n\":4}\n",                                       // 4 no event time
        "{\"ts\":\"soon\",\"n\":5}\n",                       // 5 bad time
        "{\"ts\":\"2026-01-05T09:00:05Z\",\"price\":\"1.234\"}\n", // 6 digits lost
        "[1,2]\n",                                           // 7 not an object
        "{\"ts\":\"2026-01-05T09:00:07Z\",\"n\":7}\n",       // 8 good
        "{\"ts\":\"2026-01-05T09:00:08Z\",\"n\":8",          // 9 truncated last line
    );
    let d = Decoder::new(&j).decode(3, &lines(text));
    assert_eq!(d.batch.num_rows(), 2);
    assert_eq!(d.batch.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 7]);
    assert_eq!(d.offsets, vec![1, 8]);
    let dead: Vec<(i64, &str)> = d.dead_letters.iter().map(|d| (d.offset, d.reason.as_str())).collect();
    assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6, 7, 9]);
    let reason = |o: i64| dead.iter().find(|d| d.0 == o).unwrap().1.to_string();
    assert!(reason(3).contains("abc"), "{}", reason(3));
    assert!(reason(4).contains("missing event time"), "{}", reason(4));
    assert!(reason(5).contains("soon"), "{}", reason(5));
    assert!(reason(6).contains("more than 2 decimal places"), "{}", reason(6));
    assert!(reason(9).to_lowercase().contains("truncated") || reason(9).contains("end"), "{}", reason(9));
    for d in &d.dead_letters {
        assert_eq!(d.partition, 3);
        let original = text.split('\n').nth(d.offset as usize - 1).unwrap();
        assert_eq!(d.raw, original.as_bytes(), "the original bytes are kept");
    }
}

#[test]
fn position_columns_are_always_decoded_and_the_others_when_the_sql_names_them() {
    let mut j = job("ts = \"timestamp\"");
    let names = |j: &Dataflow| Decoder::new(j).schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
    assert_eq!(names(&j), vec!["ts", "_partition", "_offset"]);
    j.sql.text = "SELECT _trace_id, _offset FROM events".into();
    assert_eq!(names(&j), vec!["ts", "_partition", "_offset", "_trace_id"]);
    let d = Decoder::new(&j).decode(2, &lines("{\"ts\":1}\n\n{\"ts\":2}"));
    assert_eq!(d.batch.column(1).as_primitive::<datafusion::arrow::datatypes::Int32Type>().values().to_vec(), vec![2, 2]);
    assert_eq!(d.batch.column(2).as_primitive::<Int64Type>().values().to_vec(), vec![1, 3]);
    assert!(d.batch.column(3).is_null(0), "no traceparent outside Kafka");
}

/// Decoding a dirty chunk together gives what decoding each record on its own gives: the
/// tolerant pass (conflicts read as nulls, null rows checked again) changes no value and
/// misses no bad record, whichever mode the decoder is in when the chunk arrives.
#[test]
fn dirty_chunks_decode_as_their_records_do_one_by_one() {
    let j = job("ts = \"timestamp\"\nn = \"int64\"\nx = \"float64\"\ns = \"string\"\nok = \"bool\"\n\"h.code\" = \"int32\"\nprice = \"decimal(10,2)\"");
    let values = [
        ("n", &["1", "null", "\"7\"", "\"x200\"", "2.5", "{}", "true"][..]),
        ("x", &["1.5", "null", "\"2\"", "\"slow\"", "[1]", "3"][..]),
        ("s", &["\"a\"", "5", "null", "{\"a\":1}", "false"][..]),
        ("ok", &["true", "null", "\"yes\"", "1"][..]),
        ("h", &["{\"code\":200}", "null", "{\"code\":\"x\"}", "7", "{}"][..]),
        ("price", &["\"1.25\"", "3", "\"1.234\"", "null", "{}"][..]),
    ];
    let mut state = 7u64;
    let mut next = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut text = String::new();
    for i in 0..600 {
        let mut fields = vec![format!("\"ts\":{}", 1_767_603_600_000i64 + i)];
        for (name, choices) in &values {
            match next(4 * choices.len()) {
                0 => {} // absent
                k if k <= choices.len() => fields.push(format!("\"{name}\":{}", choices[k - 1])),
                _ => fields.push(format!("\"{name}\":{}", choices[0])),
            }
        }
        let line = format!("{{{}}}", fields.join(","));
        match next(40) {
            0 => text.push_str(&line[..line.len() / 2]),
            1 => text.push_str(&format!("{line}{line}")),
            _ => text.push_str(&line),
        }
        text.push('\n');
    }
    let decoder = Decoder::new(&j);
    let together = [decoder.decode(0, &lines(&text)), decoder.decode(0, &lines(&text))];
    let Payload::Json { data, records, .. } = lines(&text) else { unreachable!() };
    let alone = Decoder::new(&j);
    let mut rows = Vec::new();
    let mut dead = Vec::new();
    for r in &records {
        let d = alone.decode(0, &Payload::Json { data: data.clone(), records: vec![r.clone()], meta: None });
        dead.extend(d.dead_letters.into_iter().map(|d| (d.offset, d.reason)));
        if d.batch.num_rows() == 1 {
            rows.push(d.batch);
        }
    }
    let expected = concat_batches(&together[0].batch.schema(), &rows).unwrap();
    assert!(dead.len() > 100 && expected.num_rows() > 50, "the fixture mixes good and bad: {} bad", dead.len());
    for d in &together {
        assert_eq!(d.batch, expected);
        assert_eq!(d.dead_letters.iter().map(|d| (d.offset, d.reason.clone())).collect::<Vec<_>>(), dead);
    }
}

/// The one-pass decoder gives what arrow-json's tape gives, record for record, on strict JSON
/// and on everything it hands back (escapes, lenient commas, odd numbers, duplicates, nesting,
/// bad UTF-8): the same rows, values and dead letters.
#[test]
fn the_one_pass_decoder_agrees_with_the_tape_on_odd_json() {
    let j = job("ts = \"timestamp\"\nn = \"int64\"\nx = \"float64\"\ny = \"float32\"\ns = \"string\"\nok = \"bool\"\nprice = \"decimal(10,2)\"");
    let values = [
        ("n", &["1", "-0", "01", "1e3", "12-3", "\"7\"", "\"x200\"", "null", "true", "{}", "[1]", "2.5", " 4 "][..]),
        ("x", &["1.5", "-2.25e-3", "1E+2", "1.", ".5", "\"2\"", "null", "[1]", "1e999", "0.1000000000000000055511151231257827"][..]),
        ("y", &["1.5", "3.4028235e38", "1e40", "null", "\"1\""][..]),
        ("s", &["\"a\"", "\"\\/\\b\\f\\n\\r\\t\\\\\"", "\"\\u0041\\u00\"", "\"\\ud83d\"", "\"\\udc00x\"", "\"\\ud83d\\u0041\"", "\"\\uZZZZ\"", "\"\\ud83d\\ude00\\\"\"", "\"é日本\u{1F600}\"", "\"a\\\"b\"", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "5", "-1.50", "true", "false", "null", "{\"a\":1}", "\"tab\there\""][..]),
        ("ok", &["true", "false", "null", "\"yes\"", "1", "tru"][..]),
        ("price", &["\"1.25\"", "3", "\"1.234\"", "null", "1e1"][..]),
        ("extra", &["{\"deep\":[1,{\"a\":[]},\"xy\",-2.5e3,true,null]}", "{\"deep\":[\"x\\\"y\"]}", "[]", "\"ignored\"", "[1,2,]", "{\"a\" 1}", "nul", "\"\\q\""][..]),
    ];
    let shapes: &[fn(&str) -> String] = &[
        |body| format!("{{{body}}}"),
        |body| format!("  {{ {} }}  ", body.replace(',', " , ").replace(':', " : ")),
        |body| format!("{{{body},}}"),
        |body| format!("{{,{body}}}"),
        |body| format!("{{{}}}", body.replacen(',', " ", 1)),
        |body| format!("{{{body}}} x"),
        |body| format!("{{{body}}}{{}}"),
        |body| format!("[{{{body}}}]"),
        |body| format!("{{{body},\"n\":2}}"),
        |body| format!("{{{}}}", body.replace("\"ts\"", "\"\\u0074s\"")),
    ];
    let mut state = 11u64;
    let mut next = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut data = Vec::new();
    let mut records = Vec::new();
    for i in 0..3000i64 {
        let ts = match next(12) {
            0 => "\"2026-01-05T09:00:00.5Z\"".to_string(),
            1 => "\"2026-01-05T10:00:00+01:00\"".to_string(),
            2 => "\"soon\"".to_string(),
            3 => "null".to_string(),
            4 => "\"2026-02-30T00:00:00Z\"".to_string(),
            5 => "99999999999999999999".to_string(),
            _ => (1_767_603_600_000i64 + i).to_string(),
        };
        let mut fields = if next(30) == 0 { vec![] } else { vec![format!("\"ts\":{ts}")] };
        for (name, choices) in &values {
            match next(10 * choices.len()) {
                0 => {}
                k if k <= choices.len() => fields.push(format!("\"{name}\":{}", choices[k - 1])),
                _ => fields.push(format!("\"{name}\":{}", choices[0])),
            }
        }
        let body = fields.join(",");
        let mut line = match next(3) {
            0 => shapes[next(shapes.len())](&body),
            _ => shapes[0](&body),
        }
        .into_bytes();
        match next(60) {
            0 => line.truncate(line.len() / 2),
            1 => line.insert(line.len() / 2, 0xff),
            _ => {}
        }
        let start = data.len() as u32;
        data.extend_from_slice(&line);
        records.push(RawRecord { start, end: data.len() as u32, offset: i + 1 });
        data.push(b'\n');
    }
    let payload = Payload::Json { data, records, meta: None };
    let one_pass = Decoder::new(&j);
    let Some(flat) = &one_pass.flat else { panic!("a flat schema takes the one-pass decoder") };
    let Payload::Json { data, records, .. } = &payload else { unreachable!() };
    let taken = flat.decode(data, records);
    assert!(taken.records.len() > 1000 && taken.rest.len() > 500, "both paths are exercised: {} one-pass, {} tape", taken.records.len(), taken.rest.len());
    let mut tape = Decoder::new(&j);
    tape.flat = None;
    // Twice each: the second chunk meets a decoder already in tolerant mode.
    for _ in 0..2 {
        let (a, b) = (one_pass.decode(0, &payload), tape.decode(0, &payload));
        assert_eq!(a.batch, b.batch);
        assert_eq!(a.offsets, b.offsets);
        assert_eq!(a.dead_letters, b.dead_letters);
        assert!(a.dead_letters.len() > 300 && a.batch.num_rows() > 1000, "{} dead, {} rows", a.dead_letters.len(), a.batch.num_rows());
    }
}

#[test]
fn clean_records_take_the_one_pass_decoder() {
    let j = job("ts = \"timestamp\"\nservice = \"string\"\nstatus = \"int64\"\nduration_ms = \"float64\"");
    let Payload::Json { data, records, .. } = lines(concat!(
        "{\"ts\":\"2026-01-05T09:00:00.020Z\",\"service\":\"search\",\"method\":\"GET\",\"status\":200,\"duration_ms\":9.091,\"tags\":[\"a\",{\"b\":null}]}\n",
        "{ \"service\" : \"cart\" , \"ts\" : 1767603600000 , \"status\" : \"x200\" }\n",
        "{\"ts\":\"2026-01-05T09:00:00Z\",\"service\":\"a\\\"b\\u00e9\\ud83d\\ude00\\n\"}\n",
        "{\"ts\":\"2026-01-05T09:00:00Z\",\"s\\u0065rvice\":\"x\"}\n",
    )) else {
        unreachable!()
    };
    let rows = Decoder::new(&j).flat.as_ref().unwrap().decode(&data, &records);
    assert_eq!(rows.records, vec![0, 2]);
    assert_eq!(rows.rest, vec![1, 3], "a value that does not convert and an escaped key go to the tape");
    assert_eq!(rows.columns[0].as_primitive::<TimestampMillisecondType>().value(0), 1_767_603_600_020);
    assert_eq!(rows.columns[2].as_primitive::<Int64Type>().value(0), 200);
    assert_eq!(rows.columns[1].as_string::<i32>().value(1), "a\"b\u{e9}\u{1F600}\n", "escapes decoded");
}
