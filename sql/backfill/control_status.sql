-- What `paytool backfill status` shows: the settings, and the workers seen in the last minute.
SELECT w.worker, w.step, w.position, w.rows_done, w.rows_total, w.rows_per_second, w.held,
       extract(EPOCH FROM now() - w.heartbeat_at)::BIGINT AS seconds_since_heartbeat,
       w.started_at::TEXT AS started_at
FROM paytool.backfill_workers AS w
WHERE w.heartbeat_at > now() - interval '1 minute'
ORDER BY w.worker
