-- NOT VALID: existing rows are checked by 005 under a lock that does not block writes.
-- The product is computed in BIGINT so that an overflow is a violation, not an error.
ALTER TABLE order_items
    ADD CONSTRAINT order_items_snapshot_check CHECK (
        label IS NULL
        OR (unit_price_cents >= 0 AND subtotal_cents::BIGINT = unit_price_cents::BIGINT * quantity)
    ) NOT VALID;
