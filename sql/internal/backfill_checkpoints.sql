-- Where each backfill step stands. Written in the same transaction as the batch it
-- describes, so a killed run resumes exactly after the last committed batch.
CREATE SCHEMA IF NOT EXISTS paytool;

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

-- Orders whose total the orders step has just made final, waiting for their payment row:
-- written in the orders batch's own transaction, consumed by the payments step, so a payment
-- is never missed, killed run or not, and the payments step reads only what waits here.
CREATE TABLE IF NOT EXISTS paytool.backfill_payment_queue (
    order_id TEXT PRIMARY KEY,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
