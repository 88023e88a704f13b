-- Sessions queued behind a lock this session holds, counted just before a batch commits: those
-- it blocks directly and, through them, the ones behind (a second UPDATE of a row waits for the
-- first one's tuple lock, not for the batch). From pg_locks, which every role may read
-- (pg_stat_activity hides other roles' wait events); pg_blocking_pids runs only for the few
-- sessions that wait at all. paytool's own sessions are left out (a lease renewal waiting for
-- a worker's batch is no application queued behind it).
WITH RECURSIVE waiting AS MATERIALIZED (
    SELECT DISTINCT l.pid FROM pg_locks AS l
    WHERE NOT l.granted AND l.pid <> pg_backend_pid()
),
edges AS MATERIALIZED (
    SELECT w.pid, unnest(pg_blocking_pids(w.pid)) AS blocker FROM waiting AS w
),
behind (pid) AS (
    SELECT e.pid FROM edges AS e WHERE e.blocker = pg_backend_pid()
    UNION
    SELECT e.pid FROM edges AS e JOIN behind AS b ON e.blocker = b.pid
)
SELECT count(*) FROM behind AS b
JOIN pg_stat_activity AS a ON a.pid = b.pid
WHERE a.application_name IS DISTINCT FROM 'paytool';
