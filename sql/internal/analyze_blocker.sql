-- The session an ANALYZE of the table $1 would queue behind, if any: one holding a lock on it
-- that conflicts with ANALYZE's SHARE UPDATE EXCLUSIVE. After a step rewrote a big table this is
-- mostly autovacuum, which the lock manager cancels once an ANALYZE has waited
-- deadlock_timeout for it: a second of the run lost, and the vacuum's work with it. Its kind is
-- 'autovacuum' for an autovacuum worker, and for a session hidden from this role (autovacuum
-- runs as the bootstrap superuser, and without pg_read_all_stats pg_stat_activity hides it, as
-- health_autovacuum.sql explains), else the session's backend type and query.
SELECT CASE
           WHEN a.backend_type IS NULL OR a.backend_type = 'autovacuum worker' THEN 'autovacuum'
           ELSE coalesce(a.backend_type, '') || ' ' || l.pid || ' (' || left(coalesce(a.query, ''), 60) || ')'
       END AS holder
FROM pg_locks AS l
LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.relation = to_regclass($1)
  AND l.granted
  AND l.pid <> pg_backend_pid()
  AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                 'ExclusiveLock', 'AccessExclusiveLock')
ORDER BY a.backend_type IS NULL OR a.backend_type = 'autovacuum worker' DESC
LIMIT 1;
