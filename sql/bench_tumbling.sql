-- The benchmark query (scripts/bench-replay.sh, scripts/bench-kafka.sh, benches/replay.rs):
-- a tumbling count + sum + p99 per service.
SELECT window_start, window_end, service, count(*) AS requests, sum(bytes) AS bytes,
       approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_ms
FROM events GROUP BY window_start, window_end, service
