-- Also the lookup index for stripe_payment_intent_id: no second, redundant index.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_stripe_payment_intent_id_key
    ON orders (stripe_payment_intent_id);
