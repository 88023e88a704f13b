-- A vacuum running on the table $1: the SHARE UPDATE EXCLUSIVE lock an autovacuum worker
-- holds, read from pg_locks, which every role may read. A role without pg_read_all_stats sees
-- no backend_type for another role's sessions (autovacuum runs as the bootstrap superuser):
-- such a hidden session holding that lock is taken for a vacuum too (it is one, or another
-- role's ANALYZE or index build: maintenance all the same). paytool's own sessions are visible
-- to it and never count.
SELECT EXISTS (
    SELECT 1
    FROM pg_locks AS l
    LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.relation = to_regclass($1)
      AND l.mode = 'ShareUpdateExclusiveLock'
      AND l.granted
      AND l.pid <> pg_backend_pid()
      AND (a.backend_type = 'autovacuum worker' OR a.backend_type IS NULL)
) AS running
