-- New tables: nothing reads them yet. The foreign keys take a brief SHARE ROW EXCLUSIVE
-- lock on orders / payments, under paytool's lock_timeout.
CREATE TABLE payments (
    id TEXT NOT NULL DEFAULT gen_random_uuid()::TEXT,
    order_id TEXT NOT NULL,
    stripe_payment_intent_id VARCHAR,
    amount_cents INTEGER NOT NULL,
    currency VARCHAR(3) NOT NULL,
    status VARCHAR NOT NULL,
    last_error_code VARCHAR,
    last_error_message TEXT,
    succeeded_at TIMESTAMP(3),
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT payments_pkey PRIMARY KEY (id),
    CONSTRAINT payments_order_id_key UNIQUE (order_id),
    CONSTRAINT payments_stripe_payment_intent_id_key UNIQUE (stripe_payment_intent_id),
    CONSTRAINT payments_amount_cents_check CHECK (amount_cents >= 0),
    CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id)
        REFERENCES orders (id) ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE payment_events (
    id TEXT NOT NULL DEFAULT gen_random_uuid()::TEXT,
    payment_id TEXT,
    stripe_event_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    payload JSONB NOT NULL,
    stripe_created_at TIMESTAMP(3),
    received_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT payment_events_pkey PRIMARY KEY (id),
    CONSTRAINT payment_events_stripe_event_id_key UNIQUE (stripe_event_id),
    CONSTRAINT payment_events_payment_id_fkey FOREIGN KEY (payment_id)
        REFERENCES payments (id) ON DELETE SET NULL ON UPDATE CASCADE
);
-- (the table was created empty in this same transaction)
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX payment_events_payment_id_idx ON payment_events (payment_id);

CREATE TABLE refunds (
    id TEXT NOT NULL DEFAULT gen_random_uuid()::TEXT,
    payment_id TEXT NOT NULL,
    stripe_refund_id VARCHAR,
    amount_cents INTEGER NOT NULL,
    currency VARCHAR(3) NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT refunds_pkey PRIMARY KEY (id),
    CONSTRAINT refunds_stripe_refund_id_key UNIQUE (stripe_refund_id),
    CONSTRAINT refunds_amount_cents_check CHECK (amount_cents > 0),
    CONSTRAINT refunds_payment_id_fkey FOREIGN KEY (payment_id)
        REFERENCES payments (id) ON DELETE RESTRICT ON UPDATE CASCADE
);
-- (the table was created empty in this same transaction)
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX refunds_payment_id_idx ON refunds (payment_id);
