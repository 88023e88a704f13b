-- Snapshot columns; a snapshot is "taken" once label is set (see 004 and 006).
ALTER TABLE order_items
    ADD COLUMN IF NOT EXISTS unit_price_cents INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS label VARCHAR,
    ADD COLUMN IF NOT EXISTS subtotal_cents INTEGER NOT NULL DEFAULT 0;
