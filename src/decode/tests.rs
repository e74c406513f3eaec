use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type, TimestampMillisecondType};

use super::*;
use crate::source::RawRecord;

fn job(schema: &str) -> Job {
    let text = format!(
        "name = \"t\"\nsql = \"SELECT * FROM events\"\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\n[source.schema]\n{schema}\n[event_time]\ncolumn = \"ts\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n"
    );
    crate::job::parse(Path::new("t.toml"), &text).unwrap()
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
    let names = |j: &Job| Decoder::new(j).schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
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
