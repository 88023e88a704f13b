-- One batch of the orders step, over the key range ($1, $2] of the order queue's pending rows
-- (paytool.backfill_order_queue): amount_total_cents = the sum of the item subtotals, for
-- orders whose items are all snapshotted and not totalled yet (step 029's triggers total the
-- application's later writes themselves). Every queued order whose total is final (just
-- totalled, totalled already, or 0 without any item) and has no payment is queued for the
-- payments step in this same transaction, and leaves the order queue; one that cannot be
-- totalled stays there with the reason as its state (`items_without_snapshot` or
-- `total_overflows_integer`: orders_unresolved.sql reports it from the queue alone) until its
-- items change. A queue row changed meanwhile by the application (a newer queued_at) is left for the
-- next batch: its order changed after this batch read it.
-- The items are summed per order through LATERAL, i.e. by order_items_order_id_idx: as a
-- plain join the planner switched to hashing all of order_items once a batch passed ~6,000
-- orders.
WITH queued AS (
    SELECT q.order_id, q.queued_at
    FROM paytool.backfill_order_queue AS q
    WHERE ($1 IS NULL OR q.order_id > $1) AND q.order_id <= $2 AND q.state = 'pending'
),
totals AS (
    SELECT queued.order_id AS id, queued.queued_at, o.id IS NOT NULL AS found,
           o.amount_total_cents AS current, coalesce(items.total, 0) AS total, items.n,
           items.complete, items.complete AND coalesce(items.total, 0) <= 2147483647 AS final,
           EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = queued.order_id) AS has_payment
    FROM queued
    LEFT JOIN orders AS o ON o.id = queued.order_id
    CROSS JOIN LATERAL (
        SELECT sum(i.subtotal_cents::BIGINT) AS total,
               coalesce(bool_and(i.label IS NOT NULL), true) AS complete, count(*) AS n
        FROM order_items AS i
        WHERE i.order_id = queued.order_id
    ) AS items
),
totalled AS (
    UPDATE orders AS o
    SET amount_total_cents = totals.total::INTEGER
    FROM totals
    WHERE o.id = totals.id
      AND o.amount_total_cents = 0 AND totals.final AND totals.total >= 1
    RETURNING o.id
),
to_pay AS (
    INSERT INTO paytool.backfill_payment_queue (order_id)
    SELECT totals.id FROM totals
    WHERE totals.found AND totals.final AND NOT totals.has_payment
      AND (totals.current = totals.total OR totals.id IN (SELECT id FROM totalled))
    ON CONFLICT (order_id) DO NOTHING
    RETURNING 1
),
settled AS (
    DELETE FROM paytool.backfill_order_queue AS q
    USING totals
    WHERE q.order_id = totals.id AND q.queued_at = totals.queued_at
      AND (NOT totals.found OR totals.final)
    RETURNING 1
),
unresolved AS (
    UPDATE paytool.backfill_order_queue AS q
    SET state = CASE WHEN totals.complete THEN 'total_overflows_integer' ELSE 'items_without_snapshot' END
    FROM totals
    WHERE q.order_id = totals.id AND q.queued_at = totals.queued_at
      AND totals.found AND NOT totals.final
    RETURNING 1
)
SELECT (SELECT count(*) FROM totalled) AS changed;
