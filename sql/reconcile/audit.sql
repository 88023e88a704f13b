-- The trail of every repair reconcile --apply made: what, on which row, before and after.

CREATE TABLE IF NOT EXISTS paytool.reconcile_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL,
    finding TEXT NOT NULL,
    action TEXT NOT NULL,
    order_id TEXT,
    payment_intent_id TEXT,
    before JSONB,
    after JSONB,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
