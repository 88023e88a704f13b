-- One batch of the items step. $1 = last order_items.id of the previous batch, $2 = batch size, $3 = the
-- largest id when the step started: rows the application adds above it are left for the next run.
-- Takes the price snapshot of every item of the key range that has none and whose product
-- still exists, with exact NUMERIC arithmetic; leaves alone (and counts) the items whose
-- product is gone, whose price or quantity is negative, or whose cents overflow INTEGER.
-- The subtotal is computed from the row being updated, so a concurrent change of quantity is
-- seen (READ COMMITTED re-checks the WHERE clause on the new row version).
WITH bounds AS (
    SELECT max(id) AS last_id, count(*) AS scanned
    FROM (SELECT id FROM order_items WHERE id > $1 AND id <= $3 ORDER BY id LIMIT $2) AS batch
),
pending AS (
    SELECT i.id, p.name, p.price * 100 AS unit_cents
    FROM order_items AS i
    LEFT JOIN products AS p ON p.id = i.product_id
    WHERE i.id > $1 AND i.id <= (SELECT last_id FROM bounds)
      AND i.label IS NULL
),
snapshotted AS (
    UPDATE order_items AS i
    SET unit_price_cents = pending.unit_cents::INTEGER,
        label = pending.name,
        subtotal_cents = (pending.unit_cents * i.quantity)::INTEGER
    FROM pending
    WHERE i.id = pending.id
      AND i.label IS NULL
      AND pending.name IS NOT NULL
      AND pending.unit_cents BETWEEN 0 AND 2147483647
      AND i.quantity >= 0
      AND pending.unit_cents * i.quantity <= 2147483647
    RETURNING i.id
)
SELECT (SELECT last_id FROM bounds) AS last_id,
       (SELECT scanned FROM bounds) AS scanned,
       (SELECT count(*) FROM snapshotted) AS changed;
