-- The database's health between two backfill batches, in one cheap query. NULL where this role
-- may not see it (pg_stat_replication's positions and the archive status need pg_monitor).
-- $1: the table the step writes. Sessions waiting behind a batch are counted by the batch
-- itself (waiting_for_this_batch.sql): between two batches paytool holds no lock.
SELECT
    (SELECT (extract(EPOCH FROM max(r.replay_lag)) * 1000)::BIGINT FROM pg_stat_replication AS r)
        AS replica_lag_ms,
    (SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn))::BIGINT FROM pg_stat_replication AS r)
        AS replica_lag_bytes,
    CASE
        WHEN pg_has_role('pg_monitor', 'MEMBER') AND current_setting('archive_mode') <> 'off'
            THEN (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')
    END AS archive_backlog,
    EXISTS (
        SELECT 1 FROM pg_stat_progress_vacuum AS v
        JOIN pg_stat_activity AS a ON a.pid = v.pid
        WHERE v.relid = to_regclass($1) AND a.backend_type = 'autovacuum worker'
    ) AS autovacuum
