-- Orders left without a payment row: some items have no snapshot, or the total is not the
-- sum of the subtotals (not totalled yet, or overflowing). Up to $1 sample ids per reason.
WITH unresolved AS (
    SELECT o.id,
           CASE WHEN EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = o.id AND i.label IS NULL)
                THEN 'items_without_snapshot' ELSE 'total_not_final' END AS reason
    FROM orders AS o
    WHERE NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.order_id = o.id)
      AND (EXISTS (SELECT 1 FROM order_items AS i WHERE i.order_id = o.id AND i.label IS NULL)
           OR o.amount_total_cents <> (SELECT coalesce(sum(i.subtotal_cents), 0) FROM order_items AS i WHERE i.order_id = o.id))
)
SELECT reason, count(*) AS rows, (array_agg(id ORDER BY id))[1:$1] AS sample
FROM unresolved GROUP BY reason ORDER BY reason;
