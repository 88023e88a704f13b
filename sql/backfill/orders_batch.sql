-- One batch of the orders step, over the key range ($1, $2] of the orders not totalled yet
-- (orders_pending_total_idx): amount_total_cents = the sum of the item subtotals, for orders
-- whose items are all snapshotted. Every order whose total is now final (just totalled, or
-- without any item) and has no payment is queued for the payments step in this same
-- transaction.
-- The items are summed per order through LATERAL, i.e. by order_items_order_id_idx: as a
-- plain join the planner switched to hashing all of order_items once a batch passed ~6,000
-- orders, and such batches took 3 times longer; the range on the UPDATE keeps its side an
-- index range scan too.
WITH totals AS (
    SELECT o.id, items.total, items.n
    FROM orders AS o
    CROSS JOIN LATERAL (
        SELECT sum(i.subtotal_cents::BIGINT) AS total, bool_and(i.label IS NOT NULL) AS complete,
               count(*) AS n
        FROM order_items AS i
        WHERE i.order_id = o.id
    ) AS items
    WHERE ($1 IS NULL OR o.id > $1) AND o.id <= $2
      AND o.amount_total_cents = 0
      AND (items.complete OR items.n = 0)
),
totalled AS (
    UPDATE orders AS o
    SET amount_total_cents = totals.total::INTEGER
    FROM totals
    WHERE o.id = totals.id AND ($1 IS NULL OR o.id > $1) AND o.id <= $2
      AND o.amount_total_cents = 0 AND totals.total BETWEEN 1 AND 2147483647
    RETURNING o.id
),
queued AS (
    INSERT INTO paytool.backfill_payment_queue (order_id)
    SELECT id FROM totalled
    UNION
    SELECT totals.id FROM totals
    WHERE totals.n = 0
      AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = totals.id)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM totalled) AS changed;
