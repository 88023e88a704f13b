-- Where each backfill step stands. Written in the same transaction as the batch it
-- describes, so a killed run resumes exactly after the last committed batch.

CREATE TABLE IF NOT EXISTS paytool.backfill_checkpoints (
    step TEXT PRIMARY KEY,
    last_id TEXT NOT NULL,
    scanned BIGINT NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0,
    batches BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
