-- What a backfill would do now, step by step, without changing anything: each item's
-- subtotal as it is or as the items step would compute it, then the orders and payments
-- that the following steps would write from those.
WITH item AS (
    SELECT i.id, i.order_id, i.label IS NOT NULL AS taken,
           (i.label IS NULL AND p.id IS NOT NULL AND p.price >= 0 AND i.quantity >= 0
            AND p.price * 100 <= 2147483647 AND p.price * 100 * i.quantity <= 2147483647) AS resolvable,
           CASE WHEN i.label IS NOT NULL THEN i.subtotal_cents::NUMERIC ELSE p.price * 100 * i.quantity END AS subtotal
    FROM order_items AS i LEFT JOIN products AS p ON p.id = i.product_id
),
per_order AS (
    SELECT o.id, o.amount_total_cents,
           EXISTS (SELECT 1 FROM payments AS pay WHERE pay.order_id = o.id) AS has_payment,
           coalesce(bool_and(item.taken OR item.resolvable), true) AS complete,
           coalesce(sum(item.subtotal), 0) AS total
    FROM orders AS o LEFT JOIN item ON item.order_id = o.id
    GROUP BY o.id
)
SELECT 'items' AS step,
       (SELECT count(*) FROM item WHERE resolvable) AS would_change,
       (SELECT count(*) FROM item WHERE NOT taken AND NOT resolvable) AS unresolved
UNION ALL
SELECT 'orders',
       count(*) FILTER (WHERE complete AND amount_total_cents = 0 AND total BETWEEN 1 AND 2147483647),
       count(*) FILTER (WHERE amount_total_cents = 0 AND (NOT complete OR total > 2147483647))
FROM per_order
UNION ALL
SELECT 'payments',
       count(*) FILTER (WHERE NOT has_payment AND complete AND total <= 2147483647
                        AND (amount_total_cents = 0 OR amount_total_cents = total)),
       count(*) FILTER (WHERE NOT has_payment AND (NOT complete OR total > 2147483647))
FROM per_order;
