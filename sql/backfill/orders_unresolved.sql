-- Orders the orders step could not total (left `unresolved` in its queue), by reason, with up
-- to $1 sample ids each: read from the queue, not from orders, so the report costs the
-- unresolved orders only.
WITH per_order AS (
    SELECT o.id, bool_and(i.label IS NOT NULL) AS all_snapshotted, sum(i.subtotal_cents::BIGINT) AS total
    FROM paytool.backfill_order_queue AS q
    JOIN orders AS o ON o.id = q.order_id
    JOIN order_items AS i ON i.order_id = o.id
    WHERE q.state = 'unresolved'
    GROUP BY o.id
),
unresolved AS (
    SELECT id, CASE WHEN NOT all_snapshotted THEN 'items_without_snapshot' ELSE 'total_overflows_integer' END AS reason
    FROM per_order
    WHERE NOT all_snapshotted OR total > 2147483647
)
SELECT reason, count(*) AS rows, (array_agg(id::TEXT ORDER BY id))[1:$1] AS sample
FROM unresolved GROUP BY reason ORDER BY reason;
