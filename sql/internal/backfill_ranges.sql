-- Cooperative workers (`backfill payments --workers N`): each step's pending keys, cut into
-- ranges that workers of any number of paytool processes claim one at a time. A generation
-- is one cut of one step; each range is its own checkpoint, written in the transaction of the
-- batch it describes. A claim is a lease that its process renews while it lives: a killed
-- worker's range is reclaimed once the lease has run out, and resumed after its last key.

CREATE TABLE IF NOT EXISTS paytool.backfill_generations (
    step TEXT NOT NULL,
    generation BIGINT NOT NULL,
    ranges INTEGER NOT NULL,
    total_rows BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (step, generation)
);

CREATE TABLE IF NOT EXISTS paytool.backfill_ranges (
    step TEXT NOT NULL,
    generation BIGINT NOT NULL,
    range_no INTEGER NOT NULL,
    -- The range is (lo, hi] in the key column's order; '' for lo: from the first key.
    lo TEXT NOT NULL,
    hi TEXT NOT NULL,
    rows_estimate BIGINT NOT NULL,
    last_id TEXT NOT NULL DEFAULT '',
    scanned BIGINT NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0,
    batches BIGINT NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    process TEXT,
    worker TEXT,
    lease_until TIMESTAMPTZ,
    done_at TIMESTAMPTZ,
    PRIMARY KEY (step, generation, range_no),
    FOREIGN KEY (step, generation) REFERENCES paytool.backfill_generations ON DELETE CASCADE
);
