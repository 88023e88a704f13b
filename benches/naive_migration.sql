-- What the original design's scripts/migrate_payment_system.sql does: the same schema change
-- as paytool migrate, in ONE transaction, with plain (blocking) DDL. Kept here only as the
-- baseline of benches/migrate.rs; never run it on a live database.
BEGIN;
ALTER TABLE users ADD COLUMN stripe_customer_id VARCHAR;
ALTER TABLE orders
    ADD COLUMN amount_total_cents INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN currency VARCHAR(3) NOT NULL DEFAULT 'EUR',
    ADD COLUMN stripe_payment_intent_id VARCHAR UNIQUE,
    ADD COLUMN paid_at TIMESTAMP(3),
    ADD COLUMN receipt_url TEXT;
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
ALTER TABLE orders ALTER COLUMN status TYPE VARCHAR USING status::text;
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'PENDING';
CREATE INDEX orders_user_id_created_at_idx ON orders (user_id, created_at DESC);
CREATE INDEX orders_stripe_payment_intent_id_idx ON orders (stripe_payment_intent_id);
ALTER TABLE order_items
    ADD COLUMN unit_price_cents INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN label VARCHAR,
    ADD COLUMN subtotal_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stocks ADD CONSTRAINT stocks_machine_id_slot_number_key UNIQUE (machine_id, slot_number);
ALTER TABLE stocks ADD CONSTRAINT stocks_quantity_non_negative CHECK (quantity >= 0);
CREATE TABLE payments (
    id TEXT PRIMARY KEY DEFAULT gen_random_uuid()::text,
    order_id TEXT NOT NULL UNIQUE REFERENCES orders (id),
    stripe_payment_intent_id VARCHAR UNIQUE,
    amount_cents INTEGER NOT NULL,
    currency VARCHAR(3) NOT NULL,
    status VARCHAR NOT NULL,
    last_error_code VARCHAR,
    last_error_message TEXT,
    succeeded_at TIMESTAMP(3),
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX payments_stripe_payment_intent_id_idx ON payments (stripe_payment_intent_id);
CREATE TABLE payment_events (
    id TEXT PRIMARY KEY,
    payment_id TEXT REFERENCES payments (id),
    stripe_event_id VARCHAR NOT NULL UNIQUE,
    type VARCHAR NOT NULL,
    payload JSONB NOT NULL,
    stripe_created_at TIMESTAMP(3),
    received_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX payment_events_stripe_event_id_idx ON payment_events (stripe_event_id);
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    stripe_refund_id VARCHAR UNIQUE,
    amount_cents INTEGER NOT NULL,
    currency VARCHAR(3) NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
COMMIT;
