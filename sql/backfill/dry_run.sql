-- What a backfill would do now, step by step, without changing anything: each item's
-- subtotal as it is or as the items step would compute it, then the orders and payments
-- that the following steps would write from those. One row per step and outcome:
-- ('items', 'would_change', n, {}) and ('orders', 'items_without_snapshot', n, sample ids), with
-- the reasons of a real run (items_unresolved.sql and the others). $1 = sample size.
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
),
outcome AS (
    SELECT 'items' AS step, 'would_change' AS outcome, NULL::TEXT AS id
    FROM item WHERE resolvable
    UNION ALL
    SELECT 'orders', 'would_change', NULL
    FROM per_order WHERE complete AND amount_total_cents = 0 AND total BETWEEN 1 AND 2147483647
    UNION ALL
    SELECT 'orders', CASE WHEN NOT complete THEN 'items_without_snapshot' ELSE 'total_overflows_integer' END, id::TEXT
    FROM per_order WHERE amount_total_cents = 0 AND (NOT complete OR total > 2147483647)
    UNION ALL
    SELECT 'payments', 'would_change', NULL
    FROM per_order
    WHERE NOT has_payment AND complete AND total <= 2147483647
      AND (amount_total_cents = 0 OR amount_total_cents = total)
    UNION ALL
    SELECT 'payments', CASE WHEN NOT complete THEN 'items_without_snapshot' ELSE 'total_not_final' END, id::TEXT
    FROM per_order WHERE NOT has_payment AND (NOT complete OR total > 2147483647)
)
SELECT step, outcome, count(*) AS rows,
       coalesce((array_agg(id ORDER BY id) FILTER (WHERE id IS NOT NULL))[1:$1], '{}') AS sample
FROM outcome GROUP BY step, outcome ORDER BY step, outcome;
