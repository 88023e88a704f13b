-- Orders left without a payment row, by reason, with up to $1 sample ids each: the orders the
-- orders step could not total (kept `unresolved` in its queue: some items have no snapshot, or
-- the sum of their subtotals overflows INTEGER), and the payment queue's leftovers (a total
-- that is not the sum of their items, changed since). Read from the two queues, never from
-- the orders settled at 0, so the report costs the unresolved orders only; the reason is the
-- state the orders batch left (orders_unresolved.sql).
WITH unresolved AS (
    SELECT q.order_id AS id,
           CASE WHEN q.state = 'items_without_snapshot' THEN 'items_without_snapshot'
                WHEN q.state = 'unresolved'
                     AND EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = q.order_id AND i.label IS NULL)
                    THEN 'items_without_snapshot'
                ELSE 'total_not_final'
           END AS reason
    FROM paytool.backfill_order_queue AS q
    WHERE q.state <> 'pending'
      AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = q.order_id)
    UNION ALL
    SELECT q.order_id, 'total_not_final'
    FROM paytool.backfill_payment_queue AS q
)
SELECT reason, count(*) AS rows, (array_agg(id::TEXT ORDER BY id))[1:$1] AS sample
FROM unresolved GROUP BY reason ORDER BY reason;
