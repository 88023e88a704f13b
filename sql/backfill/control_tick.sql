-- Between two batches: say where this worker is (and by which session, for `backfill status`
-- to tell a live worker from a dead one), and read what the operators want.
-- $1 worker, $2 step, $3 position, $4 rows done, $5 rows total, $6 rows/s, $7 held (or NULL).
WITH beat AS (
    INSERT INTO paytool.backfill_workers AS w
        (worker, step, position, rows_done, rows_total, rows_per_second, held, heartbeat_at, pid)
    VALUES ($1, $2, $3, $4, $5, $6, $7, now(), pg_backend_pid())
    ON CONFLICT (worker) DO UPDATE
    SET step = excluded.step, position = excluded.position, rows_done = excluded.rows_done,
        rows_total = excluded.rows_total, rows_per_second = excluded.rows_per_second,
        held = excluded.held, heartbeat_at = now(), pid = excluded.pid
)
SELECT paused, batch_size, pause_ms, target_batch_ms, changed_by, changed_at::TEXT
FROM paytool.backfill_control
