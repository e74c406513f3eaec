"""The http_red query (1-minute tumbling RED per service) over a JSON-lines file, in DuckDB or
DataFusion, for scripts/bench-replay.sh; or (`duckdb-basic`) a count/sum/min/max per service and
minute, with no percentile. Prints `engine=... rows=... seconds=... events_per_s=...`.

    python red_query.py duckdb|duckdb-basic|datafusion FILE EVENTS
"""
import sys
import time

engine, path, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
DUCKDB = {
    "duckdb-basic": """count(*) AS requests, sum(duration_ms) AS total_ms,
               min(duration_ms) AS min_ms, max(duration_ms) AS max_ms""",
    "duckdb": """count(*) AS requests,
               sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors,
               round(avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0.0 END), 4) AS error_rate,
               round(approx_quantile(duration_ms, 0.5), 1) AS p50_ms,
               round(approx_quantile(duration_ms, 0.99), 1) AS p99_ms""",
}
if engine in DUCKDB:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    rows = con.execute(
        f"""
        SELECT time_bucket(INTERVAL '1 minute', ts) AS window_start, service,
               {DUCKDB[engine]}
        FROM read_json('{path}', format = 'newline_delimited',
             columns = {{ts: 'TIMESTAMPTZ', service: 'VARCHAR', endpoint: 'VARCHAR', status: 'BIGINT',
                        duration_ms: 'DOUBLE', host: 'VARCHAR', build: 'VARCHAR', trace_id: 'VARCHAR'}})
        GROUP BY ALL
        """
    ).fetchall()
elif engine == "datafusion":
    import pyarrow as pa
    from datafusion import SessionConfig, SessionContext

    ctx = SessionContext(SessionConfig().with_target_partitions(2))
    schema = pa.schema(
        [("ts", pa.string()), ("service", pa.string()), ("endpoint", pa.string()), ("status", pa.int64()),
         ("duration_ms", pa.float64()), ("host", pa.string()), ("build", pa.string()), ("trace_id", pa.string())]
    )
    ctx.register_json("raw", path, schema=schema, file_extension=".jsonl")
    rows = ctx.sql(
        """
        SELECT date_bin(INTERVAL '1 minute', to_timestamp(ts)) AS window_start, service,
               count(*) AS requests,
               sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors,
               round(avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0.0 END), 4) AS error_rate,
               round(approx_percentile_cont(duration_ms, 0.5), 1) AS p50_ms,
               round(approx_percentile_cont(duration_ms, 0.99), 1) AS p99_ms
        FROM raw GROUP BY 1, 2
        """
    ).collect()
    rows = [r for b in rows for r in range(b.num_rows)]
else:
    sys.exit(f"unknown engine {engine}")
seconds = time.perf_counter() - start
print(f"engine={engine} rows={len(rows)} seconds={seconds:.3f} events_per_s={events / seconds:.0f}")
