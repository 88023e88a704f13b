-- Orders left without a payment row, by reason, with up to $1 sample ids each. Among the
-- orders not totalled yet (orders_pending_total_idx): some items have no snapshot, or the sum
-- of their subtotals overflows INTEGER; among the queued ones: a total that is not the sum of
-- their items (changed since).
WITH pending AS (
    SELECT o.id,
           EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = o.id AND i.label IS NULL) AS incomplete,
           (SELECT sum(i.subtotal_cents::BIGINT) FROM order_items AS i WHERE i.order_id = o.id) AS total
    FROM orders AS o
    WHERE o.amount_total_cents = 0
      AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = o.id)
),
unresolved AS (
    SELECT id, CASE WHEN incomplete THEN 'items_without_snapshot' ELSE 'total_not_final' END AS reason
    FROM pending
    WHERE incomplete OR total > 2147483647
    UNION ALL
    SELECT q.order_id, 'total_not_final'
    FROM paytool.backfill_payment_queue AS q
)
SELECT reason, count(*) AS rows, (array_agg(id::TEXT ORDER BY id))[1:$1] AS sample
FROM unresolved GROUP BY reason ORDER BY reason;
