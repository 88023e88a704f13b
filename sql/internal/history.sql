-- paytool's own bookkeeping, created only once the preflight has passed.
-- One row per migration step; `state` is 'running' while a non-transactional step is under
-- way, so an interrupted step is visible (sqlx's migrator records only successes).

CREATE TABLE IF NOT EXISTS paytool.schema_history (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'applied')),
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    execution_ms BIGINT,
    applied_by TEXT NOT NULL DEFAULT current_user
);
