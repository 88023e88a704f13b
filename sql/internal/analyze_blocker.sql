-- The session an ANALYZE of the table $1 would queue behind, if any: one holding a lock on it
-- that conflicts with ANALYZE's SHARE UPDATE EXCLUSIVE. After a step rewrote a big table this is
-- mostly autovacuum, which the lock manager cancels once an ANALYZE has waited
-- deadlock_timeout for it: a second of the run lost, and the vacuum's work with it.
-- kind: 'autovacuum' for an autovacuum worker; 'hidden' for a session this role may not see
-- (autovacuum runs as the bootstrap superuser, and without pg_read_all_stats pg_stat_activity
-- hides it, as health_autovacuum.sql explains: an autovacuum, or another role's maintenance);
-- else 'session', described by its backend type, pid and query.
SELECT CASE
           WHEN a.backend_type = 'autovacuum worker' THEN 'autovacuum'
           WHEN a.backend_type IS NULL THEN 'hidden'
           ELSE 'session'
       END AS kind,
       a.backend_type || ' ' || l.pid || ' (' || left(coalesce(a.query, ''), 60) || ')' AS session
FROM pg_locks AS l
LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.relation = to_regclass($1)
  AND l.granted
  AND l.pid <> pg_backend_pid()
  AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                 'ExclusiveLock', 'AccessExclusiveLock')
ORDER BY a.backend_type IS NULL OR a.backend_type = 'autovacuum worker' DESC
LIMIT 1;
