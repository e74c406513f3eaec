//! The baseline of `scripts/bench-replay.sh`: DataFusion's one-shot batch query over a JSON-lines
//! file, with an explicit window column, printing the rows and events per second.
//!
//! cargo run --release --example datafusion_batch -- FILE

use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::file_format::options::JsonReadOptions;
use datafusion::prelude::SessionContext;

#[tokio::main]
async fn main() -> datafusion::error::Result<()> {
    let file = std::env::args().nth(1).expect("usage: datafusion_batch FILE.jsonl");
    let events: u64 = std::fs::read(&file)?.iter().filter(|b| **b == b'\n').count() as u64;
    let started = Instant::now();
    let ctx = SessionContext::new();
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Utf8, true),
        Field::new("service", DataType::Utf8, true),
        Field::new("duration_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
    ]);
    let opts = JsonReadOptions::default().schema(&schema).file_extension(".jsonl");
    ctx.register_json("raw", &file, opts).await?;
    let sql = "SELECT date_bin(INTERVAL '1 minute', to_timestamp_millis(ts)) AS window_start, service, count(*) AS requests, \
               sum(bytes) AS bytes, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_ms \
               FROM raw GROUP BY 1, service";
    let rows: usize = ctx.sql(sql).await?.collect().await?.iter().map(|b| b.num_rows()).sum();
    let secs = started.elapsed().as_secs_f64();
    println!("datafusion_batch rows={rows} events={events} seconds={secs:.3} events_per_s={:.0}", events as f64 / secs);
    Ok(())
}
