-- A vacuum running on the table $1. With pg_read_all_stats (pg_monitor): an autovacuum worker
-- in pg_stat_progress_vacuum, as before (auto-analyze, short, does not count). Without it,
-- another role's sessions are hidden (autovacuum runs as the bootstrap superuser), so the
-- vacuum's SHARE UPDATE EXCLUSIVE lock on the table, read from pg_locks (which every role may
-- read), held by a session whose kind is hidden counts too: it is an autovacuum, or another
-- role's auto-analyze, ANALYZE or index build: maintenance all the same. paytool's own sessions
-- are visible to it and never count.
SELECT EXISTS (
    SELECT 1 FROM pg_stat_progress_vacuum AS v
    JOIN pg_stat_activity AS a ON a.pid = v.pid
    WHERE v.relid = to_regclass($1) AND a.backend_type = 'autovacuum worker'
) OR EXISTS (
    SELECT 1
    FROM pg_locks AS l
    LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.relation = to_regclass($1)
      AND l.mode = 'ShareUpdateExclusiveLock'
      AND l.granted
      AND l.pid <> pg_backend_pid()
      AND a.backend_type IS NULL
) AS running
