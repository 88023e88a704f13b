-- One batch of the orders step, over the key range ($1, $2] of orders: amount_total_cents = the
-- sum of the item subtotals, for orders not yet totalled (0) whose items are all snapshotted.
WITH totals AS (
    SELECT o.id, sum(i.subtotal_cents::BIGINT) AS total
    FROM orders AS o
    JOIN order_items AS i ON i.order_id = o.id
    WHERE o.id > $1 AND o.id <= $2
      AND o.amount_total_cents = 0
    GROUP BY o.id
    HAVING bool_and(i.label IS NOT NULL)
),
totalled AS (
    UPDATE orders AS o
    SET amount_total_cents = totals.total::INTEGER
    FROM totals
    WHERE o.id = totals.id AND o.amount_total_cents = 0 AND totals.total BETWEEN 1 AND 2147483647
    RETURNING o.id
)
SELECT count(*) AS changed FROM totalled;
