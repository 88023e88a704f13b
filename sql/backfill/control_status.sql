-- What `paytool backfill status` shows: the workers heard from in the last ten minutes, each
-- with its state. A worker beats between batches, every half second while held or paused,
-- and leaves when done; one still listed is
--   running: its session is open and it beat in the last minute;
--   gone:    its session is closed (killed, crashed, its connection cut) — it will not finish
--            its range by itself: a cooperative peer takes it over once its lease runs out;
--   silent:  its session is open but it has not beaten for a minute (hung, or behind a
--            pooler that keeps the server session open after the client left).
-- `pid` is read through to_jsonb: a table made by an earlier paytool has no such column.
SELECT w.worker, w.step, w.position, w.rows_done, w.rows_total, w.rows_per_second, w.held,
       extract(EPOCH FROM now() - w.heartbeat_at)::BIGINT AS seconds_since_heartbeat,
       w.started_at::TEXT AS started_at,
       CASE
           WHEN (to_jsonb(w) ->> 'pid') IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a
                                WHERE a.pid = (to_jsonb(w) ->> 'pid')::INTEGER)
               THEN 'gone'
           WHEN w.heartbeat_at < now() - interval '1 minute' THEN 'silent'
           ELSE 'running'
       END AS state
FROM paytool.backfill_workers AS w
WHERE w.heartbeat_at > now() - interval '10 minutes'
ORDER BY w.worker
