ALTER TABLE orders
    ADD CONSTRAINT orders_stripe_payment_intent_id_key
    UNIQUE USING INDEX orders_stripe_payment_intent_id_key;
