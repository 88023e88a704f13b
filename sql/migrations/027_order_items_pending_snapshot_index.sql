-- The items without a snapshot, and nothing else: the backfill walks this index, so a run
-- costs the pending rows, not the table (a catch-up of 300 new items reads 300 entries).
-- Rows the upgraded application writes with their snapshot never enter it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_pending_snapshot_idx
    ON order_items (id) WHERE label IS NULL;
