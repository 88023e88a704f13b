-- How operators steer running backfills from any machine: one row of settings every worker
-- reads between two batches, and one row per worker saying where it is.

CREATE TABLE IF NOT EXISTS paytool.backfill_control (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    paused BOOLEAN NOT NULL DEFAULT false,
    batch_size BIGINT CHECK (batch_size BETWEEN 1 AND 100000),
    pause_ms BIGINT CHECK (pause_ms BETWEEN 0 AND 3600000),
    target_batch_ms BIGINT CHECK (target_batch_ms BETWEEN 10 AND 10000),
    changed_by TEXT,
    changed_at TIMESTAMPTZ
);

INSERT INTO paytool.backfill_control (singleton) VALUES (true) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS paytool.backfill_workers (
    worker TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    position TEXT,
    rows_done BIGINT NOT NULL DEFAULT 0,
    rows_total BIGINT NOT NULL DEFAULT 0,
    rows_per_second DOUBLE PRECISION,
    held TEXT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The worker's backend: gone from pg_stat_activity, the worker is dead.
    pid INTEGER
);
