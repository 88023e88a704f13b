-- Orders whose items are all snapshotted but whose total is not the sum of their subtotals
-- (an order with no items must total 0). One pass over order_items, one over orders.
-- $1 = sample size.
WITH items AS (
    SELECT order_id, sum(subtotal_cents::BIGINT) AS total, bool_and(label IS NOT NULL) AS complete
    FROM order_items
    GROUP BY order_id
),
wrong AS (
    SELECT o.id
    FROM orders AS o
    LEFT JOIN items AS i ON i.order_id = o.id
    WHERE coalesce(i.complete, TRUE)
      AND o.amount_total_cents <> coalesce(i.total, 0)
)
SELECT count(*), coalesce((array_agg(id::TEXT ORDER BY id))[1:$1], '{}') FROM wrong;
