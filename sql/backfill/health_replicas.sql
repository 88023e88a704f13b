-- Standbys' replay lag, as time and as bytes (NULL without standbys).
SELECT
    (extract(EPOCH FROM max(r.replay_lag)) * 1000)::BIGINT AS lag_ms,
    max(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn))::BIGINT AS lag_bytes
FROM pg_stat_replication AS r
