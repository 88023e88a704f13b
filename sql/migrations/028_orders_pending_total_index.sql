-- The orders not totalled yet (and those whose total is legitimately 0: no items), for the
-- backfill's orders step, as 027 is for items. Orders written with their total never enter it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_pending_total_idx
    ON orders (id) WHERE amount_total_cents = 0;
