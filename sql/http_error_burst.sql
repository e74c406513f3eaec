-- Services burning errors: 5xx share above 5% over a 5-minute window, with enough traffic to mean it.
SELECT window_start, window_end, service,
       count(*) AS requests,
       sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors,
       round(avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0.0 END), 4) AS error_rate,
       round(max(duration_ms), 1) AS max_ms
FROM events
GROUP BY window_start, window_end, service
HAVING count(*) >= 50 AND avg(CASE WHEN status >= 500 THEN 1.0 ELSE 0.0 END) > 0.05
ORDER BY error_rate DESC, service
