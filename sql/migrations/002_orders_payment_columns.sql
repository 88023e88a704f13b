-- Constant defaults are stored in the catalog since PostgreSQL 11: no table rewrite,
-- ACCESS EXCLUSIVE on orders for milliseconds.
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS amount_total_cents INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS currency VARCHAR(3) NOT NULL DEFAULT 'EUR',
    ADD COLUMN IF NOT EXISTS stripe_payment_intent_id VARCHAR,
    ADD COLUMN IF NOT EXISTS paid_at TIMESTAMP(3),
    ADD COLUMN IF NOT EXISTS receipt_url TEXT;
